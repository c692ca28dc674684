"""Session engine that keeps each signed record in a file of a dedicated directory.

Set ``SESSION_ENGINE = "django_picklesessions.backends.file"`` and
``PICKLESESSIONS_FILE_PATH`` to a directory used for nothing else (check E006). Files are
named by the SHA-256 of the session key, so no cookie value ever becomes a path, and are
opened without following symlinks: whoever can write to the directory still cannot make the
server read or overwrite another file. POSIX only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
from collections.abc import Iterator

from asgiref.sync import sync_to_async
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.core.exceptions import ImproperlyConfigured

from django_picklesessions import record
from django_picklesessions.backends.base import (
    PickleSessionBase,
    UserLink,
    epoch_now,
    security_logger,
)
from django_picklesessions.conf import conf
from django_picklesessions.exceptions import VersionConflict

# One level of 256 subdirectories named by the address's first two hex digits: 100k sessions
# make ~400 files per directory and 1M ~4k, sizes every filesystem lists and looks up fast. A
# second level would mean walking 65,536 mostly empty directories in clear_expired.
_FANOUT = 2
_ADDRESS_LENGTH = 64
_HEX = frozenset("0123456789abcdef")
# Starts with a dot, so a temp file can never be mistaken for a record (hex names).
TEMP_PREFIX = ".tmp-"
# session.locked() holds an flock on ".lock-<address>": also never a record name.
LOCK_PREFIX = ".lock-"
#: clear_expired removes temp files older than this (seconds): writers that died mid-save.
TEMP_MAX_AGE = 3600

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted in place of a record must not wait for a writer.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# What open() with O_NOFOLLOW says about a symlink: ELOOP (Linux, macOS), EMLINK (FreeBSD).
_SYMLINK_ERRNOS = frozenset({errno.ELOOP, errno.EMLINK})
# ...and about a symlink or a file where a directory (O_DIRECTORY) was expected.
_NOT_A_DIR_ERRNOS = _SYMLINK_ERRNOS | {errno.ENOTDIR}


class UnsafeDirectory(OSError):
    """The session root or a fan-out directory is not ours, or is open to other users."""


def _open_own_dir(path: str, dir_fd: int | None = None) -> int:
    """Open a directory without following a symlink; refuse one that another local user
    owns or can write, list or enter (planted, or the shared temp directory itself)."""
    fd = os.open(path, _DIR_FLAGS, dir_fd=dir_fd)
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        os.close(fd)
        raise UnsafeDirectory(
            errno.ENOTDIR,
            f"session directory not owned by this user with mode 0700 "
            f"(uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o})",
            path,
        )
    return fd


def _refuse(address: str, reason: str) -> None:
    security_logger.warning("Session file refused (%s) for session %s…", reason, address[:8])


def _refusal(st: os.stat_result, limit: int) -> str | None:
    """Return why an opened file cannot be a record this process wrote, or None."""
    if not stat.S_ISREG(st.st_mode):
        return "not_regular"
    if st.st_uid != os.geteuid():
        return "owner"
    # Above 1 only: a record replaced or deleted after we opened it has 0, and is still the
    # complete old version.
    if st.st_nlink > 1:
        return "links"
    if st.st_mode & 0o077:
        return "mode"
    if st.st_size > limit:
        return "size"
    return None


def _read_at_most(fd: int, limit: int) -> bytes:
    """Read until end of file or ``limit`` bytes, whichever comes first."""
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _is_record(dir_fd: int, name: str) -> bool:
    """Return True if ``name`` is a regular file, not following a symlink."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(st.st_mode)


def _stored_version(dir_fd: int, name: str) -> int | None:
    """Return the version in the header of record ``name``: None if there is no record, -1
    if its header is unreadable (never equal to an expected version)."""
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError:
        return None  # a symlink or socket planted there is no record of ours
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        header = os.read(fd, record.HEADER.size)
    finally:
        os.close(fd)
    if record.peek_expiry(header) is None or len(header) < record.HEADER.size:
        return -1
    return record.version_of(header)


