"""Sizes, keys and expiries of the stored sessions: ``manage.py sessionstats``.

Memory depends on the number of distinct record sizes (at most ``MAX_RECORD_SIZE``) and of
distinct session key names (capped), never on the number of records, so percentiles are exact
on any store. Records are verified (to read their keys) but no value is unpickled.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django_picklesessions.exceptions import RecordError
from django_picklesessions.inspection import key_id_of, verify
from django_picklesessions.keys import get_keyring

#: Session key names tracked one by one; further names are added up under ``OTHER``.
MAX_KEY_NAMES = 10_000
OTHER = "(other keys)"
#: Upper bounds, inclusive (seconds until expiry), of the expiry histogram, with their labels.
EXPIRY_BUCKETS = (
    (0, "expired"),
    (3600, "<= 1 hour"),
    (86400, "<= 1 day"),
    (7 * 86400, "<= 7 days"),
    (30 * 86400, "<= 30 days"),
)
LATER = "> 30 days"


@dataclass
class Stats:
    records: int = 0
    #: Records no check passes (a key no longer configured is not counted here).
    invalid: int = 0
    sizes: Counter[int] = field(default_factory=Counter)
    key_bytes: Counter[str] = field(default_factory=Counter)
    key_sessions: Counter[str] = field(default_factory=Counter)
    by_key_id: Counter[str] = field(default_factory=Counter)
    expiry: Counter[str] = field(default_factory=Counter)

    def percentile(self, fraction: float) -> int:
        """The smallest record size at or below which ``fraction`` of the records fall."""
        total = sum(self.sizes.values())
        if not total:
            return 0
        rank = max(1, math.ceil(round(fraction * total, 6)))  # nearest rank
        seen = 0
        for size in sorted(self.sizes):
            seen += self.sizes[size]
            if seen >= rank:
                return size
        return max(self.sizes)

    def as_dict(self, top: int = 10) -> dict[str, Any]:
        return {
            "records": self.records,
            "invalid": self.invalid,
            "size": {
                "p50": self.percentile(0.50),
                "p95": self.percentile(0.95),
                "max": max(self.sizes, default=0),
                "total": sum(size * n for size, n in self.sizes.items()),
            },
            "largest_keys": [
                {"key": key, "bytes": total, "sessions": self.key_sessions[key]}
                for key, total in self.key_bytes.most_common(top)
            ],
            "by_key_id": dict(sorted(self.by_key_id.items())),
            "expiry": {label: self.expiry[label] for label in expiry_labels()},
        }


def expiry_labels() -> list[str]:
    return [label for _, label in EXPIRY_BUCKETS] + [LATER]


def _expiry_label(seconds_left: int) -> str:
    for bound, label in EXPIRY_BUCKETS:
        if seconds_left <= bound:
            return label
    return LATER


def collect(
    items: Iterable[tuple[str, bytes]], *, now: int, progress: Callable[[int], None] | None = None
) -> Stats:
    """Count sizes, key names, key ids and expiries over ``items``."""
    keyring = get_keyring()
    stats = Stats()
    for address, data in items:
        stats.records += 1
        stats.sizes[len(data)] += 1
        if progress is not None:
            progress(stats.records)
        try:
            verified = verify(address, data, now=now, keyring=keyring, check_expiry=False)
        except RecordError as exc:
            if exc.reason == "unknown_key":
                stats.by_key_id[key_id_of(data)] += 1
            else:
                stats.invalid += 1
            continue
        stats.by_key_id[key_id_of(data)] += 1
        stats.expiry[_expiry_label(verified.expires_at - now)] += 1
        for key, value in verified.entries.items():
            if key not in stats.key_bytes and len(stats.key_bytes) >= MAX_KEY_NAMES:
                key = OTHER
            stats.key_bytes[key] += len(key.encode()) + len(value)
            stats.key_sessions[key] += 1
    return stats
