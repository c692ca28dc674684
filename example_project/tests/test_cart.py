"""The cart objects and the totals, and their trip through a session store."""

from __future__ import annotations

import datetime
import zoneinfo
from decimal import Decimal
from importlib import import_module

import pytest
from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.utils import timezone
from shop.cart import MAX_QUANTITY, Cart, LineItem, QuantityError
from shop.models import Coupon
from shop.pricing import price

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)


def percent(code: str, value: str) -> Coupon:
    return Coupon(code=code, kind=Coupon.Kind.PERCENT, value=Decimal(value))


def fixed(code: str, value: str) -> Coupon:
    return Coupon(code=code, kind=Coupon.Kind.FIXED, value=Decimal(value))


def cart_of(*lines: tuple[int, str, int]) -> Cart:
    cart = Cart()
    for product_id, unit_price, quantity in lines:
        cart.add(product_id, f"P{product_id}", Decimal(unit_price), quantity, NOW)
    return cart


def test_add_merges_lines_and_keeps_the_first_price_and_time() -> None:
    cart = cart_of((1, "2.50", 2), (2, "1.00", 1))
    later = NOW + datetime.timedelta(hours=1)
    cart.add(1, "P1", Decimal("9.99"), 3, later)
    assert [(ln.product_id, ln.quantity, ln.unit_price) for ln in cart.lines] == [
        (1, 5, Decimal("2.50")),
        (2, 1, Decimal("1.00")),
    ]
    assert cart.lines[0].added_at == NOW
    assert (cart.count, cart.subtotal) == (6, Decimal("13.50"))


def test_quantity_limits() -> None:
    cart = cart_of((1, "1.00", MAX_QUANTITY))
    with pytest.raises(QuantityError):
        cart.add(1, "P1", Decimal("1.00"), 1, NOW)
    with pytest.raises(QuantityError):
        cart.set_quantity(1, MAX_QUANTITY + 1)
    assert cart.lines[0].quantity == MAX_QUANTITY
    assert cart.set_quantity(1, 0) and cart.lines == []
    assert not cart.set_quantity(1, 3)
    assert cart.remove(1) is None


def test_percentages_apply_to_the_subtotal_before_fixed_amounts() -> None:
    cart = cart_of((1, "19.99", 3))  # 59.97
    totals = price(cart, [fixed("B", "5.00"), percent("A", "10"), percent("C", "12.5")])
    assert [(a.coupon.code, a.amount) for a in totals.coupons] == [
        ("A", Decimal("6.00")),  # 5.997, rounded half up
        ("C", Decimal("7.50")),  # 7.49625
        ("B", Decimal("5.00")),
    ]
    assert (totals.subtotal, totals.discount, totals.total) == (
        Decimal("59.97"),
        Decimal("18.50"),
        Decimal("41.47"),
    )


def test_the_total_never_goes_below_zero() -> None:
    totals = price(cart_of((1, "3.00", 1)), [fixed("A", "5.00"), percent("B", "100")])
    assert (totals.discount, totals.total) == (Decimal("3.00"), Decimal("0.00"))
    assert price(None, [fixed("A", "5.00")]).total == Decimal("0.00")


def store(session_key: str | None = None) -> SessionBase:
    engine = import_module(settings.SESSION_ENGINE)
    session: SessionBase = engine.SessionStore(session_key)
    return session


def test_the_cart_comes_back_as_the_same_objects() -> None:
    session = store()
    session["cart"] = cart_of((1, "8.50", 2))
    session["coupons"] = {"WELCOME10"}
    session.save()
    loaded = store(session.session_key)
    cart = loaded["cart"]
    assert cart == cart_of((1, "8.50", 2))
    assert type(cart.lines[0]) is LineItem
    assert cart.lines[0].added_at.tzinfo is datetime.timezone.utc
    assert loaded["coupons"] == {"WELCOME10"}


def test_a_zoneinfo_datetime_is_refused_when_saved() -> None:
    # Why the shop keeps datetimes in UTC (timezone.now()): ZoneInfo is not an allowed class.
    session = store()
    local = timezone.now().astimezone(zoneinfo.ZoneInfo("Europe/Paris"))
    session["cart"] = Cart([LineItem(1, "Sencha", Decimal("8.50"), 1, local)])
    with pytest.raises(TypeError, match=r"'cart'.*zoneinfo\.ZoneInfo"):
        session.save()
