"""Log out everywhere: the user link on db, cached_db and redis, logout_user(), the receiver.

Runs on every database (``-m db``); the Redis engine and cached_db over a RedisCache need the
Redis on 127.0.0.1:6379 (``-m redis``). No test transaction: cached_db publishes on commit.
"""

from __future__ import annotations

import asyncio
from importlib import import_module
from typing import Any

import django
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from django_picklesessions.backends import cached_db, redis
from django_picklesessions.models import Session
from django_picklesessions.users import UserLinkUnsupported, alogout_user, logout_user
from tests.helpers import new_session

pytestmark = [pytest.mark.db, pytest.mark.django_db(transaction=True)]

needs_async = pytest.mark.skipif(
    django.VERSION < (5, 1), reason="SessionBase has async methods since Django 5.1"
)

ENGINES = {
    "db": ("django_picklesessions.backends.db", None),
    "cached_db": ("django_picklesessions.backends.cached_db", "default"),
    "cached_db-redis": ("django_picklesessions.backends.cached_db", "redis"),
    "redis": ("django_picklesessions.backends.redis", None),
}


@pytest.fixture(
    params=[
        "db",
        "cached_db",
        pytest.param("cached_db-redis", marks=pytest.mark.redis),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def store(request: pytest.FixtureRequest, settings: Any) -> Any:
    """Each engine that keeps the user link in turn, with the link on; its SessionStore."""
    module, cache = ENGINES[request.param]
    settings.SESSION_ENGINE = module
    settings.PICKLESESSIONS_USER_LINK = True
    if cache is not None:
        settings.PICKLESESSIONS_CACHE_ALIAS = cache
        caches[cache].clear()
        cached_db._cache_failing = False
    return import_module(module).SessionStore


def logged_in(store: Any, user: str, **values: object) -> str:
    return new_session(store, _auth_user_id=user, **values)


def alive(store: Any, key: str) -> bool:
    """True if the session still loads with its contents (through the cache, for cached_db)."""
    return bool(dict(store(key).items()))


def test_logout_user_deletes_exactly_that_users_sessions(store: Any) -> None:
    alice = [logged_in(store, "7", cart=[1]), logged_in(store, "7")]
    bob = logged_in(store, "8", cart=[2])
    seventy = logged_in(store, "70")  # an id that starts like alice's
    anonymous = new_session(store, cart=[3])
    assert all(alive(store, key) for key in [*alice, bob, seventy, anonymous])

    assert logout_user("7") == 2
    assert not any(alive(store, key) or store().exists(key) for key in alice)
    assert store(bob)["cart"] == [2]
    assert store(seventy)["_auth_user_id"] == "70"
    assert store(anonymous)["cart"] == [3]
    assert logout_user("7") == 0


def test_a_user_instance_is_named_by_its_primary_key(store: Any) -> None:
    user = get_user_model().objects.create_user("alice", password="secret-password-1")
    key = logged_in(store, str(user.pk))
    assert logout_user(user) == 1
    assert not alive(store, key)


def test_the_session_that_asked_can_stay(store: Any) -> None:
    here, there = logged_in(store, "7"), logged_in(store, "7")
    assert logout_user("7", except_session_key=here) == 1
    assert alive(store, here)
    assert not alive(store, there)
    assert logout_user("7") == 1
    assert not alive(store, here)


def test_cycle_key_moves_the_link_to_the_new_key(store: Any) -> None:
    session = store(logged_in(store, "7", cart=[1]))
    old = session.session_key
    session.cycle_key()
    assert session.session_key != old
    assert not store().exists(old)
    assert logout_user("7") == 1
    assert not alive(store, session.session_key)


def test_logout_and_a_change_of_user_move_the_link(store: Any) -> None:
    # Django's logout() flushes: the record is deleted, the next one is anonymous.
    flushed = store(logged_in(store, "7"))
    flushed.flush()
    flushed["cart"] = [1]
    flushed.save()
    # The user id removed or replaced under the same key: the link follows the record.
    removed = store(logged_in(store, "7", cart=[2]))
    del removed["_auth_user_id"]
    removed.save()
    replaced = store(logged_in(store, "7"))
    replaced["_auth_user_id"] = "8"
    replaced.save()

    assert logout_user("7") == 0
    assert alive(store, flushed.session_key)
    assert store(removed.session_key)["cart"] == [2]
    assert logout_user("8") == 1
    assert not alive(store, replaced.session_key)


def test_a_login_saved_after_losing_a_race_stays_linked(store: Any) -> None:
    key = new_session(store, cart=[1])
    first, second = store(key), store(key)
    first["cart"], second["seen"] = [1, 2], [5]  # both loaded the same version
    second["_auth_user_id"] = "7"
    first.save()
    second.save()  # compare-and-swap fails once; the replay keeps the login
    assert store(key)["cart"] == [1, 2]
    assert logout_user("7") == 1
    assert not alive(store, key)


def test_the_real_login_and_logout_views(store: Any) -> None:
    user = get_user_model().objects.create_user("alice", password="secret-password-1")
    mine, other = Client(), Client()
    mine.force_login(user)
    other.force_login(user)
    assert mine.get("/auth/").content == str(user.pk).encode()
    mine.logout()
    assert logout_user(user) == 1  # only the other client's session was left
    assert other.get("/auth/").content == b"None"


@needs_async
def test_async_saves_and_alogout_user(store: Any) -> None:
    async def scenario() -> tuple[list[str], str]:
        keys = []
        for user in ("7", "7", "8"):
            session = store()
            await session.aset("_auth_user_id", user)
            await session.asave()
            keys.append(session.session_key)
        cycled = store(keys[1])
        await cycled.acycle_key()
        keys[1] = cycled.session_key
        assert await alogout_user("7", except_session_key=keys[0]) == 1
        assert await alogout_user("7") == 1
        await sync_to_async(connections.close_all)()
        return keys, keys[2]

    keys, bob = asyncio.run(scenario())
    assert not alive(store, keys[0]) and not alive(store, keys[1])
    assert store(bob)["_auth_user_id"] == "8"


@pytest.mark.redis
def test_redis_prunes_links_to_records_that_are_gone(settings: Any) -> None:
    settings.PICKLESESSIONS_USER_LINK = True
    settings.SESSION_ENGINE = "django_picklesessions.backends.redis"
    store = redis.SessionStore
    client = redis.sync_client()
    kept = logged_in(store, "7")
    deleted = store(logged_in(store, "7"))
    deleted.delete()  # takes itself out of the set
    assert client.smembers(store.user_key("7")) == {store.address(kept).encode()}
    # A record that expired (or was dropped) while its address stayed in the set.
    client.sadd(store.user_key("7"), "0" * 64, store.address(kept + "x"))
    client.delete(store.record_key(store.address(kept)))
    assert logout_user("7") == 0
    assert not client.exists(store.user_key("7"))
    assert not client.exists(store.owner_key(store.address(kept)))


@pytest.mark.redis
def test_redis_user_sets_live_as_long_as_their_longest_session(settings: Any) -> None:
    settings.PICKLESESSIONS_USER_LINK = True
    store = redis.SessionStore
    client = redis.sync_client()
    short = store()
    short["_auth_user_id"] = "7"
    short.set_expiry(60)
    short.save()
    assert 0 < client.ttl(store.user_key("7")) <= 60
    long = store()
    long["_auth_user_id"] = "7"
    long.set_expiry(3600)
    long.save()
    assert 60 < client.ttl(store.user_key("7")) <= 3600
    short.set_expiry(120)
    short.save()  # a shorter session never shortens the set's life
    assert 60 < client.ttl(store.user_key("7")) <= 3600


@pytest.mark.redis
def test_with_the_link_off_nothing_about_users_is_stored(settings: Any) -> None:
    settings.PICKLESESSIONS_USER_LINK = False
    for engine in ("db", "redis"):
        store = import_module(f"django_picklesessions.backends.{engine}").SessionStore
        session = store(logged_in(store, "7"))
        session.cycle_key()
        session["cart"] = [1]
        session.save()
    assert list(Session.objects.values_list("user_id", flat=True)) == [None]
    client = redis.sync_client()
    stored = sorted(client.scan_iter(match=settings.PICKLESESSIONS_REDIS_PREFIX + "*"))
    assert stored == [redis.SessionStore.record_key(session.address(session.session_key)).encode()]
    with pytest.raises(ImproperlyConfigured, match="PICKLESESSIONS_USER_LINK = True"):
        logout_user("7")


@pytest.mark.parametrize("engine", ["db", "cached_db"])
def test_the_link_is_the_user_id_only(settings: Any, engine: str) -> None:
    settings.PICKLESESSIONS_USER_LINK = True
    store = import_module(f"django_picklesessions.backends.{engine}").SessionStore
    key = logged_in(store, "7", email="alice@example.com")
    anonymous = new_session(store, email="bob@example.com")
    links = dict(Session.objects.values_list("address", "user_id"))
    assert links == {store.address(key): "7", store.address(anonymous): None}


def test_a_user_id_too_long_for_the_column_is_not_linked(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.PICKLESESSIONS_USER_LINK = True
    store = import_module("django_picklesessions.backends.db").SessionStore
    key = logged_in(store, "9" * 256)
    assert Session.objects.get(address=store.address(key)).user_id is None
    assert "User id of 256 characters not linked" in caplog.text
    logged_in(store, "9" * 255)
    assert Session.objects.filter(user_id="9" * 255).count() == 1


@pytest.mark.redis
def test_redis_on_a_cluster_refuses(settings: Any) -> None:
    settings.PICKLESESSIONS_USER_LINK = True
    settings.PICKLESESSIONS_REDIS_CLUSTER = True
    settings.SESSION_ENGINE = "django_picklesessions.backends.redis"
    with pytest.raises(UserLinkUnsupported, match="on a Redis Cluster"):
        logout_user("7")


@pytest.mark.parametrize("engine", ["file", "locmem"])
def test_engines_without_the_link_refuse(settings: Any, tmp_path: Any, engine: str) -> None:
    settings.PICKLESESSIONS_USER_LINK = True
    settings.PICKLESESSIONS_FILE_PATH = str(tmp_path / "sessions")
    settings.SESSION_ENGINE = f"django_picklesessions.backends.{engine}"
    store = import_module(settings.SESSION_ENGINE).SessionStore
    key = logged_in(store, "7")  # saving works: the link is simply not kept
    with pytest.raises(UserLinkUnsupported, match="backends.db, .*backends.cached_db"):
        logout_user("7")
    assert alive(store, key)


# --- The password-change receiver -------------------------------------------------------


@pytest.fixture
def staff(settings: Any) -> Any:
    settings.SESSION_ENGINE = "django_picklesessions.backends.db"
    settings.PICKLESESSIONS_USER_LINK = True
    settings.PICKLESESSIONS_LOGOUT_ON_PASSWORD_CHANGE = True
    return get_user_model().objects.create_user(
        "alice", password="old-password-1", is_staff=True, is_superuser=True
    )


def test_a_password_change_logs_out_every_other_session(staff: Any) -> None:
    bob = get_user_model().objects.create_user("bob", password="bob-password-1")
    changing, elsewhere, bobs = Client(), Client(), Client()
    for client, user in ((changing, staff), (elsewhere, staff), (bobs, bob)):
        client.force_login(user)
    response = changing.post(
        "/admin/password_change/",
        {
            "old_password": "old-password-1",
            "new_password1": "new-password-2!",
            "new_password2": "new-password-2!",
        },
    )
    assert response.status_code == 302
    assert changing.get("/auth/").content == str(staff.pk).encode()
    assert elsewhere.get("/auth/").content == b"None"
    assert bobs.get("/auth/").content == str(bob.pk).encode()
    assert Session.objects.filter(user_id=str(staff.pk)).count() == 1


def test_a_password_set_outside_a_request_logs_out_everywhere(staff: Any) -> None:
    client = Client()
    client.force_login(staff)
    staff.set_password("reset-password-3")
    staff.save()
    assert client.get("/auth/").content == b"None"


def test_other_saves_of_the_user_log_nobody_out(staff: Any, settings: Any) -> None:
    client = Client()
    client.force_login(staff)
    staff.first_name = "Alice"
    staff.save()
    with CaptureQueriesContext(connections["default"]) as captured:
        staff.save(update_fields=["first_name"])  # as login's last_login update: no look-up
    assert len(captured.captured_queries) == 1
    settings.PICKLESESSIONS_LOGOUT_ON_PASSWORD_CHANGE = False
    staff.set_password("changed-while-off-4")
    staff.save()
    assert client.get("/auth/").content == str(staff.pk).encode()


@pytest.mark.redis
def test_redis_keeps_the_link_in_the_round_trip_of_the_record(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.PICKLESESSIONS_USER_LINK = True
    store = redis.SessionStore
    client = redis.sync_client()
    sent: list[str] = []
    real = client.execute_command

    def counting(*args: Any, **options: Any) -> Any:
        sent.append(args[0])
        return real(*args, **options)

    monkeypatch.setattr(client, "execute_command", counting)
    store(logged_in(store, "8")).delete()  # the server learns the scripts (EVAL once each)
    sent.clear()
    session = store()
    session["_auth_user_id"] = "7"
    session.save()  # create, linked
    session["cart"] = [1]
    session.save()  # update, linked
    session.delete()  # delete, unlinked
    assert sent == ["EVALSHA", "EVALSHA", "EVALSHA"]
    assert not client.exists(store.user_key("7"))
