"""The engines Django's session suite runs against: one entry each.

An entry names the engine's module (its ``SessionStore`` is the store under test), whether it
needs the database, what each test needs around it (settings, a directory), and how to count
its stored records (Django's clearsessions tests count rows). Engines whose module does not
exist yet are skipped with a reason; an engine that exists but fails to import is an error.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import tempfile
import unittest
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.test import override_settings


def override(case: unittest.TestCase, **values: Any) -> None:
    """Apply ``override_settings(**values)`` until ``case`` ends."""
    overridden = override_settings(**values)
    overridden.enable()
    case.addCleanup(overridden.disable)


@dataclass(frozen=True)
class Engine:
    """One session engine under test."""

    #: Short name, used in class names (``TestLocmemStore``) and reports.
    name: str
    #: The value of SESSION_ENGINE.
    module: str
    #: Returns how many records the engine stores now.
    count_records: Callable[[type[SessionBase]], int]
    #: Prepares one test (settings, a fresh directory); registers its own cleanup.
    setup: Callable[[unittest.TestCase], None] = field(default=lambda case: None)
    #: Needs the database: its tests use TestCase and carry the ``db`` marker.
    uses_db: bool = False
    #: Needs the Redis server: its tests carry the ``redis`` marker.
    uses_redis: bool = False
    #: Tests of the store contract that cannot apply to this engine, with the reason.
    excluded: dict[str, str] = field(default_factory=dict)

    def missing(self) -> str | None:
        """Return why the engine cannot run (its module does not exist), or None."""
        try:
            found = importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:
            found = False
        return None if found else f"engine {self.module} does not exist (yet)"

    def store(self) -> type[SessionBase]:
        """Import the engine and return its ``SessionStore``."""
        store: type[SessionBase] = importlib.import_module(self.module).SessionStore
        return store


# --- locmem -----------------------------------------------------------------------------


def _locmem_records() -> dict[str, Any]:
    from django_picklesessions.backends import locmem

    return locmem._records


def _locmem_setup(case: unittest.TestCase) -> None:
    # Records live in a module dictionary: start and end every test with none.
    records = _locmem_records()
    records.clear()
    case.addCleanup(records.clear)


# --- db ---------------------------------------------------------------------------------


def _db_count(store: type[SessionBase]) -> int:
    return int(store.get_model_class()._default_manager.count())


# --- file -------------------------------------------------------------------------------


def _file_setup(as_path: bool) -> Callable[[unittest.TestCase], None]:
    """Give each test a fresh, private directory as PICKLESESSIONS_FILE_PATH."""

    def setup(case: unittest.TestCase) -> None:
        directory = tempfile.mkdtemp(prefix="picklesessions-suite-")
        case.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        override(case, PICKLESESSIONS_FILE_PATH=Path(directory) if as_path else directory)

    return setup


def _file_count(store: type[SessionBase]) -> int:
    # Every regular file under the directory: a record, or debris a crash would leave.
    return sum(len(files) for _, _, files in os.walk(str(settings.PICKLESESSIONS_FILE_PATH)))


# --- redis and cached_db ----------------------------------------------------------------


def _redis_setup(case: unittest.TestCase) -> None:
    # A key prefix of this test's own: the clearsessions tests count what is stored.
    override(
        case,
        PICKLESESSIONS_REDIS_PREFIX=f"{settings.PICKLESESSIONS_REDIS_PREFIX}suite-{uuid.uuid4().hex[:8]}:",
    )


def _redis_count(store: type[SessionBase]) -> int:
    from django_picklesessions.backends import redis
    from django_picklesessions.conf import conf

    return len(list(redis.sync_client().scan_iter(match=conf.REDIS_PREFIX + "*")))


def _cached_db_setup(alias: str) -> Callable[[unittest.TestCase], None]:
    """Put the engine in front of cache ``alias``, emptied of what earlier tests cached."""

    def setup(case: unittest.TestCase) -> None:
        from django.core.cache import caches

        override(case, PICKLESESSIONS_CACHE_ALIAS=alias)
        caches[alias].clear()

    return setup


ENGINES: tuple[Engine, ...] = (
    Engine(
        "locmem",
        "django_picklesessions.backends.locmem",
        count_records=lambda store: len(_locmem_records()),
        setup=_locmem_setup,
    ),
    Engine(
        "db",
        "django_picklesessions.backends.db",
        count_records=_db_count,
        uses_db=True,
    ),
    Engine(
        "file",
        "django_picklesessions.backends.file",
        count_records=_file_count,
        setup=_file_setup(as_path=False),
    ),
    # As Django's FileSessionPathLibTests: the directory setting given as a pathlib.Path.
    Engine(
        "file_pathlib",
        "django_picklesessions.backends.file",
        count_records=_file_count,
        setup=_file_setup(as_path=True),
    ),
    Engine(
        "redis",
        "django_picklesessions.backends.redis",
        count_records=_redis_count,
        setup=_redis_setup,
        uses_redis=True,
        excluded=dict.fromkeys(
            ("test_clearsessions_command", "test_aclear_expired"),
            "Redis removes a record when its signed expiry passes (EXAT), so the expired "
            "session these tests count before clearsessions is already gone",
        ),
    ),
    # In front of the default LocMemCache, and of a Django RedisCache (read as raw bytes).
    Engine(
        "cached_db",
        "django_picklesessions.backends.cached_db",
        count_records=_db_count,
        setup=_cached_db_setup("default"),
        uses_db=True,
    ),
    Engine(
        "cached_db_redis",
        "django_picklesessions.backends.cached_db",
        count_records=_db_count,
        setup=_cached_db_setup("redis"),
        uses_db=True,
        uses_redis=True,
    ),
)
