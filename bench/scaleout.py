"""Scale-out benchmark: our redis and cached_db engines against the stock ones they replace.

Run from the repository root as ``python -m bench.scaleout [--db sqlite-wal|postgresql]
[--quick]``. In one process, on the same local Redis (127.0.0.1:6379, keys under a prefix of
this run, removed at the end) and the same database, it times the ``load`` and ``cycle``
operations of ``bench.engines`` (cart and big payloads), interleaved, for:

- ours-redis, against Django's ``cache`` engine on ``django.core.cache.backends.redis.RedisCache``
  (stock-cache) and against django-redis-sessions (redis-sessions), when it is installed;
- ours-cached_db, against Django's ``cached_db`` engine (stock-cached_db), both on that
  RedisCache and the same database.

It prints the bytes each engine stores (the Redis value; for cached_db the cache value and
the database row), timings and ratios, and never fails on them.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import djsetup, harness
from bench.engines import Bench, Engine, database_for, payload_for

REDIS_URL = "redis://127.0.0.1:6379/0"
OPS = ("load", "cycle")
PAYLOADS = ("cart", "big")
#: Targets of issue 11, printed only: (ours, stock, op, target ratio).
TARGETS = [
    ("ours-redis", "stock-cache", "load", 1.0),
    ("ours-redis", "stock-cache", "cycle", 1.1),
    ("ours-cached_db", "stock-cached_db", "load", 1.0),
    ("ours-cached_db", "stock-cached_db", "cycle", 0.8),
]

OURS_REDIS = Engine("ours-redis", "django_picklesessions.backends.redis", ours=True)
STOCK_CACHE = Engine("stock-cache", "django.contrib.sessions.backends.cache", ours=False)
REDIS_SESSIONS = Engine("redis-sessions", "redis_sessions.session", ours=False)
OURS_CACHED_DB = Engine("ours-cached_db", "django_picklesessions.backends.cached_db", ours=True)
STOCK_CACHED_DB = Engine(
    "stock-cached_db", "django.contrib.sessions.backends.cached_db", ours=False
)
RATIOS = [
    (OURS_REDIS, STOCK_CACHE),
    (OURS_REDIS, REDIS_SESSIONS),
    (OURS_CACHED_DB, STOCK_CACHED_DB),
]


def redis_sessions_problem() -> str | None:
    """Return why django-redis-sessions cannot run here, or None."""
    if importlib.util.find_spec("redis_sessions") is None:
        return "not installed (pip install django-redis-sessions)"
    try:
        # Optional, benchmark-only, untyped: imported by name.
        SessionStore = importlib.import_module("redis_sessions.session").SessionStore  # noqa: N806

        session = SessionStore()
        session["probe"] = 1
        session.save()
        if SessionStore(session.session_key)["probe"] != 1:
            return "a saved session does not load back"
        session.delete()
    except Exception as exc:  # an incompatibility with this Django or redis-py
        return f"fails on this Django: {type(exc).__name__}: {exc}"
    return None


def stored_sizes(engine: Engine, session_key: str, prefix: str) -> str:
    """Return what the engine stores for a session: the Redis value and/or the row, in bytes."""
    from django.core.cache import caches

    cache: Any = caches["default"]
    client = cache._cache.get_client(write=True)
    if engine is OURS_REDIS:
        from django_picklesessions.backends.redis import SessionStore

        return f"{client.strlen(SessionStore.record_key(SessionStore.address(session_key))):,}"
    if engine is REDIS_SESSIONS:
        return f"{client.strlen(f'{prefix}rs:{session_key}'):,}"
    if engine is STOCK_CACHE:
        name = cache.make_key("django.contrib.sessions.cache" + session_key)
        return f"{client.strlen(name):,}"
    if engine is STOCK_CACHED_DB:
        from django.contrib.sessions.models import Session

        name = cache.make_key("django.contrib.sessions.cached_db" + session_key)
        row = Session.objects.get(session_key=session_key).session_data
        return f"cache {client.strlen(name):,} + row {len(row):,}"
    from django_picklesessions.backends.cached_db import SessionStore as Ours
    from django_picklesessions.models import Session as Row

    address = Ours.address(session_key)
    record = Row.objects.get(address=address).record
    name = cache.make_key(Ours.cache_key(address))
    return f"cache {client.strlen(name):,} + row {len(record):,}"


def run_payload(name: str, engines: list[Engine], rounds: int, batch: float, prefix: str) -> Any:
    """Benchmark one payload on every engine; print sizes, timings, ratios; return timings."""
    benches = {engine.label: Bench(engine, payload_for(engine, name)) for engine in engines}
    print(f"\n== {name}")
    for label, bench in benches.items():
        size = stored_sizes(bench.engine, bench.new_session(), prefix)
        print(f"   {label:<16} stores {size:>24} bytes; round trip: {bench.check()}")
    flat = {}
    for label, bench in benches.items():
        candidates = bench.candidates()
        for op in OPS:
            flat[f"{label}|{op}"] = candidates[op]
    timed = harness.interleave(flat, rounds, batch)
    by_engine = {label: {op: timed[f"{label}|{op}"] for op in OPS} for label in benches}
    print(f"   {'µs/op, median':<34}" + "".join(f"{op:>12}" for op in OPS))
    for label, timings in by_engine.items():
        print(f"   {label:<34}" + "".join(f"{timings[op].median / 1000:12.1f}" for op in OPS))
    for ours, stock in RATIOS:
        if ours.label in by_engine and stock.label in by_engine:
            a, b = by_engine[ours.label], by_engine[stock.label]
            cells = "".join(f"{a[op].median / b[op].median:11.2f}×" for op in OPS)
            print(f"   {ours.label + ' / ' + stock.label:<34}{cells}")
    return by_engine


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__)
    parser.add_argument("--db", default="postgresql", choices=("sqlite-wal", "postgresql"))
    parser.add_argument("--quick", action="store_true", help="few short rounds (a smoke run)")
    args = parser.parse_args(argv)
    rounds, batch = (5, 3e6) if args.quick else (25, 25e6)
    prefix = f"bench-scaleout-{secrets.token_hex(4)}:"
    workdir = Path(tempfile.mkdtemp(prefix="picklesessions-bench-scaleout-"))
    try:
        with database_for(args.db) as pg_name:
            djsetup.configure(
                kind=args.db,
                workdir=workdir,
                pg_name=pg_name,
                CACHES={
                    "default": {
                        "BACKEND": "django.core.cache.backends.redis.RedisCache",
                        "LOCATION": REDIS_URL,
                        "KEY_PREFIX": prefix + "cache",
                    }
                },
                PICKLESESSIONS_REDIS_URL=REDIS_URL,
                PICKLESESSIONS_REDIS_PREFIX=prefix + "ours:",
                SESSION_REDIS={"host": "127.0.0.1", "port": 6379, "db": 0, "prefix": prefix + "rs"},
            )
            djsetup.migrate()
            engines = [OURS_REDIS, STOCK_CACHE, OURS_CACHED_DB, STOCK_CACHED_DB]
            problem = redis_sessions_problem()
            if problem is None:
                engines.insert(2, REDIS_SESSIONS)
            print(harness.machine_line("bench.scaleout"))
            print(f"   database: {djsetup.describe_database()}; Redis {REDIS_URL}")
            print(f"   django-redis-sessions: {problem or 'included'}")
            print(
                "   stock engines store the JSON-safe conversion of each payload (not timed); "
                "ours the real objects. Both cached_db engines use the RedisCache."
            )
            started = time.perf_counter()
            results = {name: run_payload(name, engines, rounds, batch, prefix) for name in PAYLOADS}
            print("\n== targets (printed, not asserted)")
            for ours, stock, op, target in TARGETS:
                for payload, by_engine in results.items():
                    ratio = by_engine[ours][op].median / by_engine[stock][op].median
                    print(
                        f"   {ours}/{stock} {op:<6} {payload:<5} {ratio:5.2f}×  "
                        f"(target ≤ {target}×)  {harness.verdict(ratio <= target)}"
                    )
            print(f"   ({time.perf_counter() - started:.0f} s)")
            from django.db import connections

            connections.close_all()
    finally:
        harness.remove_redis_keys(REDIS_URL, prefix)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
