"""Engine benchmark: our db and file engines against every stock Django session engine.

Run from the repository root as ``python -m bench.engines [--db sqlite|sqlite-wal|postgresql]
[--quick]`` (several ``--db`` values, comma-separated, run one after the other; the default is
all three). For the ``login``, ``cart`` and ``big`` payloads it times, per engine, what a
request does with its session:

- create: a new session gets the payload and is saved (the middleware's ``create()`` path);
- load: a stored session is loaded and every key read, then the middleware's ``modified``
  check runs (ours re-pickles values that were read, to catch in-place changes);
- load auth: the same, reading only the three ``_auth_user_*`` keys the auth middleware reads;
- save: an already loaded session, every key read, gets one key changed and is saved;
- cycle: load, read the auth keys, change ``visits`` (and the cart's first line, and the
  recently viewed list, where the payload has them), then the middleware's save.

Our engines finish each request as ``django_picklesessions.middleware.SessionMiddleware``
does (one change check shared with the save); ``bench.codec`` compares that with Django's
middleware on the same store.

Our engines store the payload's real objects; the stock engines store its JSON-safe
conversion (``payloads.to_json_safe``) through Django's JSON serializer, and the conversion
itself is not timed (``bench.codec`` measures it). It prints timings and ratios and never
fails on them.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib
import io
import itertools
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import djsetup, harness, payloads

OPS = ("create", "load", "load auth", "save", "cycle")
AUTH_KEYS = ("_auth_user_id", "_auth_user_backend", "_auth_user_hash")

#: Issue 12's targets, checked (and only printed) at the end, ours ÷ stock on one database.
#: The cycle (a request that reads the auth keys and changes a cart line) has targets for the
#: payloads that hold a cart, per database kind; a load that reads every key, for all payloads.
TARGET_CYCLE_DB: dict[str, dict[str, float]] = {
    "sqlite-wal": {"cart": 0.5, "big": 0.7},
    "postgresql": {"cart": 0.6, "big": 0.7},
    "sqlite": {"big": 0.7},
    "mariadb": {"big": 0.7},
}
TARGET_CYCLE_FILE = {"cart": 0.8, "big": 0.7}
TARGET_LOAD_DB = 0.8


@dataclass(frozen=True)
class Engine:
    """A session engine under test: a label for the tables and its module."""

    label: str
    module: str
    ours: bool

    @property
    def store_class(self) -> Any:
        return importlib.import_module(self.module).SessionStore


OURS_DB = Engine("ours-db", "django_picklesessions.backends.db", ours=True)
OURS_FILE = Engine("ours-file", djsetup.OUR_FILE_ENGINE, ours=True)
STOCK_DB = Engine("stock-db", "django.contrib.sessions.backends.db", ours=False)
STOCK_FILE = Engine("stock-file", "django.contrib.sessions.backends.file", ours=False)
STOCK_ENGINES = (
    STOCK_DB,
    Engine("stock-cached_db", "django.contrib.sessions.backends.cached_db", ours=False),
    Engine("stock-cache", "django.contrib.sessions.backends.cache", ours=False),
    STOCK_FILE,
    Engine("stock-signed_cookies", "django.contrib.sessions.backends.signed_cookies", ours=False),
)
#: Ratios printed under each table: (ours, stock).
RATIOS = [(OURS_DB, stock) for stock in STOCK_ENGINES] + [(OURS_FILE, STOCK_FILE)]


def engines_under_test() -> list[Engine]:
    """Return our engines (the file one only once it exists) and every stock engine."""
    ours = [OURS_DB, OURS_FILE] if djsetup.our_file_engine_available() else [OURS_DB]
    return ours + list(STOCK_ENGINES)


# --- What a request does with its session ----------------------------------------------


def finish(session: Any, one_pass: bool = False) -> None:
    """Do what ``SessionMiddleware.process_response`` does: save when modified and not empty.

    ``one_pass`` does it as ``django_picklesessions.middleware.SessionMiddleware`` does for
    our engines: the ``modified`` check and the save share their pickles.
    """
    if one_pass:
        with session.single_pass():
            finish(session)
    elif session.modified and not session.is_empty():
        session.save()


def read_all(session: Any) -> None:
    """Read every key, as a view that renders the whole session would."""
    for key in list(session.keys()):
        session[key]


def change_cart_line(session: Any, ours: bool) -> None:
    """Add one to the first cart line: in place for ours, assigned back for a JSON app."""
    cart = session["cart"]
    if ours:
        cart.items[0].quantity += 1
    else:
        cart["items"][0]["quantity"] += 1
        session["cart"] = cart


def modify(session: Any, ours: bool) -> None:
    """Change what a typical view changes: a counter, the cart's first line, recent views.

    Ours changes the cart and list in place (our store notices); a JSON app assigns them
    back so that Django's store knows they changed.
    """
    session["visits"] = session["visits"] + 1
    if "cart" in session:
        change_cart_line(session, ours)
    if "recently_viewed" in session:
        viewed = session["recently_viewed"]
        viewed.insert(0, viewed.pop())
        if not ours:
            session["recently_viewed"] = viewed


class Bench:
    """The candidates of one engine and payload, each on a session of its own."""

    def __init__(self, engine: Engine, data: dict[str, Any]) -> None:
        self.engine = engine
        self.store = engine.store_class
        self.data = data
        self.created: list[str] = []
        self.counter = itertools.count(1000)

    def new_session(self) -> str:
        """Store the payload in a new session and return its key (the cookie value)."""
        session = self.store()
        session.update(self.data)
        session.save()
        key: str = session.session_key
        return key

    def create(self) -> None:
        """Give a new session the payload and let the middleware's save create it."""
        session = self.store()
        session.update(self.data)
        finish(session, self.engine.ours)
        self.created.append(session.session_key)

    def drop_created(self) -> None:
        """Delete the sessions ``create`` made (untimed), so stores do not grow run-long."""
        if self.engine.label != "stock-signed_cookies":  # a cookie has nothing to delete
            for key in self.created:
                self.store().delete(key)
        self.created.clear()

    def candidates(self) -> dict[str, harness.Candidate]:
        """Return each operation as a candidate, on sessions stored now."""
        store, ours = self.store, self.engine.ours
        load_key, auth_key, cycle_key = (self.new_session() for _ in range(3))
        saver = store(self.new_session())
        read_all(saver)

        def load() -> None:
            session = store(load_key)
            read_all(session)
            finish(session, ours)

        def load_auth() -> None:
            session = store(auth_key)
            for key in AUTH_KEYS:
                session[key]
            finish(session, ours)

        def save() -> None:
            saver["visits"] = next(self.counter)
            saver.save()

        def cycle() -> None:
            session = store(cycle_key)
            for key in AUTH_KEYS:
                session[key]
            modify(session, ours)
            finish(session, ours)

        return {
            "create": harness.Candidate(self.create, after=self.drop_created),
            "load": harness.Candidate(load),
            "load auth": harness.Candidate(load_auth),
            "save": harness.Candidate(save),
            "cycle": harness.Candidate(cycle),
        }

    def check(self) -> str:
        """Say whether a session loads back equal, and whether reading it alone saves it."""
        session = self.store(self.new_session())
        loaded = {key: session[key] for key in list(session.keys())}
        verdict = "ok" if loaded == self.data else "MISMATCH"
        if session.modified:
            # A read-only request would write the session back: every load costs a save.
            verdict += " (BUT a read-only load is 'modified': it saves)"
        return verdict

    def record_size(self) -> int:
        """Return the size of what the engine stores for this payload (encoded record)."""
        session = self.store()
        return len(session.encode(self.data))


