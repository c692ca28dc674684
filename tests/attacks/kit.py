"""An attacker's toolkit: pickle opcodes by hand, records planted straight into storage.

Payloads are assembled opcode by opcode, the way an attacker writes them, never by pickling
a gadget object (that would run our own pickler's checks on the attacker's behalf).
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings

from django_picklesessions.backends import locmem
from django_picklesessions.backends.base import PickleSessionBase
from tests.attacks.audit import AuditGuard

# --- Opcodes ---------------------------------------------------------------------------------

PROTO5 = b"\x80\x05"
STOP = b"."
MARK = b"("
TUPLE = b"t"
TUPLE1 = b"\x85"
TUPLE2 = b"\x86"
EMPTY_TUPLE = b")"
EMPTY_LIST = b"]"
EMPTY_DICT = b"}"
APPEND = b"a"
APPENDS = b"e"
SETITEM = b"s"
REDUCE = b"R"
NEWOBJ = b"\x81"
BUILD = b"b"
MEMOIZE = b"\x94"
STACK_GLOBAL = b"\x93"
NONE = b"N"


def text(value: str) -> bytes:
    """``SHORT_BINUNICODE`` or ``BINUNICODE`` of ``value``."""
    raw = value.encode("utf-8", "surrogatepass")
    if len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw
    return b"X" + struct.pack("<I", len(raw)) + raw


def integer(value: int) -> bytes:
    """``LONG1`` of ``value`` (any size up to 255 bytes)."""
    raw = value.to_bytes((value.bit_length() + 8) // 8 or 1, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def binget(index: int) -> bytes:
    """``BINGET`` or ``LONG_BINGET`` of a memo entry."""
    return b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index)


def global_(module: str, name: str) -> bytes:
    """Push ``module.name`` the protocol-4+ way: two strings and ``STACK_GLOBAL``."""
    return text(module) + text(name) + STACK_GLOBAL


def call(func: bytes, *args: bytes) -> bytes:
    """Call what ``func`` pushes with the values ``args`` push (``REDUCE``)."""
    return func + MARK + b"".join(args) + TUPLE + REDUCE


def p5(*body: bytes) -> bytes:
    """A complete protocol-5 pickle: ``PROTO 5``, the body, ``STOP``."""
    return PROTO5 + b"".join(body) + STOP


#: The canonical gadget, aimed at the canary instead of a shell.
CANARY_GADGET = p5(call(global_("tests.canary", "fire"), text("gadget")))
#: The same with ``os.system('true')``: harmless if it ran, and the audit hook sees it.
OS_SYSTEM_GADGET = p5(call(global_("os", "system"), text("true")))
#: The CPython docs' protocol-0 example.
PROTOCOL0_GADGET = b"cos\nsystem\n(S'true'\ntR."


# --- Storage, written directly as an attacker with write access would -------------------------


def store_class(engine: str) -> type[PickleSessionBase]:
    """The ``SessionStore`` of an engine by its short name."""
    if engine == "locmem":
        return locmem.SessionStore
    if engine == "file":
        from django_picklesessions.backends.file import SessionStore as FileStore

        return FileStore
    if engine == "redis":
        from django_picklesessions.backends.redis import SessionStore as RedisStore

        return RedisStore
    if engine == "cached_db":
        from django_picklesessions.backends.cached_db import SessionStore as CachedDbStore

        return CachedDbStore
    from django_picklesessions.backends.db import SessionStore as DbStore

    return DbStore


def plant(engine: str, session_key: str, data: bytes, *, expires_at: int | None = None) -> None:
    """Put ``data`` where ``engine`` keeps the record of ``session_key``, bypassing the store."""
    address = PickleSessionBase.address(session_key)
    expires = int(time.time()) + 3600 if expires_at is None else expires_at
    if engine == "locmem":
        locmem._records[address] = (data, expires)
    elif engine == "file":
        root = str(settings.PICKLESESSIONS_FILE_PATH)
        directory = os.path.join(root, address[:2])
        # Both 0700, as the engine makes them (makedirs gives parents the umask's mode).
        for path in (root, directory):
            os.makedirs(path, mode=0o700, exist_ok=True)
        path = os.path.join(directory, address)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.utime(path, (expires, expires))
    elif engine == "redis":
        from django_picklesessions.backends import redis

        redis.sync_client().set(redis.SessionStore.record_key(address), data, exat=expires)
    else:
        from django_picklesessions.models import Session

        if engine == "cached_db":
            # The row is the attack; no cached copy of an older record may hide it.
            from django_picklesessions.backends.cached_db import SessionStore as CachedDbStore

            CachedDbStore()._forget(address)

        Session.objects.update_or_create(
            address=address, defaults={"record": data, "expires_at": expires, "version": 1}
        )


def stored(engine: str, session_key: str) -> bytes | None:
    """Read the raw record of ``session_key`` straight from storage."""
    address = PickleSessionBase.address(session_key)
    if engine == "locmem":
        item = locmem._records.get(address)
        return None if item is None else item[0]
    if engine == "file":
        path = os.path.join(str(settings.PICKLESESSIONS_FILE_PATH), address[:2], address)
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
    if engine == "redis":
        from django_picklesessions.backends import redis

        value: bytes | None = redis.sync_client().get(redis.SessionStore.record_key(address))
        return value
    from django_picklesessions.models import Session

    row = Session.objects.filter(address=address).values_list("record", flat=True).first()
    return None if row is None else bytes(row)


def saved(engine: str, **values: Any) -> str:
    """Create a session through the engine; return its key."""
    store = store_class(engine)()
    store.update(values)
    store.save()
    assert store.session_key
    return store.session_key


# --- Verdicts ----------------------------------------------------------------------------------


@contextmanager
def watched(guard: AuditGuard) -> Iterator[AuditGuard]:
    """Record audit events for the block, then require that none was seen."""
    with guard:
        yield guard
    guard.assert_clean()


def load_under(guard: AuditGuard, engine: str, session_key: str) -> tuple[dict[str, Any], Any]:
    """Load every value of a session while the guard watches; return it and the store."""
    store = store_class(engine)(session_key)
    with watched(guard):
        values = dict(store.items())
    return values, store


def assert_record_rejected(
    guard: AuditGuard,
    engine: str,
    session_key: str,
    security_log: Callable[[], list[Any]],
    reason: str | None,
    unpickle_spy: Any,
) -> None:
    """REJECT: empty session, key not adopted, one security line, nothing unpickled, no event."""
    before = len(security_log())
    calls = unpickle_spy.calls
    values, store = load_under(guard, engine, session_key)
    assert values == {}
    assert store.session_key is None  # never adopted: a save issues a new key
    lines = [r.getMessage() for r in security_log()[before:]]
    assert len(lines) == 1, lines
    if reason is not None:
        assert f"({reason})" in lines[0], lines
    assert unpickle_spy.calls == calls


VICTIM = "victim0session0key0abcdefghijkl"


def plant_value(raw: bytes, session_key: str = VICTIM) -> None:
    """Sign, with the real key, a session holding a login and ``raw`` under "evil"."""
    from tests.helpers import sign_raw

    plant("locmem", session_key, sign_raw(session_key, {"_auth_user_id": USER, "evil": raw}))


#: ``pickle.dumps("1", 5)``: the login the gadget sits beside.
USER = b"\x80\x05\x95\x05\x00\x00\x00\x00\x00\x00\x00\x8c\x011\x94."


def value_outcome(guard: AuditGuard, raw: bytes) -> dict[str, Any]:
    """Plant ``raw`` beside a login, load the session under the guard; return its contents.

    The login must survive whatever happens to the planted value.
    """
    plant_value(raw)
    values, store = load_under(guard, "locmem", VICTIM)
    assert values.get("_auth_user_id") == "1"
    assert store.session_key == VICTIM
    return values


def assert_value_rejected(guard: AuditGuard, raw: bytes) -> None:
    """The planted value is dropped, the rest of the session kept, and nothing ran."""
    assert value_outcome(guard, raw) == {"_auth_user_id": "1"}


def sign_payload(session_key: str, payload: bytes) -> bytes:
    """A record around a hand-made payload (any bytes), MAC'd with the real key."""
    from django_picklesessions import record
    from django_picklesessions.keys import get_keyring

    key = get_keyring().current
    header = record.HEADER.pack(record.MAGIC, 1, 0, key.key_id, 0, 2**40, 1, len(payload))
    signed = header + payload
    sid = record.session_id(session_key)
    return signed + record.hmac.digest(key.mac_key, sid + signed, "sha256")
