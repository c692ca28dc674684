"""Redis session engine: one key per session holding the signed record, TTL = signed expiry.

Set ``SESSION_ENGINE = "django_picklesessions.backends.redis"`` and point
``PICKLESESSIONS_REDIS_URL`` at the server (or name Sentinels, a Cluster, or the alias of a
Django ``RedisCache`` whose connection to reuse). Needs redis-py:
``pip install django-picklesessions[redis]``.

A load is one round trip (a small script that refuses an oversized value before sending
it), a save one round trip (a script that compares the stored record's version, read from
its header, before it replaces the record), a new session one ``SET NX``. Every command
touches a single key, so Redis Cluster needs no hash tags. The async methods use
``redis.asyncio``, with one connection pool per event loop.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import struct
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis as redis_py
import redis.asyncio as aredis
from django.contrib.sessions.backends.base import CreateError, UpdateError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from django_picklesessions.backends import db
from django_picklesessions.backends.base import PickleSessionBase, UserLink, security_logger
from django_picklesessions.conf import conf, on_change
from django_picklesessions.exceptions import StoreUnavailable, VersionConflict

#: Where the version counter sits in a record's header (docs/format.md: offset 26, 8 bytes).
VERSION_OFFSET = 26
_VERSION = struct.Struct(">Q")

# KEYS[1] the record; ARGV[1] the largest record accepted. Returns the record, nil when there
# is none, or an integer: the size of a value too large to send (-1: not a string at all).
READ_SCRIPT = """
local size = redis.pcall("STRLEN", KEYS[1])
if type(size) == "table" then return -1 end
if size > tonumber(ARGV[1]) then return size end
return redis.call("GET", KEYS[1])
"""

# KEYS[1] the record; ARGV[1] the new record, ARGV[2] its expiry (Unix seconds), ARGV[3] the
# 8 header bytes of the version the save expects ("" to replace any version). Returns 1 when
# written, 0 when there is no record (deleted meanwhile), -1 when another version is stored.
WRITE_SCRIPT = """
local stored = redis.pcall("GETRANGE", KEYS[1], 26, 33)
if type(stored) == "table" then return -1 end
if stored == "" and redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
if ARGV[3] ~= "" and stored ~= ARGV[3] then return -1 end
redis.call("SET", KEYS[1], ARGV[1], "EXAT", ARGV[2])
return 1
"""

# The user link (PICKLESESSIONS_USER_LINK): the owner key ``<prefix>owner:<address>`` holds the
# id of the user logged in to a session, the set ``<prefix>user:<id>`` the addresses of their
# sessions. Both change in the same script as the record, so no save or delete can leave them
# disagreeing. The scripts name keys they derive (the old owner's set), which a Redis Cluster
# refuses: there the link is not supported (check W061).
#
# KEYS[1] the record, KEYS[2] its owner key; ARGV[1] the new record, ARGV[2] its expiry,
# ARGV[3] the expected version's header bytes as in WRITE_SCRIPT, ARGV[4] "1" to create (as
# SET NX), ARGV[5] the user id ("" for nobody), ARGV[6] the prefix of the users' sets, ARGV[7]
# the address, ARGV[8] the time now. Returns 1 when written, 0 when there is no record (or, to
# create, one exists), -1 when another version is stored.
LINKED_WRITE_SCRIPT = """
if ARGV[4] == "1" then
  if not redis.call("SET", KEYS[1], ARGV[1], "NX", "EXAT", ARGV[2]) then return 0 end
else
  local stored = redis.pcall("GETRANGE", KEYS[1], 26, 33)
  if type(stored) == "table" then return -1 end
  if stored == "" and redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
  if ARGV[3] ~= "" and stored ~= ARGV[3] then return -1 end
  redis.call("SET", KEYS[1], ARGV[1], "EXAT", ARGV[2])
end
local old = redis.pcall("GET", KEYS[2])
if type(old) == "string" and old ~= ARGV[5] then redis.pcall("SREM", ARGV[6] .. old, ARGV[7]) end
if ARGV[5] == "" then
  redis.call("DEL", KEYS[2])
  return 1
