"""The cart, kept in ``request.session`` as real objects: no conversion to JSON anywhere.

Both classes are listed in ``PICKLESESSIONS_ALLOWED_CLASSES``. Keep their import path stable:
a class that moved can no longer be unpickled, and the session loses its cart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.sessions.backends.base import SessionBase

from django_picklesessions.merge import MISSING

#: Most units of one product a cart may hold.
MAX_QUANTITY = 99

SESSION_KEY = "cart"


class QuantityError(ValueError):
    """A quantity the cart cannot hold; the message is fit to show to the shopper."""


@dataclass
class LineItem:
    """One product in the cart, with the price it had when it was added."""

    product_id: int
    name: str
    unit_price: Decimal
    quantity: int
    added_at: datetime  # aware, in UTC: zoneinfo objects are not allowed in the session

    @property
    def subtotal(self) -> Decimal:
        return self.unit_price * self.quantity


@dataclass
class Cart:
    """The lines of a cart, oldest first."""

    lines: list[LineItem] = field(default_factory=list)

    def find(self, product_id: int) -> LineItem | None:
        """Return the line of ``product_id``, or None."""
        return next((line for line in self.lines if line.product_id == product_id), None)

    def add(
        self, product_id: int, name: str, unit_price: Decimal, quantity: int, now: datetime
    ) -> LineItem:
        """Add ``quantity`` units, to the product's line if it has one; return the line."""
        line = self.find(product_id)
        total = quantity + (line.quantity if line else 0)
        if total > MAX_QUANTITY:
            raise QuantityError(f"A cart holds at most {MAX_QUANTITY} of one product.")
        if line is None:
            line = LineItem(product_id, name, unit_price, quantity, now)
            self.lines.append(line)
        else:
            line.quantity = total
        return line

    def set_quantity(self, product_id: int, quantity: int) -> bool:
        """Change a line's quantity (0 removes it); return False if there is no such line."""
        line = self.find(product_id)
        if line is None:
            return False
        if quantity > MAX_QUANTITY:
            raise QuantityError(f"A cart holds at most {MAX_QUANTITY} of one product.")
        if quantity <= 0:
            self.lines.remove(line)
        else:
            line.quantity = quantity
        return True

    def remove(self, product_id: int) -> LineItem | None:
        """Remove and return a product's line, or return None if it has none."""
        line = self.find(product_id)
        if line is not None:
            self.lines.remove(line)
        return line

    @property
    def count(self) -> int:
        """Units in the cart, as the badge shows them."""
        return sum(line.quantity for line in self.lines)

    @property
    def subtotal(self) -> Decimal:
        return sum((line.subtotal for line in self.lines), Decimal("0.00"))


def get_cart(session: SessionBase) -> Cart | None:
    """Return the session's cart without creating one (so browsing creates no session)."""
    cart = session.get(SESSION_KEY)
    return cart if isinstance(cart, Cart) else None


def get_or_create_cart(session: SessionBase) -> Cart:
    """Return the session's cart, putting a new one in the session if it has none."""
    cart = get_cart(session)
    if cart is None:
        cart = session[SESSION_KEY] = Cart()
    return cart


def merge_carts(base: Any, ours: Any, theirs: Any) -> Any:
    """Merge two tabs' concurrent changes to the cart: each side's quantity changes add up.

    Registered in ``PICKLESESSIONS_CONFLICT_POLICIES``: the engine calls it when this request
    and a concurrent one both changed the cart since they loaded it (``base``). Adding a
    product in two tabs keeps both; adding the same product twice adds both quantities.
    Values absent on a side are ``MISSING``.
    """
    carts = [c if isinstance(c, Cart) else Cart() for c in (base, ours, theirs)]
    base_cart, our_cart, their_cart = carts
    if ours is MISSING:
        return MISSING  # this request removed the cart (checkout, logout): it stays removed
    merged = Cart()
    for product_id in dict.fromkeys(
        line.product_id for cart in (their_cart, our_cart) for line in cart.lines
    ):
        lines = [cart.find(product_id) for cart in carts]
        quantities = [line.quantity if line else 0 for line in lines]
        quantity = quantities[1] + quantities[2] - quantities[0]
        if quantity <= 0:
            continue
        template = next(line for line in (lines[2], lines[1]) if line is not None)
        merged.lines.append(
            LineItem(
                template.product_id,
                template.name,
                template.unit_price,
                min(quantity, MAX_QUANTITY),
                template.added_at,
            )
        )
    return merged
