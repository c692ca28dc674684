"""Cache-in-front-of-db session engine: the db engine's table, read through a Django cache.

Set ``SESSION_ENGINE = "django_picklesessions.backends.cached_db"``; the cache is
``PICKLESESSIONS_CACHE_ALIAS`` (default: ``SESSION_CACHE_ALIAS``). The cache holds the same
signed record as the table, never an unpickled dict: a record from the cache is verified like
one from the database, and one that fails is read again from the database.

The database decides. Saves and deletes go to the database first (compare-and-swap there),
then to the cache; every cache write is followed by a look at the row's version, and an entry
the database has moved past is deleted at once. So a slow request that writes an older
record after a newer one (or after a delete) cannot leave it there for later reads to trust:
whoever writes last also checks last. A cache that fails degrades to the database, logged
once, never an error.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import BaseCache, caches
from django.db import connections, router, transaction

from django_picklesessions import record
from django_picklesessions.backends import db
from django_picklesessions.backends.base import SessionData
from django_picklesessions.conf import conf

logger = logging.getLogger("django_picklesessions")

#: Prefix of the cache keys, before the session's address.
KEY_PREFIX = "django_picklesessions.cached_db:"

# True while the cache is failing: the outage is logged when it starts, not on every request.
_cache_failing = False


def _failed(operation: str, exc: Exception) -> None:
    global _cache_failing
    if not _cache_failing:
        _cache_failing = True
        logger.warning(
            "Session cache %r failed (%s: %s); sessions are read from the database until it "
            "answers again.",
            conf.CACHE_ALIAS,
            operation,
            exc,
        )


def _recovered() -> None:
    global _cache_failing
    if _cache_failing:
        _cache_failing = False
        logger.warning("Session cache %r answers again.", conf.CACHE_ALIAS)


def _timeout(expires_at: int) -> int:
    # Never outlive the record's signed expiry (at least a second: 0 means "forever" to some
    # backends).
    return max(1, expires_at - int(time.time()))


class _Cache:
    """The operations the engine needs, on raw bytes, each failure logged once and absorbed.

    Django's RedisCache is driven through its client with the bytes as they are: its own
    ``get`` would unpickle whatever the server holds, so whoever can write to that Redis could
    run code whatever we store. Other backends go through the cache API (check W031 names the
    ones that unpickle what they read).
    """

    def __init__(self, cache: BaseCache) -> None:
        self.cache = cache
        self.raw = _is_django_redis_cache(cache)

    def _client(self) -> Any:
        # The primary server, for reads too: a replica could lag behind a write and its check.
        return self.cache._cache.get_client(write=True)  # type: ignore[attr-defined]

    def _key(self, key: str) -> str:
        return self.cache.make_and_validate_key(key)

    def get(self, key: str) -> bytes | None:
        try:
            value = self._client().get(self._key(key)) if self.raw else self.cache.get(key)
        except Exception as exc:
            _failed("get", exc)
            return None
        _recovered()
        return value if isinstance(value, bytes) else None

    def add(self, key: str, data: bytes, expires_at: int) -> bool:
        try:
            if self.raw:
                added = bool(self._client().set(self._key(key), data, nx=True, exat=expires_at))
            else:
                added = bool(self.cache.add(key, data, _timeout(expires_at)))
        except Exception as exc:
            _failed("add", exc)
            return False
        _recovered()
        return added

    def set(self, key: str, data: bytes, expires_at: int) -> bool:
        try:
            if self.raw:
                self._client().set(self._key(key), data, exat=expires_at)
            else:
                self.cache.set(key, data, _timeout(expires_at))
        except Exception as exc:
            _failed("set", exc)
            return False
        _recovered()
        return True

    def delete(self, key: str) -> None:
        try:
            if self.raw:
                self._client().delete(self._key(key))
            else:
                self.cache.delete(key)
        except Exception as exc:
            _failed("delete", exc)
            return
        _recovered()


def _is_django_redis_cache(cache: BaseCache) -> bool:
    try:
        from django.core.cache.backends.redis import RedisCache
    except ImportError:  # pragma: no cover - Django 4.0+ always has it
        return False
    return isinstance(cache, RedisCache)


@functools.cache
def _version_query(model: type[Any], alias: str) -> str:
    quote = connections[alias].ops.quote_name
    fields = {field.name: field for field in model._meta.concrete_fields}
    version, address = (quote(fields[name].column) for name in ("version", "address"))
    return f"SELECT {version} FROM {quote(model._meta.db_table)} WHERE {address} = %s"


class SessionStore(db.SessionStore):
    """The db engine's records, with a copy of each in a Django cache for reads."""

    @property
    def cache(self) -> _Cache:
        return _Cache(caches[conf.CACHE_ALIAS])

    @staticmethod
    def cache_key(address: str) -> str:
        """Return the cache key of a session's record."""
        return KEY_PREFIX + address

    def _stored_version(self, address: str) -> int | None:
        """Return the version of the row as the database has it now, or None if there is none."""
        alias = router.db_for_write(self.model)
        with connections[alias].cursor() as cursor:
            cursor.execute(_version_query(self.model, alias), [address])
            row = cursor.fetchone()
        return None if row is None else int(row[0])

    def _publish(self, address: str, data: bytes, expires_at: int, *, replace: bool) -> None:
        """Put a record the database holds into the cache, then make sure it still holds it.

        ``replace`` is for a save (this record is newer than any cached one); a read that
        missed only adds, so that it never replaces what a save put there meanwhile.
        """
        cache, key = self.cache, self.cache_key(address)
        written = cache.set(key, data, expires_at) if replace else cache.add(key, data, expires_at)
        if written and self._stored_version(address) != record.version_of(data):
            # The database moved on (a later save or a delete) before our write landed.
            cache.delete(key)

    def _forget(self, address: str) -> None:
        self.cache.delete(self.cache_key(address))

    # --- Reads: the cache, then the database ---------------------------------------------

    def _from_cache(self, address: str) -> SessionData | None:
        cached = self.cache.get(self.cache_key(address))
        if cached is None:
            return None
        session = self.decode_record(cached)  # logs a record that fails, as from storage
        return session if self._loaded_sid is not None else None

    def _db_loaded(self, address: str, data: bytes | None) -> SessionData:
        session = self._loaded(data)
        if data is not None and self._loaded_sid is not None:
            self._publish(address, data, record.peek_expiry(data) or 0, replace=False)
        return session

    def load(self) -> SessionData:  # type: ignore[override]
        address = self._key_to_read()
        if address is None:
            return self._loaded(None)
        session = self._from_cache(address)
        if session is not None:
            return session
        # Catch-ups after a lost race call _read directly: those always see the database.
        return self._db_loaded(address, self._read(address))

    async def aload(self) -> SessionData:  # type: ignore[override]
        address = self._key_to_read()
        if address is None:
            return self._loaded(None)
        session = await sync_to_async(self._from_cache)(address)
        if session is not None:
            return session
        data = await self._aread(address)
        return await sync_to_async(self._db_loaded)(address, data)

    # --- Writes: the database, then the cache --------------------------------------------

    def _after_write(self, address: str, data: bytes, expires_at: int) -> None:
        connection = connections[router.db_for_write(self.model)]
        if connection.in_atomic_block:
            # Uncommitted (ATOMIC_REQUESTS, a test case): publish once committed, and meanwhile
            # let reads go to the database rather than to the version being replaced.
            self._forget(address)
            transaction.on_commit(
                lambda: self._publish(address, data, expires_at, replace=True),
                using=connection.alias,
            )
        else:
            self._publish(address, data, expires_at, replace=True)

    def _after_remove(self, address: str) -> None:
        self._forget(address)
        connection = connections[router.db_for_write(self.model)]
        if connection.in_atomic_block:
            # A save that committed before our delete may publish after the line above.
            transaction.on_commit(lambda: self._forget(address), using=connection.alias)

    def _write(
        self, address: str, data: bytes, expires_at: int, must_create: bool, expected: int | None
    ) -> None:
        super()._write(address, data, expires_at, must_create, expected)
        self._after_write(address, data, expires_at)

    def _remove(self, address: str) -> None:
        super()._remove(address)
        self._after_remove(address)

    async def _awrite(
        self, address: str, data: bytes, expires_at: int, must_create: bool, expected: int | None
    ) -> None:
        await super()._awrite(address, data, expires_at, must_create, expected)
        await sync_to_async(self._after_write)(address, data, expires_at)

    async def _aremove(self, address: str) -> None:
        await super()._aremove(address)
        await sync_to_async(self._after_remove)(address)