end
redis.call("SET", KEYS[2], ARGV[5], "EXAT", ARGV[2])
local users = ARGV[6] .. ARGV[5]
redis.call("SADD", users, ARGV[7])
-- The set lives as long as the longest-lived session it names.
local ttl = redis.call("TTL", users)
if ttl < 0 or tonumber(ARGV[8]) + ttl < tonumber(ARGV[2]) then
  redis.call("EXPIREAT", users, ARGV[2])
end
return 1
"""

# KEYS[1] the record, KEYS[2] its owner key; ARGV[1] the prefix of the users' sets, ARGV[2]
# the address. Deletes the record and takes it out of its user's set.
LINKED_DELETE_SCRIPT = """
local old = redis.pcall("GET", KEYS[2])
if type(old) == "string" then redis.pcall("SREM", ARGV[1] .. old, ARGV[2]) end
return redis.call("DEL", KEYS[1], KEYS[2])
"""

# KEYS[1] a user's set; ARGV[1] the prefix of records, ARGV[2] the prefix of owner keys,
# ARGV[3] the user id, ARGV[4] an address to keep ("" for none). Deletes every record the set
# names whose owner key still names this user (a session since logged out, or expired, is only
# pruned from the set) and returns how many records it deleted.
LOGOUT_SCRIPT = """
local members = redis.pcall("SMEMBERS", KEYS[1])
if type(members) ~= "table" or members.err then return 0 end
local deleted = 0
for _, address in ipairs(members) do
  if address ~= ARGV[4] then
    local owner = redis.pcall("GET", ARGV[2] .. address)
    if owner == ARGV[3] then
      deleted = deleted + redis.call("DEL", ARGV[1] .. address)
      redis.call("DEL", ARGV[2] .. address)
    end
    redis.call("SREM", KEYS[1], address)
  end
end
return deleted
"""

# KEYS[1] a session's lock; ARGV[1] the holder's token. Deletes the lock only if it is theirs.
UNLOCK_SCRIPT = """
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
"""


@functools.cache
def _sha(script: str) -> str:
    # Redis names a loaded script by the SHA-1 of its text.
    return hashlib.sha1(script.encode()).hexdigest()


T = TypeVar("T")


def redacted(url: str) -> str:
    """Return ``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def describe() -> str:
    """Say which server the settings point at (never a password): for error messages."""
    if conf.REDIS_CACHE_ALIAS is not None:
        return f"the Redis of CACHES[{conf.REDIS_CACHE_ALIAS!r}]"
    if conf.REDIS_SENTINELS:
        return f"Sentinel service {conf.REDIS_SENTINEL_SERVICE!r} (PICKLESESSIONS_REDIS_SENTINELS)"
    kind = "Redis Cluster" if conf.REDIS_CLUSTER else "Redis"
    return f"{kind} at {redacted(conf.REDIS_URL)} (PICKLESESSIONS_REDIS_URL)"


def _cache_location(alias: str) -> tuple[str, dict[str, Any]]:
    """Return the primary server URL and the client options of a configured RedisCache."""
    from django.core.cache import caches

    cache: Any = caches[alias]
    # Not Django's own options: its serializer and its (sync) parser and pool classes.
    skip = {"serializer", "parser_class", "pool_class"}
    options = {k: v for k, v in cache._options.items() if k not in skip}
    return str(cache._servers[0]).strip(), options


def _new_sync_client() -> Any:
    if conf.REDIS_CACHE_ALIAS is not None:
        from django.core.cache import caches

        # The cache's primary pool: sessions share its connections.
        return caches[conf.REDIS_CACHE_ALIAS]._cache.get_client(write=True)  # type: ignore[attr-defined]
    options = conf.REDIS_OPTIONS
    if conf.REDIS_SENTINELS:
        from redis.sentinel import Sentinel

        sentinel = Sentinel([tuple(s) for s in conf.REDIS_SENTINELS], **options)  # type: ignore[no-untyped-call]
        return sentinel.master_for(str(conf.REDIS_SENTINEL_SERVICE), **options)  # type: ignore[no-untyped-call]
    if conf.REDIS_CLUSTER:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(conf.REDIS_URL, **options)
    return redis_py.Redis.from_url(conf.REDIS_URL, **options)


