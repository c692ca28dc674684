"""Switching SESSION_ENGINE to ours logs nobody out: the golden Django 4.2 records replayed.

Each cell of engine x serializer (x cache backend) plants the records real Django 4.2 wrote,
replays each browser cookie through the test client with ``PICKLESESSIONS_LEGACY_ENGINE``
set, and counts the users logged out: always 0.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from django_picklesessions import record
from django_picklesessions.backends import db, file, locmem
from tests.legacy import golden

pytestmark = [pytest.mark.db, pytest.mark.django_db]

CELLS = golden.cells()
ENGINES = {
    "django_picklesessions.backends.db": db.SessionStore,
    "django_picklesessions.backends.file": file.SessionStore,
    "django_picklesessions.backends.locmem": locmem.SessionStore,
}


def cell_id(cell: tuple[str, str, str | None]) -> str:
    return "-".join(part for part in cell if part)


@contextlib.contextmanager
def planted(records: list[dict[str, Any]]) -> Iterator[None]:
    """Plant ``records``; remove their cache copies afterwards (call under legacy_settings)."""
    try:
        for r in records:
            golden.plant(r)
        yield
    finally:
        for r in records:
            golden.forget(r)


def ours_raw(engine: str, key: str) -> bytes | None:
    store = ENGINES[engine](key)
    return store._read(store.address(key))


def replay(
    client: Client, r: dict[str, Any], path: str = "/whoami/"
) -> tuple[int | None, str | None]:
    """Send the record's cookie; return the user seen and the session key now in use."""
    client.cookies.clear()
    client.cookies[settings.SESSION_COOKIE_NAME] = golden.cookie_of(r)
    response = client.get(path)
    user = response.json()["user"]
    morsel = response.cookies.get(settings.SESSION_COOKIE_NAME)
    key = morsel.value if morsel is not None and morsel.value else r["session_key"]
    if r["engine"] == "signed_cookies" and morsel is None:
        key = None
    return user, key


def switch_and_count(
    cell: tuple[str, str, str | None],
    tmp_path: Path,
    ours: str,
    **extra: Any,
) -> int:
    """Plant a cell's records, replay each cookie against ``ours``; return the logged out."""
    engine, serializer, cache = cell
    client = Client()
    logged_out = 0
    with golden.legacy_settings(engine, serializer, cache, tmp_path, SESSION_ENGINE=ours, **extra):
        user = golden.make_user()
        records = golden.cell_records(*cell)
        with planted(records):
            logged_out = sum(check_replay(client, r, user.pk, ours, **extra) for r in records)
    return logged_out


def check_replay(client: Client, r: dict[str, Any], user: int, ours: str, **extra: Any) -> int:
    """Replay one record's cookie and check what our engine made of it; 1 if logged out."""
    seen, key = replay(client, r)
    if seen != user:
        return 1
    assert key is not None
    if r["engine"] == "signed_cookies":
        assert key != r["cookie"]  # a key of ours now names the session
    else:
        assert key == r["session_key"]  # same cookie: the browser sees no change
    raw = ours_raw(ours, key)
    assert raw is not None
    # Not extended: exactly the moment Django 4.2 would have let the session go.
    expires_at = record.peek_expiry(raw)
    if r["cache"] == "redis" and r["engine"] == "cache" and r["form"] != "expiry-datetime":
        # Redis counts the entry's TTL from when the test planted it, not from the fixture.
        assert expires_at is not None
        assert 0 <= r["cache_raw"]["ttl"] - (expires_at - int(time.time())) <= 2
    else:
        assert expires_at == r["expires_at"]
    session = dict(ENGINES[ours](key).load().items())
    assert golden.typed_items(session) == golden.typed_items(golden.expected(r))
    present = golden.legacy_present(r)
    if extra.get("PICKLESESSIONS_LEGACY_WRITE"):
        assert all(present.values()), present
    else:
        assert not any(present.values()), present
    return 0


@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_switch_to_our_db_engine_logs_nobody_out(
    cell: tuple[str, str, str | None],
    tmp_path: Path,
    security_log: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="django_picklesessions.legacy")
    logged_out = switch_and_count(cell, tmp_path, "django_picklesessions.backends.db")
    assert logged_out == 0
    assert security_log() == []
    imports = [r for r in caplog.records if r.getMessage().startswith("Imported legacy")]
    assert len(imports) == len(golden.cell_records(*cell))


@pytest.mark.parametrize(
    "cell",
    [c for c in CELLS if c[0] in ("db", "file", "cache") and c[2] in (None, "locmem")],
    ids=cell_id,
)
@pytest.mark.parametrize(
    "ours", ["django_picklesessions.backends.file", "django_picklesessions.backends.locmem"]
)
def test_switch_to_our_file_and_locmem_engines_logs_nobody_out(
    cell: tuple[str, str, str | None],
    ours: str,
    tmp_path: Path,
    security_log: Any,
) -> None:
    assert switch_and_count(cell, tmp_path, ours) == 0
    assert security_log() == []


@pytest.mark.parametrize("cell", [c for c in CELLS if c[0] != "signed_cookies"], ids=cell_id)
def test_under_dual_write_the_legacy_record_is_kept(
    cell: tuple[str, str, str | None],
    tmp_path: Path,
    security_log: Any,
) -> None:
    logged_out = switch_and_count(
        cell,
        tmp_path,
        "django_picklesessions.backends.db",
        PICKLESESSIONS_LEGACY_WRITE=True,
    )
    assert logged_out == 0
    assert security_log() == []


def test_without_legacy_settings_every_user_is_logged_out(
    tmp_path: Path,
) -> None:
    """The failure the issue reports, kept as the control of the cells above."""
    cell = ("db", "pickle", None)
    client = Client()
    with golden.legacy_settings(*cell, tmp_path, PICKLESESSIONS_LEGACY_ENGINE=None):
        user = golden.make_user()
        records = golden.cell_records(*cell)
        with planted(records):
            seen = [replay(client, r)[0] for r in records]
    assert user.pk not in seen


@pytest.mark.parametrize("cell", [("db", "pickle", None)], ids=cell_id)
def test_refused_values_drop_their_keys_and_keep_the_login(
    cell: tuple[str, str, str | None],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="django_picklesessions.legacy")
    (refused,) = [r for r in golden.cell_records(*cell) if r["form"] == "refused"]
    with golden.legacy_settings(*cell, tmp_path):
        user = golden.make_user()
        with planted([refused]):
            seen, key = replay(Client(), refused)
        assert seen == user.pk
        assert key is not None
        session = dict(db.SessionStore(key).load().items())
    assert set(refused["dropped"]).isdisjoint(session)
    logged = " ".join(r.getMessage() for r in caplog.records)
    for name in refused["dropped"]:
        assert repr(name) in logged
