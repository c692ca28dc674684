from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from django_picklesessions.backends import locmem
from tests.helpers import UnpickleSpy, counting_decodes


@pytest.fixture(autouse=True)
def _empty_locmem() -> Iterator[None]:
    locmem._records.clear()
    yield
    locmem._records.clear()


@pytest.fixture
def security_log(caplog: pytest.LogCaptureFixture) -> Any:
    """The records logged on django.security.SuspiciousSession during the test."""
    caplog.set_level(logging.WARNING, logger="django.security.SuspiciousSession")

    def records() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "django.security.SuspiciousSession"]

    return records


@pytest.fixture
def unpickle_spy() -> Iterator[UnpickleSpy]:
    with counting_decodes() as spy:
        yield spy


# --- Database servers -------------------------------------------------------------------

_SERVERS = {"postgresql": ("PostgreSQL", 5432), "mariadb": ("MariaDB", 3306)}


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the run's tests when its database server is down; in CI, fail instead."""
    from django.conf import settings

    _require_redis(items)
    if settings.TEST_DB not in _SERVERS:
        return
    name, port = _SERVERS[settings.TEST_DB]
    if _reachable(port):
        return
    reason = (
        f"{name} is not reachable on 127.0.0.1:{port} (PICKLESESSIONS_TEST_DB={settings.TEST_DB})"
    )
    if os.environ.get("CI"):
        pytest.exit(f"{reason}; CI needs every database server.", returncode=1)
    for item in items:
        item.add_marker(pytest.mark.skip(reason=reason))


def _require_redis(items: list[pytest.Item]) -> None:
    """Skip the tests marked ``redis`` when the Redis server is down; in CI, fail instead."""
    needing = [item for item in items if item.get_closest_marker("redis")]
    if not needing or _reachable(6379):
        return
    reason = "Redis is not reachable on 127.0.0.1:6379 (the redis and cached_db-on-Redis tests)"
    if os.environ.get("CI"):
        pytest.exit(f"{reason}; CI needs the Redis server.", returncode=1)
    for item in needing:
        item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _redis_prefix_per_test(settings: Any) -> None:
    """Give each test a Redis key prefix of its own (under the run's), so counts start at 0."""
    settings.PICKLESESSIONS_REDIS_PREFIX = (
        f"{settings.PICKLESESSIONS_REDIS_PREFIX}{secrets.token_hex(4)}:"
    )


@pytest.fixture(scope="session", autouse=True)
def _remove_redis_keys() -> Iterator[None]:
    """Delete what this run stored in Redis: every key under its own prefixes."""
    yield
    from django.conf import settings

    if not _reachable(6379):
        return
    import redis

    prefixes = (settings.PICKLESESSIONS_REDIS_PREFIX, settings.CACHES["redis"]["KEY_PREFIX"])
    # Sessions may live in the cache's database too (PICKLESESSIONS_REDIS_CACHE_ALIAS).
    for url in (settings.REDIS_TEST_URL, settings.REDIS_CACHE_TEST_URL):
        client = redis.Redis.from_url(url)
        try:
            for prefix in prefixes:
                batch = list(client.scan_iter(match=prefix + "*", count=1000))
                for start in range(0, len(batch), 1000):
                    client.delete(*batch[start : start + 1000])
        finally:
            client.close()


@pytest.fixture(scope="session", autouse=True)
def _no_stray_connections(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Close what threads of the concurrency tests left connected to the test database.

    PostgreSQL refuses to drop a database someone is connected to, and a thread's connection
    can outlive its test; the teardown then fails whichever test ran last.
    """
    yield
    from django.conf import settings
    from django.db import connection

    if settings.TEST_DB != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
