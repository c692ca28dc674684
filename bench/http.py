"""HTTP benchmark: add-to-cart requests through gunicorn, our engines against Django's.

Run from the repository root as ``python -m bench.http [--quick] [--workers 3] [--clients 8]
[--requests 150] [--rounds 5]``. It starts one gunicorn (sync workers, 127.0.0.1, a free
port) per engine, serving ``bench.wsgi_project``: ours-db and stock-db on a scratch
PostgreSQL database, ours-file and stock-file on local directories. Then, in rounds that
rotate the servers' order, a load generator in this process runs N client threads, each
with its own session cookie: one login request (not counted), then a fixed number of
add-to-cart requests, stopping early at a time cap. It reports requests/second (median of
the rounds), p50/p99 latency (all counted requests) and the ratios ours/stock. The servers
are stopped at the end, whatever happens; it never fails on the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import FrameType

from bench import djsetup, harness

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
PG_ENGINES = ("ours-db", "stock-db")
FILE_ENGINES = ("ours-file", "stock-file")
PAIRS = (("ours-db", "stock-db"), ("ours-file", "stock-file"))
#: Target: cart-add requests/second on PostgreSQL, ours-db / stock-db.
TARGET_PG_RPS = 1.6


# --- Servers ------------------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port on the loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A gunicorn master this run started (in a session of its own) and its port."""

    label: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Stop the master (it stops its workers); kill its process group if it lingers."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        # The master was started as a session leader: its group id is its pid, and holds
        # only its workers. Anything left over (a stuck worker) goes with the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


