"""Test-only tools an attacker would have: sign arbitrary bytes with the real key.

Nothing like ``sign_raw`` exists in the package: the package never signs bytes that its own
writer did not produce. Tests use it to build records an attacker holding the key could write.
"""

from __future__ import annotations

import contextlib
import pickle
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from unittest import mock

from django_picklesessions import record, unpickler
from django_picklesessions.keys import Keyring, get_keyring


def sign_raw(
    session_key: str | None,
    entries: Mapping[str, bytes],
    *,
    keyring: Keyring | None = None,
    issued_at: int | None = None,
    expires_at: int | None = None,
    version: int = 1,
    compress: bool = False,
) -> bytes:
    """Build a valid record holding exactly ``entries`` (raw pickle bytes per key)."""
    now = int(time.time())
    return record.encode(
        entries,
        sid=record.session_id(session_key),
        issued_at=now if issued_at is None else issued_at,
        expires_at=now + 3600 if expires_at is None else expires_at,
        version=version,
        keyring=keyring or get_keyring(),
        max_record_size=1 << 30,
        max_payload_size=1 << 30,
        compress_min_size=0 if compress else None,
    )


def pickled(**values: Any) -> dict[str, bytes]:
    """Pickle each value with the plain stdlib pickler, as an attacker would."""
    return {key: pickle.dumps(value, 5) for key, value in values.items()}


def engines() -> dict[str, Callable[..., Any]]:
    """The engines' store classes, by name: what the engine-parametrised tests run on."""
    from django_picklesessions.backends import cached_db, db, file, locmem, redis

    return {
        "locmem": locmem.SessionStore,
        "db": db.SessionStore,
        "file": file.SessionStore,
        "redis": redis.SessionStore,
        "cached_db": cached_db.SessionStore,
    }


def new_session(store: Callable[..., Any], **values: object) -> str:
    """Save a new session holding ``values`` with ``store``; return its key."""
    first = store()
    first.update(values)
    first.save()
    key: str = first.session_key
    return key


class UnpickleSpy:
    """Counts the session values decoded, through any of the reader's entry points.

    ``loads`` and ``loads_full`` count each call; ``simple`` counts the values it decoded
    (when it declines, the ``loads_full`` that follows counts).
    """

    def __init__(self, real: dict[str, Callable[[bytes], Any]]) -> None:
        self.calls = 0
        self._real = real

    def loads(self, data: bytes) -> Any:
        self.calls += 1
        return self._real["loads"](data)

    def loads_full(self, data: bytes) -> Any:
        self.calls += 1
        return self._real["loads_full"](data)

    def simple(self, data: bytes) -> Any:
        value = self._real["simple"](data)
        if value is not unpickler.NOT_SIMPLE:
            self.calls += 1
        return value


@contextlib.contextmanager
def counting_decodes() -> Iterator[UnpickleSpy]:
    """Count every session value decoded inside the block (see :class:`UnpickleSpy`)."""
    names = ("loads", "loads_full", "simple")
    spy = UnpickleSpy({name: getattr(unpickler, name) for name in names})
    with contextlib.ExitStack() as stack:
        for name in names:
            stack.enter_context(mock.patch.object(unpickler, name, getattr(spy, name)))
        yield spy
