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
    """Counts the session values decoded inside :func:`counting_decodes`."""

    def __init__(self) -> None:
        self.calls = 0


@contextlib.contextmanager
def counting_decodes() -> Iterator[UnpickleSpy]:
    """Count every session value decoded inside the block, whichever entry point decodes it.

    Every decode goes through ``simple`` (counted when it decodes a scalar) or ``loads_full``
    (counted per call); ``loads`` is the two in turn, so it is not patched itself.
    """
    spy = UnpickleSpy()
    real_simple, real_full = unpickler.simple, unpickler.loads_full

    def simple(data: bytes) -> Any:
        value = real_simple(data)
        spy.calls += value is not unpickler.NOT_SIMPLE
        return value

    def loads_full(data: bytes) -> Any:
        spy.calls += 1
        return real_full(data)

    with mock.patch.multiple(unpickler, simple=simple, loads_full=loads_full):
        yield spy
