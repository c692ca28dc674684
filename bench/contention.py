"""Contention benchmark: what compare-and-swap costs alone, and what it sustains under a race.

Run from the repository root as ``python -m bench.contention [--engines locmem,sqlite-wal,
postgresql,file,redis,cached_db] [--duration SECONDS]`` (``redis``: the local Redis;
``cached_db``: a scratch PostgreSQL database behind a RedisCache on it). For each engine it prints:

- the uncontended cost of a save with compare-and-swap against a plain one, measured twice:
  the engine's ``_write`` alone (``expected=<stored version>`` vs ``expected=None``, which
  writes unconditionally) and a full ``save()`` (a store whose compare is switched off vs the
  real one), in interleaved rounds, as medians and their ratio (the target is <= 1.05);
- the contended throughput: 1, 2, 4 and 8 writers on ONE session, each doing load-modify-save
  cycles of a key of its own (threads for locmem, processes for the others), with the lost
  races (conflicts) per save, the saves that gave up after ``save_attempts`` races, and the
  updates lost, which must be none: each writer's counter must end at its number of saves.

Each engine runs in a child process of its own that configures Django itself (a SQLite WAL
file in a temporary directory, a scratch PostgreSQL database created and dropped here, or a
sessions directory). It prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import multiprocessing
import os
import platform
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

ENGINES = ("locmem", "sqlite-wal", "postgresql", "file", "redis", "cached_db")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
WRITER_COUNTS = (1, 2, 4, 8)
#: Seconds each contended run lasts once every writer is ready.
DURATION = 1.5
TARGET_CAS_RATIO = 1.05

#: Deterministic, bench-only secret: 60 characters that pass Django's W009 rules.
SECRET_KEY = "q7Lr-bench-contention-Zt4x9WmKp2Vn8sYc5Hd3Jf6Gb1Qe0Ra-uTyEiOo"
PG_PARAMS = {
    "host": os.environ.get("PGHOST", "127.0.0.1"),
    "port": int(os.environ.get("PGPORT", "5432")),
    "user": os.environ.get("PGUSER", "postgres"),
}
#: A session of a logged-in shopper: what each save signs and writes, about 1 kB.
PAYLOAD: dict[str, Any] = {
    "_auth_user_id": "1042",
    "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
    "_auth_user_hash": "f" * 64,
    "cart": dict(zip(range(100, 112), itertools.count(1))),
    "recently_viewed": list(range(500, 530)),
    "currency": "EUR",
}


@dataclass(frozen=True)
class Config:
    """Where one engine keeps its sessions; picklable, for the child processes."""

    engine: str
    workdir: str
    db_name: str = ""

    @property
    def label(self) -> str:
        return {
            "locmem": "locmem (threads)",
            "sqlite-wal": "db, SQLite WAL",
            "postgresql": "db, PostgreSQL",
            "file": "file",
            "redis": "redis",
            "cached_db": "cached_db, PG+Redis",
        }[self.engine]


# --- Django, in each child ------------------------------------------------------------------


def configure(config: Config) -> None:
    """Configure Django for one engine; no project settings are involved."""
    import django
    from django.conf import settings

    databases: dict[str, Any] = {}
    if config.engine == "sqlite-wal":
        # Python's default busy timeout (5 s), as Django uses it; WAL is set on the file.
        databases["default"] = {"ENGINE": "django.db.backends.sqlite3", "NAME": config.db_name}
    elif config.engine in ("postgresql", "cached_db"):
        databases["default"] = {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": PG_PARAMS["host"],
            "PORT": str(PG_PARAMS["port"]),
            "USER": PG_PARAMS["user"],
            "NAME": config.db_name,
        }
    settings.configure(
        SECRET_KEY=SECRET_KEY,
        USE_TZ=True,
        INSTALLED_APPS=["django_picklesessions"],
        DATABASES=databases,
        PICKLESESSIONS_FILE_PATH=str(Path(config.workdir) / "sessions"),
        # Keys of this run only: the workdir's name is unique.
        PICKLESESSIONS_REDIS_URL=REDIS_URL,
        PICKLESESSIONS_REDIS_PREFIX=f"bench-contention-{Path(config.workdir).parent.name}:",
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": REDIS_URL,
                "KEY_PREFIX": f"bench-contention-{Path(config.workdir).parent.name}-cache",
            }
        },
    )
    django.setup()


def store_class(config: Config) -> type[Any]:
    """Return the engine's SessionStore (Django must be configured)."""
    from django_picklesessions.backends import cached_db, db, file, locmem, redis

    engines = {
        "locmem": locmem,
        "sqlite-wal": db,
        "postgresql": db,
        "file": file,
        "redis": redis,
        "cached_db": cached_db,
    }
    return engines[config.engine].SessionStore


