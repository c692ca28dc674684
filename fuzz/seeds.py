"""Seed inputs for the fuzzers: values our writer produces, and the catalogue's attacks."""

from __future__ import annotations

import datetime
import decimal
import pickle
import uuid
from pathlib import Path

from fuzz.targets import payload

#: Crashes found by fuzzing, kept as regression inputs (one file per input).
CRASH_CORPUS = Path(__file__).resolve().parent.parent / "tests" / "attacks" / "corpus"


def _legitimate() -> list[bytes]:
    from tests.cart import Cart, LineItem

    when = datetime.datetime(2026, 1, 1, 12, tzinfo=datetime.timezone.utc)
    values: list[object] = [
        "42",
        7,
        None,
        True,
        [1, "two", 3.0, b"four", bytearray(b"5")],
        {"nested": {"dict": (1, 2)}, "set": {1, 2}, "frozen": frozenset({"a"})},
        decimal.Decimal("19.99"),
        when,
        when.date(),
        datetime.timedelta(days=2),
        uuid.UUID(int=12345),
        Cart(items=[LineItem(1, "Tea", decimal.Decimal("4.50"), 2, when)], coupons={"X"}),
        2**200,
    ]
    shared = [1, 2]
    values.append({"a": shared, "b": shared})
    return [pickle.dumps(value, 5) for value in values]


def _attacks() -> list[bytes]:
    def text(value: str) -> bytes:
        raw = value.encode()
        return b"\x8c" + bytes([len(raw)]) + raw

    def gadget(module: str, name: str) -> bytes:
        return b"\x80\x05" + text(module) + text(name) + b"\x93(" + text("x") + b"tR."

    return [
        gadget("tests.canary", "fire"),
        gadget("os", "system"),
        gadget("builtins", "eval"),
        gadget("datetime", "__builtins__.get"),
        b"\x80\x05cos\nsystem\n(S'true'\ntR.",
        b"\x80\x05\x82\xf0)R.",
        b"\x80\x05\x8c\x03fooQ.",
        b"\x80\x05\x97.",
        b"\x80\x05]r\xff\xff\x0f\x00.",
        b"\x80\x05\x8e\x00\x00\x00\x00\x01\x00\x00\x00abcd.",
        b"\x80\x05" + b"]" * 200 + b"a" * 199 + b".",
        b"\x80\x05]\x940](h\x00h\x00e\x94.",
        b"\x80\x05\x95\x04\x00\x00\x00\x00\x00\x00\x00K\x01.",
        b"\x80\x05\x8c\x04uuid\x8c\x04UUID\x93)\x81}\x8c\x03int\x8c\x01xsb.",
    ]


def value_seeds() -> list[bytes]:
    """Seeds for the unpickler target."""
    crashes = sorted(CRASH_CORPUS.glob("value-*")) if CRASH_CORPUS.exists() else []
    return _legitimate() + _attacks() + [path.read_bytes() for path in crashes]


def record_seeds() -> list[bytes]:
    """Seeds for the record target: a flag byte, then a payload of per-key pickles."""
    values = _legitimate() + _attacks()
    seeds = [b"\x00" + payload({f"k{n}": value}) for n, value in enumerate(values)]
    seeds.append(b"\x00" + payload({"_auth_user_id": values[0], "cart": values[-3]}))
    crashes = sorted(CRASH_CORPUS.glob("record-*")) if CRASH_CORPUS.exists() else []
    return seeds + [path.read_bytes() for path in crashes]
