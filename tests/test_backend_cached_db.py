"""The cached_db engine: signed bytes in the cache, the database's version decides, outages.

Runs on every database (``-m db``), over the default LocMemCache and over a Django RedisCache
(the Redis on 127.0.0.1:6379). No test transaction: the engine publishes a save once its
transaction commits.
"""

from __future__ import annotations

import logging
import pickle
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.cache import caches
from django.db import transaction
from django.test.utils import CaptureQueriesContext

from django_picklesessions import record
from django_picklesessions.backends import cached_db
from django_picklesessions.backends.cached_db import SessionStore
from django_picklesessions.models import Session
from tests import canary
from tests.helpers import new_session

pytestmark = [pytest.mark.db, pytest.mark.django_db(transaction=True)]


@pytest.fixture(
    params=["default", pytest.param("redis", marks=pytest.mark.redis)], ids=["locmem", "redis"]
)
def alias(request: pytest.FixtureRequest, settings: Any) -> Iterator[str]:
    """Each cache in turn, emptied before and after."""
    name: str = request.param
    settings.PICKLESESSIONS_CACHE_ALIAS = name
    caches[name].clear()
    cached_db._cache_failing = False
    cached_db._stale.clear()
    yield name
    cached_db._stale.clear()
    caches[name].clear()


def cached(key: str) -> bytes | None:
    """What the cache holds for a session, read as the engine reads it (raw bytes)."""
    return SessionStore().cache.get(SessionStore.cache_key(SessionStore.address(key)))


def stored_entry(key: str) -> bytes:
    """The bytes in the cache for a session, as they are (not as the engine would read them)."""
    alias = SessionStore.cache_alias()
    cache: Any = caches[alias]
    name = SessionStore.cache_key(SessionStore.address(key))
    if alias == "redis":
        value = cache._cache.get_client(write=True).get(cache.make_and_validate_key(name))
    else:
        value = cache.get(name)
    assert isinstance(value, bytes)
    return value


def row(key: str) -> bytes | None:
    found = Session.objects.filter(address=SessionStore.address(key)).first()
    return None if found is None else bytes(found.record)


def evict(key: str) -> None:
    """Drop a session's cache entry, as the cache would to make room."""
    caches[SessionStore.cache_alias()].delete(SessionStore.cache_key(SessionStore.address(key)))


def queries(callback: Any) -> int:
    from django.db import connection

    with CaptureQueriesContext(connection) as captured:
        callback()
    return len(captured.captured_queries)


def test_the_cache_holds_the_rows_bytes(alias: str) -> None:
    key = new_session(SessionStore, cart=[1, 2])
    assert cached(key) == row(key)
    assert cached(key) is not None and cached(key).startswith(record.MAGIC)


@pytest.mark.redis
def test_the_redis_cache_holds_the_record_not_a_pickle(settings: Any) -> None:
    settings.PICKLESESSIONS_CACHE_ALIAS = "redis"
    key = new_session(SessionStore, n=1)
    cache = caches["redis"]
    value = cache._cache.get_client(write=True).get(
        cache.make_and_validate_key(SessionStore.cache_key(SessionStore.address(key)))
    )
    assert value == row(key)


def test_a_cached_session_loads_without_a_query(alias: str) -> None:
    key = new_session(SessionStore, n=1)
    assert queries(lambda: dict(SessionStore(key).items())) == 0


def test_a_miss_reads_the_database_and_repopulates(alias: str) -> None:
    key = new_session(SessionStore, n=1)
    evict(key)
    # The SELECT, then the version check after the cache write.
    assert queries(lambda: dict(SessionStore(key).items())) == 2
    assert cached(key) == row(key)
    assert queries(lambda: dict(SessionStore(key).items())) == 0


