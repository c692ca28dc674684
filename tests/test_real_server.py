"""Concurrent requests of one user through a real server never lose each other's changes.

gunicorn serves ``tests/real_server`` with several sync worker processes on 127.0.0.1; client
threads sharing one session cookie add products at once, each request pausing between
loading the session and changing it so that requests race to save. At the end every
product is in the cart (a merge policy sums the quantities of the ``cart`` key), and every
client's own ``seen_<client>`` key, which has no policy, is complete, and every request's flash
message is shown (the default ``_messages`` merge). Runs on the db engine
(a SQLite WAL file, or a scratch PostgreSQL or MariaDB database, after
``PICKLESESSIONS_TEST_DB``), on the file engine, on the redis engine, and on cached_db (that
database behind a RedisCache the workers share).
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.metadata
import importlib.util
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.real_server import CONFLICT

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 4
CLIENTS = 8
PRODUCTS_PER_CLIENT = 5
#: Milliseconds each add waits between loading the session and changing it.
PAUSE_MS = 20
#: Seconds: one request, server start-up, and all the clients of one test together.
REQUEST_TIMEOUT = 10.0
STARTUP_TIMEOUT = 20.0
LOAD_TIMEOUT = 30.0


@dataclass
class Server:
    """A running gunicorn, its port and its log."""

    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    #: Where the log of the current test starts.
    log_offset: int = 0

    def log(self, since: int = 0) -> str:
        return self.log_path.read_bytes()[since:].decode(errors="replace")

    def conflicts(self) -> int:
        """Return how many saves lost a race since the current test started."""
        return self.log(self.log_offset).count(CONFLICT)


@dataclass
class Response:
    status: int
    body: bytes
    cookies: SimpleCookie = field(default_factory=SimpleCookie)

    def json(self) -> Any:
        return json.loads(self.body)


def request(server: Server, method: str, path: str, session_key: str | None = None) -> Response:
    """Send one request on a new loopback connection (sync workers do not keep it alive)."""
    headers = {"Cookie": f"sessionid={session_key}"} if session_key else {}
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=REQUEST_TIMEOUT)
    try:
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        cookies: SimpleCookie = SimpleCookie()
        for header in response.headers.get_all("Set-Cookie") or []:
            cookies.load(header)
        return Response(response.status, response.read(), cookies)
    finally:
        connection.close()


# --- Databases ----------------------------------------------------------------------------


def _scratch_name() -> str:
    return f"test_picklesessions_realserver_{os.getpid()}"


@contextlib.contextmanager
def _postgresql() -> Iterator[str]:
    """Create a scratch database on the local server, and drop it afterwards."""
    import psycopg

    name = _scratch_name()
    params = {"host": "127.0.0.1", "port": 5432, "user": os.environ.get("PGUSER", "postgres")}
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def _mariadb() -> Iterator[str]:
    """Create a scratch database on the local server, and drop it afterwards."""
    import pymysql  # type: ignore[import-untyped]

    name = _scratch_name()

    def execute(sql: str) -> None:
        connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
        finally:
            connection.close()

    execute(f"DROP DATABASE IF EXISTS `{name}`")
    execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield name
    finally:
        execute(f"DROP DATABASE IF EXISTS `{name}`")


@contextlib.contextmanager
def _sqlite(directory: Path) -> Iterator[str]:
    """A database file in WAL mode (kept by the file), so readers never block the writer."""
    path = directory / "sessions.sqlite3"
    connection = sqlite3.connect(path)
    try:
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    finally:
        connection.close()
    assert mode == "wal"
    yield str(path)


@contextlib.contextmanager
def _environment(engine: str, directory: Path) -> Iterator[dict[str, str]]:
    """Yield the server's environment, with its storage ready (migrated) and cleaned up."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.real_server.settings",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "REALSERVER_ENGINE": engine,
    }
    if engine == "file":
        env["REALSERVER_FILE_PATH"] = str(directory / "sessions")
        yield env
        return
    if engine in ("redis", "cached_db"):
        env["REALSERVER_REDIS_PREFIX"] = f"{settings.PICKLESESSIONS_REDIS_PREFIX}realserver:"
    if engine == "redis":
        yield env
        return
    kind = settings.TEST_DB
    database = (
        _sqlite(directory)
        if kind == "sqlite"
        else {"postgresql": _postgresql, "mariadb": _mariadb}[kind]()
    )
    with database as name:
        env.update(REALSERVER_DB=kind, REALSERVER_DB_NAME=name)
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=60,
        )
        yield env


# --- The server ---------------------------------------------------------------------------


def _require_gunicorn() -> None:
    if importlib.util.find_spec("gunicorn") is not None:
        return
    reason = "gunicorn is not installed (it is in the test dependency group)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI runs the real-server tests.")
    pytest.skip(reason)


