"""Values that cannot be stored or loaded: no silent loss, one view of the mapping, one rule.

* A value changed in place into something the writer refuses fails at ``save()`` with the
  ``TypeError`` naming key and class, exactly as if it had been assigned (issue 10, A1).
* A key whose stored value does not load is absent from every view of the mapping (A2).
* Such a key keeps its stored bytes until the application sets or deletes it, so rolling a
  deploy back restores it; a deleted key never comes back; a forgery is logged once (A3).

Each case runs on every engine, since each is about what the storage ends up holding.
"""

from __future__ import annotations

import datetime
import decimal
import logging
import pickle
import zoneinfo
from collections.abc import Callable
from typing import Any

import pytest

from django_picklesessions.backends.base import PickleSessionBase
from tests.attacks.kit import plant, stored
from tests.cart import Cart, LineItem, NotAllowed
from tests.helpers import engines, new_session, sign_raw

Store = Callable[..., PickleSessionBase]
ENGINES = engines()
DB = pytest.param("db", marks=[pytest.mark.db, pytest.mark.django_db])
UTC = datetime.timezone.utc


@pytest.fixture(params=["locmem", DB, "file"])
def engine(request: pytest.FixtureRequest, settings: Any, tmp_path: Any) -> str:
    settings.PICKLESESSIONS_FILE_PATH = str(tmp_path / "sessions")
    name: str = request.param
    return name


def new_cart() -> Cart:
    when = datetime.datetime(2026, 3, 1, 12, tzinfo=UTC)
    return Cart(
        items=[LineItem(n, f"Item {n}", decimal.Decimal("2.50"), 1, when) for n in range(2)]
    )


def cart_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "django_picklesessions"]


# --- A1: an in-place change the writer refuses fails at save() -----------------------------


