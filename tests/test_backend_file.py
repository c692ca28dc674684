"""The file engine: the session contract on disk, and attacks by someone who can write there."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import decimal
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.utils import timezone

from django_picklesessions import record
from django_picklesessions.backends import file as file_backend
from django_picklesessions.backends.file import TEMP_PREFIX, SessionStore
from tests.file_writer_child import is_consistent, payload
from tests.helpers import sign_raw

REPO = Path(__file__).resolve().parent.parent
UTC = datetime.timezone.utc
needs_async = pytest.mark.skipif(
    django.VERSION < (5, 1), reason="SessionBase has async methods since Django 5.1"
)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root can chown a file away")
not_root = pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any directory")


@pytest.fixture(autouse=True)
def session_dir(settings: Any, tmp_path: Path) -> Path:
    path = tmp_path / "sessions"
    settings.PICKLESESSIONS_FILE_PATH = str(path)
    return path


def path_of(session_dir: Path, key: str) -> Path:
    address = SessionStore.address(key)
    return session_dir / address[:2] / address


def saved(**values: Any) -> str:
    store = SessionStore()
    store.update(values)
    store.save()
    assert store.session_key
    return store.session_key


def tree(root: Path) -> set[Path]:
    return set(root.rglob("*")) if root.exists() else set()


def temp_files(root: Path) -> list[Path]:
    return [p for p in tree(root) if p.name.startswith(TEMP_PREFIX)]


def refusals(security_log: Any) -> list[str]:
    return [r.getMessage() for r in security_log()]


def later(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Move Django's clock, which the engines read, ``seconds`` ahead."""
    real = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real() + datetime.timedelta(seconds=seconds))


