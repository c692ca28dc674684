"""The per-request path: clock reads, expiry age, one hash of the session key per store."""

from __future__ import annotations

import datetime
import hashlib
import time

import pytest
from django.utils import timezone

from django_picklesessions import record
from django_picklesessions.backends import base
from django_picklesessions.backends.locmem import SessionStore


def test_epoch_now_reads_time_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_900_000_000.7)
    assert base.epoch_now() == 1_900_000_000


def test_epoch_now_follows_a_replaced_django_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    later = datetime.datetime(2040, 1, 1, tzinfo=datetime.timezone.utc)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert base.epoch_now() == int(later.timestamp())


class NowCounter:
    """Django's clock stopped at ``at``, counting its reads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, at: datetime.datetime) -> None:
        self.calls = 0

        def now() -> datetime.datetime:
            self.calls += 1
            return at

        monkeypatch.setattr(timezone, "now", now)


@pytest.mark.parametrize("expiry", [None, 600, "date"])
def test_get_expiry_age_reads_the_clock_only_for_a_date(
    monkeypatch: pytest.MonkeyPatch, expiry: object
) -> None:
    store = SessionStore()
    at = timezone.now()
    if expiry == "date":
        # Stopped clock: on a busy machine, time passing before the read would make it 599.
        store.set_expiry(at + datetime.timedelta(seconds=600))
    elif expiry is not None:
        store.set_expiry(expiry)
    counter = NowCounter(monkeypatch, at)
    age = store.get_expiry_age()
    assert counter.calls == (1 if expiry == "date" else 0)
    assert age == (1209600 if expiry is None else 600)


def test_a_load_and_save_hash_the_session_key_once(monkeypatch: pytest.MonkeyPatch) -> None:
    store = SessionStore()
    store["a"] = 1
    store.save()
    hashed: list[str] = []
    real = record.session_id

    def counting(key: str | None) -> bytes:
        hashed.append(str(key))
        return real(key)

    monkeypatch.setattr(record, "session_id", counting)
    again = SessionStore(store.session_key)
    again["a"] = 2
    again.save()
    assert hashed == [store.session_key]
    assert SessionStore(store.session_key)["a"] == 2
    assert again._current()[2] == hashlib.sha256(store.session_key.encode()).hexdigest()
