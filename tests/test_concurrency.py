"""Two requests of one user never lose each other's changes: deterministic interleavings.

Each test loads two (or three) stores from the same record, changes them, and saves them in a
chosen order, on every engine (the db engine on whichever database the run selects).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import django
import pytest
from asgiref.sync import sync_to_async
from django.contrib.sessions.backends.base import UpdateError
from django.db import connections
from django.test import override_settings

from django_picklesessions.backends.base import PickleSessionBase
from django_picklesessions.exceptions import SessionConflict
from tests.helpers import engines, new_session

Store = Callable[..., PickleSessionBase]
ENGINES = engines()


# The cache engine publishes a save once its transaction commits: no test transaction.
CACHED_DB = pytest.param(
    "cached_db", marks=[pytest.mark.db, pytest.mark.django_db(transaction=True)]
)


@pytest.fixture(
    params=[
        "locmem",
        pytest.param("db", marks=[pytest.mark.db, pytest.mark.django_db]),
        "file",
        pytest.param("redis", marks=pytest.mark.redis),
        CACHED_DB,
    ]
)
def store(request: pytest.FixtureRequest, settings, tmp_path) -> Store:
    settings.PICKLESESSIONS_FILE_PATH = str(tmp_path / "sessions")
    return ENGINES[request.param]


def contents(store: Store, key: str) -> dict[str, object]:
    return dict(store(key).items())


def both(store: Store, key: str) -> tuple[PickleSessionBase, PickleSessionBase]:
    a, b = store(key), store(key)
    a.load()  # both read the same version before either saves
    a._session  # noqa: B018 - load into the cache
    b._session  # noqa: B018
    return a, b


@pytest.mark.parametrize("order", ["ab", "ba"])
def test_disjoint_keys_both_survive(store: Store, order: str) -> None:
    key = new_session(store, shared=1)
    a, b = both(store, key)
    a["from_a"] = "A"
    b["from_b"] = "B"
    for saver in (a, b) if order == "ab" else (b, a):
        saver.save()
    assert contents(store, key) == {"shared": 1, "from_a": "A", "from_b": "B"}


def test_in_place_changes_to_different_keys_both_survive(store: Store) -> None:
    key = new_session(store, cart=["tea"], viewed=[1])
    a, b = both(store, key)
    a["cart"].append("cup")  # nested mutation, no __setitem__
    b["viewed"].append(2)
    a.save()
    b.save()
    assert contents(store, key) == {"cart": ["tea", "cup"], "viewed": [1, 2]}


def test_same_key_last_writer_wins_by_default(store: Store) -> None:
    key = new_session(store, theme="light")
    a, b = both(store, key)
    a["theme"] = "dark"
    b["theme"] = "blue"
    a.save()
    b.save()
    assert contents(store, key) == {"theme": "blue"}


def test_same_key_same_change_is_no_conflict(store: Store) -> None:
    key = new_session(store, theme="light")
    a, b = both(store, key)
    a["theme"] = b["theme"] = "dark"
    a.save()
    b.save()
    assert contents(store, key) == {"theme": "dark"}


@override_settings(PICKLESESSIONS_CONFLICT_POLICIES={"token": "raise"})
def test_same_key_under_raise_policy(store: Store) -> None:
    key = new_session(store, token="t0", other=0)
    a, b = both(store, key)
    a["token"] = "t1"
    b["token"] = "t2"
    b["other"] = 1
    a.save()
    with pytest.raises(SessionConflict) as info:
        b.save()
    assert info.value.key == "token"
    assert contents(store, key) == {"token": "t1", "other": 0}  # the first save stands


@override_settings(PICKLESESSIONS_CONFLICT_POLICIES={"cart": "tests.merges.sum_counts"})
def test_same_key_under_a_merge_function(store: Store) -> None:
    key = new_session(store, cart={"tea": 1})
    a, b = both(store, key)
    a["cart"]["tea"] += 2  # in place
    b["cart"] = {"tea": 1, "cup": 1}
    a.save()
    b.save()
    assert contents(store, key) == {"cart": {"tea": 3, "cup": 1}}


@override_settings(PICKLESESSIONS_CONFLICT_POLICIES={"cart": "tests.merges.sum_counts"})
def test_three_way_race(store: Store) -> None:
    key = new_session(store, cart={})
    racers = [store(key) for _ in range(3)]
    for racer in racers:
        racer._session  # noqa: B018 - all three load version 1
    for number, racer in enumerate(racers):
        racer["cart"][f"item{number}"] = number + 1
        racer[f"seen{number}"] = True
    for racer in racers:
        racer.save()
    assert contents(store, key) == {
        "cart": {"item0": 1, "item1": 2, "item2": 3},
        "seen0": True,
        "seen1": True,
        "seen2": True,
    }


def test_deleted_key_stays_deleted(store: Store) -> None:
    key = new_session(store, coupon="X", n=0)
    a, b = both(store, key)
    del a["coupon"]
    b["n"] = 1
    a.save()
    b.save()  # b never touched the coupon: it must not bring it back
    assert contents(store, key) == {"n": 1}


@pytest.mark.parametrize("order", ["delete_first", "set_first"])
def test_delete_against_set_of_the_same_key(store: Store, order: str) -> None:
    key = new_session(store, coupon="X")
    deleter, setter = both(store, key)
    del deleter["coupon"]
    setter["coupon"] = "Y"
    if order == "delete_first":
        deleter.save()
        setter.save()
        assert contents(store, key) == {"coupon": "Y"}  # last writer wins
    else:
        setter.save()
        deleter.save()
        assert contents(store, key) == {}


def test_flush_against_set(store: Store) -> None:
    key = new_session(store, _auth_user_id="1")
    flusher, setter = both(store, key)
    setter["cart"] = ["tea"]
    flusher.flush()
    with pytest.raises(UpdateError):  # Django turns it into SessionInterrupted
        setter.save()
    assert not store().exists(key)


def test_cycle_key_against_set(store: Store) -> None:
    key = new_session(store, _auth_user_id="1")
    cycler, setter = both(store, key)
    cycler.cycle_key()
    setter["cart"] = ["tea"]
    with pytest.raises(UpdateError):
        setter.save()
    assert not store().exists(key)
    assert contents(store, cycler.session_key) == {"_auth_user_id": "1"}


def test_the_retry_is_bounded(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    key = new_session(store, n=0)
    a, b = both(store, key)
    a["n"] = 1
    b["m"] = 1
    a.save()
    monkeypatch.setattr(type(b), "save_attempts", 1)
    with pytest.raises(SessionConflict, match="concurrent requests 1 times"):
        b.save()


def test_uncontended_save_needs_one_write(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    key = new_session(store, n=0)
    writes = []
    real = store()._write
    monkeypatch.setattr(type(store()), "_write", lambda self, *a: writes.append(a) or real(*a))
    one = store(key)
    one["n"] = 1
    one.save()
    assert len(writes) == 1


@pytest.mark.skipif(django.VERSION < (5, 1), reason="async session methods need Django 5.1")
@pytest.mark.parametrize(
    "engine",
    [
        "locmem",
        # The async ORM works in another thread: it must see committed data.
        pytest.param("db", marks=[pytest.mark.db, pytest.mark.django_db(transaction=True)]),
        "file",
        pytest.param("redis", marks=pytest.mark.redis),
        CACHED_DB,
    ],
)
def test_async_saves_replay_too(engine: str, settings, tmp_path) -> None:
    settings.PICKLESESSIONS_FILE_PATH = str(tmp_path / "sessions")
    store = ENGINES[engine]
    key = new_session(store, shared=1)

    async def race() -> None:
        a, b = store(key), store(key)
        await a.aset("from_a", "A")
        await b.aset("from_b", "B")
        await a.asave()
        await b.asave()
        await sync_to_async(connections.close_all)()  # the worker thread's connection

    asyncio.run(race())
    assert contents(store, key) == {"shared": 1, "from_a": "A", "from_b": "B"}


@override_settings(PICKLESESSIONS_CONFLICT_POLICIES={"cart": "tests.merges.sum_counts"})
def test_the_same_change_in_both_adds_up_under_a_merge(store: Store) -> None:
    # Two tabs add the same product: equal pickles on both sides, still two adds.
    key = new_session(store, cart={7: 1})
    a, b = both(store, key)
    a["cart"][7] += 1
    b["cart"][7] += 1
    a.save()
    b.save()
    assert contents(store, key) == {"cart": {7: 3}}