@pytest.mark.parametrize(
    "planted",
    [b"junk", b"\x89DPS" + bytes(200), canary.__name__.encode(), pickle.dumps({"a": 1})],
)
def test_a_cache_entry_that_fails_verification_falls_back_to_the_row(
    alias: str, planted: bytes, security_log: Any
) -> None:
    key = new_session(SessionStore, _auth_user_id="7")
    store = SessionStore()
    store.cache.set(store.cache_key(store.address(key)), planted, 2**31)
    assert dict(SessionStore(key).items()) == {"_auth_user_id": "7"}
    assert len(security_log()) == 1
    assert dict(SessionStore(key).items()) == {"_auth_user_id": "7"}


@pytest.mark.redis
def test_a_gadget_in_the_redis_cache_is_never_unpickled(security_log: Any, settings: Any) -> None:
    settings.PICKLESESSIONS_CACHE_ALIAS = "redis"
    from tests.attacks.kit import CANARY_GADGET

    key = new_session(SessionStore, _auth_user_id="7")
    cache = caches["redis"]
    client = cache._cache.get_client(write=True)
    redis_key = cache.make_and_validate_key(SessionStore.cache_key(SessionStore.address(key)))
    canary.reset()
    try:
        client.set(redis_key, CANARY_GADGET)  # what Django's RedisCache.get would unpickle
        assert dict(SessionStore(key).items()) == {"_auth_user_id": "7"}
        assert canary.FIRED == []
        assert "(format)" in security_log()[-1].getMessage()
    finally:
        client.delete(redis_key)
        canary.reset()


def test_a_late_publish_of_an_older_save_is_undone(alias: str) -> None:
    key = new_session(SessionStore, n=0)
    a, b = SessionStore(key), SessionStore(key)
    a["n"], b["m"] = 1, 2
    a.save()  # version 2
    older = row(key)
    address = SessionStore.address(key)
    b.save()  # lost the race, replayed: version 3, published
    # A slow request's publish of version 2 lands only now, after version 3's.
    a._publish(address, older, record.peek_expiry(older) or 0, replace=True)
    # RedisCache refuses it (version 3 is there); another cache takes it, then the check sees
    # version 3 in the database and deletes it.
    assert cached(key) in (None, row(key))
    assert dict(SessionStore(key).items()) == {"n": 1, "m": 2}


def test_a_late_publish_after_a_delete_is_undone(alias: str) -> None:
    key = new_session(SessionStore, _auth_user_id="1")
    data = row(key)
    SessionStore(key).flush()  # logout in another tab
    SessionStore()._publish(SessionStore.address(key), data, 2**31, replace=True)
    assert cached(key) is None
    assert dict(SessionStore(key).items()) == {}


def test_a_slow_reader_never_caches_an_older_row(alias: str) -> None:
    key = new_session(SessionStore, n=0)
    old = row(key)
    writer = SessionStore(key)
    writer["n"] = 1
    writer.save()
    address = SessionStore.address(key)
    reader = SessionStore()
    reader._publish(address, old, 2**31, replace=False)  # the cache has version 2: kept
    assert cached(key) == row(key)
    evict(key)  # meanwhile: the publish lands, then the check undoes it (or Redis refuses it)
    reader._publish(address, old, 2**31, replace=False)
    assert cached(key) in (None, row(key))
    assert dict(SessionStore(key).items()) == {"n": 1}


def test_delete_and_cycle_key_clear_the_cache(alias: str) -> None:
    key = new_session(SessionStore, _auth_user_id="1")
    store = SessionStore(key)
    store.cycle_key()
    assert cached(key) is None and row(key) is None
    assert cached(store.session_key) == row(store.session_key)
    SessionStore(store.session_key).delete()
    assert cached(store.session_key) is None


def test_inside_a_transaction_the_cache_waits_for_the_commit(alias: str) -> None:
    key = new_session(SessionStore, n=0)
    with transaction.atomic():
        store = SessionStore(key)
        store["n"] = 1
        store.save()
        assert record.version_of(cached(key)) == 1  # the committed version, until the commit
    assert cached(key) == row(key)
    assert record.version_of(cached(key)) == 2
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        store = SessionStore(key)
        store["n"] = 2
        store.save()
        1 / 0  # noqa: B018 - rolled back: the cache never sees version 3
    assert dict(SessionStore(key).items()) == {"n": 1}


