"""session.locked(): scoped mutual exclusion for flows where merging is wrong."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import django
import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction

from django_picklesessions.backends import db, file
from django_picklesessions.backends.base import PickleSessionBase
from django_picklesessions.exceptions import SessionLockTimeout
from tests.helpers import engines, new_session

Store = Callable[..., PickleSessionBase]
ENGINES = engines()
# The db engine's lock must be visible to other connections at once: no test transaction.
DB = pytest.param("db", marks=[pytest.mark.db, pytest.mark.django_db(transaction=True)])
REDIS = pytest.param("redis", marks=pytest.mark.redis)
CACHED_DB = pytest.param(
    "cached_db", marks=[pytest.mark.db, pytest.mark.django_db(transaction=True)]
)


@pytest.fixture(params=["locmem", DB, "file", REDIS, CACHED_DB])
def store(request: pytest.FixtureRequest, settings, tmp_path) -> Store:
    settings.PICKLESESSIONS_FILE_PATH = str(tmp_path / "sessions")
    return ENGINES[request.param]


def test_second_locker_waits_then_times_out(store: Store) -> None:
    key = new_session(store, n=0)
    holder, waiter = store(key), store(key)
    with holder.locked():
        started = time.monotonic()
        with pytest.raises(SessionLockTimeout), waiter.locked(timeout=0.2):
            pass
        assert time.monotonic() - started >= 0.2
    with waiter.locked(timeout=0):
        waiter["n"] = 1
    assert store(key)["n"] == 1


def test_entering_catches_up_and_leaving_saves(store: Store) -> None:
    key = new_session(store, cart=["tea"], note="")
    late = store(key)
    assert late["cart"] == ["tea"]  # loaded before the other save
    other = store(key)
    other["cart"] = ["tea", "cup"]
    other.save()
    late["note"] = "gift"  # our own change survives the catch-up
    with late.locked():
        assert late["cart"] == ["tea", "cup"]
        late["cart"].clear()
    assert dict(store(key).items()) == {"cart": [], "note": "gift"}


def test_only_one_checkout_runs(store: Store) -> None:
    key = new_session(store, cart=["tea", "cup"], orders=0)
    results: list[str] = []

    def checkout() -> None:
        buyer = store(key)
        with buyer.locked(timeout=10):
            if buyer["cart"]:
                time.sleep(0.05)  # the order is being written
                buyer["orders"] += 1
                buyer["cart"] = []
                results.append("ordered")
            else:
                results.append("nothing to order")
        connections.close_all()

    threads = [threading.Thread(target=checkout) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == ["nothing to order", "nothing to order", "ordered"]
    assert dict(store(key).items()) == {"cart": [], "orders": 1}


@pytest.mark.parametrize("engine", ["locmem", DB, REDIS])
def test_abandoned_lease_is_taken_over(engine: str) -> None:
    store = ENGINES[engine]
    key = new_session(store, n=0)
    crashed = store(key)
    lock = crashed.locked(lease=0.1)
    lock.__enter__()  # never left: the holder "died"
    time.sleep(0.15)
    with store(key).locked(timeout=1) as taker:
        taker["n"] = 1
    assert store(key)["n"] == 1
    # End the abandoned block now, while the database is there: left to the garbage
    # collector, its cleanup would run during some later test.
    lock.__exit__(None, None, None)


def test_file_lock_ends_with_its_process(settings, tmp_path) -> None:
    settings.PICKLESESSIONS_FILE_PATH = str(tmp_path / "sessions")
    key = new_session(file.SessionStore, n=0)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import django, os, sys, time; django.setup();"
            "from django_picklesessions.backends.file import SessionStore;"
            "lock = SessionStore(sys.argv[1]).locked(); lock.__enter__();"
            "print('locked', flush=True); time.sleep(60)",
            key,
        ],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PICKLESESSIONS_TEST_FILE_PATH": settings.PICKLESESSIONS_FILE_PATH,
        },
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SessionLockTimeout), file.SessionStore(key).locked(timeout=0.1):
            pass
    finally:
        holder.kill()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
    with file.SessionStore(key).locked(timeout=1):
        pass


def test_unused_lock_files_are_cleaned_up(settings, tmp_path) -> None:
    settings.PICKLESESSIONS_FILE_PATH = str(tmp_path / "sessions")
    key = new_session(file.SessionStore, n=0)
    with file.SessionStore(key).locked():
        pass
    address = file.SessionStore.address(key)
    lock_file = tmp_path / "sessions" / address[:2] / (file.LOCK_PREFIX + address)
    assert lock_file.exists()
    file.SessionStore.clear_expired()
    assert lock_file.exists()  # its session still exists
    file.SessionStore(key).delete()
    file.SessionStore.clear_expired()
    assert not lock_file.exists()


@pytest.mark.db
@pytest.mark.django_db
def test_db_lock_refuses_to_run_inside_a_transaction() -> None:
    key = new_session(db.SessionStore, n=0)
    refused = pytest.raises(RuntimeError, match="outside transaction.atomic")
    with transaction.atomic(), refused, db.SessionStore(key).locked():
        pass


@pytest.mark.skipif(django.VERSION < (5, 1), reason="async session methods need Django 5.1")
def test_async_lock(store: Store) -> None:
    key = new_session(store, n=0)

    async def scenario() -> None:
        holder, waiter = store(key), store(key)
        async with holder.alocked():
            with pytest.raises(SessionLockTimeout):
                async with waiter.alocked(timeout=0.1):
                    pass
            await holder.aset("n", 1)
        async with waiter.alocked(timeout=0):
            assert await waiter.aget("n") == 1
        await sync_to_async(connections.close_all)()

    asyncio.run(scenario())
    assert store(key)["n"] == 1
