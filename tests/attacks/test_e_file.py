"""Group E: the file engine, attacked through the cookie (A1) and through the directory (A3)."""
# ruff: noqa: N802  (test names carry the catalogue's case ids, which are upper case)

from __future__ import annotations

import datetime
import os
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from django_picklesessions import checks
from django_picklesessions.backends import file as file_backend
from django_picklesessions.backends.file import TEMP_PREFIX, SessionStore
from tests.attacks.audit import AuditGuard
from tests.attacks.kit import load_under, saved, stored, watched

TRAVERSAL_KEYS = [
    "../../etc/passwd",
    "..",
    ".",
    "/abs" + "a" * 28,
    "a/b" * 11,
    "a\\b" * 11,
    "%2e%2e%2f" * 4,
    "\x00" * 32,
    "ａ" * 32,  # fullwidth
    "\u0663" * 32,  # Arabic-Indic digits: str.isalnum() would pass them
    "x" * 4096,
    "",
]


def path_of(root: Path, session_key: str) -> Path:
    address = SessionStore.address(session_key)
    return root / address[:2] / address


def snapshot(root: Path) -> set[tuple[str, int]]:
    return {(str(p), p.lstat().st_mtime_ns) for p in root.rglob("*")} if root.exists() else set()


@pytest.mark.parametrize("cookie", TRAVERSAL_KEYS, ids=repr)
def test_E1_traversal_keys(cookie: str, file_engine: Path, tmp_path: Path) -> None:
    saved("file", n=1)  # the tree exists: a traversal would have somewhere to start
    before = snapshot(tmp_path)
    # No file event at all: a key we never issue is refused before any storage access.
    guard = AuditGuard([], session_names=False)
    store = SessionStore(cookie)
    with watched(guard):
        assert dict(store.items()) == {}
        assert store.session_key is None
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("length", [31, 33])
def test_E1_well_formed_keys_of_other_lengths(
    length: int, file_engine: Path, audit: AuditGuard
) -> None:
    # Hashed like any key: they can only name a file of the session directory.
    values, store = load_under(audit, "file", "k" * length)
    assert values == {} and store.session_key is None


def test_E2_stored_id_as_cookie(engine: str, audit: AuditGuard) -> None:
    live = saved(engine, _auth_user_id="1")
    values, store = load_under(audit, engine, SessionStore.address(live))
    assert values == {} and store.session_key is None


def _fifo(path: Path) -> None:
    os.mkfifo(path, 0o600)


@pytest.mark.parametrize("target", ["etc-passwd", "other-session", "fifo"])
def test_E3_symlink_planted(
    target: str, file_engine: Path, tmp_path: Path, audit: AuditGuard, security_log: Any
) -> None:
    victim = saved("file", _auth_user_id="1")
    attacker = saved("file", _auth_user_id="2")
    path = path_of(file_engine, attacker)
    if target == "etc-passwd":
        destination = Path("/etc/passwd")
    elif target == "other-session":
        destination = path_of(file_engine, victim)
    else:
        destination = tmp_path / "fifo"
        _fifo(destination)
    path.unlink()
    path.symlink_to(destination)
    before = None if target == "fifo" else destination.read_bytes()
    started = time.monotonic()
    values, store = load_under(audit, "file", attacker)
    assert time.monotonic() - started < 1  # no blocking open
    assert values == {} and store.session_key is None
    assert ["(symlink)" in r.getMessage() for r in security_log()] == [True]
    store["n"] = 1
    with watched(audit):
        store.save()  # under a fresh key: the link is never written through
    assert store.session_key != attacker and path.is_symlink()
    if before is not None:
        assert destination.read_bytes() == before


@pytest.mark.parametrize("tamper", ["hard-link", "chmod-0644", "chown"])
def test_E4_ownership_and_links(
    tamper: str, file_engine: Path, tmp_path: Path, audit: AuditGuard, security_log: Any
) -> None:
    key = saved("file", _auth_user_id="1")
    path = path_of(file_engine, key)
    if tamper == "hard-link":
        os.link(path, tmp_path / "second-name")
        reason = "links"
    elif tamper == "chmod-0644":
        os.chmod(path, 0o644)
        reason = "mode"
    else:
        if os.geteuid() != 0:
            pytest.skip("only root can give a file away")
        os.chown(path, 4242, 4242)
        reason = "owner"
    values, _ = load_under(audit, "file", key)
    assert values == {}
    assert [f"({reason})" in r.getMessage() for r in security_log()] == [True]