def test_a_cache_outage_degrades_to_the_database(settings: Any, caplog: Any) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "down": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        },
    }
    settings.PICKLESESSIONS_CACHE_ALIAS = "down"
    cached_db._cache_failing = False
    caplog.set_level(logging.WARNING, logger="django_picklesessions")
    key = new_session(SessionStore, n=0)
    for n in range(1, 4):
        store = SessionStore(key)
        store["n"] += 1
        store.save()
        assert store["n"] == n
    SessionStore(key).delete()
    assert not SessionStore().exists(key)
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1  # logged when the outage started, not on every request
    assert "'down'" in failures[0].getMessage()
    cached_db._cache_failing = False
    cached_db._stale.clear()


@contextmanager
def cache_down(alias: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every operation on the cache fails for the block, as in a network blip."""

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("the cache is down (test)")

    with monkeypatch.context() as patch:
        if alias == "redis":
            import redis

            patch.setattr(redis.Redis, "execute_command", refused)
        else:
            for method in ("get", "set", "add", "delete"):
                patch.setattr(caches[alias], method, refused)
        yield
    cached_db._cache_failing = False


def test_a_logout_during_a_cache_blip_takes_effect_when_the_cache_answers(
    alias: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_session(SessionStore, _auth_user_id="1")
    assert cached(key) is not None
    with cache_down(alias, monkeypatch):
        SessionStore(key).delete()  # the row goes; the cache entry cannot
    assert row(key) is None
    assert record.version_of(stored_entry(key)) == 1  # still there, validly signed
    # The entry the failed delete left is never served: the session stays logged out.
    assert dict(SessionStore(key).items()) == {}
    assert not cached_db._stale
    assert cached(key) is None
    assert dict(SessionStore(key).items()) == {}


def test_a_save_during_a_cache_blip_is_not_hidden_by_the_older_entry(
    alias: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_session(SessionStore, n=1)
    with cache_down(alias, monkeypatch):
        store = SessionStore(key)
        store["n"] = 2
        store.save()
    assert record.version_of(stored_entry(key)) == 1  # the older record, still in the cache
    assert SessionStore(key)["n"] == 2
    assert not cached_db._stale
    assert cached(key) == row(key)  # the miss read the row and published it


def test_any_operation_that_succeeds_drops_what_failed_writes_left(
    alias: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [new_session(SessionStore, n=n) for n in range(3)]
    with cache_down(alias, monkeypatch):
        for key in keys:
            SessionStore(key).delete()
    assert len(cached_db._stale) == 3
    new_session(SessionStore, other=True)  # a request for another session
    assert not cached_db._stale
    assert [cached(key) for key in keys] == [None, None, None]


def test_stale_entries_are_remembered_up_to_a_bound(
    alias: str, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    monkeypatch.setattr(cached_db, "MAX_STALE", 2)
    monkeypatch.setattr(cached_db, "_stale_overflowed", False)
    caplog.set_level(logging.WARNING, logger="django_picklesessions")
    keys = [new_session(SessionStore, n=n) for n in range(3)]
    with cache_down(alias, monkeypatch):
        for key in keys:
            SessionStore(key).delete()
    assert len(cached_db._stale) == 2
    assert sum("flush the cache" in r.getMessage() for r in caplog.records) == 1
    cached_db._stale.clear()


@pytest.mark.redis
def test_the_test_cache_clears_only_its_own_keys() -> None:
    """tox runs two environments at once on one Redis: a FLUSHDB in one emptied the other's."""
    cache: Any = caches["redis"]
    client = cache._cache.get_client(None, write=True)
    other = f"another-run:{secrets.token_hex(8)}"
    client.set(other, b"kept", ex=60)
    cache.set("mine", b"gone")
    try:
        cache.clear()
        assert cache.get("mine") is None
        assert client.get(other) == b"kept"
    finally:
        client.delete(other)
