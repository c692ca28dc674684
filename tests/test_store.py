"""The shared store base: lazy decoding, exact change detection, no-op saves, drops."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import logging
import os
import pickle
import subprocess
import sys
import time

import django
import pytest
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.test import Client, override_settings

from django_picklesessions.backends import locmem
from django_picklesessions.backends.base import SessionData
from django_picklesessions.backends.locmem import SessionStore
from tests.cart import Cart, LineItem
from tests.helpers import sign_raw

UTC = datetime.timezone.utc
needs_async = pytest.mark.skipif(
    django.VERSION < (5, 1), reason="SessionBase has async methods since Django 5.1"
)


def new_cart() -> Cart:
    return Cart(
        items=[
            LineItem(n, f"Item {n}", decimal.Decimal("2.50"), 1, datetime.datetime.now(UTC))
            for n in range(3)
        ]
    )


def saved_session(**values: object) -> str:
    store = SessionStore()
    store.update(values)
    store.save()
    return store.session_key


class WriteCounter:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = SessionStore._write

        def counting(store, *args, **kwargs):
            self.count += 1
            return real(store, *args, **kwargs)

        monkeypatch.setattr(SessionStore, "_write", counting)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> WriteCounter:
    return WriteCounter(monkeypatch)


def test_reading_auth_keys_never_unpickles_the_cart(unpickle_spy) -> None:
    key = saved_session(_auth_user_id="3", _auth_user_hash="abc", cart=new_cart())
    store = SessionStore(key)
    assert store["_auth_user_id"] == "3"
    assert store.get("_auth_user_hash") == "abc"
    assert unpickle_spy.calls == 2
    assert not store._session.is_decoded("cart")
    assert store._session.decoded_keys() == ["_auth_user_id", "_auth_user_hash"]
    assert unpickle_spy.calls == 2  # listing what was decoded decodes nothing
    assert len(store.keys()) == 3


def test_untouched_values_are_written_back_byte_for_byte(unpickle_spy) -> None:
    key = saved_session(_auth_user_id="3", cart=new_cart())
    before = locmem._records[SessionStore.address(key)][0]
    store = SessionStore(key)
    store["visits"] = 1
    store.save()
    assert unpickle_spy.calls == 0
    after = SessionStore(key)
    assert after["cart"] == SessionStore(key)["cart"]
    raw_cart = pickle.dumps(store._session._base["cart"], 5)
    assert raw_cart  # the cart's bytes were carried over without decoding
    assert store._session._base["cart"] in before


def test_nested_mutation_is_saved_without_setting_modified() -> None:
    key = saved_session(cart=new_cart())
    store = SessionStore(key)
    store["cart"].items.append(
        LineItem(9, "Extra", decimal.Decimal("1.00"), 4, datetime.datetime.now(UTC))
    )
    assert store._explicitly_modified is False
    assert store.modified  # what SessionMiddleware asks before saving
    store.save()
    assert len(SessionStore(key)["cart"].items) == 4


def test_reading_without_changing_is_not_modified(writes) -> None:
    key = saved_session(cart=new_cart(), n=1)
    store = SessionStore(key)
    assert len(store["cart"].items) == 3
    assert store["n"] == 1
    assert not store.modified
    store.save()
    assert writes.count == 1  # only the initial save


def test_save_that_changes_nothing_writes_nothing(writes) -> None:
    key = saved_session(cart=new_cart(), n=1)
    store = SessionStore(key)
    store["n"] = 1  # same value: sets modified, but the bytes are equal
    store["cart"] = store["cart"]
    assert store.modified
    store.save()
    assert writes.count == 1


@override_settings(SESSION_SAVE_EVERY_REQUEST=True)
def test_save_every_request_still_refreshes_expiry(writes) -> None:
    key = saved_session(n=1)
    SessionStore(key).save()
    assert writes.count == 2


def test_deleting_a_key_is_a_change() -> None:
    key = saved_session(a=1, b=2)
    store = SessionStore(key)
    del store["a"]
    store.save()
    assert dict(SessionStore(key).items()) == {"b": 2}


def test_clear_then_save_deletes_everything() -> None:
    key = saved_session(a=1)
    store = SessionStore(key)
    store.clear()
    store.save()
    assert dict(SessionStore(key).items()) == {}


def test_value_whose_class_is_gone_hides_only_that_key(settings, caplog, security_log) -> None:
    key = saved_session(_auth_user_id="8", cart=new_cart())
    # After a deploy the class is no longer allowed (or no longer exists).
    settings.PICKLESESSIONS_ALLOWED_CLASSES = []
    caplog.set_level(logging.WARNING, logger="django_picklesessions")
    store = SessionStore(key)
    assert store["_auth_user_id"] == "8"
    assert store.get("cart") is None
    assert "cart" not in store
    assert "Session key 'cart' could not be unpickled" in caplog.text
    assert "tests.cart.Cart" in caplog.text
    assert security_log() == []
    assert not store.modified  # kept as stored: a rollback of the deploy brings it back
    store["n"] = 1
    store.save()
    assert dict(SessionStore(key).items()) == {"_auth_user_id": "8", "n": 1}


def test_items_and_values_skip_dropped_keys(caplog) -> None:
    data = sign_raw(
        "d" * 32, {"ok": pickle.dumps(1, 5), "bad": b"\x80\x05\x8c\x02os\x8c\x06system\x93."}
    )
    locmem._records[SessionStore.address("d" * 32)] = (data, int(time.time()) + 60)
    store = SessionStore("d" * 32)
    assert dict(store.items()) == {"ok": 1}
    assert list(store.values()) == [1]


def test_update_error_when_session_deleted_meanwhile() -> None:
    key = saved_session(a=1)
    store = SessionStore(key)
    store["a"] = 2
    SessionStore(key).delete()
    with pytest.raises(UpdateError):
        store.save()


def test_create_error_on_collision() -> None:
    key = saved_session(a=1)
    store = SessionStore(key)
    with pytest.raises(CreateError):
        store.save(must_create=True)


def test_cycle_key_keeps_data_and_deletes_old_record(unpickle_spy) -> None:
    key = saved_session(_auth_user_id="1", cart=new_cart())
    store = SessionStore(key)
    store.cycle_key()
    assert store.session_key != key
    assert not store.exists(key)
    assert unpickle_spy.calls == 0  # carried over without decoding
    assert SessionStore(store.session_key)["cart"].items[0].name == "Item 0"


def test_flush_deletes_record_and_key() -> None:
    key = saved_session(a=1)
    store = SessionStore(key)
    store.flush()
    assert store.session_key is None
    assert not store.exists(key)


def test_expired_sessions_are_cleared() -> None:
    key = saved_session(a=1)
    store = SessionStore()
    store.set_expiry(-10)
    store["b"] = 2
    store.save()
    SessionStore.clear_expired()
    assert SessionStore().exists(key)
    assert not SessionStore().exists(store.session_key)


def test_session_data_equality_and_repr() -> None:
    key = saved_session(a=1, b=[2])
    data = SessionStore(key).load()
    assert isinstance(data, SessionData)
    assert "<not decoded>" in repr(data)
    assert data == {"a": 1, "b": [2]}


def test_middleware_round_trip() -> None:
    client = Client()
    assert client.get("/set/_auth_user_id/12/").status_code == 200
    assert client.get("/auth/").content == b"12"


def test_middleware_saves_nested_mutation() -> None:
    client = Client()
    client.get("/set/x/1/")
    key = client.cookies["sessionid"].value
    store = SessionStore(key)
    store["cart"] = new_cart()
    store.save()
    assert client.get("/cart/").content == b"3"


def test_tampered_record_through_middleware_gives_empty_session(security_log) -> None:
    client = Client()
    client.get("/set/_auth_user_id/12/")
    address = SessionStore.address(client.cookies["sessionid"].value)
    data, expires = locmem._records[address]
    locmem._records[address] = (data[:-1] + bytes([data[-1] ^ 1]), expires)
    response = client.get("/auth/")
    assert response.status_code == 200
    assert response.content == b"None"
    assert len(security_log()) == 1


@needs_async
def test_async_methods() -> None:
    asyncio.run(_async_scenario())


async def _async_scenario() -> None:
    store = SessionStore()
    await store.aset("cart", new_cart())
    await store.asave()
    key = store.session_key
    assert await store.aexists(key)
    other = SessionStore(key)
    assert (await other.aget("cart")).items[0].name == "Item 0"
    await other.acycle_key()
    assert not await other.aexists(key)
    await other.aflush()
    assert other.session_key is None


@pytest.mark.parametrize("seed", ["0", "1", "6", "17", "42"])
def test_reading_a_set_never_makes_the_session_modified(seed: str, tmp_path) -> None:
    # A set's pickle depends on string hashing: in some processes the elements of a set read
    # back and re-pickled come out in another order. Reading must still change nothing.
    script = tmp_path / "read_sets.py"
    script.write_text(
        "import django, sys\n"
        "django.setup()\n"
        "from django_picklesessions.backends.locmem import SessionStore\n"
        "codes = {'WELCOME10', 'TAKE5', 'TEATIME25', 'SPRING', 'FREESHIP', 'VIP20'}\n"
        "store = SessionStore()\n"
        "store['coupons'] = set(codes)\n"
        "store['nested'] = [set(codes), frozenset(codes)]\n"
        "store.save()\n"
        "reader = SessionStore(store.session_key)\n"
        "assert reader['coupons'] == codes and reader['nested'][0] == codes\n"
        "print(reader.modified)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {
        **os.environ,
        "PYTHONHASHSEED": seed,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": root,
    }
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout.strip()) == (0, "False"), result.stderr


def test_an_in_place_change_to_a_set_is_saved() -> None:
    key = saved_session(coupons={"A"})
    store = SessionStore(key)
    store["coupons"].add("B")
    assert store.modified
    store.save()
    assert SessionStore(key)["coupons"] == {"A", "B"}
