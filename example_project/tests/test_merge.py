"""Two tabs changing the cart at once keep both changes (the registered cart merge)."""

from __future__ import annotations

import importlib
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from django.conf import settings
from shop.cart import SESSION_KEY, Cart

NOW = datetime(2026, 11, 27, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _each_engine(engine: str) -> None:
    """Run every test on the db and the file engine."""


def store_class():
    return importlib.import_module(settings.SESSION_ENGINE).SessionStore


def cart(**quantities: int) -> Cart:
    result = Cart()
    for product, quantity in quantities.items():
        result.add(int(product.removeprefix("p")), product, Decimal("2.50"), quantity, NOW)
    return result


def two_tabs(initial: Cart):
    store = store_class()
    first = store()
    first[SESSION_KEY] = initial
    first.save()
    a, b = store(first.session_key), store(first.session_key)
    assert a[SESSION_KEY] == b[SESSION_KEY] == initial  # both loaded the same version
    return first.session_key, a, b


def quantities(key: str) -> dict[int, int]:
    stored = store_class()(key)[SESSION_KEY]
    return {line.product_id: line.quantity for line in stored.lines}


@pytest.mark.parametrize("order", ["ab", "ba"])
def test_two_tabs_adding_different_products_keep_both(order: str) -> None:
    key, a, b = two_tabs(cart(p1=1))
    a[SESSION_KEY].add(2, "p2", Decimal("3.00"), 1, NOW)
    b[SESSION_KEY].add(3, "p3", Decimal("4.00"), 2, NOW)
    for tab in (a, b) if order == "ab" else (b, a):
        tab.save()
    assert quantities(key) == {1: 1, 2: 1, 3: 2}


def test_two_tabs_adding_the_same_product_add_up() -> None:
    key, a, b = two_tabs(cart(p1=1))
    a[SESSION_KEY].add(1, "p1", Decimal("2.50"), 2, NOW)
    b[SESSION_KEY].add(1, "p1", Decimal("2.50"), 3, NOW)
    a.save()
    b.save()
    assert quantities(key) == {1: 6}


def test_a_removal_in_one_tab_and_an_add_in_the_other() -> None:
    key, a, b = two_tabs(cart(p1=1, p2=1))
    a[SESSION_KEY].remove(1)
    b[SESSION_KEY].add(3, "p3", Decimal("1.00"), 1, NOW)
    a.save()
    b.save()
    assert quantities(key) == {2: 1, 3: 1}


def test_checkout_removing_the_cart_wins_over_a_late_add() -> None:
    key, a, b = two_tabs(cart(p1=1))
    b[SESSION_KEY].add(2, "p2", Decimal("1.00"), 1, NOW)
    b.save()
    del a[SESSION_KEY]  # checkout in the other tab, saved last
    a.save()
    assert SESSION_KEY not in store_class()(key)