def start_server(
    label: str, workdir: Path, pg_name: str | None, workers: int, timeout: float = 60
) -> Server:
    """Start gunicorn for one engine and wait until it answers on its health URL."""
    port = free_port()
    log = workdir / f"gunicorn-{label}.log"
    env = {
        **os.environ,
        "BENCH_ENGINE": label,
        "BENCH_WORKDIR": str(workdir),
        "BENCH_DB": "postgresql" if label in PG_ENGINES else "",
        "BENCH_PG_NAME": pg_name or "",
        "PYTHONPATH": str(REPO),
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(workers),
        "--worker-class",
        "sync",
        "--bind",
        f"{HOST}:{port}",
        "--chdir",
        str(REPO),
        "--log-level",
        "warning",
        "--error-logfile",
        str(log),
        "bench.wsgi_project:application",
    ]
    process = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    server = Server(label, port, process, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/health/")
            if conn.getresponse().status == 200:
                conn.close()
                return server
        time.sleep(0.2)
    server.stop()
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise RuntimeError(f"gunicorn for {label} did not start:\n{tail}")


# --- Load ----------------------------------------------------------------------------------


@dataclass
class Phase:
    """What one engine's load phase of one round measured."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    client_cpu: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


def _cookie(response: http.client.HTTPResponse, current: str | None) -> str | None:
    for header in response.headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        if name.strip() == "sessionid":
            value = rest.split(";", 1)[0]
            return value or None
    return current


def client(port: int, requests: int, deadline: float, out: Phase, lock: threading.Lock) -> None:
    """Log in, then add to the cart ``requests`` times (or until ``deadline``)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    cookie: str | None = None
    latencies: list[float] = []
    errors = 0
    try:
        for index in range(-1, requests):
            if time.perf_counter() > deadline:
                break
            url = "/login/" if index < 0 else f"/cart/add/{index}/"
            headers = {"Cookie": f"sessionid={cookie}"} if cookie else {}
            started = time.perf_counter()
            try:
                conn.request("GET", url, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
                continue
            elapsed = time.perf_counter() - started
            if response.status != 200:
                errors += 1
            elif index >= 0:
                latencies.append(elapsed)
            cookie = _cookie(response, cookie)
    finally:
        conn.close()
    with lock:
        out.latencies += latencies
        out.errors += errors


def load(port: int, clients: int, requests: int, cap: float) -> Phase:
    """Run ``clients`` threads against one server; return their latencies and the wall time."""
    phase = Phase()
    lock = threading.Lock()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    deadline = started + cap
    threads = [
        threading.Thread(target=client, args=(port, requests, deadline, phase, lock))
        for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phase.seconds = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    used = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    phase.client_cpu = used / phase.seconds
    return phase


# --- Report ---------------------------------------------------------------------------------


def report(results: dict[str, list[Phase]]) -> dict[str, float]:
    """Print each engine's throughput and latency, then the ratios; return median rps."""
    print(
        f"\n   {'engine':<12}{'rps (median)':>14}{'rps min–max':>16}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'requests':>10}{'errors':>8}{'client CPU':>12}"
    )
    medians: dict[str, float] = {}
    p50s: dict[str, float] = {}
    for label, phases in results.items():
        rps = [phase.rps for phase in phases]
        latencies = [lat for phase in phases for lat in phase.latencies]
        medians[label] = statistics.median(rps)
        p50s[label] = harness.percentile(latencies, 0.50) * 1000
        p99 = harness.percentile(latencies, 0.99) * 1000
        cpu = statistics.median(phase.client_cpu for phase in phases)
        errors = sum(phase.errors for phase in phases)
        print(
            f"   {label:<12}{medians[label]:14.0f}{min(rps):8.0f}–{max(rps):<7.0f}"
            f"{p50s[label]:9.2f}{p99:9.2f}{len(latencies):10}{errors:8}{cpu:11.0%}"
        )
    for ours, stock in PAIRS:
        if ours in medians and stock in medians:
            print(
                f"   {ours} / {stock}: rps {medians[ours] / medians[stock]:.2f}×, "
                f"p50 latency {p50s[ours] / p50s[stock]:.2f}×"
            )
    return medians


@contextlib.contextmanager
def servers(
    labels: list[str], workdir: Path, pg_name: str | None, workers: int
) -> Iterator[dict[str, Server]]:
    """Start one gunicorn per engine and stop every one of them on the way out."""
    started: dict[str, Server] = {}
    try:
        for label in labels:
            started[label] = start_server(label, workdir, pg_name, workers)
        yield started
    finally:
        for server in started.values():
            server.stop()


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop servers


def main(argv: list[str] | None = None) -> None:
    """Parse the options, start the servers, run the rounds, report, stop everything."""
    parser = argparse.ArgumentParser(prog="python -m bench.http", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 rounds, 4 clients × 30 requests")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn sync workers (3)")
    parser.add_argument("--clients", type=int, help="concurrent clients (8)")
    parser.add_argument("--requests", type=int, help="add-to-cart requests per client (150)")
    parser.add_argument("--rounds", type=int, help="rounds over all engines (5)")
    parser.add_argument("--cap", type=float, default=30.0, help="seconds cap of a phase (30)")
    args = parser.parse_args(argv)
    clients = args.clients or (4 if args.quick else 8)
    requests = args.requests or (30 if args.quick else 150)
    rounds = args.rounds or (2 if args.quick else 5)
    if importlib.util.find_spec("gunicorn") is None:
        print("bench.http needs gunicorn: pip install gunicorn (in the dev dependency group)")
        return
    signal.signal(signal.SIGTERM, _terminate)

    labels = list(PG_ENGINES) + [
        label
        for label in FILE_ENGINES
        if label != "ours-file" or djsetup.our_file_engine_available()
    ]
    workdir = Path(tempfile.mkdtemp(prefix="picklesessions-bench-http-"))
    try:
        with djsetup.scratch_postgres("picklesessions_bench_http") as pg_name:
            djsetup.configure(kind="postgresql", workdir=workdir, pg_name=pg_name)
            djsetup.migrate()
            print(harness.machine_line("bench.http"))
            print(
                f"   gunicorn {metadata.version('gunicorn')}, {args.workers} sync workers per "
                f"server, {clients} clients × {requests} add-to-cart requests per phase (cap "
                f"{args.cap:.0f} s), {rounds} rounds; db engines on {djsetup.describe_database()}"
                "; workers keep their database connection (CONN_MAX_AGE=600)"
            )
            print(
                "   ours keep the cart as real objects (Decimal, datetime, dataclasses); stock as "
                "JSON-safe dicts. Client and servers share this machine's CPUs."
            )
            from django.db import connections

            connections.close_all()
            results: dict[str, list[Phase]] = {label: [] for label in labels}
            with servers(labels, workdir, pg_name, args.workers) as running:
                for label, server in running.items():  # warm-up: imports, connections
                    load(server.port, clients, 5, args.cap)
                    print(f"   {label} serving on {HOST}:{server.port}", flush=True)
                for index in range(rounds):
                    shift = index % len(labels)
                    for label in labels[shift:] + labels[:shift]:
                        results[label].append(
                            load(running[label].port, clients, requests, args.cap)
                        )
                    print(f"   round {index + 1}/{rounds} done", flush=True)
            medians = report(results)
            ratio = medians["ours-db"] / medians["stock-db"]
            # Both phases of a round ran back to back: their ratio, round by round, is the spread.
            per_round = [
                ours.rps / stock.rps
                for ours, stock in zip(results["ours-db"], results["stock-db"], strict=True)
                if stock.rps
            ]
            spread = f" [per round {min(per_round):.2f}–{max(per_round):.2f}]" if per_round else ""
            print(
                f"\n== target: cart-add rps on PostgreSQL, ours-db / stock-db ≥ {TARGET_PG_RPS}×: "
                f"{ratio:.2f}×{spread}  {harness.verdict(ratio >= TARGET_PG_RPS)}"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
