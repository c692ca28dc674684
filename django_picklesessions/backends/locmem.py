"""Process-local session engine, for tests and demos.

Records live in a dictionary of this process: they are lost on restart and not shared
between workers. Use the ``db`` or ``file`` engine for anything else.
"""

from __future__ import annotations

import threading
import time

from django.contrib.sessions.backends.base import CreateError, UpdateError

from django_picklesessions import record
from django_picklesessions.backends.base import PickleSessionBase, UserLink
from django_picklesessions.exceptions import VersionConflict

# address -> (record, expires-at); the lock makes create/update checks atomic.
_records: dict[str, tuple[bytes, int]] = {}
_lock = threading.Lock()
# address -> (token, lease end on time.monotonic()): the sessions' scoped locks.
_session_locks: dict[str, tuple[str, float]] = {}


class SessionStore(PickleSessionBase):
    """Keep signed records in this process's memory."""

    def _read(self, address: str) -> bytes | None:
        item = _records.get(address)
        if item is None or item[1] <= time.time():
            return None
        return item[0]

    def _write(
        self,
        address: str,
        data: bytes,
        expires_at: int,
        must_create: bool,
        expected: int | None,
        user: UserLink = False,  # no user link here (logout_user is not supported)
    ) -> None:
        with _lock:
            current = _records.get(address)
            if must_create and current is not None:
                raise CreateError
            if not must_create:
                if current is None:
                    raise UpdateError
                if expected is not None and record.version_of(current[0]) != expected:
                    raise VersionConflict
            _records[address] = (data, expires_at)

    def _remove(self, address: str) -> None:
        _records.pop(address, None)

    def _contains(self, address: str) -> bool:
        return address in _records

    def _try_lock(self, address: str, token: str, lease: float) -> bool:
        now = time.monotonic()
        with _lock:
            holder = _session_locks.get(address)
            if holder is not None and holder[1] > now:
                return False
            _session_locks[address] = (token, now + lease)
            return True

    def _unlock(self, address: str, token: str) -> None:
        with _lock:
            holder = _session_locks.get(address)
            if holder is not None and holder[0] == token:
                del _session_locks[address]

    @classmethod
    def clear_expired(cls) -> None:
        now = time.time()
        with _lock:
            for address in [a for a, (_, expires_at) in _records.items() if expires_at <= now]:
                del _records[address]
