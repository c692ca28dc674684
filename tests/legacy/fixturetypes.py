"""What the golden legacy sessions hold, and a tagged JSON form to store them in the manifest.

Imported both by ``make_fixtures.py`` (under Django 4.2) and by the tests (any version), so
it depends on nothing but the standard library.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

UTC = dt.timezone.utc


@dataclass
class Voucher:
    """A project class of the kind sites keep in sessions; allow-listed in the tests."""

    code: str
    amount: Decimal
    valid_until: dt.datetime


VOUCHER = "tests.legacy.fixturetypes.Voucher"


def rich_values() -> dict[str, Any]:
    """Values only a pickle session can hold."""
    return {
        "price": Decimal("19.90"),
        "seen_at": dt.datetime(2025, 11, 30, 18, 45, 12, 345678, tzinfo=UTC),
        "local_at": dt.datetime(2025, 11, 30, 20, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "tags": {"new", "sale", "gift"},
        "voucher": Voucher("WINTER", Decimal("5.00"), dt.datetime(2026, 2, 1, tzinfo=UTC)),
        "history": [1, 2.5, "three", None, True, (4, 5)],
    }


def json_values() -> dict[str, Any]:
    """Values a JSON session can hold."""
    return {
        "cart": {"items": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}]},
        "theme": "dark",
        "visits": 7,
        "ratio": 0.25,
        "flags": [True, False, None],
    }


def encode(value: Any) -> Any:
    """Return ``value`` as JSON data, tagging what JSON cannot say (exact types kept)."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
        return value
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, set):
        return {"$set": sorted(encode(v) for v in value)}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, Voucher):
        return {"$voucher": [value.code, encode(value.amount), encode(value.valid_until)]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {"$dict": [[k, encode(v)] for k, v in value.items()]}
    raise TypeError(f"no tag for {type(value).__name__}")


def decode(data: Any) -> Any:
    """Invert :func:`encode`."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    ((tag, inner),) = data.items()
    if tag == "$decimal":
        return Decimal(inner)
    if tag == "$datetime":
        return dt.datetime.fromisoformat(inner)
    if tag == "$set":
        return {decode(v) for v in inner}
    if tag == "$tuple":
        return tuple(decode(v) for v in inner)
    if tag == "$voucher":
        return Voucher(inner[0], decode(inner[1]), decode(inner[2]))
    if tag == "$dict":
        return {k: decode(v) for k, v in inner}
    raise ValueError(f"unknown tag {tag!r}")
