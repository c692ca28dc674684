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
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.core.cache import BaseCache, caches
from django.db import connections, router, transaction

from django_picklesessions import record
from django_picklesessions.backends import db
from django_picklesessions.backends.base import SessionData, UserLink
from django_picklesessions.conf import conf

logger = logging.getLogger("django_picklesessions")
T = TypeVar("T")

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


#: Entries that a failed write or delete may have left stale, by (alias, cache key): what the
#: retry does (tombstone or not) and a sequence number. They are deleted after this process's
#: next cache operation that succeeds, and read as misses until then, so that a logout or a
#: save made during a blip takes effect here as soon as the cache answers again.
_stale: dict[tuple[str, str], tuple[bool, int]] = {}
_stale_lock = threading.Lock()
_stale_seq = itertools.count()
#: Past this many, new ones are not remembered (logged once): flush the cache instead.
MAX_STALE = 10_000
#: Stale entries dropped after one successful operation, at most.
STALE_BATCH = 100
_stale_overflowed = False


def _remember_stale(alias: str, key: str, deleted: bool) -> None:
    global _stale_overflowed
    with _stale_lock:
        if len(_stale) < MAX_STALE or (alias, key) in _stale:
            _stale[alias, key] = (deleted, next(_stale_seq))
            return
        overflowed, _stale_overflowed = _stale_overflowed, True
    if not overflowed:
        logger.warning(
            "Session cache %r: more than %d entries may be stale after failed writes; flush "
            "the cache once it answers, or logouts and saves made meanwhile may not show.",
            alias,
            MAX_STALE,
        )


def _timeout(expires_at: int) -> int:
    # Never outlive the record's signed expiry (at least a second: 0 means "forever" to some
    # backends).
    return max(1, expires_at - int(time.time()))


#: Marks a deleted session in a RedisCache, so that a save that committed before the delete
#: cannot publish its record after it. Shorter than any record: never mistaken for one.
TOMBSTONE = b"deleted"
#: Seconds a tombstone lasts: far longer than a publish can lag behind its commit.
TOMBSTONE_SECONDS = 300

# KEYS[1] the cache entry; ARGV[1] a record, ARGV[2] its expiry (Unix seconds), ARGV[3] the
# tombstone. Stores the record unless the entry holds a tombstone, or a record of ours
# (magic) with the same or a higher version (header bytes 26-33, compared byte by byte: Lua's
# string order follows the server's locale). Returns 0 if refused, 1 if it replaced an older
# record, 2 if there was none to compare with (absent, evicted, or not ours).
PUBLISH_SCRIPT = """
local head = redis.pcall("GETRANGE", KEYS[1], 0, 33)
if type(head) == "table" then head = "" end
if head == ARGV[3] then return 0 end
local compared = #head == 34 and string.sub(head, 1, 4) == string.sub(ARGV[1], 1, 4)
if compared then
  for i = 27, 34 do
    local stored, new = string.byte(head, i), string.byte(ARGV[1], i)
    if stored > new then return 0 end
    if stored < new then break end
    if i == 34 then return 0 end
  end
end
redis.call("SET", KEYS[1], ARGV[1], "EXAT", ARGV[2])
if compared then return 1 end
return 2
"""


