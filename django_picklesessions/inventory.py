"""Stream every stored record of the configured engine, for the operations commands.

Each engine has one iterator yielding ``(address, record bytes)`` in bounded batches, so a
scan of millions of sessions holds one batch at a time: keyset pages over the table (db,
cached_db), a walk of the fan-out tree (file), ``SCAN`` over the key prefix (redis). Nothing
here verifies, unpickles or writes anything.
"""

from __future__ import annotations

import os
import stat
import time
from argparse import ArgumentParser
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.management.base import CommandError
from django.utils.module_loading import import_string

from django_picklesessions.backends import db, locmem
from django_picklesessions.backends.base import PickleSessionBase
from django_picklesessions.conf import conf

if TYPE_CHECKING:
    from django_picklesessions.backends import file

#: Records fetched per query (db), per ``SCAN`` and pipeline of ``GET`` (redis).
BATCH_SIZE = 500

_HEX = frozenset("0123456789abcdef")


def _is_address(name: str) -> bool:
    return len(name) == 64 and _HEX.issuperset(name)


def store_class() -> type[PickleSessionBase]:
    """Return the configured engine's ``SessionStore``; refuse engines not of this package."""
    engine = settings.SESSION_ENGINE
    try:
        cls = import_string(engine + ".SessionStore")
    except ImportError as exc:
        raise CommandError(f"SESSION_ENGINE {engine!r} cannot be imported: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, PickleSessionBase)):
        raise CommandError(
            f"SESSION_ENGINE is {engine!r}: these commands work on the django_picklesessions "
            "engines only (db, cached_db, file, redis, locmem)."
        )
    return cls


def records(
    cls: type[PickleSessionBase], batch_size: int = BATCH_SIZE
) -> Iterator[tuple[str, bytes]]:
    """Yield ``(address, record)`` for every record ``cls`` stores, one batch in memory."""
    if issubclass(cls, db.SessionStore):  # cached_db too: the table is the truth
        return _db_records(cls, batch_size)
    # Imported only when configured: the file engine is POSIX-only, redis-py is optional.
    modules = {c.__module__ for c in cls.__mro__}
    if "django_picklesessions.backends.file" in modules:
        return _file_records(cls)  # type: ignore[arg-type]
    if "django_picklesessions.backends.redis" in modules:
        return _redis_records(batch_size)
    if issubclass(cls, locmem.SessionStore):
        return _locmem_records()
    raise CommandError(f"No way to list the records of {cls.__module__}.{cls.__qualname__}.")


def _db_records(cls: type[db.SessionStore], batch_size: int) -> Iterator[tuple[str, bytes]]:
    from django.db import connections, router

    model = cls.get_model_class()
    alias = router.db_for_read(model)
    quote = connections[alias].ops.quote_name
    fields = {field.name: field for field in model._meta.concrete_fields}
    address, data = (quote(fields[name].column or name) for name in ("address", "record"))
    # Keyset pagination: each page starts after the last address seen, so no OFFSET scan
    # grows with the table and no server-side cursor stays open between batches.
    sql = (
        f"SELECT {address}, {data} FROM {quote(model._meta.db_table)} "
        f"WHERE {address} > %s ORDER BY {address} LIMIT {int(batch_size)}"
    )
    last = ""
    while True:
        with connections[alias].cursor() as cursor:
            cursor.execute(sql, [last])
            rows = cursor.fetchall()
        for row_address, row_data in rows:
            yield str(row_address), bytes(row_data)
        if len(rows) < batch_size:
            return
        last = str(rows[-1][0])


def _file_records(cls: type[file.SessionStore]) -> Iterator[tuple[str, bytes]]:
    from django_picklesessions.backends import file

    root = cls._root()
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        with os.scandir(root_fd) as subdirs:
            names = [e.name for e in subdirs if len(e.name) == 2 and _HEX.issuperset(e.name)]
        for prefix in sorted(names):  # at most 256 names
            try:
                dir_fd = os.open(prefix, file._DIR_FLAGS, dir_fd=root_fd)
            except OSError:
                continue  # gone meanwhile, or a symlink planted there: not ours to walk
            try:
                yield from _subdir_records(dir_fd, prefix)
            finally:
                os.close(dir_fd)
    finally:
        os.close(root_fd)


def _subdir_records(dir_fd: int, prefix: str) -> Iterator[tuple[str, bytes]]:
    from django_picklesessions.backends import file

    limit = conf.MAX_RECORD_SIZE
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            name = entry.name
            if not (_is_address(name) and name.startswith(prefix)):
                continue  # temp and lock files
            try:
                fd = os.open(name, file._READ_FLAGS, dir_fd=dir_fd)
            except OSError:
                continue  # deleted meanwhile, or a symlink: the engine would not read it
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue
                # One byte over the limit is enough to know the record is refused.
                data = file._read_at_most(fd, limit + 1)
            finally:
                os.close(fd)
            yield name, data


def _redis_records(batch_size: int) -> Iterator[tuple[str, bytes]]:
    from django_picklesessions.backends import redis

    client = redis.sync_client()
    prefix = conf.REDIS_PREFIX
    pattern = _glob_escape(prefix) + "*"
    batch: list[str] = []
    for key in client.scan_iter(match=pattern, count=batch_size):
        name = key.decode() if isinstance(key, bytes) else str(key)
        if _is_address(name[len(prefix) :]):  # not the locks ("<prefix>lock:<address>")
            batch.append(name)
        if len(batch) >= batch_size:
            yield from _redis_batch(client, prefix, batch)
            batch = []
    yield from _redis_batch(client, prefix, batch)


def _redis_batch(client: Any, prefix: str, keys: list[str]) -> Iterator[tuple[str, bytes]]:
    if not keys:
        return
    # A pipeline of GETs, not MGET: on a Cluster the keys live in different slots.
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
    for key, value in zip(keys, pipe.execute(), strict=True):
        if isinstance(value, bytes):  # None: expired or deleted since SCAN listed it
            yield key[len(prefix) :], value


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _locmem_records() -> Iterator[tuple[str, bytes]]:
    for address, (data, _expires_at) in list(locmem._records.items()):
        yield address, data


def add_batch_size_argument(parser: ArgumentParser) -> None:
    """The ``--batch-size`` option every operations command takes."""
    parser.add_argument(
        "--batch-size",
        type=int,
        default=BATCH_SIZE,
        help="Records read per query or round trip (default %(default)s).",
    )


class Progress:
    """A self-overwriting ``N records, R/s`` line on a terminal; silent on anything else."""

    #: Records between two redraws.
    every = 1000

    def __init__(self, stream: Any, label: str = "records") -> None:
        self.stream = stream
        self.label = label
        self.enabled = bool(getattr(stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self.shown = False

    def __call__(self, count: int) -> None:
        if self.enabled and count % self.every == 0:
            rate = count / max(time.monotonic() - self.started, 1e-6)
            self.stream.write(f"\r{count} {self.label}, {rate:,.0f}/s", ending="")
            self.stream.flush()
            self.shown = True

    def done(self) -> None:
        if self.shown:
            self.stream.write("")  # end the line
