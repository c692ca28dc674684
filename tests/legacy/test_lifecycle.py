"""An imported session's life: logout, key cycling, races, mixed fleets, rollback, attacks."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import pickle
import threading
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core import signing
from django.test import Client, override_settings

from django_picklesessions import record, unpickler
from django_picklesessions.backends import db
from tests import canary
from tests.legacy import golden
from tests.legacy.test_replay import cell_id, ours_raw, planted, replay

pytestmark = [pytest.mark.db, pytest.mark.django_db]

OURS = "django_picklesessions.backends.db"
STOCK_DB = "django.contrib.sessions.backends.db"
# What a stock server of the fleet reads pickled sessions with: Django 4.2's own serializer,
# or on Django 5 and later (where it is gone) the bridge serializer.
STOCK_SERIALIZER = (
    "django.contrib.sessions.serializers.PickleSerializer"
    if django.VERSION < (5, 0)
    else "django_picklesessions.serializers.PickleSerializer"
)


# Django 4.2 warns each time its own PickleSerializer is built: the stock servers here use it.
STOCK_PICKLE_WARNING = pytest.mark.filterwarnings("ignore:PickleSerializer is deprecated")


def db_record(form: str = "expiry-int", serializer: str = "pickle") -> dict[str, Any]:
    (r,) = [r for r in golden.cell_records("db", serializer, None) if r["form"] == form]
    return r


def stock_row_exists(key: str) -> bool:
    return Session.objects.filter(session_key=key).exists()


def test_logout_after_import_does_not_bring_the_session_back(tmp_path: Path) -> None:
    r = db_record()
    client = Client()
    with golden.legacy_settings("db", "pickle", None, tmp_path):
        user = golden.make_user()
        with planted([r]):
            assert replay(client, r)[0] == user.pk
            client.get("/logout/")
            assert replay(client, r)[0] is None
            assert not stock_row_exists(r["session_key"])
            assert ours_raw(OURS, r["session_key"]) is None


def test_logout_also_deletes_a_legacy_copy_kept_by_dual_write(tmp_path: Path) -> None:
    r = db_record()
    client = Client()
    with golden.legacy_settings("db", "pickle", None, tmp_path, PICKLESESSIONS_LEGACY_WRITE=True):
        user = golden.make_user()
        with planted([r]):
            assert replay(client, r)[0] == user.pk
            assert stock_row_exists(r["session_key"])
            client.get("/logout/")
            assert not stock_row_exists(r["session_key"])
            # Neither engine can bring it back: the stock one has no row, ours no record.
            assert replay(client, r)[0] is None


def test_cycle_key_removes_the_legacy_record_of_the_old_key(tmp_path: Path) -> None:
    r = db_record()
    with golden.legacy_settings("db", "pickle", None, tmp_path, PICKLESESSIONS_LEGACY_WRITE=True):
        golden.make_user()
        golden.plant(r)
        store = db.SessionStore(r["session_key"])
        assert store["_auth_user_id"] == "42"
        assert stock_row_exists(r["session_key"])  # kept by dual-write
        store.cycle_key()
        assert store.session_key != r["session_key"]
        assert not stock_row_exists(r["session_key"])
        assert ours_raw(OURS, r["session_key"]) is None
        # The new key has its stock copy, so a rollback still finds the login.
        assert stock_row_exists(store.session_key)


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_requests_create_one_record_and_keep_both_changes(
    tmp_path: Path,
) -> None:
    r = db_record()
    key = r["session_key"]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def request(name: str) -> None:
        try:
            store = db.SessionStore(key)
            barrier.wait()
            store[name] = name  # loads: both miss our table and find the legacy row
            store.save()
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            from django.db import connection

            connection.close()

    with golden.legacy_settings("db", "pickle", None, tmp_path):
        golden.make_user()
        golden.plant(r)
        threads = [threading.Thread(target=request, args=(n,)) for n in ("left", "right")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        session = dict(db.SessionStore(key).load().items())
        assert session["left"] == "left"
        assert session["right"] == "right"
        assert session["_auth_user_id"] == "42"
        assert db.SessionStore.get_model_class()._default_manager.count() == 1
        assert not stock_row_exists(key)


def test_a_pushed_forward_expire_date_does_not_extend_the_session(tmp_path: Path) -> None:
    r = db_record("expiry-int")
    far = dt.datetime(2200, 1, 1, tzinfo=dt.timezone.utc)
    with golden.legacy_settings("db", "pickle", None, tmp_path):
        user = golden.make_user()
        golden.plant(r)
        # Whoever can write the table moves the unsigned column; the signed data says less.
        Session.objects.filter(session_key=r["session_key"]).update(expire_date=far)
        assert replay(Client(), r)[0] == user.pk
        raw = ours_raw(OURS, r["session_key"])
        assert raw is not None
        assert record.peek_expiry(raw) == r["expires_at"]
        assert r["expires_at"] < far.timestamp()


def test_an_expired_legacy_session_is_not_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, security_log: Any
) -> None:
    r = db_record("expiry-int")
    from django.utils import timezone

    later = dt.datetime.fromtimestamp(r["expires_at"] + 1, tz=dt.timezone.utc)
    with golden.legacy_settings("db", "pickle", None, tmp_path):
        golden.make_user()
        golden.plant(r)
        # The column still says "valid": only the signed bound has passed.
        Session.objects.update(expire_date=later + dt.timedelta(days=1))
        monkeypatch.setattr(timezone, "now", lambda: later)
        store = db.SessionStore(r["session_key"])
        assert dict(store.load().items()) == {}
    assert security_log() == []


def test_stock_bytes_planted_in_our_own_table_are_still_refused(
    tmp_path: Path, security_log: Any
) -> None:
    r = db_record()
    key = r["session_key"]
    with golden.legacy_settings("db", "pickle", None, tmp_path):
        golden.make_user()
        store = db.SessionStore(key)
        # A writer of our table copies a valid stock record in: it is not our format.
        store._write(
            store.address(key), r["db"]["session_data"].encode(), r["expires_at"], True, None
        )
        assert replay(Client(), r)[0] is None
    assert [rec.getMessage() for rec in security_log()] == [
        f"Session data corrupted or invalid (format) for session {store.address(key)[:8]}…"
    ]


class _RawPickle:
    """A serializer for Django's signing that passes prepared pickle bytes through."""

    def dumps(self, obj: bytes) -> bytes:
        return obj

    def loads(self, data: bytes) -> Any:
        raise AssertionError("never called")