def floor_candidates(name: str) -> dict[str, harness.Candidate]:
    """Return our db engine's SQL alone (no verify, decode or encode): the least it can cost.

    ``load`` is the one SELECT a load sends; ``cycle`` that SELECT and the one UPDATE a save
    sends. The ratio of these to stock-db is the best our db engine could reach.
    """
    from django.db import connection

    from django_picklesessions.backends.db import SessionStore

    store = SessionStore()
    store.update(payloads.PAYLOADS[name]())
    store.save()
    address = store.address(store.session_key)
    table = connection.ops.quote_name(store.model._meta.db_table)
    select = f"SELECT record FROM {table} WHERE address = %s AND expires_at > %s"
    update = f"UPDATE {table} SET record = %s, expires_at = %s, version = %s WHERE address = %s"

    def load() -> object:
        with connection.cursor() as cursor:
            cursor.execute(select, [address, int(time.time())])
            return cursor.fetchone()

    def cycle() -> None:
        row = load()
        if row is None:
            raise RuntimeError("the floor's session is gone")
        with connection.cursor() as cursor:
            cursor.execute(update, [row[0], int(time.time()) + 3600, 2, address])

    return {"load": harness.Candidate(load), "cycle": harness.Candidate(cycle)}


def payload_for(engine: Engine, name: str) -> dict[str, Any]:
    """Return the payload as the engine's users would keep it: real objects, or JSON-safe."""
    data = payloads.PAYLOADS[name]()
    return data if engine.ours else payloads.to_json_safe(data)


