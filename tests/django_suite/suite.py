"""Fetch ``tests/sessions_tests`` from the sdist of the running Django version, and import it.

Django's session tests are not in its wheel, only in its source distribution on the package
index. They are downloaded with pip (so pip's index, proxy and certificate settings apply) on
first use, and only the ``sessions_tests`` package is kept, in a cache directory outside version
control (``.django-suite/django-<version>/`` at the repository root): later runs are offline.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path, PurePosixPath

import django

#: The package of Django's test suite that holds the session tests.
PACKAGE = "sessions_tests"
#: Where downloaded suites are kept; overridable, e.g. to share one cache between checkouts.
CACHE_ENV = "PICKLESESSIONS_DJANGO_SUITE_CACHE"
DEFAULT_CACHE = Path(__file__).resolve().parents[2] / ".django-suite"
#: A directory that already holds ``sessions_tests/`` (such as a Django checkout's ``tests/``),
#: used as is: no download. For development versions of Django, which have no sdist.
DIR_ENV = "PICKLESESSIONS_DJANGO_TESTS_DIR"
#: pip's per-request timeout and retries: an offline run gives up in seconds, not minutes.
PIP_TIMEOUT = "15"
PIP_RETRIES = "1"


class SuiteUnavailable(Exception):
    """Django's session tests for this version cannot be had (offline, no sdist, no pip)."""


def cache_root() -> Path:
    """Return the directory that holds one extracted suite per Django version."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def suite_dir(version: str | None = None) -> Path:
    """Return a directory holding ``sessions_tests/`` for ``version``, downloading it if needed."""
    override = os.environ.get(DIR_ENV)
    if override:
        path = Path(override)
        if not (path / PACKAGE / "tests.py").is_file():
            raise SuiteUnavailable(f"{DIR_ENV}={override} holds no {PACKAGE}/tests.py")
        return path
    version = version or django.get_version()
    target = cache_root() / f"django-{version}"
    if not (target / PACKAGE / "tests.py").is_file():
        _fetch(version, target)
    return target


def _fetch(version: str, target: Path) -> None:
    """Download Django's sdist, extract ``tests/sessions_tests`` into ``target`` atomically.

    Work happens in a temporary directory beside ``target`` that is renamed into place at the
    end, so parallel runs (tox) never see half a suite, and a lost race costs nothing.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=target.parent))
    try:
        sdist = _download(version, work / "download")
        staged = work / target.name
        _extract(sdist, staged / PACKAGE)
        (staged / "SOURCE.txt").write_text(
            f"Extracted tests/{PACKAGE}/ from {sdist.name}, fetched with pip download.\n",
            encoding="utf-8",
        )
        try:
            staged.rename(target)
        except OSError:
            if not (target / PACKAGE / "tests.py").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _download(version: str, dest: Path) -> Path:
    """Run ``pip download`` for Django's sdist; return the archive's path."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary=Django",
        "--disable-pip-version-check",
        "--quiet",
        f"--timeout={PIP_TIMEOUT}",
        f"--retries={PIP_RETRIES}",
        f"--dest={dest}",
        f"Django=={version}",
    ]
    # Development mode and warning filters of the test run are not pip's business.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDEVMODE", "PYTHONWARNINGS")}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SuiteUnavailable(f"pip download Django=={version} did not run: {exc}") from exc
    archives = sorted(dest.glob("*.tar.gz")) if dest.is_dir() else []
    if done.returncode != 0 or not archives:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")] or lines
        detail = " | ".join(errors[-3:]) or f"exit status {done.returncode}"
        raise SuiteUnavailable(f"pip download of the Django=={version} sdist failed: {detail}")
    return archives[0]


def _extract(sdist: Path, dest: Path) -> None:
    """Copy the regular files of ``<top>/tests/sessions_tests/`` (flat) out of ``sdist``.

    Members are read one by one and written under names we build, so nothing in the archive
    decides where a file lands.
    """
    dest.mkdir(parents=True)
    found = 0
    with tarfile.open(sdist, "r:gz") as archive:
        for member in archive:
            parts = PurePosixPath(member.name).parts
            if len(parts) != 4 or parts[1:3] != ("tests", PACKAGE) or not member.isfile():
                continue
            name = parts[3]
            if not name.endswith(".py") or name.startswith("."):
                continue
            source = archive.extractfile(member)
            if source is None:  # pragma: no cover - isfile() members always have data
                continue
            with source, open(dest / name, "wb") as out:
                shutil.copyfileobj(source, out)
            found += 1
    if not (dest / "tests.py").is_file():
        raise SuiteUnavailable(f"{sdist.name} has no tests/{PACKAGE}/tests.py ({found} files)")


def _stub_models() -> types.ModuleType:
    """Return a stand-in for ``sessions_tests.models``.

    The real module declares a model of django.contrib.sessions' db engine (``CustomSession``),
    which would need ``sessions_tests`` in INSTALLED_APPS and only serves
    ``CustomDatabaseSessionTests``, a test of that stock engine that we do not run. The stub
    lets the suite import under ``tests.settings`` unchanged.
    """
    module = types.ModuleType(f"{PACKAGE}.models", _stub_models.__doc__)

    class SessionStore:
        """Stands in for ``sessions_tests.models.SessionStore``; never instantiated."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("sessions_tests.models is a stub: CustomDatabaseSessionTests")

    module.SessionStore = SessionStore
    return module


def load() -> types.ModuleType:
    """Return Django's ``sessions_tests.tests`` module for the running Django version.

    The package is imported from its directory without touching ``sys.path``.
    """
    if PACKAGE not in sys.modules:
        directory = suite_dir() / PACKAGE
        spec = importlib.util.spec_from_file_location(
            PACKAGE, directory / "__init__.py", submodule_search_locations=[str(directory)]
        )
        assert spec is not None and spec.loader is not None
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        spec.loader.exec_module(package)
        sys.modules[f"{PACKAGE}.models"] = _stub_models()
    return importlib.import_module(f"{PACKAGE}.tests")