@dataclass
class Stats:
    """What one writer did: saves done, writes tried, races lost, saves given up."""

    saves: int = 0
    writes: int = 0
    conflicts: int = 0
    gave_up: int = 0


def counting_store(config: Config) -> type[Any]:
    """The engine's store, counting its writes and lost races into ``self.stats``."""
    from django_picklesessions.exceptions import VersionConflict

    base: Any = store_class(config)

    class CountingStore(base):
        stats = Stats()

        def _write(self, *args: Any, **kwargs: Any) -> None:
            self.stats.writes += 1
            try:
                super()._write(*args, **kwargs)
            except VersionConflict:
                self.stats.conflicts += 1
                raise

    return CountingStore


# --- Uncontended: compare-and-swap vs plain ---------------------------------------------------


#: Rounds of the uncontended comparison, and the wall time of one candidate's batch.
ROUNDS = 41
BATCH_SECONDS = 0.01


def _batch(op: Callable[[], object], calls: int) -> float:
    """Return the mean seconds per call of ``calls`` calls, with the collector paused."""
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            op()
        return (time.perf_counter() - start) / calls
    finally:
        gc.enable()


def interleave(candidates: dict[str, Callable[[], object]]) -> dict[str, list[float]]:
    """Time each candidate once per round, rotating their order, so drift hits all alike."""
    calls = {name: max(1, int(BATCH_SECONDS / _batch(op, 20))) for name, op in candidates.items()}
    names = list(candidates)
    samples: dict[str, list[float]] = {name: [] for name in names}
    gc.collect()
    for index in range(ROUNDS):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(_batch(candidates[name], calls[name]))
    return samples


@dataclass
class Costs:
    """Median µs per call of each candidate, and the median per-round ratios CAS/plain."""

    micros: dict[str, float]
    write_ratio: float
    save_ratio: float


def uncontended(config: Config) -> Costs:
    """Time plain and compare-and-swap writes and saves of one session, uncontended."""
    from django_picklesessions import record

    store: Any = store_class(config)

    class PlainStore(store):
        """The same store with the compare switched off: every save writes unconditionally."""

        def _expected_version(self, *args: Any) -> int | None:
            return None

    def new_session(cls: type[Any]) -> Any:
        session = cls()
        session.update(PAYLOAD)
        session.create()
        return cls(session.session_key)

    writer = new_session(store)
    address = writer.address(writer.session_key)
    stored = writer._read(address)
    version = record.version_of(stored)  # rewriting the same record keeps this version
    expires_at = int(time.time()) + 3600
    plain_saver, cas_saver = new_session(PlainStore), new_session(store)
    counter = itertools.count()

    def save(session: Any) -> Callable[[], None]:
        def op() -> None:
            session["visits"] = next(counter)
            session.save()

        return op

    samples = interleave(
        {
            "write plain": lambda: writer._write(address, stored, expires_at, False, None),
            "write CAS": lambda: writer._write(address, stored, expires_at, False, version),
            "save plain": save(plain_saver),
            "save CAS": save(cas_saver),
        }
    )

    def ratio(cas: str, plain: str) -> float:
        # Per round, then the median: both ran within the same few tens of milliseconds.
        pairs = zip(samples[cas], samples[plain], strict=True)
        return statistics.median([a / b for a, b in pairs])

    return Costs(
        {name: statistics.median(values) * 1e6 for name, values in samples.items()},
        ratio("write CAS", "write plain"),
        ratio("save CAS", "save plain"),
    )