# --- Report -----------------------------------------------------------------------------


def run_payload(
    name: str, engines: list[Engine], rounds: int, batch_ns: float
) -> dict[str, dict[str, harness.Timing]]:
    """Benchmark one payload on every engine, print its table, return timings by engine."""
    benches = {engine.label: Bench(engine, payload_for(engine, name)) for engine in engines}
    sizes = ", ".join(f"{label} {bench.record_size():,}" for label, bench in benches.items())
    checks = ", ".join(f"{label} {bench.check()}" for label, bench in benches.items())
    print(f"\n== {name}: record bytes {sizes}")
    print(f"   round-trip check: {checks}")
    flat = {
        f"{label}|{op}": candidate
        for label, bench in benches.items()
        for op, candidate in bench.candidates().items()
    }
    flat.update({f"floor|{op}": c for op, c in floor_candidates(name).items()})
    timed = harness.interleave(flat, rounds, batch_ns)
    by_engine = {label: {op: timed[f"{label}|{op}"] for op in OPS} for label in benches}
    for bench in benches.values():
        bench.drop_created()

    print(f"   {'µs/op, median':<32}" + "".join(f"{op:>12}" for op in OPS))
    for label, timings in by_engine.items():
        cells = "".join(f"{timings[op].median / 1000:12.1f}" for op in OPS)
        print(f"   {label:<32}{cells}")
    for ours, stock in RATIOS:
        if ours.label in by_engine and stock.label in by_engine:
            a, b = by_engine[ours.label], by_engine[stock.label]
            cells = "".join(f"{a[op].median / b[op].median:11.2f}×" for op in OPS)
            print(f"   {ours.label + ' / ' + stock.label:<32}{cells}")
    stock_db = by_engine[STOCK_DB.label]
    floor = {op: timed[f"floor|{op}"].median for op in ("load", "cycle")}
    print(
        f"   floor, our SQL alone: load {floor['load'] / 1000:.1f} µs "
        f"({floor['load'] / stock_db['load'].median:.2f}× stock-db), cycle "
        f"{floor['cycle'] / 1000:.1f} µs ({floor['cycle'] / stock_db['cycle'].median:.2f}× "
        "stock-db): the best ours-db/stock-db ratios possible here"
    )
    return by_engine


def summary(kind: str, results: dict[str, dict[str, dict[str, harness.Timing]]]) -> None:
    """Print each ratio issue 12 sets a target for, with its spread and met / not met.

    Each ratio is the median of the per-round ratios (both engines ran in every round), with
    the quartiles; a ratio without a target on this database is printed as information.
    """
    print(f"\n== issue 12's targets on {kind} (median of per-round ratios [quartiles])")
    checks: list[tuple[str, str, str, str, dict[str, float]]] = [
        ("ours-db", "stock-db", "cycle", "cart-line request", TARGET_CYCLE_DB.get(kind, {})),
        ("ours-file", "stock-file", "cycle", "cart-line request", TARGET_CYCLE_FILE),
        ("ours-db", "stock-db", "load", "load reading all", dict.fromkeys(results, TARGET_LOAD_DB)),
    ]
    for ours, stock, op, what, targets in checks:
        for payload, by_engine in results.items():
            if op == "cycle" and payload not in TARGET_CYCLE_FILE:
                continue  # this payload holds no cart: its cycle changes no cart line
            if ours not in by_engine:
                print(f"   {what:<18} {payload:<6} skipped: {ours} is not available")
                continue
            median, low, high = harness.per_round(by_engine[ours][op], by_engine[stock][op])
            target = targets.get(payload)
            goal = (
                "(no target here)"
                if target is None
                else f"(target ≤ {target}×)  {harness.verdict(median <= target)}"
            )
            print(
                f"   {what:<18} {payload:<6} {ours}/{stock} {median:5.2f}× "
                f"[{low:.2f}–{high:.2f}]  {goal}"
            )