def _new_async_client() -> Any:
    if conf.REDIS_CACHE_ALIAS is not None:
        # Django's RedisCache has no async client: one of ours, to the same primary server.
        url, options = _cache_location(conf.REDIS_CACHE_ALIAS)
        return aredis.Redis.from_url(url, **options)
    options = conf.REDIS_OPTIONS
    if conf.REDIS_SENTINELS:
        from redis.asyncio.sentinel import Sentinel

        sentinel = Sentinel([tuple(s) for s in conf.REDIS_SENTINELS], **options)  # type: ignore[no-untyped-call]
        return sentinel.master_for(str(conf.REDIS_SENTINEL_SERVICE), **options)
    if conf.REDIS_CLUSTER:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(conf.REDIS_URL, **options)
    return aredis.Redis.from_url(conf.REDIS_URL, **options)


_sync_client: Any = None
# One async client per event loop: redis.asyncio connections belong to the loop that made them.
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]] = (
    weakref.WeakKeyDictionary()
)


@on_change(
    "CACHES",
    *(
        "PICKLESESSIONS_" + name
        for name in (
            "REDIS_URL",
            "REDIS_OPTIONS",
            "REDIS_SENTINELS",
            "REDIS_SENTINEL_SERVICE",
            "REDIS_CLUSTER",
            "REDIS_CACHE_ALIAS",
        )
    ),
)
def reset_clients() -> None:
    """Forget the clients made so far (the settings that made them changed)."""
    global _sync_client
    client, _sync_client = _sync_client, None
    if client is not None and conf.REDIS_CACHE_ALIAS is None:
        client.close()
    _async_clients.clear()  # each closes with its event loop (see _held)


def sync_client() -> Any:
    """Return the shared client of the sync methods."""
    global _sync_client
    if _sync_client is None:
        _sync_client = _new_sync_client()
    return _sync_client


async def _held(client: Any, loop: asyncio.AbstractEventLoop) -> AsyncIterator[Any]:
    # An async generator that the loop finalises in shutdown_asyncgens(), which asyncio.run()
    # and asgiref call before closing a loop: the client's connections close with their loop.
    try:
        yield client
    finally:
        _async_clients.pop(loop, None)
        await client.aclose()


async def async_client() -> Any:
    """Return the client of this event loop, made on first use."""
    loop = asyncio.get_running_loop()
    held = _async_clients.get(loop)
    if held is None:
        client = _new_async_client()
        holder = _held(client, loop)
        await holder.__anext__()
        held = _async_clients[loop] = (client, holder)
    return held[0]


def _unavailable(exc: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"The session store ({describe()}) cannot be reached: {exc}")


def _run(call: Callable[[], T]) -> T:
    try:
        return call()
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise _unavailable(exc) from exc


def run_script(client: Any, script: str, key: str, *args: Any) -> Any:
    """Run a script on one key by its SHA-1, sending its text only to a server that lacks it."""
    return _run_keys(client, script, (key,), *args)


async def _ascript(client: Any, script: str, key: str, *args: Any) -> Any:
    return await _arun_keys(client, script, (key,), *args)


def _run_keys(client: Any, script: str, keys: tuple[str, ...], *args: Any) -> Any:
    """Run a script on ``keys`` (one, or the user link's several), as :func:`run_script`."""
    try:
        return client.evalsha(_sha(script), len(keys), *keys, *args)
    except NoScriptError:
        return client.eval(script, len(keys), *keys, *args)


async def _arun_keys(client: Any, script: str, keys: tuple[str, ...], *args: Any) -> Any:
    try:
        return await client.evalsha(_sha(script), len(keys), *keys, *args)
    except NoScriptError:
        return await client.eval(script, len(keys), *keys, *args)


def _linking() -> bool:
    """Return True if saves keep the user link (it is on, and the server is no Cluster)."""
    return conf.USER_LINK and not conf.REDIS_CLUSTER


