"""manage.py sessionstats: exact figures on every engine, nothing written."""

from __future__ import annotations

import io
import json
import math
import pickle
import time

import pytest
from django.core.management import call_command

from django_picklesessions import inventory, record, stats
from django_picklesessions.keys import get_keyring
from tests.helpers import sign_raw
from tests.ops.storage import OLD, fill, new_key, ring, snapshot


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("sessionstats", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def nearest_rank(sizes: list[int], fraction: float) -> int:
    return sorted(sizes)[math.ceil(fraction * len(sizes)) - 1]


def test_figures_are_exact_and_nothing_is_written(engine: str) -> None:
    fixture = fill(engine)
    sizes = [len(data) for _, data in inventory.records(fixture.store)]
    before = snapshot(engine)
    data = json.loads(run("--json", "--top", "2"))
    assert snapshot(engine) == before
    assert data["records"] == 9 + fixture.expired
    assert data["invalid"] == 1
    assert data["size"] == {
        "p50": nearest_rank(sizes, 0.5),
        "p95": nearest_rank(sizes, 0.95),
        "max": max(sizes),
        "total": sum(sizes),
    }
    blob = len("blob") + len(pickle.dumps("x" * 2000, 5))
    assert data["largest_keys"][0] == {"key": "blob", "bytes": blob, "sessions": 1}
    assert len(data["largest_keys"]) == 2
    current, fallback = get_keyring().current.key_id.hex(), ring(OLD).current.key_id.hex()
    foreign = {k for k in data["by_key_id"] if k not in (current, fallback)}
    assert data["by_key_id"] == {
        current: 6 + fixture.expired,
        fallback: 1,
        **dict.fromkeys(foreign, 1),
    }
    assert len(foreign) == 1
    assert data["expiry"] == {
        "expired": fixture.expired,
        "<= 1 hour": 7,
        "<= 1 day": 0,
        "<= 7 days": 0,
        "<= 30 days": 0,
        "> 30 days": 0,
    }


def test_text_output(engine: str) -> None:
    fill(engine)
    text = run()
    assert "Record size: p50 " in text
    assert "  'blob': " in text
    assert " (fallback): 1" in text and " (unknown): 1" in text
    assert "  <= 1 hour: 7" in text


def test_percentiles_and_buckets() -> None:
    collected = stats.Stats()
    collected.sizes.update({100: 50, 200: 45, 900: 5})
    assert (collected.percentile(0.5), collected.percentile(0.95)) == (100, 200)
    assert collected.percentile(0.96) == 900
    assert stats.Stats().percentile(0.5) == 0
    assert stats._expiry_label(0) == "expired" and stats._expiry_label(3600) == "<= 1 hour"
    assert stats._expiry_label(3601) == "<= 1 day"
    assert stats._expiry_label(30 * 86400 + 1) == "> 30 days"


def test_key_names_past_the_cap_are_added_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats, "MAX_KEY_NAMES", 2)
    items = []
    for n in range(3):
        key = new_key()
        entries = {f"k{n}": pickle.dumps(n, 5), f"x{n}": pickle.dumps(n, 5)}
        items.append((record.session_id(key).hex(), sign_raw(key, entries)))
    collected = stats.collect(items, now=int(time.time()))
    assert set(collected.key_bytes) == {"k0", "x0", stats.OTHER}
    assert collected.key_sessions[stats.OTHER] == 4