class _Call:
    """Pickles as a call of ``func(arg)``: what a holder of the key could sign."""

    def __init__(self, func: Any, arg: str) -> None:
        self.func, self.arg = func, arg

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (self.func, (self.arg,))


def _plant_signed_pickle(data: bytes, key: str) -> None:
    text = signing.dumps(
        data,
        salt="django.contrib.sessions.SessionStore",
        serializer=_RawPickle,
        compress=True,
    )
    expire = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    Session.objects.create(session_key=key, session_data=text, expire_date=expire)


def test_an_unknown_callable_under_a_valid_legacy_mac_never_runs(tmp_path: Path) -> None:
    canary.reset()
    gadget = pickle.dumps({"_auth_user_id": "42", "x": _Call(canary.fire, "legacy")}, 5)
    with golden.legacy_settings("db", "pickle", None, tmp_path):
        _plant_signed_pickle(gadget, "g" * 32)
        session = dict(db.SessionStore("g" * 32).load().items())
    assert canary.FIRED == []
    assert session == {"_auth_user_id": "42"}  # the unknown value is dropped, never called


def test_a_code_gadget_under_a_valid_legacy_mac_is_refused_and_logged(
    tmp_path: Path, security_log: Any
) -> None:
    marker = tmp_path / "pwned"
    gadget = pickle.dumps({"_auth_user_id": "42", "x": _Call(os.system, f"touch {marker}")}, 5)
    with golden.legacy_settings("db", "pickle", None, tmp_path):
        _plant_signed_pickle(gadget, "h" * 32)
        assert dict(db.SessionStore("h" * 32).load().items()) == {}
        assert stock_row_exists("h" * 32)  # not imported: the evidence stays
    assert not marker.exists()
    (line,) = security_log()
    assert "leaked" in line.getMessage()


def test_a_bad_legacy_mac_unpickles_nothing(
    tmp_path: Path, security_log: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bytes] = []
    real = unpickler.salvage_loads

    def spy(data: bytes) -> Any:
        calls.append(data)
        return real(data)

    monkeypatch.setattr(unpickler, "salvage_loads", spy)
    r = db_record()
    text = r["db"]["session_data"]
    tampered = text[:-1] + ("A" if text[-1] != "A" else "B")
    with golden.legacy_settings("db", "pickle", None, tmp_path):
        golden.make_user()
        golden.plant(r)
        Session.objects.filter(session_key=r["session_key"]).update(session_data=tampered)
        assert replay(Client(), r)[0] is None
    assert calls == []
    assert "signature" in security_log()[0].getMessage()


def _pickle_cell(tmp_path: Path, **extra: Any) -> override_settings:
    return golden.legacy_settings(
        "db", "pickle", None, tmp_path, PICKLESESSIONS_LEGACY_WRITE=True, **extra
    )