def _open_lock(dir_fd: int, name: str) -> int | None:
    """Open and flock (without waiting) the lock file ``name``; None if someone holds it."""
    while True:
        fd = os.open(
            name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        # Cleanup may have unlinked the file between our open and flock: a lock on an
        # unlinked file excludes nobody, so start over with the file now at that name.
        held = os.fstat(fd)
        try:
            current = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            current = None
        if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
            return fd
        os.close(fd)


def _remove_unused_lock(dir_fd: int, name: str) -> None:
    """Delete a lock file nobody holds whose session is gone (cleanup)."""
    if _is_record(dir_fd, name[len(LOCK_PREFIX) :]):
        return
    fd = _open_lock(dir_fd, name)
    if fd is None:
        return  # held right now
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked(dir_fd: int) -> Iterator[None]:
    """Hold the subdirectory's lock: updates, deletes and cleanup exclude each other."""
    fcntl.flock(dir_fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(dir_fd, fcntl.LOCK_UN)


class SessionStore(PickleSessionBase):
    """Keep each session's signed record in a file named by its address."""

    @staticmethod
    def _root() -> str:
        path = conf.FILE_PATH
        root = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
        if not isinstance(root, str):
            raise ImproperlyConfigured(
                "The file session engine needs PICKLESESSIONS_FILE_PATH: the path (str or "
                "Path) of a directory used only for sessions, outside the temp directory."
            )
        return root

    @classmethod
    def _open_subdir(cls, address: str, create: bool) -> int:
        """Open the fan-out directory of ``address``: never through a symlink, and only if
        it and the root are this process's own and closed to other users."""
        # The base always passes a SHA-256 hex digest; refusing anything else keeps every
        # other string, whatever a subclass or a bug hands in, from becoming a path.
        if len(address) != _ADDRESS_LENGTH or not _HEX.issuperset(address):
            raise ValueError("A session address must be 64 lowercase hex digits.")
        root = cls._root()
        try:
            root_fd = _open_own_dir(root)
        except FileNotFoundError:
            if not create:
                raise
            os.makedirs(root, mode=0o700, exist_ok=True)
            root_fd = _open_own_dir(root)
        try:
            try:
                return _open_own_dir(address[:_FANOUT], root_fd)
            except FileNotFoundError:
                if not create:
                    raise
            with contextlib.suppress(FileExistsError):  # another worker made it meanwhile
                os.mkdir(address[:_FANOUT], 0o700, dir_fd=root_fd)
                if conf.FILE_FSYNC:
                    os.fsync(root_fd)
            return _open_own_dir(address[:_FANOUT], root_fd)
        finally:
            os.close(root_fd)

    @classmethod
    def _open_subdir_or_none(cls, address: str, log: bool) -> int | None:
        try:
            return cls._open_subdir(address, create=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            # A symlink or a file planted in place of the fan-out directory.
            if exc.errno not in _NOT_A_DIR_ERRNOS:
                raise
            if log:
                _refuse(address, "directory")
            return None

    # --- Storage primitives --------------------------------------------------------------

    def _read(self, address: str) -> bytes | None:
        dir_fd = self._open_subdir_or_none(address, log=True)
        if dir_fd is None:
            return None
        try:
            fd = os.open(address, _READ_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in _SYMLINK_ERRNOS:
                _refuse(address, "symlink")
            elif exc.errno == errno.ENXIO:  # a socket
                _refuse(address, "not_regular")
            elif exc.errno in (errno.EACCES, errno.EPERM):
                _refuse(address, "permissions")
            else:
                raise
            return None
        finally:
            os.close(dir_fd)
        try:
            limit = conf.MAX_RECORD_SIZE
            st = os.fstat(fd)
            reason = _refusal(st, limit)
            if reason is not None:
                _refuse(address, reason)
                return None
            if st.st_mtime <= epoch_now():
                return None  # expired: mtime equals the signed expiry, no need to read
            data = _read_at_most(fd, limit + 1)
            if len(data) > limit:  # grew since fstat
                _refuse(address, "size")
                return None
            return data
        finally:
            os.close(fd)

    def _write(
        self,
        address: str,
        data: bytes,
        expires_at: int,
        must_create: bool,
        expected: int | None,
        user: UserLink = False,  # no user link here (logout_user is not supported)
    ) -> None:
        dir_fd = self._open_subdir(address, create=True)
        try:
            temp = self._write_temp(dir_fd, data, expires_at)
            try:
                if must_create:
                    # link() fails if the name exists, whoever created it: an atomic create.
                    try:
                        os.link(
                            temp,
                            address,
                            src_dir_fd=dir_fd,
                            dst_dir_fd=dir_fd,
                            follow_symlinks=False,
                        )
                    except FileExistsError:
                        raise CreateError from None
                    os.unlink(temp, dir_fd=dir_fd)
                else:
                    # Under the lock no delete or other save can land between the check and
                    # the rename: a deleted session is never brought back, and only the
                    # version this request loaded is replaced (compare-and-swap).
                    with _locked(dir_fd):
                        current = _stored_version(dir_fd, address)
                        if current is None:
                            raise UpdateError
                        if expected is not None and current != expected:
                            raise VersionConflict
                        os.replace(temp, address, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp, dir_fd=dir_fd)
                raise
            if conf.FILE_FSYNC:
                os.fsync(dir_fd)  # makes the new name itself durable
        finally:
            os.close(dir_fd)

    @staticmethod
    def _write_temp(dir_fd: int, data: bytes, expires_at: int) -> str:
        """Write ``data`` to a new 0600 temp file beside the record; return its name."""
        name = TEMP_PREFIX + secrets.token_hex(8)
        fd = os.open(name, _TEMP_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                # mtime = signed expiry, so cleanup decides from metadata alone.
                os.utime(fd, ns=(expires_at * 10**9, expires_at * 10**9))
                if conf.FILE_FSYNC:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)
            raise
        return name

    def _remove(self, address: str) -> None:
        dir_fd = self._open_subdir_or_none(address, log=False)
        if dir_fd is None:
            return
        try:
            with _locked(dir_fd), contextlib.suppress(FileNotFoundError):
                os.unlink(address, dir_fd=dir_fd)  # a symlink itself, never its target
        finally:
            os.close(dir_fd)

    def _contains(self, address: str) -> bool:
        dir_fd = self._open_subdir_or_none(address, log=False)
        if dir_fd is None:
            return False
        try:
            return _is_record(dir_fd, address)
        finally:
            os.close(dir_fd)

    # --- Scoped lock: an flock, released by close() or by the process's end -------------

    def _try_lock(self, address: str, token: str, lease: float) -> bool:
        dir_fd = self._open_subdir(address, create=True)
        try:
            fd = _open_lock(dir_fd, LOCK_PREFIX + address)
        finally:
            os.close(dir_fd)
        if fd is None:
            return False
        self.__dict__.setdefault("_lock_fds", {})[token] = fd
        return True

    def _unlock(self, address: str, token: str) -> None:
        fd = self.__dict__.get("_lock_fds", {}).pop(token, None)
        if fd is not None:
            os.close(fd)  # releases the flock

    # --- Cleanup -------------------------------------------------------------------------

    @classmethod
    def clear_expired(cls) -> None:
        """Delete expired records and stale temp files, streaming the tree.

        Decides from file metadata alone: nothing is read, nothing unpickled, no directory
        listing is held in memory.
        """
        now = epoch_now()
        try:
            root_fd = os.open(cls._root(), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            with os.scandir(root_fd) as entries:
                for entry in entries:
                    name = entry.name
                    if len(name) != _FANOUT or not _HEX.issuperset(name):
                        continue
                    try:
                        dir_fd = os.open(name, _DIR_FLAGS, dir_fd=root_fd)
                    except OSError:
                        continue  # gone meanwhile, or a symlink/file: not ours to walk
                    try:
                        cls._clear_subdir(dir_fd, name, now)
                    finally:
                        os.close(dir_fd)
        finally:
            os.close(root_fd)

    @classmethod
    async def aclear_expired(cls) -> None:
        await sync_to_async(cls.clear_expired)()

    @staticmethod
    def _clear_subdir(dir_fd: int, prefix: str, now: int) -> None:
        # Locked for the whole directory, before the listing: each stat below is then what
        # the unlink removes, since no save can replace a file in between.
        with _locked(dir_fd), os.scandir(dir_fd) as entries:
            for entry in entries:
                name = entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue  # symlinks, directories, sockets: never ours to remove
                if name.startswith(LOCK_PREFIX):
                    _remove_unused_lock(dir_fd, name)
                    continue
                if name.startswith(TEMP_PREFIX):
                    # Temp files carry the record's expiry as mtime; ctime is when the
                    # writer last touched them.
                    expired = st.st_ctime <= now - TEMP_MAX_AGE
                else:
                    # mtime is the signed expiry, and a file past it never loads (_read
                    # stops there), so its header need not be read: if someone moved the
                    # mtime back, the session had already ended.
                    expired = (
                        st.st_mtime <= now
                        and len(name) == _ADDRESS_LENGTH
                        and name.startswith(prefix)
                        and _HEX.issuperset(name)
                    )
                if expired:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=dir_fd)