def expected_bytes(expected: int | None) -> bytes:
    """Return what the write script compares the stored header with: b"" means any."""
    return b"" if expected is None else _VERSION.pack(expected)


def _exat(expires_at: int) -> int:
    # EXAT refuses 0 and below; any past time deletes the key at once, as intended.
    return max(1, expires_at)


def _read_result(address: str, value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    reason = "type" if value == -1 else "size"
    security_logger.warning("Session record refused (%s) for session %s…", reason, address[:8])
    return None


def _write_result(result: int) -> None:
    if result == 0:
        raise UpdateError  # deleted meanwhile: Django turns this into SessionInterrupted
    if result == -1:
        raise VersionConflict


class SessionStore(PickleSessionBase):
    """Keep signed records in Redis: ``<PICKLESESSIONS_REDIS_PREFIX><address>``."""

    #: Records cross the network and sit in the server's memory: compressing pays from here
    #: (docs/settings.md, "Compression").
    compress_min_size = 16 * 1024

    @staticmethod
    def record_key(address: str) -> str:
        """Return the Redis key of a session's record."""
        return conf.REDIS_PREFIX + address

    @staticmethod
    def lock_key(address: str) -> str:
        """Return the Redis key of a session's ``locked()`` lease."""
        return conf.REDIS_PREFIX + "lock:" + address

    @staticmethod
    def owner_key(address: str) -> str:
        """Return the Redis key naming the user logged in to a session (the user link)."""
        return conf.REDIS_PREFIX + "owner:" + address

    @staticmethod
    def user_key(user_id: str) -> str:
        """Return the Redis key of the set of a user's sessions (the user link)."""
        return conf.REDIS_PREFIX + "user:" + user_id

    def _linked_write_args(
        self,
        address: str,
        data: bytes,
        expires_at: int,
        must_create: bool,
        expected: int | None,
        user: str | None,
    ) -> tuple[tuple[str, str], tuple[Any, ...]]:
        keys = (self.record_key(address), self.owner_key(address))
        args = (
            data,
            _exat(expires_at),
            expected_bytes(expected),
            "1" if must_create else "0",
            user or "",
            self.user_key(""),
            address,
            int(time.time()),
        )
        return keys, args

    def _linked_write_result(self, result: int, must_create: bool) -> None:
        if must_create and result == 0:
            raise CreateError
        _write_result(result)

    def _logout_args(self, user_id: str, keep: str | None) -> tuple[str, ...]:
        if conf.REDIS_CLUSTER:
            # The scripts name keys in other slots than the one they are sent to (W061).
            from django_picklesessions.users import unsupported

            raise unsupported("the redis engine on a Redis Cluster")
        return (self.record_key(""), self.owner_key(""), user_id, keep or "")

    @classmethod
    def _delete_user_sessions(cls, user_id: str, keep: str | None) -> int:
        """Delete the sessions linked to ``user_id`` but ``keep`` (an address); count them."""
        args = cls()._logout_args(user_id, keep)
        client = sync_client()
        return int(_run(lambda: run_script(client, LOGOUT_SCRIPT, cls.user_key(user_id), *args)))

    @classmethod
    async def _adelete_user_sessions(cls, user_id: str, keep: str | None) -> int:
        args = cls()._logout_args(user_id, keep)
        try:
            client = await async_client()
            return int(await _ascript(client, LOGOUT_SCRIPT, cls.user_key(user_id), *args))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise _unavailable(exc) from exc

    # No existence query first, as the db engine: a collision fails SET NX with CreateError,
    # and create() draws another key.
    _get_new_session_key = db.SessionStore._get_new_session_key
    _aget_new_session_key = db.SessionStore._aget_new_session_key

    # --- Sync ----------------------------------------------------------------------------

    def _read(self, address: str) -> bytes | None:
        client, key, limit = sync_client(), self.record_key(address), conf.MAX_RECORD_SIZE
        return _read_result(address, _run(lambda: run_script(client, READ_SCRIPT, key, limit)))

    def _write(
        self,
        address: str,
        data: bytes,
        expires_at: int,
        must_create: bool,
        expected: int | None,
        user: UserLink = False,
    ) -> None:
        client, key = sync_client(), self.record_key(address)
        if user is not False and _linking():
            keys, largs = self._linked_write_args(
                address, data, expires_at, must_create, expected, user
            )
            result = _run(lambda: _run_keys(client, LINKED_WRITE_SCRIPT, keys, *largs))
            self._linked_write_result(result, must_create)
            return
        if must_create:
            if not _run(lambda: client.set(key, data, nx=True, exat=_exat(expires_at))):
                raise CreateError
            return
        args = (data, _exat(expires_at), expected_bytes(expected))
        _write_result(_run(lambda: run_script(client, WRITE_SCRIPT, key, *args)))

    def _remove(self, address: str) -> None:
        client, key = sync_client(), self.record_key(address)
        if _linking():
            keys = (key, self.owner_key(address))
            args = (self.user_key(""), address)
            _run(lambda: _run_keys(client, LINKED_DELETE_SCRIPT, keys, *args))
            return
        _run(lambda: client.delete(key))

    def _contains(self, address: str) -> bool:
        client, key = sync_client(), self.record_key(address)
        return bool(_run(lambda: client.exists(key)))

    def _try_lock(self, address: str, token: str, lease: float) -> bool:
        client, key, ms = sync_client(), self.lock_key(address), max(1, int(lease * 1000))
        return bool(_run(lambda: client.set(key, token, nx=True, px=ms)))

    def _unlock(self, address: str, token: str) -> None:
        client, key = sync_client(), self.lock_key(address)
        _run(lambda: run_script(client, UNLOCK_SCRIPT, key, token))

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: Redis drops each record when its signed expiry passes (EXAT)."""

    @classmethod
    async def aclear_expired(cls) -> None:
        """Nothing to do, as :meth:`clear_expired`."""

    # --- Async: redis.asyncio -----------------------------------------------------------

    async def _aread(self, address: str) -> bytes | None:
        key, limit = self.record_key(address), conf.MAX_RECORD_SIZE
        try:
            value = await _ascript(await async_client(), READ_SCRIPT, key, limit)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise _unavailable(exc) from exc
        return _read_result(address, value)

    async def _awrite(
        self,
        address: str,
        data: bytes,
        expires_at: int,
        must_create: bool,
        expected: int | None,
        user: UserLink = False,
    ) -> None:
        key = self.record_key(address)
        try:
            client = await async_client()
            if user is not False and _linking():
                keys, largs = self._linked_write_args(
                    address, data, expires_at, must_create, expected, user
                )
                linked = await _arun_keys(client, LINKED_WRITE_SCRIPT, keys, *largs)
                self._linked_write_result(linked, must_create)
                return
            if must_create:
                if not await client.set(key, data, nx=True, exat=_exat(expires_at)):
                    raise CreateError
                return
            args = (data, _exat(expires_at), expected_bytes(expected))
            result = await _ascript(client, WRITE_SCRIPT, key, *args)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise _unavailable(exc) from exc
        _write_result(result)

    async def _aremove(self, address: str) -> None:
        if _linking():
            keys = (self.record_key(address), self.owner_key(address))
            try:
                client = await async_client()
                await _arun_keys(client, LINKED_DELETE_SCRIPT, keys, self.user_key(""), address)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                raise _unavailable(exc) from exc
            return
        await self._acall("delete", self.record_key(address))

    async def _acontains(self, address: str) -> bool:
        return bool(await self._acall("exists", self.record_key(address)))

    async def _atry_lock(self, address: str, token: str, lease: float) -> bool:
        ms = max(1, int(lease * 1000))
        return bool(await self._acall("set", self.lock_key(address), token, nx=True, px=ms))

    async def _aunlock(self, address: str, token: str) -> None:
        try:
            await _ascript(await async_client(), UNLOCK_SCRIPT, self.lock_key(address), token)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise _unavailable(exc) from exc

    @staticmethod
    async def _acall(command: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(await async_client(), command)(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise _unavailable(exc) from exc
