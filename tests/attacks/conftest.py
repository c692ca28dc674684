"""Oracles shared by every attack: the audit guard, the canary, and the engines to attack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import canary
from tests.attacks.audit import AuditGuard
from tests.attacks.kit import store_class


@pytest.fixture(scope="session", autouse=True)
def _warm_up() -> None:
    """Do the lazy imports of a first load now, so the audit guard sees only the attack's."""
    from django_picklesessions.allowlist import get_allow_list
    from django_picklesessions.backends import db, file  # noqa: F401
    from django_picklesessions.keys import get_keyring

    get_allow_list()
    get_keyring()
    # The C unpickler decodes protocol-0 text opcodes (INST, GLOBAL...) with codecs that some
    # Python versions (3.12, 3.13) import on first use: a stdlib import, not the attack's.
    import codecs

    for encoding in ("ascii", "latin-1", "utf-8", "raw-unicode-escape", "unicode-escape"):
        codecs.lookup(encoding)
    # A first request imports the middleware, the URLconf and the views.
    from django.test import Client

    Client().get("/auth/")


@pytest.fixture
def audit(tmp_path: Path) -> AuditGuard:
    """An audit guard that allows file access under this test's tmp_path only."""
    return AuditGuard([tmp_path])


@pytest.fixture(autouse=True)
def _canary_stays_silent() -> Iterator[None]:
    """Every attack test fails if any gadget reached the canary."""
    canary.reset()
    yield
    fired = list(canary.FIRED)
    canary.reset()
    assert fired == [], f"the canary fired: {fired}"


_DB = pytest.param("db", marks=[pytest.mark.db, pytest.mark.django_db])
_REDIS = pytest.param("redis", marks=pytest.mark.redis)
_CACHED_DB = pytest.param("cached_db", marks=[pytest.mark.db, pytest.mark.django_db])


@pytest.fixture(params=["locmem", "file", _DB, _REDIS, _CACHED_DB])
def engine(request: pytest.FixtureRequest, settings: Any, tmp_path: Path) -> str:
    """Each engine in turn; the db ones run again on PostgreSQL and MariaDB (``-m db``)."""
    name: str = request.param
    if name == "file":
        settings.PICKLESESSIONS_FILE_PATH = str(tmp_path / "sessions")
    # An engine's first import and first connection are audit events (import, exec, socket):
    # they happen here, so a test run alone sees in its watched block only what an attack does.
    store_class(name)
    if name == "redis":
        from django_picklesessions.backends import redis

        redis.sync_client().ping()
    return name


@pytest.fixture
def file_engine(settings: Any, tmp_path: Path) -> Path:
    """Point the file engine at a fresh directory; return it."""
    path = tmp_path / "sessions"
    settings.PICKLESESSIONS_FILE_PATH = str(path)
    return path


@pytest.fixture(params=[False, True], ids=["default", "strict"])
def strict(request: pytest.FixtureRequest, settings: Any) -> bool:
    """Each unpickling mode in turn: the C unpickler alone, then with the strict simulation."""
    mode: bool = request.param
    settings.PICKLESESSIONS_STRICT_UNPICKLING = mode
    return mode


@pytest.fixture
def strict_only(settings: Any) -> None:
    """Strict mode: the cases the C unpickler alone cannot bound run under it."""
    settings.PICKLESESSIONS_STRICT_UNPICKLING = True
