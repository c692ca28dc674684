"""Fuzz targets for the record reader and the unpickler, and the oracles that judge them.

Used by the atheris runner (``fuzz/run.py``) and replayed by the test suite
(``tests/attacks/test_i_fuzzing.py``): an input is a crash when anything but a refusal
escapes, when an audit event shows code, import, process, network or file activity, or when
the canary fired.
"""

from __future__ import annotations

import contextlib
import hmac
import struct
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import django
from django.conf import settings

# Events a load must never cause.
_FORBIDDEN = (
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "subprocess.",
    "exec",
    "compile",
    "import",
    "socket.",
    "ctypes.",
    "open",
    "pickle.find_class",
    "marshal.",
)
_armed: list[list[str]] = []


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _armed and event.startswith(_FORBIDDEN):
        _armed[-1].append(event)


class Crash(AssertionError):
    """The oracle's verdict: this input broke a guarantee."""


def setup() -> None:
    """Configure Django for fuzzing, unless a test run already did; install the audit hook."""
    if not settings.configured:
        settings.configure(
            SECRET_KEY="fuzzing-only-key-" + "q7Lr8sYc5Hd3Jf6Gb1Qe0RaZt4x9WmKp2Vn" * 2,
            USE_TZ=True,
            INSTALLED_APPS=["django_picklesessions"],
            PICKLESESSIONS_ALLOWED_CLASSES=["tests.cart.Cart", "tests.cart.LineItem"],
        )
        django.setup()
    if _hook not in _installed:
        sys.addaudithook(_hook)
        _installed.append(_hook)
    # Do the first-use imports and cache fills now, outside any watched call.
    from django_picklesessions.allowlist import get_allow_list
    from django_picklesessions.keys import get_keyring

    get_allow_list()
    get_keyring()
    check_value(b"\x80\x05]\x94(K\x01\x8c\x01a\x94e.")


_installed: list[Any] = []


@contextmanager
def _watched() -> Iterator[None]:
    from tests import canary

    events: list[str] = []
    _armed.append(events)
    try:
        yield
    finally:
        _armed.pop()
    fired = list(canary.FIRED)
    canary.reset()
    if events or fired:
        raise Crash(f"audit events {events[:5]}, canary {fired[:3]}")


def _set_strict(strict: bool) -> bool:
    """Switch the unpickling mode without a settings signal (fast); return the old mode."""
    from django_picklesessions.conf import conf

    old = bool(conf._get("STRICT_UNPICKLING"))  # fills the cache, then one value changes
    assert conf._values is not None
    conf._values["STRICT_UNPICKLING"] = strict
    return old


def check_value(data: bytes, modes: tuple[bool, ...] = (False, True)) -> None:
    """Load one session value in each mode (strict or not); only a refusal or a value may
    come out."""
    from django_picklesessions import unpickler
    from django_picklesessions.exceptions import ValueRejected

    old = _set_strict(False)
    try:
        for strict in modes:
            _set_strict(strict)
            with _watched(), contextlib.suppress(ValueRejected):
                unpickler.loads(data)
    finally:
        _set_strict(old)


SESSION_KEY = "fuzz0session0key0abcdefghijklmn"


def check_record(data: bytes) -> None:
    """Read ``data`` as a stored record, then as the payload of a validly signed one.

    The second half is what a key holder can reach: every entry it yields goes through
    the unpickler, as a request reading each key would.
    """
    from django_picklesessions import record
    from django_picklesessions.exceptions import RecordError
    from django_picklesessions.keys import get_keyring

    keyring = get_keyring()
    sid = record.session_id(SESSION_KEY)
    now = int(time.time())
    with _watched(), contextlib.suppress(RecordError):
        record.decode(
            data,
            sid=sid,
            now=now,
            keyring=keyring,
            max_record_size=256 * 1024,
            max_payload_size=1024 * 1024,
        )
    compressed = bool(data[:1]) and data[0] & 1
    key = keyring.current
    body = data[1:]
    header = record.HEADER.pack(
        record.MAGIC, 1, 1 if compressed else 0, key.key_id, now, now + 60, 1, len(body)
    )
    signed = header + body
    forged = signed + hmac.digest(key.mac_key, sid + signed, "sha256")
    with _watched():
        try:
            verified = record.decode(
                forged,
                sid=sid,
                now=now,
                keyring=keyring,
                max_record_size=256 * 1024,
                max_payload_size=1024 * 1024,
            )
        except RecordError:
            return
    for value in verified.entries.values():
        check_value(value)


def payload(entries: dict[str, bytes]) -> bytes:
    """A payload as ``docs/format.md`` lays it out, for seeds."""
    keys = [k.encode() for k in entries]
    table = struct.pack(">I", len(keys))
    for key, value in zip(keys, entries.values(), strict=True):
        table += struct.pack(">HI", len(key), len(value))
    return table + b"".join(keys) + b"".join(entries.values())
