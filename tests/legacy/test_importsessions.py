"""``manage.py importsessions``: dry run, idempotence, resumption, sources, memory, exit codes."""

from __future__ import annotations

import datetime as dt
import io
import os
import pickle
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from django.contrib.sessions.models import Session
from django.core import signing
from django.core.management import call_command
from django.core.management.base import CommandError

from django_picklesessions.backends import db
from django_picklesessions.management.commands import importsessions
from tests.legacy import golden
from tests.legacy.test_lifecycle import _Call, _plant_signed_pickle

pytestmark = [pytest.mark.db, pytest.mark.django_db]

STOCK_DB = "django.contrib.sessions.backends.db"
real_time = time.time


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(*args: str, out: io.StringIO | None = None) -> str:
    out = out or io.StringIO()
    call_command("importsessions", *args, stdout=out)
    return out.getvalue()


def ours_count() -> int:
    return db.SessionStore.get_model_class()._default_manager.count()


def plant_db_cell(serializer: str = "pickle") -> list[dict[str, Any]]:
    golden.make_user()
    records = golden.cell_records("db", serializer, None)
    for r in records:
        golden.plant(r)
    return records


def plant_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    """A row whose column says valid but whose signed expiry (a day ago + 60 s) has passed."""
    with monkeypatch.context() as m:
        m.setattr(time, "time", lambda: real_time() - 86400)
        text = signing.dumps(
            {"_auth_user_id": "42", "_session_expiry": 60},
            salt="django.contrib.sessions.SessionStore",
            compress=True,
        )
    far = dt.datetime(2035, 1, 1, tzinfo=dt.timezone.utc)
    Session.objects.create(session_key="e" * 32, session_data=text, expire_date=far)


def test_dry_run_writes_nothing_and_prints_the_inventory(tmp_path: Path) -> None:
    with golden.legacy_settings("db", "pickle", None, tmp_path):
        records = plant_db_cell()
        before = (Session.objects.count(), ours_count())
        out = run("--dry-run")
        assert (Session.objects.count(), ours_count()) == before
    assert f"{len(records)} read: {len(records)} would import" in out
    assert f"Sessions: {len(records)} readable, {len(records)} logged in" in out
    assert f"tests.legacy.fixturetypes.Voucher: {len(records)} sessions" in out
    assert f"decimal.Decimal: {len(records)} sessions" in out
    assert "a model instance: store its pk" in out
    assert "a lazy translation string: store str(value)" in out
    assert "logins that would be lost: 0." in out


def test_dry_run_exits_1_when_a_login_would_be_lost(tmp_path: Path) -> None:
    gadget = pickle.dumps({"_auth_user_id": "42", "x": _Call(os.system, "true")}, 5)
    with golden.legacy_settings("db", "pickle", None, tmp_path):
        _plant_signed_pickle(gadget, "h" * 32)
        with pytest.raises(CommandError) as caught:
            run("--dry-run")
    assert caught.value.returncode == 1
    assert "1 logged-in sessions would be logged out" in str(caught.value)


def test_dry_run_gives_the_allow_list_line_a_project_class_needs(tmp_path: Path) -> None:
    with golden.legacy_settings("db", "pickle", None, tmp_path, PICKLESESSIONS_ALLOWED_CLASSES=[]):
        plant_db_cell()
        out = run("--dry-run")
    assert '    "tests.legacy.fixturetypes.Voucher",' in out


def test_import_is_idempotent_and_skips_expired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with golden.legacy_settings("db", "pickle", None, tmp_path):
        records = plant_db_cell()
        plant_expired(monkeypatch)
        first = run("--keep-source")
        assert ours_count() == len(records)
        second = run()
        assert ours_count() == len(records)
        third = run()
        assert Session.objects.count() == 1  # the expired row, left to clearsessions
    n = len(records)
    assert first.startswith(f"{n + 1} read: {n} imported, 0 already ours, 1 expired")
    assert "keys dropped" in first and "2 keys dropped" in first
    assert second.startswith(f"{n + 1} read: 0 imported, {n} already ours, 1 expired")
    assert third.startswith("1 read: 0 imported, 0 already ours, 1 expired")


def test_an_imported_session_keeps_its_login_and_expiry(tmp_path: Path) -> None:
    from django_picklesessions import record

    with golden.legacy_settings("db", "pickle", None, tmp_path):
        records = plant_db_cell()
        run()
        for r in records:
            store = db.SessionStore(r["session_key"])
            assert store["_auth_user_id"] == "42"
            raw = store._read(store.address(r["session_key"]))
            assert raw is not None and record.peek_expiry(raw) == r["expires_at"]


def test_never_overwrites_a_record_of_ours(tmp_path: Path) -> None:
    with golden.legacy_settings("db", "pickle", None, tmp_path):
        records = plant_db_cell()
        # A record of ours under that key, newer than the legacy row (written by a server
        # that imported and then saved it, with the legacy copy kept).
        key = records[0]["session_key"]
        newer = db.SessionStore(key)
        expires = int(time.time()) + 3600
        newer._write(newer.address(key), newer.encode({"cart": "newer"}), expires, True, None)
        out = run()
        assert dict(db.SessionStore(records[0]["session_key"]).load().items()) == {"cart": "newer"}
    assert f"{len(records) - 1} imported, 1 already ours" in out