class _Cache:
    """The operations the engine needs, on raw bytes, each failure logged once and absorbed.

    Django's RedisCache is driven through its client with the bytes as they are (its own
    ``get`` would unpickle whatever the server holds, so whoever can write to that Redis could
    run code whatever we store), and publishes atomically, never over a newer version. Other
    backends go through the cache API (check W031 names the ones that unpickle what they read).
    """

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.cache = caches[alias]
        self.raw = _is_django_redis_cache(self.cache)

    def _client(self) -> Any:
        # The primary server, for reads too: a replica could lag behind a write.
        return self.cache._cache.get_client(write=True)  # type: ignore[attr-defined]

    def _key(self, key: str) -> str:
        return self.cache.make_and_validate_key(key)

    def _do(
        self,
        operation: str,
        call: Callable[[], T],
        failed: T,
        *,
        stale: str | None = None,
        deleted: bool = False,
    ) -> T:
        """Run ``call``; if it fails, log, remember ``stale`` for dropping, return ``failed``."""
        try:
            result = call()
        except Exception as exc:
            _failed(operation, exc)
            if stale is not None:
                _remember_stale(self.alias, stale, deleted)
            return failed
        _recovered()
        if _stale:
            self._drop_stale()
        return result

    def _drop(self, key: str, deleted: bool) -> None:
        if self.raw and deleted:
            self._client().set(self._key(key), TOMBSTONE, ex=TOMBSTONE_SECONDS)
        else:
            self.cache.delete(key)

    def _drop_stale(self, only: str | None = None) -> None:
        """Delete entries failed writes may have left stale (``only`` that one, or a batch).

        Stops at the first failure; a batch is bounded so that no one request pays for a
        long outage's backlog.
        """
        with _stale_lock:
            if only is not None:
                found = _stale.get((self.alias, only))
                mine = [] if found is None else [(only, found)]
            else:
                mine = [(k, v) for (a, k), v in _stale.items() if a == self.alias][:STALE_BATCH]
        for key, (deleted, seq) in mine:
            try:
                self._drop(key, deleted)
            except Exception as exc:
                _failed("delete", exc)
                return
            with _stale_lock:
                # Unless a failure since asked again (a new sequence number): that one stays.
                if _stale.get((self.alias, key), (False, seq))[1] == seq:
                    _stale.pop((self.alias, key), None)

    def get(self, key: str) -> bytes | None:
        if _stale and (self.alias, key) in _stale:
            self._drop_stale(only=key)
            if (self.alias, key) in _stale:
                return None  # still possibly stale: read the database instead
        if self.raw:
            value = self._do("get", lambda: self._client().get(self._key(key)), None)
        else:
            value = self._do("get", lambda: self.cache.get(key), None)
        return value if isinstance(value, bytes) and value != TOMBSTONE else None

    def put_if_newer(self, key: str, data: bytes, expires_at: int) -> int:
        """RedisCache only: store ``data`` unless a newer version or a tombstone is there.

        Returns 0 (refused or failed), 1 (replaced an older version) or 2 (stored with
        nothing to compare with: the caller must check the database).
        """
        client, name = self._client(), self._key(key)
        args = (data, max(1, expires_at), TOMBSTONE)
        call = lambda: int(_redis_script(client, PUBLISH_SCRIPT, name, *args))  # noqa: E731
        return self._do("publish", call, 0, stale=key)

    def add(self, key: str, data: bytes, expires_at: int) -> bool:
        add = self.cache.add
        return bool(self._do("add", lambda: add(key, data, _timeout(expires_at)), False))

    def set(self, key: str, data: bytes, expires_at: int) -> bool:
        set_ = self.cache.set
        call = lambda: set_(key, data, _timeout(expires_at)) or True  # noqa: E731
        # An older entry may stay behind a failed set: it is dropped once the cache answers.
        return self._do("set", call, False, stale=key)

    def delete(self, key: str, *, deleted: bool = True) -> None:
        """Drop an entry; for a ``deleted`` session, a tombstone in a RedisCache."""
        self._do("delete", lambda: self._drop(key, deleted), None, stale=key, deleted=deleted)


def _redis_script(client: Any, script: str, key: str, *args: Any) -> Any:
    from django_picklesessions.backends.redis import run_script

    return run_script(client, script, key, *args)


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

    @staticmethod
    def cache_alias() -> str:
        """Return the alias of the cache in front of the table."""
        return conf.CACHE_ALIAS

    @property
    def cache(self) -> _Cache:
        return _Cache(self.cache_alias())

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
        """Put a record the database holds into the cache, never over a newer one for long.

        A RedisCache compares versions atomically and keeps the newer. Elsewhere ``replace``
        is for a save (this record is newer than any cached one) and a read that missed only
        adds. Whenever nothing could be compared (another cache, or an entry that was absent
        or evicted), the row's version is looked up after the write, and an entry the database
        has moved past (a later save, a delete) is deleted at once.
        """
        cache, key = self.cache, self.cache_key(address)
        if cache.raw:
            # Replacing an older version needs no check: the newer one can only come later.
            written = cache.put_if_newer(key, data, expires_at) == 2
        elif replace:
            written = cache.set(key, data, expires_at)
        else:
            written = cache.add(key, data, expires_at)
        if written:
            stored = self._stored_version(address)
            if stored != record.version_of(data):
                # The database moved on (a later save or a delete) before our write landed.
                cache.delete(key, deleted=stored is None)

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
            # Uncommitted (ATOMIC_REQUESTS, a test case): publish once committed; until then
            # the cached version is the committed one.
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
        self,
        address: str,
        data: bytes,
        expires_at: int,
        must_create: bool,
        expected: int | None,
        user: UserLink = False,
    ) -> None:
        super()._write(address, data, expires_at, must_create, expected, user)
        self._after_write(address, data, expires_at)

    def _remove(self, address: str) -> None:
        super()._remove(address)
        self._after_remove(address)

    @classmethod
    def _deleted_user_sessions(cls, addresses: list[str]) -> None:
        # Tombstones (on a RedisCache) and evictions: a cached copy must not outlive its row.
        store = cls()
        for address in addresses:
            store._after_remove(address)

    async def _awrite(
        self,
        address: str,
        data: bytes,
        expires_at: int,
        must_create: bool,
        expected: int | None,
        user: UserLink = False,
    ) -> None:
        await super()._awrite(address, data, expires_at, must_create, expected, user)
        await sync_to_async(self._after_write)(address, data, expires_at)

    async def _aremove(self, address: str) -> None:
        await super()._aremove(address)
        await sync_to_async(self._after_remove)(address)
