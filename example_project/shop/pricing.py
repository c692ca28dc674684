"""Cart totals, in ``Decimal`` from end to end, and the coupon codes kept in the session."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.sessions.backends.base import SessionBase

from shop.cart import Cart
from shop.models import Coupon

#: Session key of the applied coupon codes: a plain ``set`` of str.
COUPONS_KEY = "coupons"


@dataclass(frozen=True)
class AppliedCoupon:
    coupon: Coupon
    amount: Decimal


@dataclass(frozen=True)
class Totals:
    subtotal: Decimal
    coupons: list[AppliedCoupon]
    total: Decimal

    @property
    def discount(self) -> Decimal:
        return self.subtotal - self.total


def price(cart: Cart | None, coupons: Iterable[Coupon]) -> Totals:
    """Total a cart: percentages first (on the subtotal), then fixed amounts, never below 0."""
    subtotal = cart.subtotal if cart else Decimal("0.00")
    # Percentages before fixed amounts, so the order codes were entered in does not matter.
    ordered = sorted(coupons, key=lambda c: (c.kind != Coupon.Kind.PERCENT, c.code))
    percent_base = subtotal
    remaining = subtotal
    applied = []
    for coupon in ordered:
        base = percent_base if coupon.kind == Coupon.Kind.PERCENT else remaining
        amount = min(coupon.discount_on(base), remaining)
        remaining -= amount
        applied.append(AppliedCoupon(coupon, amount))
    return Totals(subtotal=subtotal, coupons=applied, total=remaining)


def applied_coupons(session: SessionBase) -> list[Coupon]:
    """Return the active coupons whose codes the session holds, forgetting unknown codes."""
    codes = session.get(COUPONS_KEY)
    if not isinstance(codes, set) or not codes:
        return []
    coupons = list(Coupon.objects.filter(code__in=codes, active=True))
    gone = codes - {c.code for c in coupons}
    if gone:
        # A code withdrawn since it was applied: changing the set in place is enough, the
        # engine notices and saves it.
        codes.difference_update(gone)
    return coupons