def _gunicorn_command(fd: int) -> list[str]:
    command = [sys.executable, "-m", "gunicorn", "tests.real_server.wsgi:application"]
    command += ["--bind", f"fd://{fd}", "--workers", str(WORKERS), "--worker-class", "sync"]
    command += ["--timeout", "20", "--graceful-timeout", "3", "--access-logfile", "-"]
    version = importlib.metadata.version("gunicorn")
    if tuple(int(part) for part in version.split(".")[:2] if part.isdigit()) >= (25, 1):
        # Else every server of the machine shares ~/.gunicorn/gunicorn.ctl.
        command.append("--no-control-socket")
    return command


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop gunicorn gracefully, else kill its process group (the master and its workers)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _wait_until_serving(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"gunicorn exited with {server.process.returncode}:\n{server.log()}")
        with contextlib.suppress(OSError):
            if request(server, "GET", "/contents/").status == 200:
                return
        time.sleep(0.1)
    pytest.fail(f"gunicorn did not answer within {STARTUP_TIMEOUT} s:\n{server.log()}")


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("db", marks=pytest.mark.db),
        pytest.param("file"),
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cached_db", marks=[pytest.mark.db, pytest.mark.redis]),
    ],
)
def running_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Start gunicorn on a free loopback port for one engine; always stop it."""
    _require_gunicorn()
    directory = tmp_path_factory.mktemp(f"real-server-{request.param}")
    log_path = directory / "gunicorn.log"
    with (
        _environment(request.param, directory) as env,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener,
        log_path.open("wb") as log,
    ):
        # Bound here and handed over: no other process can take the port meanwhile.
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        listener.set_inheritable(True)
        process = subprocess.Popen(
            _gunicorn_command(listener.fileno()),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=[listener.fileno()],
            start_new_session=True,
        )
        try:
            server = Server(listener.getsockname()[1], log_path, process)
            _wait_until_serving(server)
            yield server
        finally:
            _stop(process)


@pytest.fixture
def server(running_server: Server, request: pytest.FixtureRequest) -> Iterator[Server]:
    """The module's server; its log is printed when the test fails."""
    running_server.log_offset = running_server.log_path.stat().st_size
    failed_before = request.session.testsfailed
    yield running_server
    if request.session.testsfailed > failed_before:
        print(f"--- gunicorn log ---\n{running_server.log(running_server.log_offset)}")


# --- Load -----------------------------------------------------------------------------------


def start_session(server: Server) -> str:
    response = request(server, "GET", "/start/")
    assert response.status == 200, response.body
    return response.cookies["sessionid"].value


def run_clients(server: Server, session_key: str, plans: list[list[int]]) -> list[Response]:
    """Run one thread per plan, each adding its products in order; return every response.

    Bounded: ``LOAD_TIMEOUT`` seconds for all of them, ``REQUEST_TIMEOUT`` per request.
    """
    deadline = time.monotonic() + LOAD_TIMEOUT
    barrier = threading.Barrier(len(plans))

    def client(index: int, products: list[int]) -> list[Response]:
        barrier.wait(timeout=REQUEST_TIMEOUT)  # all start at once
        responses = []
        for product in products:
            if time.monotonic() > deadline:
                break
            path = f"/add/{index}/{product}/?pause={PAUSE_MS}"
            responses.append(request(server, "POST", path, session_key))
        return responses

    with ThreadPoolExecutor(max_workers=len(plans)) as executor:
        futures = [executor.submit(client, i, plan) for i, plan in enumerate(plans)]
        done, pending = wait(futures, timeout=LOAD_TIMEOUT + REQUEST_TIMEOUT)
        assert not pending, f"{len(pending)} clients still running after {LOAD_TIMEOUT} s"
        responses = [response for future in futures for response in future.result()]
    assert len(responses) == sum(map(len, plans)), f"the load hit its {LOAD_TIMEOUT} s cap"
    failed = [(r.status, r.body[:200]) for r in responses if r.status != 200]
    assert not failed, failed
    return responses


def contents(server: Server, session_key: str) -> dict[str, Any]:
    response = request(server, "GET", "/contents/", session_key)
    assert response.status == 200, response.body
    return response.json()


# --- Tests ----------------------------------------------------------------------------------


def test_distinct_products_of_concurrent_clients_all_survive(server: Server) -> None:
    key = start_session(server)
    plans = [[client * 100 + n for n in range(PRODUCTS_PER_CLIENT)] for client in range(CLIENTS)]
    responses = run_clients(server, key, plans)

    found = contents(server, key)
    expected = {str(product): 1 for plan in plans for product in plan}
    assert found["cart"] == expected  # the cart's merge policy keeps every addition
    # No policy on seen_<client>: each is changed by one client only, so every list is whole.
    assert found["seen"] == {f"seen_{client}": plan for client, plan in enumerate(plans)}
    # The default _messages merge: every request's "Added …" message is shown, once.
    expected_messages = [f"Added {p} for client {c}." for c, plan in enumerate(plans) for p in plan]
    assert sorted(found["messages"]) == sorted(expected_messages)
    # The requests did overlap, in several processes: saves lost races and were replayed.
    assert len({r.json()["pid"] for r in responses}) > 1
    assert server.conflicts() > 0


def test_the_same_product_added_concurrently_adds_up(server: Server) -> None:
    adds = 10
    # Two clients do not always overlap (a fast engine on a loaded machine): each round must
    # come out right, and rounds go on until one has lost a race and been replayed.
    for _ in range(5):
        key = start_session(server)
        run_clients(server, key, [[7] * adds, [7] * adds])

        found = contents(server, key)
        assert found["cart"] == {"7": 2 * adds}
        assert found["seen"] == {"seen_0": [7] * adds, "seen_1": [7] * adds}
        assert sorted(found["messages"]) == sorted(
            [f"Added 7 for client {client}." for client in (0, 1) for _ in range(adds)]
        )
        if server.conflicts() > 0:
            break
    assert server.conflicts() > 0
