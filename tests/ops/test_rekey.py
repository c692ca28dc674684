"""manage.py rekey: fallback records re-signed, contents kept, idempotent, concurrent saves kept."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest
from django.core.management import call_command

from django_picklesessions import inspection, inventory, record, rekeying, unpickler
from django_picklesessions.backends.base import PickleSessionBase
from django_picklesessions.keys import get_keyring
from tests.helpers import sign_raw
from tests.ops.storage import OLD, Fixture, dumps, fill, new_key, put, ring


def rekey() -> str:
    out = io.StringIO()
    call_command("rekey", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def check() -> dict[str, Any]:
    out = io.StringIO()
    call_command("check_sessions", "--json", stdout=out, stderr=io.StringIO())
    report: dict[str, Any] = json.loads(out.getvalue())
    return report


def stored(store: PickleSessionBase, address: str) -> record.Record:
    """The record at ``address``, verified (from the table itself on cached_db)."""
    data = store._read(address)
    assert data is not None
    return inspection.verify(
        address, data, now=int(time.time()), keyring=get_keyring(), check_expiry=True
    )


def read_before_a_concurrent_save(engine: str) -> tuple[Fixture, PickleSessionBase, str, bytes]:
    """Store the fixture; return it, a store, and the fallback record's address and bytes."""
    fixture = fill(engine)
    store = fixture.store()
    address = fixture.address("fallback")
    stale = store._read(address)
    assert stale is not None
    return fixture, store, address, stale


def test_rekey_resigns_fallback_records_and_a_second_run_finds_nothing(engine: str) -> None:
    fixture = fill(engine)
    store = fixture.store()
    address = fixture.address("fallback")
    before = stored(store, address)
    assert before.key_position == 1
    others = {a: d for a, d in inventory.records(fixture.store) if a != address}

    text = rekey()
    assert "re-signed with the current key: 1" in text
    assert "already on the current key: 6" in text
    after = stored(store, address)
    assert after.key_position == 0
    assert after.entries == before.entries  # the same pickled bytes, nothing re-pickled
    assert (after.expires_at, after.issued_at) == (before.expires_at, before.issued_at)
    assert after.version == before.version + 1
    assert fixture.store(fixture.keys["fallback"])["n"] == 1
    # Nothing else was written.
    assert {a: d for a, d in inventory.records(fixture.store) if a != address} == others

    assert check()["keys"] == {"current": 7 + fixture.expired, "fallback": 0, "unknown": 1}
    again = rekey()
    assert "re-signed with the current key: 0" in again
    assert dict(inventory.records(fixture.store)) == {
        **others,
        address: store._read(address),
    }


def test_a_concurrent_save_is_never_overwritten(engine: str) -> None:
    fixture, store, address, stale = read_before_a_concurrent_save(engine)
    # A request loads the session (fallback key) and saves a change: signed with the new key.
    session = fixture.store(fixture.keys["fallback"])
    session["n"] = 2
    session.save()
    outcome = rekeying.rekey_one(store, address, stale, int(time.time()))
    assert outcome == "current"
    # Read from storage (cached_db: the table; in a test transaction its cache lags behind).
    assert unpickler.loads(stored(store, address).entries["n"]) == 2


def test_a_concurrent_save_on_the_old_key_is_resigned_not_lost(engine: str) -> None:
    fixture, store, address, stale = read_before_a_concurrent_save(engine)
    key = fixture.keys["fallback"]
    # A server not yet deployed, still signing with the old key, saves version 2.
    expires = int(time.time()) + 3600
    entries = {**dumps(_auth_user_id="1"), **dumps(n=3)}
    newer = sign_raw(key, entries, keyring=ring(OLD), version=2, expires_at=expires)
    store._write(address, newer, expires, False, 1)
    assert rekeying.rekey_one(store, address, stale, int(time.time())) == "rekeyed"
    now_stored = stored(store, address)
    assert (now_stored.key_position, now_stored.version) == (0, 3)
    assert now_stored.entries == entries


def test_a_record_deleted_meanwhile_stays_deleted(engine: str) -> None:
    fixture = fill(engine)
    store = fixture.store()
    address = fixture.address("fallback")
    stale = store._read(address)
    store._remove(address)
    assert rekeying.rekey_one(store, address, stale, int(time.time())) == "deleted"
    assert not store._contains(address)


def test_skipped_records_are_counted_and_left_alone(engine: str) -> None:
    fixture = fill(engine)
    outcomes = rekeying.rekey(
        fixture.store(), inventory.records(fixture.store), now=int(time.time())
    )
    expected = {"rekeyed": 1, "current": 6, "unknown_key": 1, "invalid": 1}
    if fixture.expired:
        expected["expired"] = fixture.expired
    assert dict(outcomes) == expected


def test_an_interrupted_run_is_resumed_by_running_again(engine: str) -> None:
    fixture = fill(engine)
    expires = int(time.time()) + 3600
    for _ in range(4):
        key = new_key()
        put(fixture.store, key, sign_raw(key, dumps(n=1), keyring=ring(OLD)), expires)

    def killed(count: int) -> None:
        if count == 3:
            raise KeyboardInterrupt

    store = fixture.store()
    with pytest.raises(KeyboardInterrupt):
        rekeying.rekey(
            store, inventory.records(fixture.store), now=int(time.time()), progress=killed
        )
    first = check()["keys"]["fallback"]
    assert 0 < first <= 5
    outcomes = rekeying.rekey(store, inventory.records(fixture.store), now=int(time.time()))
    assert outcomes["rekeyed"] == first
    assert check()["keys"]["fallback"] == 0