class ReadSpy:
    """Counts the bytes os.read is asked for."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        real = os.read

        def spy(fd: int, n: int) -> bytes:
            self.sizes.append(n)
            return real(fd, n)

        monkeypatch.setattr(os, "read", spy)


# --- The session contract ----------------------------------------------------------------


def test_round_trip(session_dir: Path) -> None:
    when = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    key = saved(price=decimal.Decimal("9.99"), when=when, tags={"a", "b"}, n=3)
    assert path_of(session_dir, key).is_file()
    store = SessionStore(key)
    assert dict(store.items()) == {
        "price": decimal.Decimal("9.99"),
        "when": when,
        "tags": {"a", "b"},
        "n": 3,
    }
    assert store.session_key == key


def test_update_replaces_the_record_and_leaves_no_temp_file(session_dir: Path) -> None:
    key = saved(n=1)
    store = SessionStore(key)
    store["n"] += 1
    store["other"] = "x"
    store.save()
    assert dict(SessionStore(key).items()) == {"n": 2, "other": "x"}
    assert [p.name for p in path_of(session_dir, key).parent.iterdir()] == [
        SessionStore.address(key)
    ]


def test_delete(session_dir: Path) -> None:
    key = saved(n=1)
    SessionStore(key).delete()
    assert not path_of(session_dir, key).exists()
    assert not SessionStore().exists(key)
    assert dict(SessionStore(key).items()) == {}
    SessionStore().delete(key)  # deleting twice is fine


def test_exists(session_dir: Path) -> None:
    key = saved(n=1)
    assert SessionStore().exists(key)
    assert not SessionStore().exists("no-such-session-key-0123456789ab")


def test_create_collision_raises_create_error(session_dir: Path) -> None:
    key = saved(n=1)
    before = path_of(session_dir, key).read_bytes()
    data = sign_raw(key, {})
    with pytest.raises(CreateError):
        SessionStore()._write(SessionStore.address(key), data, int(time.time()) + 60, True, None)
    assert path_of(session_dir, key).read_bytes() == before
    assert temp_files(session_dir) == []


def test_create_draws_another_key_on_collision(monkeypatch: pytest.MonkeyPatch) -> None:
    taken = saved(n=1)
    fresh = iter([taken, "fresh0session0key0abcdefghijklmn"])
    monkeypatch.setattr(SessionStore, "_get_new_session_key", lambda self: next(fresh))
    store = SessionStore()
    store.create()
    assert store.session_key == "fresh0session0key0abcdefghijklmn"
    assert dict(SessionStore(taken).items()) == {"n": 1}


def test_update_after_delete_raises_update_error(session_dir: Path) -> None:
    key = saved(n=1)
    store = SessionStore(key)
    store["n"] = 2
    SessionStore(key).delete()  # another request logs out meanwhile
    with pytest.raises(UpdateError):
        store.save()
    assert not path_of(session_dir, key).exists()  # not brought back
    assert temp_files(session_dir) == []


def test_cycle_key(session_dir: Path) -> None:
    old = saved(_auth_user_id="7", n=1)
    store = SessionStore(old)
    store.cycle_key()
    new = store.session_key
    assert new and new != old
    assert not path_of(session_dir, old).exists()
    assert dict(SessionStore(new).items()) == {"_auth_user_id": "7", "n": 1}


def test_flush(session_dir: Path) -> None:
    key = saved(n=1)
    store = SessionStore(key)
    store.flush()
    assert store.session_key is None
    assert dict(store.items()) == {}
    assert not path_of(session_dir, key).exists()


def test_missing_setting_is_improperly_configured(settings: Any) -> None:
    settings.PICKLESESSIONS_FILE_PATH = None
    with pytest.raises(ImproperlyConfigured, match="PICKLESESSIONS_FILE_PATH"):
        saved(n=1)


@needs_async
def test_async_methods(session_dir: Path) -> None:
    async def scenario() -> None:
        store = SessionStore()
        await store.aset("n", 1)
        await store.asave()
        key = store.session_key
        assert await store.aexists(key)
        other = SessionStore(key)
        assert await other.aget("n") == 1
        await other.aset("n", 2)
        await other.asave()
        assert dict(await SessionStore(key).aitems()) == {"n": 2}
        await other.acycle_key()
        assert not await other.aexists(key)
        assert await SessionStore(other.session_key).aget("n") == 2
        await other.aflush()
        assert other.session_key is None
        expired = SessionStore()
        await expired.aset("n", 3)
        await expired.aset_expiry(-1)
        await expired.asave()
        await SessionStore.aclear_expired()

    asyncio.run(scenario())
    assert tree(session_dir) == {p for p in tree(session_dir) if p.is_dir()}


# --- Expiry and cleanup --------------------------------------------------------------------


def test_mtime_equals_the_signed_expiry(session_dir: Path) -> None:
    store = SessionStore()
    store["n"] = 1
    store.set_expiry(300)
    store.save()
    path = path_of(session_dir, store.session_key)
    expires_at = record.peek_expiry(path.read_bytes())
    assert expires_at is not None
    assert path.stat().st_mtime_ns == expires_at * 10**9
    assert abs(expires_at - (time.time() + 300)) < 5


def test_file_past_its_mtime_is_absent_without_a_log(session_dir: Path, security_log) -> None:
    key = saved(n=1)
    past = time.time() - 10
    os.utime(path_of(session_dir, key), (past, past))
    store = SessionStore(key)
    assert dict(store.items()) == {}
    assert store.session_key is None
    assert refusals(security_log) == []


def test_expired_record_with_mtime_moved_forward_is_refused(
    session_dir: Path, security_log
) -> None:
    store = SessionStore()
    store["n"] = 1
    store.set_expiry(300)
    store.save()
    key = store.session_key
    path = path_of(session_dir, key)
    issued = int(time.time()) - 1000
    path.write_bytes(sign_raw(key, {}, issued_at=issued, expires_at=issued + 10))
    os.utime(path, (2**33, 2**33))
    assert dict(SessionStore(key).items()) == {}
    assert ["(expired)" in m for m in refusals(security_log)] == [True]


def write_record(session_dir: Path, key: str, expires_at: int) -> Path:
    data = sign_raw(key, {}, issued_at=expires_at - 100, expires_at=expires_at)
    SessionStore()._write(SessionStore.address(key), data, expires_at, True, None)
    return path_of(session_dir, key)


def test_clear_expired(
    session_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unpickle_spy
) -> None:
    now = int(time.time())
    expired = write_record(session_dir, "expired-session-key-0123456789ab", now - 5)
    live = write_record(session_dir, "live-session-key-0123456789abcde", now + 86400)
    # Someone moved a live record's mtime back: it no longer loads (E8), so cleanup takes it,
    # without reading its signed header.
    tampered = write_record(session_dir, "tampered-mtime-key-0123456789abc", now + 86400)
    os.utime(tampered, (now - 3600, now - 3600))
    assert SessionStore("tampered-mtime-key-0123456789abc").load() == {} and tampered.exists()
    garbage = expired.parent / (expired.parent.name + "f" * 62)  # a record name, no header
    garbage.write_bytes(b"not a record")
    os.utime(garbage, (now - 5, now - 5))
    foreign = expired.parent / "README"  # not ours: never touched
    foreign.write_text("keep")
    os.utime(foreign, (0, 0))
    target = tmp_path / "elsewhere"
    target.write_bytes(b"x")
    os.utime(target, (0, 0))
    link = live.parent / (live.parent.name + "e" * 62)
    link.symlink_to(target)
    stale = expired.parent / (TEMP_PREFIX + "stale")
    stale.write_bytes(b"half a record")
    os.utime(stale, (now + 3600, now + 3600))  # temp files carry the future expiry as mtime

    SessionStore.clear_expired()
    assert not expired.exists()
    assert not garbage.exists() and not tampered.exists()
    assert live.exists() and foreign.exists() and link.is_symlink()
    assert target.read_bytes() == b"x"
    assert stale.exists()  # a writer may still be busy with it

    later(monkeypatch, file_backend.TEMP_MAX_AGE + 1)
    SessionStore.clear_expired()
    assert not stale.exists()
    assert live.exists()
    assert unpickle_spy.calls == 0


def plant(session_dir: Path, key: str, expires_at: int) -> None:
    """Put a record in place the quick way: no temp file, no locking."""
    path = path_of(session_dir, key)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, sign_raw(key, {}, issued_at=expires_at - 100, expires_at=expires_at))
        os.utime(fd, (expires_at, expires_at))
    finally:
        os.close(fd)


def test_clearsessions_command(session_dir: Path, settings: Any) -> None:
    settings.SESSION_ENGINE = "django_picklesessions.backends.file"
    now = int(time.time())
    expired = write_record(session_dir, "expired-session-key-0123456789ab", now - 5)
    live = write_record(session_dir, "live-session-key-0123456789abcde", now + 60)
    call_command("clearsessions")
    assert not expired.exists() and live.exists()


def test_clear_expired_streams_thousands_of_files(
    session_dir: Path, monkeypatch: pytest.MonkeyPatch, unpickle_spy
) -> None:
    now = int(time.time())
    for n in range(1000):
        plant(session_dir, f"expired-{n:024d}", now - 1 - n)
        plant(session_dir, f"live-{n:027d}", now + 60 + n)
    assert len([p for p in tree(session_dir) if p.is_file()]) == 2000

    def no_listdir(*args: Any) -> None:
        raise AssertionError("clear_expired must stream with scandir")

    monkeypatch.setattr(os, "listdir", no_listdir)
    reads = ReadSpy(monkeypatch)
    unlinks = 0
    unlink = os.unlink

    def counted_unlink(*args: Any, **kwargs: Any) -> None:
        nonlocal unlinks
        unlinks += 1
        unlink(*args, **kwargs)

    monkeypatch.setattr(os, "unlink", counted_unlink)
    started = time.perf_counter()
    SessionStore.clear_expired()
    elapsed = time.perf_counter() - started
    remaining = {p.name for p in tree(session_dir) if p.is_file()}
    assert remaining == {SessionStore.address(f"live-{n:027d}") for n in range(1000)}
    assert reads.sizes == []  # decided from metadata: no file is opened or read
    assert unlinks == 1000
    assert unpickle_spy.calls == 0
    assert elapsed < 3.0


# --- Permissions and paths -----------------------------------------------------------------


@pytest.mark.parametrize("umask", [0, 0o022])
def test_files_are_0600_in_a_0700_tree(session_dir: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        key = saved(n=1)
        store = SessionStore(key)
        store["n"] = 2
        store.save()
    finally:
        os.umask(old)
    path = path_of(session_dir, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(session_dir.stat().st_mode) == 0o700


ODD_KEYS = [
    pytest.param("../../etc/passwd", id="traversal"),
    pytest.param("../" * 30 + "tmp/owned", id="deep-traversal"),
    pytest.param("/etc/passwd" + "a" * 21, id="absolute"),
    pytest.param("a/b" * 11, id="slash"),
    pytest.param("a\\b" * 11, id="backslash"),
    pytest.param("%2e%2e%2f" * 4, id="percent-encoded"),
    pytest.param("x" * 10_000, id="10k-chars"),
    pytest.param("a\x00" * 16, id="nul-bytes"),
    pytest.param("..", id="dotdot"),
    pytest.param("", id="empty"),
    pytest.param(TEMP_PREFIX + "0" * 27, id="temp-prefix"),
    pytest.param("\udcff" * 32, id="lone-surrogates"),
    pytest.param("ａ" * 32, id="fullwidth"),
    pytest.param("\u0663" * 32, id="arabic-indic-digits"),
    pytest.param("z" * 64, id="longest-well-formed"),
]


@pytest.mark.parametrize("key", ODD_KEYS)
def test_odd_session_keys_never_become_paths(
    key: str, session_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved(n=1)  # the tree exists, so a traversal would have somewhere to start
    outside = tree(tmp_path) - tree(session_dir)
    seen: list[str] = []
    for name in ("open", "stat", "mkdir", "link", "replace", "unlink"):
        real = getattr(os, name)

        def spy(path: Any, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            seen.append(str(path))
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(os, name, spy)

    store = SessionStore(key)
    assert dict(store.items()) == {}
    assert not store.exists(key)
    store["n"] = 2
    store.save()
    store.delete(key)
    assert store.session_key != key  # an unknown key is never adopted
    assert seen and not [path for path in seen if key and key in path]
    assert tree(tmp_path) - tree(session_dir) == outside
    for path in tree(session_dir):
        parent_name = path.parent.name
        assert len(path.name) in (2, 64) and set(path.name) <= set("0123456789abcdef")
        assert path.is_dir() or path.name.startswith(parent_name)


def test_no_raw_session_key_in_any_path(session_dir: Path) -> None:
    keys = [saved(n=n) for n in range(20)]
    names = [str(p.relative_to(session_dir)) for p in tree(session_dir)]
    for key in keys:
        assert not [name for name in names if key in name]
        assert str(path_of(session_dir, key).relative_to(session_dir)) in names


def test_cookie_holding_the_file_name_loads_nothing(session_dir: Path) -> None:
    key = saved(_auth_user_id="1")
    store = SessionStore(SessionStore.address(key))
    assert dict(store.items()) == {}
    assert store.session_key is None


# --- Planted files ---------------------------------------------------------------------------


def move_away(path: Path, tmp_path: Path) -> Path:
    """Move a valid record out of the tree; return where it went."""
    target = tmp_path / "elsewhere"
    shutil.move(path, target)
    return target


def test_symlink_in_place_of_a_record_is_refused(
    session_dir: Path, tmp_path: Path, security_log
) -> None:
    key = saved(_auth_user_id="1")
    path = path_of(session_dir, key)
    target = move_away(path, tmp_path)  # still a valid record of this very session
    path.symlink_to(target)
    before = target.read_bytes()
    store = SessionStore(key)
    assert dict(store.items()) == {}
    assert ["(symlink)" in m for m in refusals(security_log)] == [True]
    assert not store.exists(key)
    store["n"] = 2
    store.save()  # under a new key
    assert store.session_key != key
    SessionStore().delete(key)
    assert not path.is_symlink()
    assert target.read_bytes() == before


def test_update_never_writes_through_a_symlink(session_dir: Path, tmp_path: Path) -> None:
    key = saved(n=1)
    store = SessionStore(key)
    store["n"] = 2
    path = path_of(session_dir, key)
    target = move_away(path, tmp_path)
    path.symlink_to(target)
    before = target.read_bytes()
    with pytest.raises(UpdateError):
        store.save()
    assert path.is_symlink() and target.read_bytes() == before


def test_symlinked_fanout_directory_is_refused(
    session_dir: Path, tmp_path: Path, security_log
) -> None:
    key = saved(n=1)
    subdir = path_of(session_dir, key).parent
    target = move_away(subdir, tmp_path)
    subdir.symlink_to(target, target_is_directory=True)
    assert dict(SessionStore(key).items()) == {}
    assert ["(directory)" in m for m in refusals(security_log)] == [True]
    assert not SessionStore().exists(key)


def test_fifo_is_refused_without_blocking(session_dir: Path, security_log) -> None:
    key = saved(n=1)
    path = path_of(session_dir, key)
    path.unlink()
    os.mkfifo(path, 0o600)
    result: list[dict[str, Any]] = []
    reader = threading.Thread(target=lambda: result.append(dict(SessionStore(key).items())))
    reader.daemon = True  # if the open blocked, the thread must not keep pytest alive
    started = time.monotonic()
    reader.start()
    reader.join(timeout=5)
    assert not reader.is_alive(), "opening a FIFO blocked"
    assert time.monotonic() - started < 1
    assert result == [{}]
    assert ["(not_regular)" in m for m in refusals(security_log)] == [True]


def test_socket_and_directory_are_refused(
    session_dir: Path, monkeypatch: pytest.MonkeyPatch, security_log
) -> None:
    sock_key, dir_key = saved(n=1), saved(n=2)
    sock_path = path_of(session_dir, sock_key)
    sock_path.unlink()
    monkeypatch.chdir(sock_path.parent)  # a relative name keeps under the AF_UNIX path limit
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(sock_path.name)
        assert dict(SessionStore(sock_key).items()) == {}
    dir_path = path_of(session_dir, dir_key)
    dir_path.unlink()
    dir_path.mkdir(mode=0o700)
    assert dict(SessionStore(dir_key).items()) == {}
    assert ["(not_regular)" in m for m in refusals(security_log)] == [True, True]


def test_hard_linked_record_is_refused(session_dir: Path, tmp_path: Path, security_log) -> None:
    key = saved(_auth_user_id="1")
    os.link(path_of(session_dir, key), tmp_path / "second-name")
    assert dict(SessionStore(key).items()) == {}
    assert ["(links)" in m for m in refusals(security_log)] == [True]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o700])
def test_record_open_to_other_users_is_refused(session_dir: Path, security_log, mode: int) -> None:
    key = saved(_auth_user_id="1")
    os.chmod(path_of(session_dir, key), mode)
    expected = "(mode)" if mode & 0o077 else None
    loaded = dict(SessionStore(key).items())
    if expected:
        assert loaded == {}
        assert [expected in m for m in refusals(security_log)] == [True]
    else:
        assert loaded == {"_auth_user_id": "1"}  # owner bits are the owner's business


@needs_root
def test_record_owned_by_another_user_is_refused(session_dir: Path, security_log) -> None:
    key = saved(_auth_user_id="1")
    os.chown(path_of(session_dir, key), 4242, 4242)
    assert dict(SessionStore(key).items()) == {}
    assert ["(owner)" in m for m in refusals(security_log)] == [True]


def test_oversized_file_is_refused_before_reading(
    session_dir: Path, monkeypatch: pytest.MonkeyPatch, security_log
) -> None:
    key = saved(_auth_user_id="1")
    path = path_of(session_dir, key)
    os.truncate(path, 1 << 30)  # sparse: a gigabyte that costs nothing to make
    future = time.time() + 3600
    os.utime(path, (future, future))
    reads = ReadSpy(monkeypatch)
    assert dict(SessionStore(key).items()) == {}
    assert reads.sizes == []
    assert ["(size)" in m for m in refusals(security_log)] == [True]


# --- Writes that fail ------------------------------------------------------------------------


@pytest.mark.parametrize("failing", ["write", "utime", "replace"])
def test_failed_update_keeps_the_old_record(
    session_dir: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    key = saved(n=1)
    before = path_of(session_dir, key).read_bytes()
    store = SessionStore(key)
    store["n"] = 2

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, failing, broken)
    with pytest.raises(OSError, match="Input/output"):
        store.save()
    monkeypatch.undo()
    assert path_of(session_dir, key).read_bytes() == before
    assert temp_files(session_dir) == []
    assert dict(SessionStore(key).items()) == {"n": 1}


def test_failed_create_leaves_nothing(session_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved(n=0)  # the tree exists

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "link", broken)
    with pytest.raises(OSError, match="No space"):
        saved(n=1)
    monkeypatch.undo()
    assert len([p for p in tree(session_dir) if p.is_file()]) == 1


@pytest.mark.parametrize("enabled", [True, False])
def test_fsync_setting(settings: Any, monkeypatch: pytest.MonkeyPatch, enabled: bool) -> None:
    settings.PICKLESESSIONS_FILE_FSYNC = enabled
    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    key = saved(n=1)
    store = SessionStore(key)
    store["n"] = 2
    store.save()
    if enabled:
        # Creating the fan-out directory also syncs the root, then file + directory per save.
        assert synced == ["dir", "file", "dir", "file", "dir"]
    else:
        assert synced == []


# --- Crashes and concurrency, with real processes ------------------------------------------


def child(stack: contextlib.ExitStack, session_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    proc = stack.enter_context(
        subprocess.Popen(
            [sys.executable, "-m", "tests.file_writer_child", args[0], str(session_dir), *args[1:]],
            cwd=REPO,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    )
    stack.callback(proc.kill)  # runs before Popen's own exit waits for it
    return proc


@contextlib.contextmanager
def children() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as stack:
        yield stack


def expect_line(proc: subprocess.Popen[bytes], line: bytes) -> None:
    assert proc.stdout is not None
    got = proc.stdout.readline()
    if got != line:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"child said {got!r}, expected {line!r}; stderr: {err.decode()[-2000:]}")


def test_writer_killed_mid_write_leaves_the_old_record(
    session_dir: Path, monkeypatch: pytest.MonkeyPatch, security_log
) -> None:
    key = saved(**payload(0))
    before = path_of(session_dir, key).read_bytes()
    with children() as stack:
        proc = child(stack, session_dir, "stall", key)
        expect_line(proc, b"stalled\n")  # half of the new record is on disk now
        proc.kill()
        proc.wait()
    temps = temp_files(session_dir)
    assert len(temps) == 1 and 0 < temps[0].stat().st_size < len(before)
    assert path_of(session_dir, key).read_bytes() == before
    assert dict(SessionStore(key).items()) == payload(0)
    SessionStore.clear_expired()
    assert temps[0].exists()  # too young to be sure its writer is gone
    later(monkeypatch, file_backend.TEMP_MAX_AGE + 1)
    SessionStore.clear_expired()
    assert not temps[0].exists() and path_of(session_dir, key).exists()
    assert refusals(security_log) == []


def test_writer_killed_at_any_point_never_tears_a_record(session_dir: Path, security_log) -> None:
    keys = [saved(**payload(0)) for _ in range(3)]
    delays = [0.0, 0.001, 0.003, 0.006, 0.012]
    with children() as stack:
        # Start them all at once (importing Django is the slow part), then run one at a time.
        procs = [child(stack, session_dir, "write", *keys) for _ in delays]
        for proc, delay in zip(procs, delays, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            expect_line(proc, b"writing\n")
            time.sleep(delay)
            proc.kill()
            proc.wait()
            for key in keys:
                assert is_consistent(dict(SessionStore(key).items()))
    assert refusals(security_log) == []
    for path in tree(session_dir):  # only records, their directories, and dead writers' temps
        assert path.is_dir() or len(path.name) == 64 or path.name.startswith(TEMP_PREFIX)


def test_concurrent_writers_never_corrupt_a_record(session_dir: Path, security_log) -> None:
    keys = [saved(**payload(0)) for _ in range(3)]
    with children() as stack:
        procs = [child(stack, session_dir, "hammer", "0.7", str(w), *keys) for w in (1, 2, 3)]
        for proc in procs:
            expect_line(proc, b"ready\n")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        loads = 0
        deadline = time.monotonic() + 0.7
        while time.monotonic() < deadline:
            for key in keys:
                assert is_consistent(dict(SessionStore(key).items()))
                loads += 1
        for proc in procs:
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err.decode()[-2000:]
            assert out.startswith(b"saves ") and int(out.split()[1]) > 0
    assert loads > 0
    assert refusals(security_log) == []
    assert temp_files(session_dir) == []
    for key in keys:
        assert dict(SessionStore(key).items())["writer"] in (1, 2, 3)