def profile(engines: list[Engine], calls: int) -> None:
    """Profile our engines' load and cycle on the cart payload, to show where time goes."""
    for engine in (e for e in engines if e.ours):
        bench = Bench(engine, payload_for(engine, "cart"))
        candidates = bench.candidates()
        for op in ("load", "cycle"):
            profiler = cProfile.Profile()
            fn = candidates[op].op
            profiler.enable()
            for _ in range(calls):
                fn()
            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime")
            stats.print_stats(12)
            print(f"\n== profile: {engine.label} {op}, cart, {calls} calls (by own time)")
            print("\n".join(line for line in out.getvalue().splitlines()[4:] if line.strip()))


@contextlib.contextmanager
def database_for(kind: str) -> Iterator[str | None]:
    """Yield the scratch database's name for PostgreSQL or MariaDB, else None (SQLite)."""
    if kind == "postgresql":
        with djsetup.scratch_postgres("picklesessions_bench_engines") as name:
            yield name
    elif kind == "mariadb":
        with djsetup.scratch_mariadb("picklesessions_bench_engines") as name:
            yield name
    else:
        yield None


def run(kind: str, quick: bool, do_profile: bool) -> None:
    """Benchmark every engine on one database kind."""
    rounds, batch_ns = (5, 3e6) if quick else (25, 25e6)
    workdir = Path(tempfile.mkdtemp(prefix="picklesessions-bench-engines-"))
    try:
        with database_for(kind) as pg_name:
            djsetup.configure(kind=kind, workdir=workdir, pg_name=pg_name)
            djsetup.migrate()
            engines = engines_under_test()
            print(harness.machine_line("bench.engines"))
            print(f"   database: {djsetup.describe_database()}; files under {workdir}")
            print(
                "   stock engines store the JSON-safe conversion of each payload (not timed); "
                "ours the real objects. stock-cache and stock-cached_db use a LocMemCache "
                "CACHES default (process-local)."
            )
            if OURS_FILE not in engines:
                print(f"   {OURS_FILE.module} is not importable yet: ours-file is skipped")
            print(
                f"   {rounds} interleaved rounds of ~{batch_ns / 1e6:.0f} ms per candidate; "
                f"PYTHONHASHSEED={os.environ.get('PYTHONHASHSEED', 'random')} (set iteration "
                "order, hence re-pickled bytes, depend on it)"
            )
            started = time.perf_counter()
            results = {
                name: run_payload(name, engines, rounds, batch_ns) for name in payloads.PAYLOADS
            }
            summary(kind, results)
            print(f"   ({kind}: {time.perf_counter() - started:.0f} s)")
            if do_profile:
                profile(engines, 200 if quick else 2000)
            from django.db import connections

            connections.close_all()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """Parse the options; run one database here, or several one after another in children."""
    parser = argparse.ArgumentParser(prog="python -m bench.engines", description=__doc__)
    parser.add_argument(
        "--db",
        default=",".join(djsetup.DB_KINDS),
        help=f"database kinds, comma-separated: {', '.join(djsetup.DB_KINDS)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="few short rounds (a smoke run)")
    parser.add_argument("--profile", action="store_true", help="also profile our load and cycle")
    args = parser.parse_args(argv)
    kinds = [kind.strip() for kind in args.db.split(",") if kind.strip()]
    for kind in kinds:
        if kind not in djsetup.DB_KINDS:
            parser.error(f"unknown --db {kind!r}; choose from {', '.join(djsetup.DB_KINDS)}")
    if len(kinds) == 1:
        run(kinds[0], args.quick, args.profile)
        return
    # Django is configured once per process: each database runs in a child of its own.
    extra = [flag for flag, on in (("--quick", args.quick), ("--profile", args.profile)) if on]
    for index, kind in enumerate(kinds):
        if index:
            print("\n" + "-" * 100 + "\n", flush=True)
        command = [sys.executable, "-m", "bench.engines", "--db", kind, *extra]
        subprocess.run(command, check=False)


if __name__ == "__main__":
    main()