def test_a_killed_run_resumes_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []

    def killed(self: Any) -> None:
        batches.append(1)
        raise KeyboardInterrupt  # the operator's ^C, or the process killed, after batch 1

    with golden.legacy_settings("db", "json", None, tmp_path):
        records = plant_db_cell("json")
        monkeypatch.setattr(importsessions.Command, "batch_done", killed)
        with pytest.raises(KeyboardInterrupt):
            run("--batch-size", "2")
        assert ours_count() == 2
        assert Session.objects.count() == len(records) - 2
        monkeypatch.undo()
        out = run("--batch-size", "2")
        assert ours_count() == len(records)
        assert Session.objects.count() == 0
    assert out.startswith(f"{len(records) - 2} read: {len(records) - 2} imported")


def test_progress_line_only_on_a_terminal(tmp_path: Path) -> None:
    with golden.legacy_settings("db", "json", None, tmp_path):
        plant_db_cell("json")
        tty = run("--batch-size", "1", "--keep-source", out=Tty())
        plain = run("--batch-size", "1", "--keep-source")
        quiet = run("--batch-size", "1", "--no-progress", out=Tty())
    assert tty.count("\r") == 4
    assert "\r" not in plain and "\r" not in quiet


def test_file_source(tmp_path: Path) -> None:
    with golden.legacy_settings("file", "pickle", None, tmp_path):
        golden.make_user()
        records = golden.cell_records("file", "pickle", None)
        for r in records:
            golden.plant(r)
        (tmp_path / "stock-files" / "unrelated.txt").write_text("not a session")
        out = run("--from", "django.contrib.sessions.backends.file")
        assert sorted(os.listdir(tmp_path / "stock-files")) == ["unrelated.txt"]
        for r in records:
            assert db.SessionStore(r["session_key"])["_auth_user_id"] == "42"
    assert out.startswith(f"{len(records)} read: {len(records)} imported")


def test_redis_cache_source(tmp_path: Path) -> None:
    cell = ("cache", "pickle", "redis")
    with golden.legacy_settings(*cell, tmp_path):
        golden.make_user()
        records = golden.cell_records(*cell)
        try:
            for r in records:
                golden.plant(r)
            out = run()
            for r in records:
                assert db.SessionStore(r["session_key"])["_auth_user_id"] == "42"
                assert golden.legacy_present(r) == {"cache": False}
        finally:
            for r in records:
                golden.forget(r)
    assert out.startswith(f"{len(records)} read: {len(records)} imported")


def test_sources_that_cannot_be_listed_are_refused_with_a_reason(tmp_path: Path) -> None:
    with (
        golden.legacy_settings("signed_cookies", "pickle", None, tmp_path),
        pytest.raises(CommandError, match="imported on their first request"),
    ):
        run()
    with (
        golden.legacy_settings("cache", "pickle", "locmem", tmp_path),
        pytest.raises(CommandError, match="cannot be listed"),
    ):
        run()


def test_needs_a_source_and_one_of_our_engines(tmp_path: Path) -> None:
    with (
        golden.legacy_settings("db", "pickle", None, tmp_path, PICKLESESSIONS_LEGACY_ENGINE=None),
        pytest.raises(CommandError, match="--from"),
    ):
        run()
    with (
        golden.legacy_settings("db", "pickle", None, tmp_path, SESSION_ENGINE=STOCK_DB),
        pytest.raises(CommandError, match="must be one of django_picklesessions"),
    ):
        run()


def _bulk_rows(count: int) -> None:
    # The MAC does not cover the key: one stock record is valid under every key.
    text = golden.cell_records("db", "json", None)[0]["db"]["session_data"]
    expire = dt.datetime(2035, 1, 1, tzinfo=dt.timezone.utc)
    batch = 5000
    for start in range(0, count, batch):
        Session.objects.bulk_create(
            Session(session_key=f"{i:032d}", session_data=text, expire_date=expire)
            for i in range(start, min(count, start + batch))
        )


def _peak_while_importing(count: int) -> int:
    Session.objects.all().delete()
    db.SessionStore.get_model_class()._default_manager.all().delete()
    _bulk_rows(count)
    tracemalloc.start()
    try:
        run("--batch-size", "1000", "--no-progress")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


#: ``make test`` sets this for its SQLite run: the 100k-row import runs once there (minutes
#: under tracemalloc); every other run imports 10k rows against 1k, the same tenfold step.
FULL_SCALE = os.environ.get("PICKLESESSIONS_FULL_SCALE") == "1"


def test_memory_stays_flat_as_rows_grow_tenfold(tmp_path: Path) -> None:
    small_rows, large_rows = (10_000, 100_000) if FULL_SCALE else (1_000, 10_000)
    with golden.legacy_settings("db", "json", None, tmp_path):
        golden.make_user()
        small = _peak_while_importing(small_rows)
        large = _peak_while_importing(large_rows)
        assert ours_count() == large_rows
        assert Session.objects.count() == 0
    # Ten times the rows, not ten times the memory: a batch's worth, whatever the table.
    assert large < small + 2 * 1024 * 1024, (small, large)
    assert large < 16 * 1024 * 1024, large
