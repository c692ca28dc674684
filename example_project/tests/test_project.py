"""The project as ``make run`` (migrate twice, runserver) and ``make serve`` start it."""

from __future__ import annotations

import contextlib
import http.client
import importlib.metadata
import importlib.util
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from django.apps import apps
from shop.models import Coupon, Product

from tests.conftest import seed_migration

MANAGE = Path(__file__).resolve().parent.parent / "manage.py"


def test_seeding_is_idempotent() -> None:
    seed_migration.seed(apps, None)
    seed_migration.seed(apps, None)
    assert Product.objects.count() == len(seed_migration.PRODUCTS) == 12
    assert Coupon.objects.count() == len(seed_migration.COUPONS)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(MANAGE), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def project_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a fresh checkout, with its runtime data in a temp directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXAMPLE_", "DJANGO_"))}
    env["EXAMPLE_VAR_DIR"] = str(tmp_path / "var")
    # The file engine refuses a directory inside the shared temp directory (check E006):
    # give the server a temp directory of its own, so that tmp_path is not inside it.
    (tmp_path / "tmp").mkdir()
    env["TMPDIR"] = str(tmp_path / "tmp")
    env["EXAMPLE_SESSION_ENGINE"] = "file"
    env["PYTHONWARNINGS"] = "error"
    return env


@pytest.fixture
def server(project_env: dict[str, str]) -> Iterator[str]:
    for _ in range(2):  # running it twice must work
        result = _manage(project_env, "migrate", "--noinput")
        assert result.returncode == 0, result.stderr
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, str(MANAGE), "runserver", f"127.0.0.1:{port}", "--noreload"],
        env=project_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with _serving(process, port, "runserver"):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def _serving(process: subprocess.Popen[bytes], port: int, name: str) -> Iterator[None]:
    """Wait until ``process`` accepts connections on ``port``; always stop it afterwards."""
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{name} did not start") from None
                time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_migrate_twice_then_runserver_serves_the_shop(
    server: str, project_env: dict[str, str]
) -> None:
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    with opener.open(server + "/") as response:
        assert response.status == 200
        assert b"Ceremonial matcha" in response.read()
    with opener.open(server + "/static/shop/shop.css") as response:
        assert response.status == 200
    with opener.open(server + "/products/sencha/") as response:  # starts a session
        assert response.status == 200
    sessions = Path(project_env["EXAMPLE_VAR_DIR"]) / "sessions"
    assert stat.S_IMODE(sessions.stat().st_mode) == 0o700
    assert len([p for p in sessions.rglob("*") if p.is_file()]) == 1


ROOT = MANAGE.parent.parent


def _get(port: int, path: str, host: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host, **headers})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.fixture
def gunicorn(project_env: dict[str, str]) -> Iterator[int]:
    """What ``make serve`` runs: DEBUG off, collectstatic, gunicorn from the repo root."""
    if importlib.util.find_spec("gunicorn") is None:
        pytest.skip("gunicorn is not installed (it is in the test dependency group)")
    env = {**project_env, "EXAMPLE_DEBUG": "0", "EXAMPLE_ALLOWED_HOSTS": "shop.example"}
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        result = _manage(env, *command)
        assert result.returncode == 0, result.stderr
    port = _free_port()
    command = [sys.executable, "-m", "gunicorn", "example_project.config.wsgi"]
    command += ["--bind", f"127.0.0.1:{port}", "--workers", "2"]
    version = importlib.metadata.version("gunicorn").split(".")
    if (int(version[0]), int(version[1])) >= (25, 1):
        command.append("--no-control-socket")  # else it shares ~/.gunicorn with every server
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    with _serving(process, port, "gunicorn"):
        yield port


def test_gunicorn_from_the_repo_root_serves_pages_and_static_files(gunicorn: int) -> None:
    status, _, body = _get(gunicorn, "/", "shop.example")
    assert status == 200 and b"Ceremonial matcha" in body
    status, headers, body = _get(gunicorn, "/static/shop/shop.css", "shop.example")
    assert status == 200 and headers["Content-Type"].startswith("text/css") and body
    status, headers, _ = _get(
        gunicorn, "/static/shop/shop.js", "shop.example", **{"Accept-Encoding": "gzip"}
    )
    assert status == 200 and headers.get("Content-Encoding") == "gzip"  # collectstatic's copy
    assert "Set-Cookie" not in headers  # static files never start a session
    # EXAMPLE_ALLOWED_HOSTS names the hosts; any other Host header is refused.
    assert _get(gunicorn, "/", "127.0.0.1")[0] == 400
