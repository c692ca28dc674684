"""manage.py check_sessions: exact counts, nothing written, exit codes, flat memory."""

from __future__ import annotations

import gc
import io
import json
import os
import secrets
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from django_picklesessions import inspection, inventory, stats, unpickler
from tests.cart import NotAllowed
from tests.helpers import sign_raw
from tests.ops.storage import Fixture, dumps, fill, new_key, put, put_many, run_child, snapshot


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("check_sessions", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_counts_are_exact_and_nothing_is_written(engine: str) -> None:
    fixture = fill(engine)
    before = snapshot(engine)
    report = json.loads(run("--json"))
    assert snapshot(engine) == before
    live = 9
    assert report["records"] == live + fixture.expired
    assert report["keys"] == {"current": 6 + fixture.expired, "fallback": 1, "unknown": 1}
    roles = {entry["role"]: entry["records"] for entry in report["by_key_id"].values()}
    assert roles == {"current": 6 + fixture.expired, "fallback": 1, "unknown": 1}
    assert report["invalid"] == {"bad_mac": 1}
    assert report["expired_not_cleaned"] == fixture.expired
    assert report["over_soft_record_size"] == 1
    assert report["over_soft_record_size_examples"] == [fixture.address("big")[:12]]
    losses = {(x["key"], x["kind"], x["class"]): x for x in report["losses"]}
    assert set(losses) == {
        ("promo", "not_allowed", "tests.cart.NotAllowed"),
        ("promo", "class_gone", "tests.cart.Vanished12"),
    }
    refused = losses["promo", "not_allowed", "tests.cart.NotAllowed"]
    assert (refused["sessions"], refused["logged_in_sessions"]) == (2, 1)
    assert sorted(refused["examples"]) == sorted(
        fixture.address(kind)[:12] for kind in ("refused_logged_in", "refused_anonymous")
    )
    gone = losses["promo", "class_gone", "tests.cart.Vanished12"]
    assert (gone["sessions"], gone["logged_in_sessions"], gone["examples"]) == (
        1,
        1,
        [fixture.address("gone")[:12]],
    )
    assert report["sessions_losing_values"] == 3
    assert report["logged_in_sessions_losing_values"] == 2


def test_text_report(engine: str) -> None:
    fill(engine)
    text = run()
    assert "signed with a fallback key:   1  (manage.py rekey re-signs them)" in text
    assert "invalid:                      1  bad_mac 1" in text
    assert "over PICKLESESSIONS_SOFT_RECORD_SIZE (1500 bytes): 1" in text
    assert "3 session(s), 2 of them logged in" in text
    assert "'promo': tests.cart.NotAllowed (class not in the allow-list): 2 session(s)" in text


def test_fail_on_loss_exits_1_only_for_logged_in_sessions(engine: str) -> None:
    fixture = Fixture(engine, inventory.store_class())
    expires = int(time.time()) + 3600
    anonymous = new_key()
    put(fixture.store, anonymous, sign_raw(anonymous, dumps(promo=NotAllowed())), expires)
    assert "1 session(s), 0 of them logged in" in run("--fail-on-loss")
    entries = {**dumps(_auth_user_id="7"), **dumps(promo=NotAllowed())}
    key = new_key()
    put(fixture.store, key, sign_raw(key, entries, expires_at=expires), expires)
    with pytest.raises(CommandError) as caught:
        run("--fail-on-loss")
    assert caught.value.returncode == 1
    assert "1 logged-in session(s) would lose a value" in str(caught.value)
    run()  # without the flag: a report, no failure


def test_empty_store(engine: str) -> None:
    assert run().startswith("0 records in django_picklesessions.backends.")
    assert "Every value of every live session loads" in run()


def test_progress_only_on_a_terminal(engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fill(engine)
    monkeypatch.setattr(inventory.Progress, "every", 2)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, shown in ((Terminal(), True), (io.StringIO(), False)):
        call_command("check_sessions", stdout=io.StringIO(), stderr=stream)
        assert ("\r8 records, " in stream.getvalue()) is shown


def losing_entries() -> dict[str, bytes]:
    """A logged-in session with one value the allow-list refuses."""
    return {**dumps(_auth_user_id="1"), "promo": dumps(p=NotAllowed())["p"]}


def record_size() -> int:
    key = secrets.token_hex(16)
    return len(sign_raw(key, losing_entries(), expires_at=int(time.time()) + 3600))


def grown_to(engine: str, *totals: int) -> Iterator[int]:
    """Store sessions of :func:`losing_entries` up to each total in turn, yielding each."""
    store = inventory.store_class()
    expires = int(time.time()) + 3600
    entries = losing_entries()
    stored = 0
    for total in totals:
        keys = [secrets.token_hex(16) for _ in range(total - stored)]
        items = [(store.address(k), sign_raw(k, entries, expires_at=expires)) for k in keys]
        put_many(engine, items, expires)
        del keys, items
        stored = total
        yield total


def test_memory_stays_flat(engine: str) -> None:
    """Peak traced memory of a scan of 3000 records is about that of a scan of 300."""
    count = 3000
    store = inventory.store_class()
    peaks: list[int] = []
    stats_peaks: list[int] = []
    for total in grown_to(engine, count // 10, count):
        gc.collect()  # garbage of earlier tests would land in whichever peak it is freed in
        tracemalloc.start()
        try:
            report = inspection.inspect(inventory.records(store, 100), now=int(time.time()))
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.reset_peak()
            collected = stats.collect(inventory.records(store, 100), now=int(time.time()))
            stats_peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert report.records == collected.records == total
        assert report.logged_in_losing == total
    # Ten times the records. Keeping them would add at least their bytes (0.9 x count x 177);
    # what does grow is cyclic garbage the collector frees on its own schedule, which moves
    # the peak by up to ~120 kB between runs. Half the records' bytes tells the two apart.
    bound = max(100_000, (count - count // 10) * record_size() // 2)
    assert peaks[1] - peaks[0] < bound, (peaks, bound)
    assert stats_peaks[1] - stats_peaks[0] < bound, (stats_peaks, bound)


#: ``make test`` sets this for its SQLite run: the commands run there on 100k records, once.
FULL_SCALE = os.environ.get("PICKLESESSIONS_FULL_SCALE") == "1"
# A process of its own reads the rows this test commits: no test transaction. cached_db lists
# its records through the db engine's code, which the db case runs.
LARGE_ENGINES = [
    pytest.param("db", marks=[pytest.mark.db, pytest.mark.django_db(transaction=True)]),
    pytest.param("file"),
    pytest.param("redis", marks=pytest.mark.redis),
]


@pytest.mark.skipif(
    not FULL_SCALE,
    reason="100k records take a minute: make test's SQLite run sets PICKLESESSIONS_FULL_SCALE=1 "
    "(every run scans 3000 against 300 under tracemalloc)",
)
@pytest.mark.parametrize("engine", LARGE_ENGINES, indirect=True)
def test_the_commands_keep_flat_memory_over_100k_records(engine: str, settings: Any) -> None:
    """check_sessions and sessionstats, run as a deploy would, on 10k and then 100k records."""
    peaks: dict[str, list[int]] = {"check_sessions": [], "sessionstats": []}
    for total in grown_to(engine, 10_000, 100_000):
        for command, peak in peaks.items():
            child = run_child(settings, command, "--json")
            assert child.returncode == 0, child.stderr
            assert json.loads(child.stdout)["records"] == total
            peak.append(int(child.stderr.split()[-1]))  # KiB
    # Keeping 90k more records would take at least their bytes (90k x ~180 B, 16 MB).
    bound = 90_000 * record_size() // 2 // 1024
    for command, (small, large) in peaks.items():
        assert large - small < bound, (command, small, large, bound)


def test_diagnose_says_why_a_value_is_refused(settings: Any) -> None:
    assert unpickler.diagnose(dumps(x=[1, 2])["x"]) is None
    refusal = unpickler.diagnose(dumps(x=NotAllowed())["x"])
    assert refusal is not None
    assert (refusal.kind, refusal.module, refusal.qualname) == (
        "not_allowed",
        "tests.cart",
        "NotAllowed",
    )
    gadget = unpickler.diagnose(b"\x80\x05\x95\x00\x00\x00\x00\x00\x00\x00\x00cos\nsystem\n.")
    assert gadget is not None and gadget.kind == "suspicious"
    settings.PICKLESESSIONS_STRICT_UNPICKLING = True
    deep: Any = []
    for _ in range(unpickler.MAX_STRICT_DEPTH + 5):
        deep = [deep]
    bound = unpickler.diagnose(dumps(x=deep)["x"])
    assert bound is not None and bound.kind == "strict_bound", bound


def test_class_exists_imports_nothing() -> None:
    import sys

    assert inspection.class_exists("tests.cart", "NotAllowed")
    assert not inspection.class_exists("tests.cart", "Vanished12")
    assert not inspection.class_exists("no_such_package_here.sub", "X")
    assert "tests.ops.not_a_module" not in sys.modules
    assert not inspection.class_exists("tests.ops.not_a_module", "X")
    assert "tests.ops.not_a_module" not in sys.modules
