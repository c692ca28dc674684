"""The redis engine against the real Redis on 127.0.0.1:6379: keys, TTL, round trips, outages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.core.cache import caches
from django.test import RequestFactory, override_settings

from django_picklesessions import record
from django_picklesessions.backends import redis as engine
from django_picklesessions.backends.redis import SessionStore
from django_picklesessions.conf import conf
from django_picklesessions.exceptions import StoreUnavailable, VersionConflict
from django_picklesessions.keys import get_keyring
from tests.helpers import new_session

pytestmark = pytest.mark.redis


def raw() -> Any:
    return engine.sync_client()


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, ...]]]:
    """Every command the sync client sends (a script call is one command, one round trip)."""
    sent: list[tuple[Any, ...]] = []
    client = raw()
    real = client.execute_command

    def counting(*args: Any, **options: Any) -> Any:
        sent.append(args)
        return real(*args, **options)

    monkeypatch.setattr(client, "execute_command", counting)
    yield sent


def test_the_value_is_the_record_at_the_hashed_address() -> None:
    key = new_session(SessionStore, cart=[1, 2])
    address = SessionStore.address(key)
    assert raw().keys(conf.REDIS_PREFIX + "*") == [(conf.REDIS_PREFIX + address).encode()]
    assert key not in address  # the session key itself is never stored
    data = raw().get(conf.REDIS_PREFIX + address)
    verified = record.decode(
        data,
        sid=record.session_id(key),
        now=int(time.time()),
        keyring=get_keyring(),
        max_record_size=conf.MAX_RECORD_SIZE,
        max_payload_size=conf.MAX_PAYLOAD_SIZE,
    )
    assert verified.version == 1
    assert set(verified.entries) == {"cart"}


def test_the_ttl_is_the_signed_expiry() -> None:
    session = SessionStore()
    session["n"] = 1
    session.set_expiry(600)
    session.save()
    redis_key = SessionStore.record_key(SessionStore.address(session.session_key))
    signed = record.peek_expiry(raw().get(redis_key))
    assert signed is not None
    assert raw().expiretime(redis_key) == signed


def test_a_record_written_already_expired_is_not_kept() -> None:
    key = new_session(SessionStore, n=1)
    store = SessionStore(key)
    store.load()
    data = raw().get(SessionStore.record_key(store.address(key)))
    store._write(store.address(key), data, int(time.time()) - 1, False, None)
    assert not store.exists(key)
    SessionStore.clear_expired()  # nothing to do, and nothing fails


def test_load_and_save_are_one_round_trip_each(commands: list[tuple[Any, ...]]) -> None:
    key = new_session(SessionStore, n=0)
    commands.clear()
    store = SessionStore(key)
    store["n"] += 1
    assert [c[0] for c in commands] == ["EVALSHA"]
    store.save()
    assert [c[0] for c in commands] == ["EVALSHA", "EVALSHA"]
    assert SessionStore(key)["n"] == 1


def test_a_new_session_is_one_set_nx(commands: list[tuple[Any, ...]]) -> None:
    new_session(SessionStore, n=0)
    assert [c[0] for c in commands] == ["SET"]
    assert "NX" in commands[0]


def test_create_refuses_a_taken_key() -> None:
    key = new_session(SessionStore, n=0)
    store = SessionStore(key)
    with pytest.raises(CreateError):
        store._write(store.address(key), b"x" * 80, int(time.time()) + 60, True, None)


def test_compare_and_swap_on_the_header_version() -> None:
    key = new_session(SessionStore, n=0)
    store = SessionStore(key)
    store.load()
    address = store.address(key)
    data = raw().get(SessionStore.record_key(address))
    with pytest.raises(VersionConflict):
        store._write(address, data, int(time.time()) + 60, False, expected=7)
    store._write(address, data, int(time.time()) + 60, False, expected=1)  # the stored one
    store.delete()
    with pytest.raises(UpdateError):
        store._write(address, data, int(time.time()) + 60, False, expected=1)


def test_a_key_of_another_type_is_refused(security_log: Any) -> None:
    key = "planted0hash0key0abcdefghijklmno"
    raw().hset(SessionStore.record_key(SessionStore.address(key)), "a", "b")
    assert dict(SessionStore(key).items()) == {}
    assert "(type)" in security_log()[-1].getMessage()


def test_unlock_deletes_only_its_own_lease() -> None:
    key = new_session(SessionStore, n=0)
    store = SessionStore(key)
    address = store.address(key)
    assert store._try_lock(address, "mine", 30)
    assert not store._try_lock(address, "theirs", 30)
    store._unlock(address, "theirs")
    assert raw().get(store.lock_key(address)) == b"mine"
    assert 0 < raw().pttl(store.lock_key(address)) <= 30_000
    store._unlock(address, "mine")
    assert raw().get(store.lock_key(address)) is None


@override_settings(PICKLESESSIONS_REDIS_URL="redis://:hunter2@127.0.0.1:1/0")
def test_an_unreachable_server_is_a_clear_error_not_an_empty_session() -> None:
    with pytest.raises(StoreUnavailable) as info:
        SessionStore("abcdefghijklmnopqrstuvwxyz012345").load()
    message = str(info.value)
    assert "PICKLESESSIONS_REDIS_URL" in message
    assert "127.0.0.1:1" in message
    assert "hunter2" not in message
    # Through the middleware: the request fails (a 500), nobody is logged out.
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.http import HttpResponse

    def view(request: Any) -> HttpResponse:
        return HttpResponse(str(request.session.get("_auth_user_id")))

    request = RequestFactory().get("/")
    request.COOKIES["sessionid"] = "abcdefghijklmnopqrstuvwxyz012345"
    with (
        override_settings(SESSION_ENGINE="django_picklesessions.backends.redis"),
        pytest.raises(StoreUnavailable),
    ):
        SessionMiddleware(view)(request)


@override_settings(PICKLESESSIONS_REDIS_CACHE_ALIAS="redis")
def test_the_connection_of_a_django_redis_cache_is_reused() -> None:
    pool = caches["redis"]._cache._get_connection_pool(True)
    assert raw().connection_pool is pool
    key = new_session(SessionStore, n=5)
    assert SessionStore(key)["n"] == 5


@pytest.mark.skipif(django.VERSION < (5, 1), reason="async session methods need Django 5.1")
def test_async_methods_use_redis_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_sync_client() -> None:
        raise AssertionError("an async method used the sync client")

    monkeypatch.setattr(engine, "sync_client", no_sync_client)

    async def scenario() -> str:
        store = SessionStore()
        await store.aset("n", 1)
        await store.asave()
        other = SessionStore(store.session_key)
        await other.aset("m", 2)
        await store.aset("n", 3)
        await other.asave()
        await store.asave()  # a lost race, replayed
        async with store.alocked(timeout=1):
            pass
        assert await store.aexists(store.session_key)
        assert store.session_key is not None
        return store.session_key

    key = asyncio.run(scenario())
    monkeypatch.undo()
    assert dict(SessionStore(key).items()) == {"n": 3, "m": 2}
