"""Project classes of the kind users keep in sessions; allowed in tests/settings.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass
class LineItem:
    product_id: int
    name: str
    unit_price: Decimal
    quantity: int
    added_at: datetime


@dataclass
class Cart:
    items: list[LineItem] = field(default_factory=list)
    coupons: set[str] = field(default_factory=set)

    def total(self) -> Decimal:
        return sum((item.unit_price * item.quantity for item in self.items), Decimal(0))


class Money:
    """A class with its own __reduce__, as some value types have."""

    def __init__(self, amount: Decimal, currency: str) -> None:
        self.amount = amount
        self.currency = currency

    def __reduce__(self) -> tuple[type[Money], tuple[Decimal, str]]:
        return (Money, (self.amount, self.currency))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (self.amount, self.currency) == (
            other.amount,
            other.currency,
        )

    def __hash__(self) -> int:
        return hash((self.amount, self.currency))


class NotAllowed:
    """Deliberately absent from PICKLESESSIONS_ALLOWED_CLASSES."""

    def __init__(self, value: int = 1) -> None:
        self.value = value
