"""Group C: resource exhaustion. Cases the C unpickler cannot bound run in strict mode."""
# ruff: noqa: N802  (test names carry the catalogue's case ids, which are upper case)

from __future__ import annotations

import os
import pickle
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from django_picklesessions import record, unpickler
from django_picklesessions.exceptions import ValueRejected
from django_picklesessions.keys import get_keyring
from tests.attacks.audit import AuditGuard
from tests.attacks.kit import (
    VICTIM,
    assert_record_rejected,
    assert_value_rejected,
    binget,
    call,
    global_,
    integer,
    load_under,
    plant,
    saved,
    store_class,
    text,
    value_outcome,
)
from tests.helpers import sign_raw

MiB = 1 << 20


@contextmanager
def measured(memory: bool = True) -> Iterator[dict[str, float]]:
    """Measure the wall time (seconds) of a block and, unless told not to, its traced memory
    peak (bytes); tracing slows allocations, so time limits are checked without it."""
    result: dict[str, float] = {}
    if memory:
        tracemalloc.start()
    started = time.perf_counter()
    try:
        yield result
    finally:
        result["seconds"] = time.perf_counter() - started
        if memory:
            result["peak"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()


def test_C1_oversized_blob(
    engine: str,
    request: pytest.FixtureRequest,
    audit: AuditGuard,
    security_log: Any,
    unpickle_spy: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limit = 256 * 1024  # PICKLESESSIONS_MAX_RECORD_SIZE's default
    # MariaDB's default max_allowed_packet (16 MiB, an escaped INSERT) caps a row here.
    in_sql = engine in ("db", "cached_db")
    sizes = [limit + 1, 4 * MiB if in_sql else 100 * MiB]
    macs: list[object] = []
    real_digest = record.hmac.digest
    get_keyring()  # derive the keys now (also HMACs): only record MACs are counted below
    monkeypatch.setattr(record.hmac, "digest", lambda *a: macs.append(a) or real_digest(*a))
    for size in sizes:
        if engine == "file":
            plant(engine, VICTIM, b"")
            address = store_class(engine).address(VICTIM)
            path = os.path.join(str(request.getfixturevalue("settings").PICKLESESSIONS_FILE_PATH))
            path = os.path.join(path, address[:2], address)
            os.truncate(path, size)  # sparse: no cost to make
            os.utime(path, (time.time() + 3600,) * 2)
        else:
            plant(engine, VICTIM, b"A" * size)  # zeros would double in an escaped INSERT
        with measured() as cost:
            assert_record_rejected(audit, engine, VICTIM, security_log, None, unpickle_spy)
        assert "(size)" in security_log()[-1].getMessage()
        assert cost["peak"] < 2 * limit, (size, cost)
    assert macs == []


MEMO_BOMBS = {
    "LONG_BINPUT": b"\x80\x05]r\xff\xff\xff\x0f.",
    "BINPUT": b"\x80\x05]q\xff.",
    "PUT": b"\x80\x05]p100000000\n.",
    "LONG_BINGET-missing": b"\x80\x05j\xff\xff\xff\x0f.",
    "BINGET-missing": b"\x80\x05]\x94h\x05.",
}


@pytest.mark.parametrize("bomb", sorted(MEMO_BOMBS))
def test_C2_memo_index_bomb(bomb: str, strict_only: None, audit: AuditGuard) -> None:
    with measured() as cost:
        assert_value_rejected(audit, MEMO_BOMBS[bomb])
    assert cost["peak"] < 16 * MiB


def test_C2_default_mode_memo_grows_with_the_index(settings: Any) -> None:
    # Why C2 needs strict mode: the C unpickler sizes its memo by the largest index it is
    # given (8 bytes a slot, on every CPython 3.10-3.13 tried). 2**20 here; 2**28 is 4 GiB.
    settings.PICKLESESSIONS_STRICT_UNPICKLING = False
    with measured() as cost:
        assert unpickler.loads(b"\x80\x05]r\xff\xff\x0f\x00.") == []
    assert cost["peak"] > 8 * MiB
    with pytest.raises(ValueRejected):
        unpickler.loads(MEMO_BOMBS["LONG_BINGET-missing"])


def _length_lie(opcode: bytes, width: int, declared: int) -> bytes:
    return b"\x80\x05" + opcode + declared.to_bytes(width, "little") + b"abcd."


LENGTH_LIES = {
    "BINBYTES8-2**63": _length_lie(b"\x8e", 8, 2**63 - 1),
    "BINBYTES8-2**33": _length_lie(b"\x8e", 8, 2**33),
    "BINUNICODE8-2**63": _length_lie(b"\x8d", 8, 2**63 - 1),
    "BYTEARRAY8-2**63": _length_lie(b"\x96", 8, 2**63 - 1),
    "BYTEARRAY8-2**33": _length_lie(b"\x96", 8, 2**33),
    "BINUNICODE-0xffffffff": _length_lie(b"X", 4, 0xFFFFFFFF),
    "BINBYTES-0xffffffff": _length_lie(b"B", 4, 0xFFFFFFFF),
    "LONG4-2**31": _length_lie(b"\x8b", 4, 2**31 - 1),
    "SHORT_BINUNICODE-255": _length_lie(b"\x8c", 1, 255),
}


@pytest.mark.parametrize("lie", sorted(LENGTH_LIES))
def test_C3_declared_length_lies(lie: str, strict_only: None, audit: AuditGuard) -> None:
    with measured() as cost:
        assert_value_rejected(audit, LENGTH_LIES[lie])
    assert cost["peak"] < MiB


def _nested_appends(depth: int) -> bytes:
    return b"\x80\x05" + b"]" * depth + b"a" * (depth - 1) + b"."


def _nested_marks(depth: int) -> bytes:
    return b"\x80\x05" + b"](" * depth + b"]" + b"e" * depth + b"."


def _nested_tuples(depth: int) -> bytes:
    return b"\x80\x05" + b")" + b"\x85" * depth + b"."


@pytest.mark.parametrize(
    "build", [_nested_appends, _nested_marks, _nested_tuples], ids=["APPEND", "MARK", "TUPLE1"]
)
def test_C4_deep_nesting(
    build: Callable[[int], bytes], strict_only: None, audit: AuditGuard
) -> None:
    raw = build(100_000)
    data = sign_raw(VICTIM, {"_auth_user_id": pickle.dumps("1", 5), "evil": raw}, compress=True)
    assert len(data) < 256 * 1024
    plant("locmem", VICTIM, data)
    values, _ = load_under(audit, "locmem", VICTIM)
    assert values == {"_auth_user_id": "1"}
    # Refused by the simulation (at level 101, or at its opcode bound), before the C
    # unpickler builds anything.
    with pytest.raises(ValueRejected, match="nesting depth|opcodes"):
        unpickler.loads(raw)


def _laughs(levels: int) -> bytes:
    """``x = []; x = [x, x]`` ``levels`` times: about 2**levels logical nodes, ~9 bytes each."""
    body = b"]\x94"
    for level in range(levels):
        body += b"0](" + binget(level) + binget(level) + b"e\x94"
    return b"\x80\x05" + body + b"."


def test_C5_shared_reference_expansion(strict: bool, audit: AuditGuard) -> None:
    raw = _laughs(40)
    values = value_outcome(audit, raw)
    if strict:
        # 2**40 nodes to walk (hash, ==, repr): over MAX_STRICT_EXPANDED, refused unbuilt.
        assert "evil" not in values
        with pytest.raises(ValueRejected, match="expanded size"):
            unpickler.loads(raw)
        assert unpickler.loads(_laughs(18)) is not None  # 2**19 references: within the bound
        return
    value = values["evil"]
    assert value[0] is value[1]  # shared by identity: 41 lists, not 2**40
    # Saving again pickles each list once (the pickler's memo): no explosion.
    store = store_class("locmem")(VICTIM)
    store["evil"] = store["evil"]
    store.save()
    assert len(pickle.dumps(store["evil"], 5)) < 1000


def _huge_int() -> bytes:
    return b"\x80\x05\x8b" + struct.pack("<i", MiB // 2) + b"\xff" * (MiB // 2) + b"."


HUGE = {
    "int-4-Mbit": _huge_int(),
    "decimal-exponent": b"\x80\x05"
    + call(global_("decimal", "Decimal"), text("9e999999999"))
    + b".",
    "decimal-digits": b"\x80\x05" + call(global_("decimal", "Decimal"), text("9" * 500_000)) + b".",
    "int-long1": b"\x80\x05" + integer(-(2**2030)) + b".",
}


@pytest.mark.parametrize("case", sorted(HUGE))
def test_C6_huge_int_and_decimal(case: str, strict: bool, audit: AuditGuard) -> None:
    raw = HUGE[case]
    data = sign_raw(VICTIM, {"_auth_user_id": pickle.dumps("1", 5), "evil": raw}, compress=True)
    plant("locmem", VICTIM, data)
    values, _ = load_under(audit, "locmem", VICTIM)
    if case == "int-long1":
        assert values["evil"] == -(2**2030)  # LONG1 tops out at 255 bytes: always fine
    elif strict:
        assert values == {"_auth_user_id": "1"}
    else:
        # Documented limit of default mode: these load, as an int or Decimal.
        assert type(values["evil"]).__name__ in ("int", "Decimal")


M61 = (1 << 61) - 1  # int hashes are taken modulo this prime, so k * M61 all hash to 0


def _colliding(count: int) -> list[bytes]:
    return [integer(k * M61) for k in range(1, count + 1)]


COLLISIONS = {
    "dict-SETITEMS": b"}(" + b"".join(key + b"N" for key in _colliding(5000)) + b"u",
    "dict-SETITEM": b"}" + b"".join(key + b"Ns" for key in _colliding(5000)),
    "set-ADDITEMS": b"\x8f(" + b"".join(_colliding(5000)) + b"\x90",
    "frozenset": b"(" + b"".join(_colliding(5000)) + b"\x91",
    "tuple-keys": b"}(" + b"".join(key + b"K\x01\x86N" for key in _colliding(5000)) + b"u",
}


@pytest.mark.parametrize("case", sorted(COLLISIONS))
def test_C7_hash_collision_dict(case: str, strict_only: None, audit: AuditGuard) -> None:
    raw = b"\x80\x05" + COLLISIONS[case] + b"."
    assert_value_rejected(audit, raw)
    # Refused at the ninth key with one hash: at most 8 collisions were ever inserted.
    with pytest.raises(ValueRejected, match="hash collisions|keys without a computable hash"):
        unpickler.loads(raw)


def test_C7_distinct_int_keys_still_load(strict_only: None, audit: AuditGuard) -> None:
    value = dict.fromkeys(range(5000))
    assert value_outcome(audit, pickle.dumps(value, 5))["evil"] == value


def test_C8_decompression_bomb(
    audit: AuditGuard, security_log: Any, unpickle_spy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 1024 * 1024  # PICKLESESSIONS_MAX_PAYLOAD_SIZE's default
    bomb = sign_raw(VICTIM, {"z": pickle.dumps(bytes(16 * MiB), 5)}, compress=True)
    assert len(bomb) < 256 * 1024
    plant("locmem", VICTIM, bomb)
    with measured() as cost:
        assert_record_rejected(audit, "locmem", VICTIM, security_log, "size", unpickle_spy)
    # zlib fills blocks up to the cap, then joins them: twice the cap at the peak.
    assert cost["peak"] <= 2 * limit + 3 * len(bomb) + 64 * 1024  # + copies for the MAC
    # Compressed bytes without a valid MAC are never inflated.
    inflations: list[int] = []
    real = record.zlib.decompressobj
    monkeypatch.setattr(record.zlib, "decompressobj", lambda: inflations.append(1) or real())
    forged = bomb[: -record.MAC_SIZE] + bytes(32)
    for data in (zlib.compress(bytes(16 * MiB)), forged):
        plant("locmem", VICTIM, data)
        assert_record_rejected(audit, "locmem", VICTIM, security_log, None, unpickle_spy)
    assert inflations == []


def test_C8_small_record_cannot_inflate(settings: Any, audit: AuditGuard) -> None:
    # The limit is the setting's, not the default: a tighter setting is honoured.
    settings.PICKLESESSIONS_MAX_PAYLOAD_SIZE = 4096
    key = saved("locmem", n=1)
    plant("locmem", key, sign_raw(key, {"z": pickle.dumps(bytes(10_000), 5)}, compress=True))
    values, _ = load_under(audit, "locmem", key)
    assert values == {}
