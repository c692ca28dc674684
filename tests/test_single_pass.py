"""One change check per request: our middleware shares the pickles of ``modified`` and ``save``."""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections import Counter
from typing import Any

import pytest
from django.test import Client, override_settings

from django_picklesessions import data, pickler
from django_picklesessions.backends.locmem import SessionStore
from tests.cart import Cart, LineItem, Money

OURS = [
    "django_picklesessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
UTC = datetime.timezone.utc


def lines() -> list[LineItem]:
    added = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return [LineItem(n, f"Item {n}", decimal.Decimal("2.50"), 1, added) for n in range(3)]


class DumpSpy:
    """Counts the writer's pickles by session key."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.keys: Counter[str] = Counter()
        real = pickler.Writer.dumps

        def dumps(writer: pickler.Writer, key: str, value: Any) -> bytes:
            self.keys[key] += 1
            return real(writer, key, value)

        monkeypatch.setattr(pickler.Writer, "dumps", dumps)


@pytest.fixture
def dump_spy(monkeypatch: pytest.MonkeyPatch) -> DumpSpy:
    return DumpSpy(monkeypatch)


def client_with(**values: object) -> tuple[Client, str]:
    store = SessionStore()
    store.update(values)
    store.save()
    key = str(store.session_key)
    client = Client()
    client.cookies["sessionid"] = key
    return client, key


def quantities(key: str) -> list[int]:
    return [line.quantity for line in SessionStore(key)["lines"]]


def test_a_change_after_the_modified_check_is_saved() -> None:
    # A cache of the check's pickles that a later save reused would lose this change.
    key = client_with(lines=lines())[1]
    store = SessionStore(key)
    store["lines"]
    assert not store.modified
    store["lines"][0].quantity = 5
    store.save()
    assert quantities(key) == [5, 1, 1]


def test_a_change_after_a_check_inside_single_pass_is_still_seen_when_assigned() -> None:
    key = client_with(lines=lines(), visits=1)[1]
    store = SessionStore(key)
    store["lines"]
    with store.single_pass():
        assert not store.modified
        store["visits"] = 2  # setting a key forgets what the check kept
        store.save()
    assert SessionStore(key)["visits"] == 2
    assert not SessionStore(key).modified


def test_the_check_kept_for_a_single_pass_ends_with_it() -> None:
    key = client_with(lines=lines())[1]
    store = SessionStore(key)
    store["lines"]
    with store.single_pass():
        assert not store.modified
    store["lines"][0].quantity = 7
    store.save()
    assert quantities(key) == [7, 1, 1]


@pytest.mark.parametrize("middleware", ["ours", "django"])
def test_a_view_that_asks_modified_then_changes_in_place_is_saved(middleware: str) -> None:
    client, key = client_with(lines=lines())
    with override_settings(**({"MIDDLEWARE": OURS} if middleware == "ours" else {})):
        assert client.get("/lines/check-then-bump/").content == b"False"
    assert quantities(key) == [2, 1, 1]


@pytest.mark.parametrize(("middleware", "pickles"), [("ours", 1), ("django", 2)])
def test_a_request_changing_a_value_in_place_pickles_it_once_through_our_middleware(
    middleware: str, pickles: int, dump_spy: DumpSpy, unpickle_spy: Any
) -> None:
    client, key = client_with(lines=lines(), visits=3)
    dump_spy.keys.clear()
    with override_settings(**({"MIDDLEWARE": OURS} if middleware == "ours" else {})):
        assert client.get("/lines/bump/").status_code == 200
    # Read once. Re-pickled once for the check and the save together (Django's middleware:
    # once each); a pickle without a set is never unpickled again to compare.
    assert (unpickle_spy.calls, dump_spy.keys["lines"]) == (1, pickles)
    assert quantities(key) == [2, 1, 1]


def test_a_read_only_request_through_our_middleware_writes_nothing(
    dump_spy: DumpSpy, unpickle_spy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One coupon: a set of two strings can come back from a load in the other order (under
    # some hash seeds, 8 for one), and then the stored cart is unpickled once more to compare.
    client, key = client_with(lines=lines(), cart=Cart(items=lines(), coupons={"A"}))
    writes: list[str] = []
    real = SessionStore._write
    monkeypatch.setattr(
        SessionStore, "_write", lambda store, *a: writes.append(a[0]) or real(store, *a)
    )
    dump_spy.keys.clear()
    with override_settings(MIDDLEWARE=OURS):
        assert client.get("/cart/").content == b"3"
    assert (writes, dump_spy.keys["cart"], unpickle_spy.calls) == ([], 1, 1)


def test_a_stored_set_is_unpickled_to_compare_only_when_the_bytes_differ(
    unpickle_spy: Any,
) -> None:
    key = client_with(cart=Cart(items=lines(), coupons={"A"}))[1]
    store = SessionStore(key)
    store["cart"].items[0].quantity = 4
    # The stored cart holds a set, so different bytes may still be an equal value.
    assert store.modified
    assert unpickle_spy.calls == 2
    store.save()
    assert SessionStore(key)["cart"].items[0].quantity == 4


@pytest.mark.parametrize(
    "value", [set(), {"A"}, {1, 2, 3}, frozenset(), frozenset({"A"}), [{"A"}], {"k": {1}}]
)
def test_every_pickle_holding_a_set_may_hold_one(value: object) -> None:
    # A false "no set" would count an equal set in another order as a change.
    assert data._may_hold_set(pickler.get_writer().dumps("k", value))


def test_a_pickle_without_a_set_is_known_not_to_hold_one() -> None:
    value = [lines(), decimal.Decimal("1.00"), "sea", b"\x8e\x92"]
    assert not data._may_hold_set(pickler.get_writer().dumps("k", value))


def test_the_writer_says_when_a_class_reduced_a_value_itself() -> None:
    # A class's own __reduce__ (a set subclass lists its elements in hash order) may write
    # equal values as different bytes: the writer says so, and the stored value is compared.
    writer = pickler.get_writer()
    writer.dumps("lines", lines())
    assert not writer.reduced_by_class
    writer.dumps("money", [decimal.Decimal("1.00")])
    assert not writer.reduced_by_class
    writer.dumps("money", Money(decimal.Decimal("1.00"), "EUR"))
    assert writer.reduced_by_class


def test_values_that_cannot_change_in_place_are_not_pickled_again(dump_spy: DumpSpy) -> None:
    values = {
        "price": decimal.Decimal("9.99"),
        "seen_at": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "day": datetime.date(2026, 1, 2),
        "opens": datetime.time(9, 30),
        "ttl": datetime.timedelta(minutes=5),
        "order": uuid.UUID(int=7),
    }
    key = client_with(**values, lines=lines())[1]
    store = SessionStore(key)
    assert {name: store[name] for name in values} == values
    store["lines"][0].quantity = 4  # so that the save writes
    dump_spy.keys.clear()
    store.save()
    assert set(dump_spy.keys) == {"lines"}  # the six others keep their stored bytes
    assert {name: SessionStore(key)[name] for name in values} == values


class _ShopZone(datetime.tzinfo):
    def utcoffset(self, dt: datetime.datetime | None) -> datetime.timedelta:
        return datetime.timedelta(hours=1)

    def dst(self, dt: datetime.datetime | None) -> datetime.timedelta:
        return datetime.timedelta(0)

    def tzname(self, dt: datetime.datetime | None) -> str:
        return "SHOP"


def test_a_datetime_with_another_tzinfo_class_counts_as_changeable() -> None:
    # An allowed tzinfo class of the application's could be mutable: pickled again.
    assert data._unchangeable(datetime.datetime(2026, 1, 2, tzinfo=UTC))
    assert data._unchangeable(datetime.datetime(2026, 1, 2))
    assert not data._unchangeable(datetime.datetime(2026, 1, 2, tzinfo=_ShopZone()))
    assert not data._unchangeable(datetime.time(9, tzinfo=_ShopZone()))
    assert not data._unchangeable([decimal.Decimal(1)])
