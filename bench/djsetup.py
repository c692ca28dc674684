"""Django settings of the storage benchmarks, and a scratch PostgreSQL database for each run.

No project settings are involved: each benchmark configures Django itself, with a SQLite
file in its own temporary directory (default journal mode, or WAL) or a PostgreSQL
database it creates on the local server and drops at the end, so that nothing another user
of the server keeps in ``test`` is touched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
from django.conf import settings

from bench import payloads

#: Deterministic, bench-only secret: 60 characters that pass Django's W009 rules.
SECRET_KEY = "q7Lr-bench-engines-Zt4x9WmKp2Vn8sYc5Hd3Jf6Gb1Qe0Ra-uTyEiOoPlA"

DB_KINDS = ("sqlite", "sqlite-wal", "postgresql", "mariadb")

#: The PostgreSQL server of the development machines (trust auth); ``PGUSER`` overrides.
PG_HOST = os.environ.get("PGHOST", "127.0.0.1")
PG_PORT = os.environ.get("PGPORT", "5432")
PG_USER = os.environ.get("PGUSER", "postgres")
#: The database connected to only to create and drop the scratch database.
PG_MAINTENANCE_DB = "test"
#: The MariaDB server of the development machines (root, no password); a scratch database
#: per run, as on PostgreSQL.
MARIADB_HOST = os.environ.get("MARIADB_HOST", "127.0.0.1")
MARIADB_PORT = int(os.environ.get("MARIADB_PORT", "3306"))

#: Module of our file engine (written in parallel; the benchmarks skip it while it is absent).
OUR_FILE_ENGINE = "django_picklesessions.backends.file"


def our_file_engine_available() -> bool:
    """Return True if our file engine can be imported (it is optional in the benchmarks)."""
    import importlib.util

    return importlib.util.find_spec(OUR_FILE_ENGINE) is not None


def _pg_connect(dbname: str) -> Any:
    import psycopg

    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, autocommit=True, connect_timeout=5
    )


@contextlib.contextmanager
def scratch_postgres(prefix: str = "picklesessions_bench") -> Iterator[str]:
    """Create an empty database for this run, yield its name, and drop it afterwards."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    with _pg_connect(PG_MAINTENANCE_DB) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        with _pg_connect(PG_MAINTENANCE_DB) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def scratch_mariadb(prefix: str = "picklesessions_bench") -> Iterator[str]:
    """Create an empty MariaDB database for this run, yield its name, and drop it afterwards."""
    import pymysql  # type: ignore[import-untyped]

    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    with pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root") as conn:
        conn.cursor().execute(f"CREATE DATABASE `{name}`")
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        with pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root") as conn:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")


def database(kind: str, workdir: Path, pg_name: str | None = None) -> dict[str, Any]:
    """Return the ``DATABASES['default']`` entry for a database kind."""
    if kind in ("sqlite", "sqlite-wal"):
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(workdir / f"{kind}.sqlite3")}
    if kind == "postgresql":
        if pg_name is None:
            raise ValueError("PostgreSQL needs the scratch database's name")
        return {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": PG_HOST,
            "PORT": PG_PORT,
            "NAME": pg_name,
            "USER": PG_USER,
        }
    if kind == "mariadb":
        if pg_name is None:
            raise ValueError("MariaDB needs the scratch database's name")
        import pymysql

        pymysql.install_as_MySQLdb()
        return {
            "ENGINE": "django.db.backends.mysql",
            "HOST": MARIADB_HOST,
            "PORT": MARIADB_PORT,
            "NAME": pg_name,
            "USER": "root",
        }
    raise ValueError(f"unknown database kind {kind!r}; choose from {', '.join(DB_KINDS)}")


def settings_dict(
    *,
    kind: str | None,
    workdir: Path,
    pg_name: str | None = None,
    conn_max_age: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    """Return the settings of a benchmark run: both session apps, LocMem cache, two file dirs."""
    databases = {} if kind is None else {"default": database(kind, workdir, pg_name)}
    if databases:
        databases["default"]["CONN_MAX_AGE"] = conn_max_age
    stock_files = workdir / "stock-files"
    our_files = workdir / "our-files"
    stock_files.mkdir(exist_ok=True)
    our_files.mkdir(mode=0o700, exist_ok=True)
    values: dict[str, Any] = {
        "SECRET_KEY": SECRET_KEY,
        "USE_TZ": True,
        "INSTALLED_APPS": ["django.contrib.sessions", "django_picklesessions"],
        "DATABASES": databases,
        # The stock ``cache`` and ``cached_db`` engines use this process-local cache; no
        # culling, so that a benchmark's session is never evicted behind its back.
        "CACHES": {
            "default": {
                "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                "OPTIONS": {"MAX_ENTRIES": 10_000_000},
            }
        },
        "SESSION_FILE_PATH": str(stock_files),
        "PICKLESESSIONS_FILE_PATH": str(our_files),
        "PICKLESESSIONS_ALLOWED_CLASSES": payloads.ALLOWED_CLASSES,
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
    }
    values.update(extra)
    return values


def _enable_wal(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=WAL")


def configure(
    *,
    kind: str | None,
    workdir: Path,
    pg_name: str | None = None,
    conn_max_age: int = 0,
    **extra: Any,
) -> None:
    """Configure Django for one benchmark process (once per process)."""
    values = settings_dict(
        kind=kind, workdir=workdir, pg_name=pg_name, conn_max_age=conn_max_age, **extra
    )
    settings.configure(**values)
    django.setup()
    if kind == "sqlite-wal":
        # A signal rather than OPTIONS["init_command"] (Django 5.1+): works on 4.2 too.
        from django.db.backends.signals import connection_created

        connection_created.connect(_enable_wal, dispatch_uid="bench.djsetup.wal")


def migrate() -> None:
    """Create both session tables (ours and ``django_session``) in the configured database."""
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def describe_database() -> str:
    """Return a short description of the default database (vendor, journal mode, version)."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA journal_mode")
            journal = cursor.fetchone()[0]
            cursor.execute("PRAGMA synchronous")
            sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(cursor.fetchone()[0], "?")
            cursor.execute("SELECT sqlite_version()")
            version = cursor.fetchone()[0]
            return f"SQLite {version} file, journal_mode={journal}, synchronous={sync}"
        if connection.vendor == "mysql":
            cursor.execute("SELECT VERSION()")
            return (
                f"MariaDB {cursor.fetchone()[0]} at {MARIADB_HOST}:{MARIADB_PORT}, scratch "
                f"database {connection.settings_dict['NAME']}"
            )
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
        return (
            f"PostgreSQL {version} at {PG_HOST}:{PG_PORT}, scratch database "
            f"{connection.settings_dict['NAME']}"
        )