@STOCK_PICKLE_WARNING
def test_mixed_fleet_under_dual_write_keeps_everyone_logged_in(tmp_path: Path) -> None:
    """Requests alternate between a stock server and ours (a rolling deploy)."""
    imported = db_record("expiry-int")
    with _pickle_cell(tmp_path):
        user = golden.make_user()
        golden.plant(imported)
        fresh = Client()
        fresh.force_login(user)  # a login on one of our servers, after the switch
        legacy = Client()
        legacy.cookies[settings.SESSION_COOKIE_NAME] = imported["session_key"]
        seen = []
        for turn in range(6):
            engine = OURS if turn % 2 else STOCK_DB
            with override_settings(SESSION_ENGINE=engine, SESSION_SERIALIZER=STOCK_SERIALIZER):
                for client in (fresh, legacy):
                    seen.append(client.get(f"/touch/turn/{turn}/").json()["user"])
    assert seen == [user.pk] * 12


@STOCK_PICKLE_WARNING
def test_rollback_during_dual_write_logs_nobody_out(tmp_path: Path) -> None:
    """Revert SESSION_ENGINE to the stock engine: old and new logins all survive."""
    records = [r for r in golden.cell_records("db", "pickle", None) if r["form"] != "refused"]
    with _pickle_cell(tmp_path):
        user = golden.make_user()
        clients = []
        with planted(records):
            for r in records:
                client = Client()
                assert replay(client, r)[0] == user.pk  # imported by ours
                client.cookies[settings.SESSION_COOKIE_NAME] = r["session_key"]
                clients.append(client)
            for _ in range(2):
                client = Client()
                client.force_login(user)  # logged in after the switch: only ours had it
                client.get("/touch/cart/full/")
                clients.append(client)
            with override_settings(SESSION_ENGINE=STOCK_DB, SESSION_SERIALIZER=STOCK_SERIALIZER):
                after = [client.get("/whoami/").json()["user"] for client in clients]
    logged_out = sum(1 for seen in after if seen != user.pk)
    assert logged_out == 0
    assert len(after) == len(records) + 2


@pytest.mark.skipif(django.VERSION < (5, 1), reason="async session methods since Django 5.1")
@pytest.mark.django_db(transaction=True)
def test_async_load_imports_and_async_flush_forgets(tmp_path: Path) -> None:
    from asgiref.sync import sync_to_async
    from django.db import connections

    r = db_record()
    key = r["session_key"]

    async def scenario() -> tuple[Any, bool, bool]:
        store = db.SessionStore(key)
        user_id = await store.aget("_auth_user_id")
        imported = await sync_to_async(ours_raw)(OURS, key) is not None
        await store.aflush()
        legacy_left = await sync_to_async(stock_row_exists)(key)
        await sync_to_async(connections.close_all)()
        return user_id, imported, legacy_left

    with golden.legacy_settings("db", "pickle", None, tmp_path):
        golden.make_user()
        golden.plant(r)
        assert asyncio.run(scenario()) == ("42", True, False)
        assert ours_raw(OURS, key) is None


@pytest.mark.parametrize("cell", [("signed_cookies", "pickle", None)], ids=cell_id)
def test_a_forged_signed_cookie_is_refused_once(
    cell: tuple[str, str, str | None], tmp_path: Path, security_log: Any
) -> None:
    forged = signing.dumps(
        {"_auth_user_id": "42"},
        key="not-the-secret-key-of-this-site-0123456789abcdefghijkl",
        salt="django.contrib.sessions.backends.signed_cookies",
        compress=True,
    )
    client = Client()
    with golden.legacy_settings(*cell, tmp_path):
        golden.make_user()
        client.cookies[settings.SESSION_COOKIE_NAME] = forged
        assert client.get("/whoami/").json()["user"] is None
    (line,) = security_log()
    assert "signature" in line.getMessage()


def test_a_pickle_from_an_older_protocol_is_refused_not_a_500(
    tmp_path: Path, security_log: Any
) -> None:
    text = signing.dumps(
        pickle.dumps({"_auth_user_id": "42"}, protocol=4),
        salt="django.contrib.sessions.SessionStore",
        serializer=_RawPickle,
        compress=True,
    )
    key = "p" * 32
    with golden.legacy_settings("db", "pickle", None, tmp_path):
        expire = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
        Session.objects.create(session_key=key, session_data=text, expire_date=expire)
        client = Client()
        client.cookies[settings.SESSION_COOKIE_NAME] = key
        assert client.get("/whoami/").json()["user"] is None
    assert len(security_log()) == 1