def test_in_place_change_to_an_unstorable_value_fails_at_save(engine: str) -> None:
    store = ENGINES[engine]
    key = new_session(store, cart=new_cart())
    before = stored(engine, key)
    session = store(key)
    line = session["cart"].items[0]
    line.quantity += 10
    line.added_at = datetime.datetime(2026, 3, 1, 13, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    assert session.modified  # the check itself never raises
    with pytest.raises(TypeError, match=r"Session key 'cart' cannot be stored.*zoneinfo"):
        session.save()
    assert stored(engine, key) == before  # nothing half-written


def test_appending_a_class_that_is_not_allowed_fails_at_save(engine: str) -> None:
    store = ENGINES[engine]
    key = new_session(store, cart=new_cart())
    session = store(key)
    session["cart"].items.append(NotAllowed())
    with pytest.raises(TypeError, match=r"'cart'.*tests\.cart\.NotAllowed"):
        session.save()
    assert len(store(key)["cart"].items) == 2


def test_a_storable_in_place_change_is_saved(engine: str) -> None:
    store = ENGINES[engine]
    key = new_session(store, cart=new_cart())
    session = store(key)
    session["cart"].items[0].quantity += 10
    session.save()
    assert store(key)["cart"].items[0].quantity == 11


# --- A2: one view of a refused key ----------------------------------------------------------


def test_every_view_agrees_on_a_key_that_did_not_load(settings: Any, engine: str) -> None:
    store = ENGINES[engine]
    key = new_session(store, _auth_user_id="8", cart=new_cart(), n=3)
    settings.PICKLESESSIONS_ALLOWED_CLASSES = []  # a deploy removed the cart classes
    for first in ("keys", "len", "iter", "in", "get", "items", "values", "getitem"):
        session = store(key)
        if first == "keys":
            listed = list(session.keys())
        elif first == "len":
            listed = [None] * len(session._session)
        elif first == "iter":
            listed = list(session._session)
        elif first == "in":
            assert "cart" not in session
        elif first == "get":
            assert session.get("cart") is None
        elif first == "items":
            assert dict(session.items()) == {"_auth_user_id": "8", "n": 3}
        elif first == "values":
            assert sorted(map(str, session.values())) == ["3", "8"]
        else:
            with pytest.raises(KeyError):
                session["cart"]
        # Whatever was asked first, the mapping now answers the same everywhere.
        listed = list(session.keys())
        assert sorted(listed) == ["_auth_user_id", "n"], first
        assert len(session._session) == 2
        assert {k: session[k] for k in list(session.keys())} == {"_auth_user_id": "8", "n": 3}


# --- A3: bad-deploy keys are kept; deleted keys stay deleted; forgeries logged once ---------


def test_a_rolled_back_deploy_brings_the_value_back(settings: Any, engine: str, caplog) -> None:
    store = ENGINES[engine]
    caplog.set_level(logging.WARNING, logger="django_picklesessions")
    key = new_session(store, _auth_user_id="8", cart=new_cart())
    allowed = list(settings.PICKLESESSIONS_ALLOWED_CLASSES)
    settings.PICKLESESSIONS_ALLOWED_CLASSES = []
    # A read-only request: nothing to write.
    session = store(key)
    assert session.get("cart") is None
    assert not session.modified
    # A request that changes another key: the cart's bytes go along untouched.
    session = store(key)
    assert session.get("cart") is None
    session["n"] = 1
    session.save()
    # A login rotates the key and keeps the data.
    session = store(key)
    assert session.get("cart") is None
    session.cycle_key()
    key = session.session_key
    assert any("'cart' could not be unpickled" in line for line in cart_log(caplog))
    settings.PICKLESESSIONS_ALLOWED_CLASSES = allowed  # the rollback
    session = store(key)
    assert session["cart"] == new_cart()
    assert (session["n"], session["_auth_user_id"]) == (1, "8")


@pytest.mark.parametrize("how", ["del", "pop", "pop-default", "clear", "set"])
def test_a_key_the_application_deleted_never_comes_back(
    settings: Any, engine: str, how: str
) -> None:
    store = ENGINES[engine]
    key = new_session(store, _auth_user_id="8", cart=new_cart())
    allowed = list(settings.PICKLESESSIONS_ALLOWED_CLASSES)
    settings.PICKLESESSIONS_ALLOWED_CLASSES = []
    session = store(key)
    assert session.get("cart") is None
    if how == "del":
        del session["cart"]
    elif how == "pop":
        with pytest.raises(KeyError):
            session.pop("cart")
    elif how == "pop-default":
        assert session.pop("cart", "gone") == "gone"
    elif how == "clear":
        session.clear()
    else:
        session["cart"] = "replaced"
    assert session.modified
    session.save()
    settings.PICKLESESSIONS_ALLOWED_CLASSES = allowed
    session = store(key)
    expected = {"clear": None, "set": "replaced"}.get(how)
    assert session.get("cart") == expected
    assert session.get("_auth_user_id") == (None if how == "clear" else "8")


def test_a_forged_value_is_logged_once_then_dropped(engine: str, security_log) -> None:
    store = ENGINES[engine]
    key = "f" * 32
    forged = b"\x80\x05\x8c\x02os\x8c\x06system\x93."
    plant(engine, key, sign_raw(key, {"a": pickle.dumps(1, 5), "evil": forged}))
    session = store(key)
    assert session.get("evil") is None
    assert len(security_log()) == 1
    assert session.modified  # read-only, and still the forgery is written out
    session.save()
    session = store(key)
    assert dict(session.items()) == {"a": 1}
    assert len(security_log()) == 1  # not logged again


UNSAVABLE = {
    # What the C unpickler builds but our writer refuses: a read-only buffer, nesting deeper
    # than pickling can recurse.
    "readonly-buffer": pickle.dumps(bytearray(b"x"), 5)[:-1] + b"\x98.",
    "deep-nesting": b"\x80\x05" + b"]" * 5000 + b"a" * 4999 + b".",
}


@pytest.mark.parametrize("case", sorted(UNSAVABLE))
def test_a_forged_value_the_writer_refuses_is_logged_once_and_dropped(
    engine: str, case: str, security_log
) -> None:
    store = ENGINES[engine]
    key = "g" * 32
    plant(engine, key, sign_raw(key, {"a": pickle.dumps(1, 5), "cart": UNSAVABLE[case]}))
    session = store(key)
    session["cart"]  # the reader builds it (in default mode; strict mode refuses it on read)
    assert session.modified
    session.save()  # never raises: the application did not make this value
    assert len(security_log()) == 1
    session = store(key)
    assert dict(session.items()) == {"a": 1}
    assert len(security_log()) == 1