# --- Contended: writers racing on one session ------------------------------------------------


def _cycles(config: Config, session_key: str, index: int, duration: float) -> Stats:
    """Load, change this writer's key, save, for ``duration`` seconds."""
    from django_picklesessions.exceptions import SessionConflict

    store = counting_store(config)
    stats = Stats()
    name = f"w{index}"
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        session = store(session_key)
        session.stats = stats
        session[name] = session.get(name, 0) + 1
        try:
            session.save()
        except SessionConflict:
            stats.gave_up += 1  # the request would fail; its change is not stored
        else:
            stats.saves += 1
    return stats


def _writer_process(
    config: Config, session_key: str, index: int, duration: float, barrier: Barrier, queue: Any
) -> None:
    configure(config)
    store_class(config)(session_key).load()  # connect before the start line
    barrier.wait(timeout=60)
    stats = _cycles(config, session_key, index, duration)
    from django.db import connections

    connections.close_all()
    queue.put((index, stats))


@dataclass
class Row:
    """One contended run."""

    writers: int
    stats: list[Stats] = field(default_factory=list)
    seconds: float = 0.0
    lost: int = 0

    def total(self, name: str) -> int:
        return sum(getattr(stats, name) for stats in self.stats)


def contended(config: Config, writers: int, duration: float) -> Row:
    """Race ``writers`` writers on one new session; return what they did and lost."""
    store: Any = store_class(config)
    session = store()
    session.update(PAYLOAD)
    session.create()
    key = session.session_key
    row = Row(writers)
    start = time.monotonic()
    if config.engine == "locmem":  # process-local: threads share its records
        results: dict[int, Stats] = {}
        gate = threading.Barrier(writers)

        def run(index: int) -> None:
            gate.wait(timeout=60)
            results[index] = _cycles(config, key, index, duration)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        row.stats = [results[i] for i in range(writers)]
    else:
        context = multiprocessing.get_context("spawn")
        barrier, queue = context.Barrier(writers + 1), context.Queue()
        processes = [
            context.Process(target=_writer_process, args=(config, key, i, duration, barrier, queue))
            for i in range(writers)
        ]
        for process in processes:
            process.start()
        barrier.wait(timeout=120)  # every writer has started Django and connected
        start = time.monotonic()
        by_index = dict(queue.get(timeout=duration + 60) for _ in processes)
        for process in processes:
            process.join(timeout=30)
        row.stats = [by_index[i] for i in range(writers)]
    row.seconds = time.monotonic() - start
    final = store(key)
    row.lost = sum(stats.saves - final.get(f"w{i}", 0) for i, stats in enumerate(row.stats))
    return row


# --- Each engine in a child process ----------------------------------------------------------


def _engine_child(config: Config, duration: float, queue: Any) -> None:
    """Configure Django for one engine, measure it, and send the results back."""
    configure(config)
    if config.engine in ("sqlite-wal", "postgresql", "cached_db"):
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
    costs = uncontended(config)
    rows = [contended(config, writers, duration) for writers in WRITER_COUNTS]
    from django.db import connections

    connections.close_all()
    queue.put((costs, rows))


@contextlib.contextmanager
def storage(engine: str, workdir: Path) -> Iterator[Config]:
    """Yield the engine's configuration, with its database created (and dropped after)."""
    if engine == "sqlite-wal":
        path = workdir / "sessions.sqlite3"
        connection = sqlite3.connect(path)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
        finally:
            connection.close()
        yield Config(engine, str(workdir), str(path))
    elif engine in ("postgresql", "cached_db"):
        import psycopg

        name = f"bench_picklesessions_contention_{os.getpid()}"
        with psycopg.connect(dbname="postgres", autocommit=True, **PG_PARAMS) as server:
            server.execute(f'CREATE DATABASE "{name}"')
        try:
            yield Config(engine, str(workdir), name)
        finally:
            with psycopg.connect(dbname="postgres", autocommit=True, **PG_PARAMS) as server:
                server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        yield Config(engine, str(workdir))


