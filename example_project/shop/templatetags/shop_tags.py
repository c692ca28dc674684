from __future__ import annotations

from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def money(value: Decimal | None) -> str:
    """Format an amount as euros: ``Decimal("7.5")`` gives "€7.50"."""
    if value is None:
        return ""
    return f"€{value:,.2f}"