def test_E5_permissions(file_engine: Path, tmp_path: Path, settings: Any) -> None:
    old = os.umask(0)
    try:
        key = saved("file", n=1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path_of(file_engine, key).stat().st_mode) == 0o600
    assert stat.S_IMODE(path_of(file_engine, key).parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(file_engine.stat().st_mode) == 0o700
    settings.SESSION_ENGINE = "django_picklesessions.backends.file"
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    os.chmod(open_dir, 0o755)
    linked = tmp_path / "linked"
    linked.symlink_to(file_engine, target_is_directory=True)
    for bad in ("/tmp", str(open_dir), str(linked)):
        settings.PICKLESESSIONS_FILE_PATH = bad
        ids = [m.id for m in checks.check_file_path()]
        assert ids == ["django_picklesessions.E006"], bad


def test_E6_crash_mid_write(
    file_engine: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    unpickle_spy: Any,
    audit: AuditGuard,
) -> None:
    settings.PICKLESESSIONS_FILE_FSYNC = True
    key = saved("file", _auth_user_id="1", n=1)
    before = stored("file", key)
    store = SessionStore(key)
    store["n"] = 2

    def crash(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        store.save()
    monkeypatch.undo()
    assert stored("file", key) == before
    assert list(file_engine.rglob(TEMP_PREFIX + "*")) == []
    # A writer killed mid-write leaves a temp file: never loadable, removed by cleanup.
    leftover = path_of(file_engine, key).parent / (TEMP_PREFIX + "0123456789abcdef")
    leftover.write_bytes((before or b"")[:40])
    os.chmod(leftover, 0o600)
    for cookie in (leftover.name, leftover.name[1:], "tmp-0123456789abcdef"):
        values, _ = load_under(audit, "file", cookie)
        assert values == {}
    real = timezone.now
    monkeypatch.setattr(
        timezone,
        "now",
        lambda: real() + datetime.timedelta(seconds=file_backend.TEMP_MAX_AGE + 1),
    )
    settings.SESSION_ENGINE = "django_picklesessions.backends.file"
    calls = unpickle_spy.calls
    call_command("clearsessions")
    assert not leftover.exists() and unpickle_spy.calls == calls


def test_E7_concurrency(file_engine: Path) -> None:
    # 8 threads save and load one session; every load is empty or one writer's whole state.
    # Two processes hammering one record: tests/test_backend_file.py's concurrent writers.
    key = saved("file", writer=0, items=[0] * 200)
    errors: list[BaseException] = []
    seen: set[int] = set()
    deadline = time.monotonic() + 0.5

    def work(writer: int) -> None:
        try:
            while time.monotonic() < deadline:
                store = SessionStore(key)
                values = dict(store.items())
                assert values == {} or values["items"] == [values["writer"]] * 200
                seen.add(values.get("writer", -1))
                store["writer"] = writer
                store["items"] = [writer] * 200
                store.save()
        except BaseException as exc:  # noqa: BLE001  (reported below, with the thread's cause)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(seen - {-1, 0}) > 1


def test_E8_mtime_irrelevant(file_engine: Path, audit: AuditGuard, security_log: Any) -> None:
    from tests.helpers import sign_raw

    expired = saved("file", n=1)
    now = int(time.time())
    path = path_of(file_engine, expired)
    path.write_bytes(sign_raw(expired, {}, issued_at=now - 100, expires_at=now - 1))
    os.utime(path, (2**33, 2**33))
    values, _ = load_under(audit, "file", expired)
    assert values == {}
    assert ["(expired)" in r.getMessage() for r in security_log()] == [True]
    # A valid record whose mtime was moved back reads as expired: fail closed (docs/engines.md).
    valid = saved("file", n=2)
    os.utime(path_of(file_engine, valid), (now - 10, now - 10))
    values, _ = load_under(audit, "file", valid)
    assert values == {}


@pytest.mark.parametrize("kind", ["directory", "fifo", "socket"])
def test_E9_special_files(
    kind: str,
    file_engine: Path,
    audit: AuditGuard,
    security_log: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = saved("file", n=1)
    path = path_of(file_engine, key)
    path.unlink()
    if kind == "directory":
        path.mkdir(mode=0o700)
    elif kind == "fifo":
        os.mkfifo(path, 0o600)
    else:
        monkeypatch.chdir(path.parent)  # a relative name stays under the AF_UNIX path limit
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(path.name)
    try:
        started = time.monotonic()
        values, _ = load_under(audit, "file", key)
        elapsed = time.monotonic() - started
    finally:
        if kind == "socket":
            sock.close()
    assert values == {} and elapsed < 0.5
    assert ["(not_regular)" in r.getMessage() for r in security_log()] == [True]