def run_engine(config: Config, duration: float) -> tuple[Costs, list[Row]]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_engine_child, args=(config, duration, queue))
    child.start()
    try:
        # Generous: the uncontended rounds, then four runs of ``duration`` plus start-ups.
        result: tuple[Costs, list[Row]] = queue.get(timeout=120 + 8 * duration)
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
            child.join()
    return result


# --- Report ----------------------------------------------------------------------------------


def report_costs(label: str, costs: Costs) -> None:
    micros = costs.micros
    verdict = "met" if costs.save_ratio <= TARGET_CAS_RATIO else "MISSED"
    print(
        f"{label:<18} {micros['write plain']:>9.1f} {micros['write CAS']:>9.1f}"
        f" {costs.write_ratio:>6.3f}x   {micros['save plain']:>9.1f} {micros['save CAS']:>9.1f}"
        f" {costs.save_ratio:>6.3f}x   {verdict}"
    )


def report_rows(label: str, rows: list[Row]) -> None:
    for row in rows:
        saves = max(row.total("saves"), 1)
        print(
            f"{label:<18} {row.writers:>2} {row.total('saves') / row.seconds:>9.0f}"
            f" {row.total('conflicts') / saves:>10.2f} {row.total('writes') / saves:>10.2f}"
            f" {row.total('gave_up'):>8} {row.lost:>6}{'  LOST UPDATES' if row.lost else ''}"
        )


def _reachable(params: dict[str, Any]) -> bool:
    try:
        socket.create_connection((params["host"], params["port"]), timeout=2).close()
    except OSError:
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated")
    parser.add_argument("--duration", type=float, default=DURATION, help="seconds per run")
    args = parser.parse_args(argv)
    engines = [name for name in args.engines.split(",") if name]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        parser.error(f"unknown engines {sorted(unknown)}; choose from {', '.join(ENGINES)}")
    for name in ("postgresql", "cached_db"):
        if name in engines and not _reachable(PG_PARAMS):
            print(
                f"PostgreSQL is not reachable on {PG_PARAMS['host']}:{PG_PARAMS['port']}: "
                f"{name} skipped"
            )
            engines.remove(name)
    if "redis" in engines and not _reachable({"host": "127.0.0.1", "port": 6379}):
        print("Redis is not reachable on 127.0.0.1:6379: redis skipped")
        engines.remove("redis")

    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {sys.platform}")
    results: dict[str, tuple[Costs, list[Row]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-contention-") as tmp:
        for engine in engines:
            workdir = Path(tmp) / engine
            workdir.mkdir()
            with storage(engine, workdir) as config:
                results[config.label] = run_engine(config, args.duration)
        if {"redis", "cached_db"} & set(engines):
            from bench.harness import remove_redis_keys

            remove_redis_keys(REDIS_URL, f"bench-contention-{Path(tmp).name}")

    print(
        "\nUncontended save, µs per call (median of interleaved rounds); "
        f"target: compare-and-swap <= {TARGET_CAS_RATIO}x plain"
    )
    print(f"{'engine':<18} {'_write':>9} {'CAS':>9} {'ratio':>7}   {'save()':>9} {'CAS':>9}")
    print(f"{'':<18} {'plain':>9} {'':>9} {'':>7}   {'plain':>9}")
    for label, (costs, _) in results.items():
        report_costs(label, costs)

    print(
        f"\nContended: N writers on one session, each changing its own key, {args.duration} s"
        " per run"
    )
    print(
        f"{'engine':<18} {'N':>2} {'saves/s':>9} {'conflicts':>10} {'writes':>10}"
        f" {'gave up':>8} {'lost':>6}"
    )
    print(f"{'':<18} {'':>2} {'':>9} {'per save':>10} {'per save':>10}")
    for label, (_, rows) in results.items():
        report_rows(label, rows)


if __name__ == "__main__":
    # Run as the importable module, so that the spawned children find its functions by name.
    from bench.contention import main as run

    run()
