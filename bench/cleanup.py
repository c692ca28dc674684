"""Cleanup benchmark: ``clear_expired`` of our engines against Django's, on large stores.

Run from the repository root as ``python -m bench.cleanup [--only file|db] [--db KINDS]
[--sizes N,N] [--quick]``. For each size it fills a store with N sessions, half of them
expired, and times one ``clear_expired`` call:

- files: ours-file vs stock-file, at 10k and 100k sessions;
- db: ours-db vs stock-db on SQLite (WAL), PostgreSQL and MariaDB, at 100k and 1M rows.

Each size runs ``--repeats`` rounds (default 3) and prints ours ÷ stock, and for files ours
÷ a bare unlink loop, as the median and range of the per-round ratios.

Stores are filled fast, outside the timing: files are written directly (ours with records
made by the store's ``encode()``, mtime set to the record's expiry, as the engine does; the
stock engine's files hold its own encoding, mtime in the past for expired ones), rows by bulk
inserts (``COPY`` on PostgreSQL) into a template table that is copied back before each run.
Each ``clear_expired`` runs in a fresh child process, which reports its wall time and how far
its peak RSS rose above its RSS at the start (Linux: the peak is reset first through
``/proc/self/clear_refs``; elsewhere the ``ru_maxrss`` delta, which hides growth below the
peak of Django's start-up). With ``--trace``, a second run under ``tracemalloc`` reports the
peak of Python allocations (tracing slows Python code, so its time is not reported). It
prints numbers and ratios and never fails on them.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from unittest import mock

from bench import djsetup, harness, payloads

FILE_SIZES = (10_000, 100_000)
DB_SIZES = (100_000, 1_000_000)
QUICK_FILE_SIZES = (1_000, 5_000)
QUICK_DB_SIZES = (2_000, 10_000)
DB_KINDS = ("sqlite-wal", "postgresql", "mariadb")

#: Target: our file clear_expired at 100k at least this many times faster than stock.
TARGET_FILE_SPEEDUP = 10.0
TARGET_FILE_SIZE = 100_000
#: Target (issue 12): ours at most this many times a bare unlink loop over the same files.
TARGET_FILE_FLOOR_RATIO = 1.3

AGE = 1_209_600  # Django's SESSION_COOKIE_AGE default: two weeks
CHUNK = 10_000
OUR_TABLE = "django_picklesessions_session"
STOCK_TABLE = "django_session"


@dataclass
class Result:
    """What one child process measured for one ``clear_expired`` call."""

    seconds: float
    rss_growth_kib: int
    traced_peak_kib: int | None


def _proc_status_kib(field: str) -> int | None:
    """Return a ``/proc/self/status`` field in KiB (Linux), or None elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> int | None:
    """Reset this process's peak RSS to its current RSS (Linux); return that RSS in KiB."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return None
    return _proc_status_kib("VmRSS")


# --- Child: one clear_expired, measured --------------------------------------------------


def child(engine: str, kind: str | None, workdir: Path, pg_name: str | None, trace: bool) -> None:
    """Run one ``clear_expired`` of ``engine`` and print what it cost as one JSON line."""
    djsetup.configure(kind=kind, workdir=workdir, pg_name=pg_name)
    import importlib

    from django.conf import settings

    clear_expired: Callable[[], None]
    if engine == "floor-file":
        root = Path(settings.PICKLESESSIONS_FILE_PATH)
        clear_expired = functools.partial(unlink_expired, root)
    elif engine == "one-delete-db":
        clear_expired = delete_expired_at_once
    else:
        store = importlib.import_module(ENGINE_MODULES[engine]).SessionStore
        if engine == "ours-db" and os.environ.get("BENCH_CLEANUP_BATCH"):
            store.clear_expired_batch_size = int(os.environ["BENCH_CLEANUP_BATCH"])
        clear_expired = store.clear_expired
    if kind is not None:
        from django.db import connection

        connection.ensure_connection()
    gc.collect()
    rss_start = reset_peak_rss()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    clear_expired()
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] // 1024 if trace else None
    peak_rss = _proc_status_kib("VmHWM")
    if rss_start is not None and peak_rss is not None:
        growth = peak_rss - rss_start
    else:
        growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"seconds": seconds, "rss_growth_kib": growth, "peak_kib": peak}))


def unlink_expired(root: Path) -> None:
    """Walk our file layout and unlink files whose mtime has passed: nothing else.

    The floor of any file cleanup that deletes the same files: no header read, no lock.
    """
    now = time.time()
    with os.scandir(root) as subdirs:
        for subdir in subdirs:
            with os.scandir(subdir.path) as entries:
                for entry in entries:
                    if entry.stat(follow_symlinks=False).st_mtime <= now:
                        os.unlink(entry.path)


def delete_expired_at_once() -> None:
    """Delete our table's expired rows with one unbounded statement, as stock Django does.

    Separates what batching costs from what our rows cost (a 64-character address and a
    longer record than stock's): ours-db ÷ this is the price of bounded transactions.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {OUR_TABLE} WHERE expires_at <= %s", [int(time.time())])


ENGINE_MODULES = {
    "ours-file": djsetup.OUR_FILE_ENGINE,
    "stock-file": "django.contrib.sessions.backends.file",
    "ours-db": "django_picklesessions.backends.db",
    "stock-db": "django.contrib.sessions.backends.db",
}


def measure(
    engine: str, kind: str | None, workdir: Path, pg_name: str | None, trace: bool
) -> Result:
    """Run :func:`child` in a fresh process, so that its peak RSS is its own."""
    command = [sys.executable, "-m", "bench.cleanup", "--child", engine, "--workdir", str(workdir)]
    if kind is not None:
        command += ["--db", kind]
    if pg_name is not None:
        command += ["--pg-name", pg_name]
    if trace:
        command.append("--traced")
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    values = json.loads(out.stdout.strip().splitlines()[-1])
    return Result(values["seconds"], values["rss_growth_kib"], values["peak_kib"])


# --- Filling the stores ------------------------------------------------------------------


def _is_expired(index: int) -> bool:
    return index % 2 == 1


def _expiry(index: int, now: int) -> int:
    """Return session ``index``'s expiry: odd ones expired between 1 hour and 2 weeks ago."""
    if _is_expired(index):
        return now - 3600 - (index * 7919) % AGE
    return now + AGE - (index * 104729) % 3600


def our_records(count: int, now: int) -> Iterator[tuple[str, str, bytes, int]]:
    """Yield ``(session key, address, record, expires_at)`` of ``count`` login sessions.

    Each record is made by our store's ``encode()`` with Django's clock moved so that its
    signed expiry is the one wanted: exactly what the engine would have written back then.
    """
    from django_picklesessions import record
    from django_picklesessions.backends.db import SessionStore

    clock = [now]

    def moved_now() -> datetime:
        return datetime.fromtimestamp(clock[0], tz=timezone.utc)

    data = payloads.login_payload()
    store = SessionStore()
    with mock.patch("django.utils.timezone.now", moved_now):
        for index in range(count):
            key = secrets.token_hex(16)
            expires_at = _expiry(index, now)
            store._session_key = key
            clock[0] = expires_at - AGE  # issued two weeks before it expires
            data_bytes = store.encode(data)
            if index < 2 and record.peek_expiry(data_bytes) != expires_at:
                raise RuntimeError("could not move the clock: the records' expiry is wrong")
            yield key, store.address(key), data_bytes, expires_at


def stock_record() -> str:
    """Return the stock engines' encoding of the login payload (not bound to a key)."""
    from django.contrib.sessions.backends.db import SessionStore

    encoded: str = SessionStore().encode(payloads.login_payload())
    return encoded


def fill_our_files(root: Path, records: list[tuple[str, str, bytes, int]]) -> None:
    """Write each record where our file engine keeps it: ``root/ab/abcd…``, 0600, mtime."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    for _, address, data, expires_at in records:
        directory = root / address[:2]
        if not directory.is_dir():
            directory.mkdir(mode=0o700)
        path = directory / address
        fd = os.open(path, flags, 0o600)
        try:
            os.write(fd, data)
            os.utime(fd, (expires_at, expires_at))
        finally:
            os.close(fd)


def fill_stock_files(root: Path, count: int, now: int) -> None:
    """Write ``count`` files as Django's file engine does; mtime + 2 weeks is their expiry."""
    from django.conf import settings

    content = stock_record().encode("ascii")
    prefix = settings.SESSION_COOKIE_NAME
    for index in range(count):
        path = root / (prefix + secrets.token_hex(16))
        path.write_bytes(content)
        modified = _expiry(index, now) - AGE
        os.utime(path, (modified, modified))


def count_files(root: Path) -> int:
    """Count regular files under ``root`` (the sessions left after a cleanup)."""
    return sum(len(files) for _, _, files in os.walk(root))


def empty_dir(root: Path) -> None:
    """Remove everything under ``root`` and keep the directory itself."""
    for entry in root.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def create_templates(count: int, now: int) -> None:
    """Fill template copies of both session tables with ``count`` rows each, half expired."""
    from django.db import connection, transaction

    ops = connection.ops
    stock_data = stock_record()
    with connection.cursor() as cursor:
        for table in (OUR_TABLE, STOCK_TABLE):
            cursor.execute(f"DROP TABLE IF EXISTS tpl_{table}")
            cursor.execute(f"CREATE TABLE tpl_{table} AS SELECT * FROM {table} WHERE 1 = 0")

    def ours() -> Iterator[tuple[Any, ...]]:
        for _, address, data, expires_at in our_records(count, now):
            yield address, data, expires_at, 1

    def stock() -> Iterator[tuple[Any, ...]]:
        for index in range(count):
            expire = datetime.fromtimestamp(_expiry(index, now), tz=timezone.utc)
            yield secrets.token_hex(16), stock_data, ops.adapt_datetimefield_value(expire)

    columns = {
        OUR_TABLE: "address, record, expires_at, version",
        STOCK_TABLE: "session_key, session_data, expire_date",
    }
    for table, rows in ((OUR_TABLE, ours()), (STOCK_TABLE, stock())):
        names = columns[table]
        if connection.vendor == "postgresql":
            with (
                connection.cursor() as cursor,
                cursor.cursor.copy(f"COPY tpl_{table} ({names}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
            continue
        marks = ", ".join(["%s"] * len(names.split(",")))
        sql = f"INSERT INTO tpl_{table} ({names}) VALUES ({marks})"
        with transaction.atomic(), connection.cursor() as cursor:
            batch: list[tuple[Any, ...]] = []
            for row in rows:
                batch.append(row)
                if len(batch) == CHUNK:
                    cursor.executemany(sql, batch)
                    batch.clear()
            if batch:
                cursor.executemany(sql, batch)


def restore(table: str) -> None:
    """Replace a session table's rows with its template's, and refresh planner statistics."""
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {table}")
            cursor.execute(f"INSERT INTO {table} SELECT * FROM tpl_{table}")
            cursor.execute(f"VACUUM ANALYZE {table}")
            # The refill's WAL is flushed now, not by a checkpoint in the middle of a timing.
            cursor.execute("CHECKPOINT")
        elif connection.vendor == "mysql":
            # TRUNCATE recreates the table empty: a DELETE of every row would leave InnoDB's
            # purge of them to run during the next timing.
            cursor.execute(f"TRUNCATE TABLE {table}")
            with transaction.atomic():
                cursor.execute(f"INSERT INTO {table} SELECT * FROM tpl_{table}")
            cursor.execute(f"ANALYZE TABLE {table}")
            cursor.fetchall()
        else:
            with transaction.atomic():
                cursor.execute(f"DELETE FROM {table}")
                cursor.execute(f"INSERT INTO {table} SELECT * FROM tpl_{table}")
            cursor.execute(f"ANALYZE {table}")
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def count_rows(table: str) -> int:
    """Return how many rows a table holds."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {table}")
        return int(cursor.fetchone()[0])


# --- Report ------------------------------------------------------------------------------


def describe(label: str, result: Result, trace: Result | None, left: int, size: int) -> str:
    """Return one table line: time, rate, memory, and whether half the sessions are left."""
    rate = size / result.seconds / 1000
    traced = "" if trace is None else f"{trace.traced_peak_kib:11,} KiB"
    ok = "ok" if left == size - size // 2 else f"EXPECTED {size - size // 2}"
    return (
        f"   {label:<11}{size:>10,}{result.seconds:10.2f} s{rate:9.0f}k/s"
        f"{result.rss_growth_kib:9,} KiB{traced}   left {left:,} {ok}"
    )


HEADER = f"   {'engine':<11}{'sessions':>10}{'time':>12}{'rate':>11}{'peak RSS +':>13}"
TRACE_HEADER = f"{'traced peak':>15}"


def spread(values: list[float]) -> str:
    """Return ``median [min–max]`` of per-round values."""
    return f"{statistics.median(values):.2f} [{min(values):.2f}–{max(values):.2f}]"


def median_result(results: list[Result]) -> Result:
    """Return the result of the median time (its memory figures belong to that run)."""
    return sorted(results, key=lambda r: r.seconds)[len(results) // 2]


def run_files(
    sizes: list[int], workdir: Path, trace: bool, repeats: int
) -> dict[int, dict[str, Result]]:
    """Time both file engines' cleanup at each size; return the results by size and label."""
    from django.conf import settings

    from django_picklesessions.backends.file import SessionStore

    roots = {
        "ours-file": Path(settings.PICKLESESSIONS_FILE_PATH),
        "stock-file": Path(settings.SESSION_FILE_PATH),
        # Our layout, cleared by a bare scandir + stat + unlink loop (the same deletions).
        "floor-file": Path(settings.PICKLESESSIONS_FILE_PATH),
    }
    print(
        "\n== file engines: clear_expired, half of the sessions expired (login payload), "
        f"{repeats} rounds, engine order rotated; each store refilled before each run"
    )
    print(HEADER + (TRACE_HEADER if trace else ""))
    results: dict[int, dict[str, Result]] = {}
    for size in sizes:
        now = int(time.time())
        records = list(our_records(size, now))
        runs: dict[str, list[Result]] = {label: [] for label in roots}
        lefts: dict[str, int] = {}
        labels = list(roots)
        for round_ in range(repeats):
            order = labels[round_ % 3 :] + labels[: round_ % 3]
            for label in order:
                root = roots[label]
                if label == "stock-file":
                    fill_stock_files(root, size, now)
                else:
                    fill_our_files(root, records)
                os.sync()  # the realistic case: the files are on disk, not only in cache
                runs[label].append(measure(label, None, workdir, None, False))
                lefts[label] = count_files(root)
                if label == "ours-file":
                    # A valid session outlives the cleanup, and loads: the layout is the engine's.
                    loaded = SessionStore(records[0][0]).load()
                    if loaded.get("_auth_user_id") != "48213":
                        print("   WARNING: a valid session of ours does not load after cleanup")
                empty_dir(root)
        results[size] = {label: median_result(runs[label]) for label in roots}
        if trace:
            for label, root in roots.items():
                if label == "stock-file":
                    fill_stock_files(root, size, now)
                else:
                    fill_our_files(root, records)
                results[size][label + "+trace"] = measure(label, None, workdir, None, True)
                empty_dir(root)
        for label in roots:
            traced = results[size].get(label + "+trace")
            print(describe(label, results[size][label], traced, lefts[label], size))
        ours = [r.seconds for r in runs["ours-file"]]
        by_stock = [o / r.seconds for o, r in zip(ours, runs["stock-file"], strict=True)]
        by_floor = [o / r.seconds for o, r in zip(ours, runs["floor-file"], strict=True)]
        print(
            f"   {'':<11}{size:>10,}   ours ÷ stock time: {spread(by_stock)}; "
            f"ours ÷ bare unlink loop: {spread(by_floor)} (median [min–max] of {repeats} rounds)"
        )
        del records
    return results


def run_db(
    kind: str, sizes: list[int], workdir: Path, pg_name: str | None, trace: bool, repeats: int
) -> None:
    """Time both db engines' cleanup at each size on one database."""
    from django.db import connections

    print(
        f"\n== db engines on {kind}: clear_expired, half of the rows expired (login payload), "
        f"{repeats} rounds, order rotated"
    )
    print(f"   {djsetup.describe_database()}")
    print(HEADER + (TRACE_HEADER if trace else ""))
    tables = {"ours-db": OUR_TABLE, "stock-db": STOCK_TABLE, "one-delete-db": OUR_TABLE}
    for size in sizes:
        now = int(time.time())
        started = time.perf_counter()
        create_templates(size, now)
        print(f"   ({size:,} rows per table made in {time.perf_counter() - started:.1f} s)")
        runs: dict[str, list[Result]] = {label: [] for label in tables}
        traced: dict[str, Result] = {}
        lefts: dict[str, int] = {}
        for round_ in range(repeats):
            order = list(tables)[round_ % 3 :] + list(tables)[: round_ % 3]
            for label in order:
                restore(tables[label])
                connections.close_all()
                runs[label].append(measure(label, kind, workdir, pg_name, False))
                lefts[label] = count_rows(tables[label])
        if trace:
            for label, table in tables.items():
                restore(table)
                connections.close_all()
                traced[label] = measure(label, kind, workdir, pg_name, True)
        for label in tables:
            print(
                describe(label, median_result(runs[label]), traced.get(label), lefts[label], size)
            )
        ratios = [
            o.seconds / s.seconds for o, s in zip(runs["ours-db"], runs["stock-db"], strict=True)
        ]
        own = [
            o.seconds / s.seconds
            for o, s in zip(runs["ours-db"], runs["one-delete-db"], strict=True)
        ]
        print(
            f"   {'':<11}{size:>10,}   ours ÷ stock time: {spread(ratios)}; ours ÷ one DELETE "
            f"on our table: {spread(own)} (median [min–max] of {repeats} rounds; batches of "
            f"{_batch_size():,} rows)"
        )
        median = statistics.median(ratios)
        print(
            f"   target: ours-db never slower than stock's one DELETE at {size:,} rows "
            f"(ours ÷ stock ≤ 1): {median:.2f}  {harness.verdict(median <= 1.0)}"
        )
        with connections["default"].cursor() as cursor:
            for table in tables.values():
                cursor.execute(f"DROP TABLE IF EXISTS tpl_{table}")
                cursor.execute(f"DELETE FROM {table}")


def _batch_size() -> int:
    from django.db import connections

    from django_picklesessions.backends.db import SessionStore

    batch = os.environ.get("BENCH_CLEANUP_BATCH")
    return int(batch) if batch else SessionStore.expired_batch_size(connections["default"].vendor)


def file_summary(results: dict[int, dict[str, Result]]) -> None:
    """Print the file target with met / not met, and how memory grew with size."""
    if TARGET_FILE_SIZE not in results:
        print(f"\n== target: needs the {TARGET_FILE_SIZE:,}-session file size (not run)")
        return
    at = results[TARGET_FILE_SIZE]
    speedup = at["stock-file"].seconds / at["ours-file"].seconds
    print(
        f"\n== target: ours-file clear_expired at {TARGET_FILE_SIZE:,} sessions "
        f"≥ {TARGET_FILE_SPEEDUP:.0f}× faster than stock-file: {speedup:.1f}×  "
        f"{harness.verdict(speedup >= TARGET_FILE_SPEEDUP)}"
    )
    floor = at["ours-file"].seconds / at["floor-file"].seconds
    print(
        f"== target: ours-file ÷ bare unlink loop at {TARGET_FILE_SIZE:,} sessions "
        f"≤ {TARGET_FILE_FLOOR_RATIO}: {floor:.2f} (medians)  "
        f"{harness.verdict(floor <= TARGET_FILE_FLOOR_RATIO)}"
    )
    growth = ", ".join(
        f"{size:,}: peak RSS +{r['ours-file'].rss_growth_kib:,} KiB"
        + (
            f", traced peak {r['ours-file+trace'].traced_peak_kib:,} KiB"
            if "ours-file+trace" in r and r["ours-file+trace"].traced_peak_kib is not None
            else ""
        )
        for size, r in sorted(results.items())
    )
    print(f"   ours-file memory by size (flat is the target): {growth}")


def run_part(part: str, sizes: list[int], trace: bool, repeats: int) -> None:
    """Run one family (``file``, or ``db`` on one database kind) in this process."""
    workdir = Path(tempfile.mkdtemp(prefix="picklesessions-bench-cleanup-"))
    scratch = {"postgresql": djsetup.scratch_postgres, "mariadb": djsetup.scratch_mariadb}
    try:
        if part == "file":
            djsetup.configure(kind=None, workdir=workdir)
            print(harness.machine_line("bench.cleanup"))
            file_summary(run_files(sizes, workdir, trace, repeats))
        elif part in scratch:
            with scratch[part]("picklesessions_bench_cleanup") as name:
                djsetup.configure(kind=part, workdir=workdir, pg_name=name)
                djsetup.migrate()
                print(harness.machine_line("bench.cleanup"))
                run_db(part, sizes, workdir, name, trace, repeats)
        else:
            djsetup.configure(kind=part, workdir=workdir)
            djsetup.migrate()
            print(harness.machine_line("bench.cleanup"))
            run_db(part, sizes, workdir, None, trace, repeats)
    finally:
        from django.db import connections

        connections.close_all()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """Parse the options; run each family (and database) in a child process of its own."""
    parser = argparse.ArgumentParser(prog="python -m bench.cleanup", description=__doc__)
    parser.add_argument("--only", choices=("file", "db"), help="run only one family")
    parser.add_argument(
        "--db", help=f"database kinds for the db engines, comma-separated ({','.join(DB_KINDS)})"
    )
    parser.add_argument("--sizes", help="sizes, comma-separated (both families)")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument(
        "--trace", action="store_true", help="also measure tracemalloc peaks (a second run each)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="rounds per size (default 3)")
    parser.add_argument(
        "--batch", type=int, help="rows per db clear_expired batch (default: the engine's)"
    )
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument(
        "--child",
        choices=[*sorted(ENGINE_MODULES), "floor-file", "one-delete-db"],
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pg-name", help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch:
        # Read by the children through the environment: each is a fresh process.
        os.environ["BENCH_CLEANUP_BATCH"] = str(args.batch)
    if args.child:
        child(args.child, args.db, args.workdir, args.pg_name, args.traced)
        return
    chosen = [int(size) for size in args.sizes.split(",")] if args.sizes else None
    if args.part:
        run_part(args.part, chosen or [], args.trace, args.repeats)
        return

    kinds = (args.db or ",".join(DB_KINDS)).split(",")
    for kind in kinds:
        if kind not in djsetup.DB_KINDS:
            parser.error(f"unknown --db {kind!r}; choose from {', '.join(djsetup.DB_KINDS)}")
    file_sizes = chosen or list(QUICK_FILE_SIZES if args.quick else FILE_SIZES)
    db_sizes = chosen or list(QUICK_DB_SIZES if args.quick else DB_SIZES)
    parts: list[tuple[str, list[int]]] = []
    if args.only != "db":
        if djsetup.our_file_engine_available():
            parts.append(("file", file_sizes))
        else:
            print(f"{djsetup.OUR_FILE_ENGINE} is not importable: the file comparison is skipped")
    if args.only != "file":
        parts += [(kind, db_sizes) for kind in kinds]

    started = time.perf_counter()
    # Django is configured once per process: each part runs in a child of its own.
    for index, (part, sizes) in enumerate(parts):
        if index:
            print("\n" + "-" * 100 + "\n", flush=True)
        command = [sys.executable, "-m", "bench.cleanup", "--part", part]
        command += ["--sizes", ",".join(map(str, sizes))]
        command += ["--repeats", str(args.repeats)]
        if args.trace:
            command.append("--trace")
        subprocess.run(command, check=False)
    print(f"\n(bench.cleanup took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
