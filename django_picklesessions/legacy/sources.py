"""Where each of Django's stock engines keeps a session, read and written by its raw key.

One small class per stock engine. ``read`` returns a verified :class:`Found` (or None when
there is no unexpired record), ``delete`` removes the record, ``write`` stores one in the
stock format (the dual-write period). Signed sources verify through ``legacy.signing`` with
``SECRET_KEY`` and its fallbacks before anything is decoded. The cache sources read the
bytes Django's built-in cache backends store and decode them through the restricted
unpickler: ``cache.get`` would unpickle them without any restriction.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import logging
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from django_picklesessions.conf import conf
from django_picklesessions.legacy import engines

logger = logging.getLogger("django_picklesessions.legacy")

#: Where the stock cache and cached_db engines put a session in the cache, before the
#: cache's own KEY_PREFIX and VERSION (Django's ``KEY_PREFIX`` module constants).
CACHE_KEY_PREFIX = {
    "cache": "django.contrib.sessions.cache",
    "cached_db": "django.contrib.sessions.cached_db",
}
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


@dataclass(frozen=True)
class Found:
    """A verified legacy session and the latest moment the stock engine would still load it."""

    data: dict[str, Any]
    expires_at: int
    format: str
    dropped: tuple[tuple[str, str], ...] = ()


def now() -> int:
    """Unix time through Django's clock, like the engines' own (tests can move it)."""
    return int(timezone.now().timestamp())


def expiry_bound(data: Mapping[str, Any], saved_at: int) -> int:
    """Return when a session saved at ``saved_at`` expires by its own ``_session_expiry``.

    That is Django's ``get_expiry_age`` counted from the save: seconds for an int, the
    moment itself for an ISO string or a datetime, ``SESSION_COOKIE_AGE`` for 0 or none.
    """
    expiry = data.get("_session_expiry")
    if isinstance(expiry, str):
        with contextlib.suppress(ValueError):
            expiry = datetime.datetime.fromisoformat(expiry)
    if isinstance(expiry, datetime.datetime):
        if timezone.is_naive(expiry):
            expiry = timezone.make_aware(expiry, datetime.timezone.utc)
        return int(expiry.timestamp())
    if isinstance(expiry, int) and not isinstance(expiry, bool) and expiry:
        return saved_at + expiry
    return saved_at + int(settings.SESSION_COOKIE_AGE)


def legacy_salt(engine: str) -> str:
    from django_picklesessions.legacy import signing

    return signing.salt_for(engine)


class Source:
    """The stock engine named by ``engine``, addressed by raw session keys."""

    kind = ""
    #: False for a source whose records cannot be listed (the command skips it).
    enumerable = False

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.store_class: Any = engines.store_class(engine)

    def read(self, key: str) -> Found | None:
        """Return the session stored under ``key``, verified; None if absent or expired.

        Raises ``signing.LegacyError`` for a record that fails verification or decoding.
        """
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def write(self, key: str, session: Mapping[str, Any], expires_at: int) -> None:
        raise NotImplementedError

    def delete_many(self, keys: list[str]) -> None:
        for key in keys:
            self.delete(key)

    def session_keys(self) -> Iterator[str]:
        """Every key the store holds (bulk import); only for enumerable sources."""
        raise NotImplementedError

    def _verify(
        self, text: str | bytes, stored_bound: int | None, max_age: int | None = None
    ) -> Found | None:
        """Verify a signed session; apply the stock expiry, capped by the signed one."""
        from django_picklesessions.legacy import signing

        session = signing.loads(text, salt=legacy_salt(self.engine), formats=conf.LEGACY_FORMATS)
        expires_at = expiry_bound(session.data, session.signed_at)
        if stored_bound is not None:
            # The stored expiry (a column, an mtime) is not signed: it may shorten, never extend.
            expires_at = min(expires_at, stored_bound)
        if max_age is not None:
            expires_at = min(expires_at, session.signed_at + max_age)
        if expires_at <= now():
            return None
        return Found(session.data, expires_at, session.format, session.dropped)


def _stock_dumps(engine: str, session: Mapping[str, Any]) -> str:
    """Sign ``session`` as the stock engine would: pickle if allowed, else JSON."""
    from django_picklesessions.legacy import signing

    if "pickle" in conf.LEGACY_FORMATS:
        return signing.dumps(session, salt=legacy_salt(engine), format="pickle")
    return signing.dumps(json_subset(session), salt=legacy_salt(engine), format="json")


def json_subset(session: Mapping[str, Any]) -> dict[str, Any]:
    """Return the keys JSONSerializer can store; log each one left out."""
    out: dict[str, Any] = {}
    for key, value in session.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            logger.warning(
                "Session key %r (%s) left out of the stock-format copy: JSON cannot hold it.",
                key,
                type(value).__qualname__,
            )
            continue
        out[key] = value
    return out


class DbSource(Source):
    """The ``django_session`` table (or the legacy store's own model)."""

    kind = "db"
    enumerable = True

    @property
    def model(self) -> Any:
        return self.store_class.get_model_class()

    def rows(self) -> Any:
        return self.model._default_manager

    def read(self, key: str) -> Found | None:
        row = (
            self.rows()
            .filter(session_key=key, expire_date__gt=timezone.now())
            .values_list("session_data", "expire_date")
            .first()
        )
        if row is None:
            return None
        return self.found_in_row(row[0], row[1])

    def found_in_row(self, text: str, expire_date: datetime.datetime) -> Found | None:
        """Verify a row's ``session_data``; its ``expire_date`` may only shorten the session."""
        if len(text) > conf.MAX_RECORD_SIZE:
            from django_picklesessions.legacy.signing import LegacyError

            raise LegacyError("format", f"longer than {conf.MAX_RECORD_SIZE} characters")
        return self._verify(text, int(expire_date.timestamp()))

    def delete(self, key: str) -> None:
        self.rows().filter(session_key=key).delete()

    def delete_many(self, keys: list[str]) -> None:
        self.rows().filter(session_key__in=keys).delete()

    def write(self, key: str, session: Mapping[str, Any], expires_at: int) -> None:
        expire_date = datetime.datetime.fromtimestamp(expires_at, tz=datetime.timezone.utc)
        if not settings.USE_TZ:
            expire_date = timezone.make_naive(expire_date)
        self.rows().update_or_create(
            session_key=key,
            defaults={
                "session_data": _stock_dumps(self.engine, session),
                "expire_date": expire_date,
            },
        )

    def page_after(self, last: str | None, limit: int) -> list[tuple[str, str, datetime.datetime]]:
        """One page of unexpired rows in key order, after key ``last`` (keyset pagination)."""
        rows = self.rows().filter(expire_date__gt=timezone.now())
        if last is not None:
            rows = rows.filter(session_key__gt=last)
        page = rows.order_by("session_key").values_list(
            "session_key", "session_data", "expire_date"
        )
        return list(page[:limit])


class FileSource(Source):
    """``SESSION_FILE_PATH`` (or the temp directory), one ``<cookie name><key>`` file each."""

    kind = "file"
    enumerable = True

    @property
    def directory(self) -> str:
        path = getattr(settings, "SESSION_FILE_PATH", None) or tempfile.gettempdir()
        return os.fspath(path)

    @property
    def prefix(self) -> str:
        return str(settings.SESSION_COOKIE_NAME)

    def _path(self, key: str) -> str:
        # Callers pass keys of [a-z0-9] only (the engines' key check): never a path.
        return os.path.join(self.directory, self.prefix + key)

    def read(self, key: str) -> Found | None:
        try:
            fd = os.open(self._path(key), _READ_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK, errno.ENXIO, errno.EACCES):
                from django_picklesessions.legacy.signing import LegacyError

                raise LegacyError("format") from None
            raise
        try:
            st = os.fstat(fd)
            limit = conf.MAX_RECORD_SIZE
            if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
                from django_picklesessions.legacy.signing import LegacyError

                raise LegacyError("format")
            text = os.read(fd, limit + 1)
        finally:
            os.close(fd)
        # Without an expiry of its own, the stock engine counts the cookie age from the mtime.
        return self._verify(text, int(st.st_mtime) + int(settings.SESSION_COOKIE_AGE))

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(key))

    def write(self, key: str, session: Mapping[str, Any], expires_at: int) -> None:
        text = _stock_dumps(self.engine, session).encode("ascii")
        os.makedirs(self.directory, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=self.prefix + key + "_out_")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(text)
            os.replace(temp, self._path(key))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise

    def session_keys(self) -> Iterator[str]:
        from django_picklesessions.backends.base import valid_session_key

        prefix = self.prefix
        with os.scandir(self.directory) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(prefix) and entry.is_file(follow_symlinks=False):
                    key = name[len(prefix) :]
                    if valid_session_key(key):
                        yield key


class CacheSource(Source):
    """``caches[SESSION_CACHE_ALIAS]``: an unsigned pickle of the session dict."""

    kind = "cache"

    @property
    def cache(self) -> Any:
        from django.core.cache import caches

        return caches[settings.SESSION_CACHE_ALIAS]

    def cache_key(self, key: str) -> str:
        return CACHE_KEY_PREFIX[self.kind] + key

    @property
    def enumerable(self) -> bool:  # type: ignore[override]
        return type(self.cache).__name__ == "RedisCache"

    def read(self, key: str) -> Found | None:
        from django_picklesessions.legacy import cacheraw, signing

        stored = cacheraw.read(self.cache, self.cache_key(key))
        if stored is None:
            return None
        pickled, expires_at = stored
        session = signing.loads_unsigned_pickle(pickled, formats=conf.LEGACY_FORMATS)
        if "_session_expiry" in session.data and expires_at is not None:
            # Only a moment can be applied here: the dict holds no time of its save.
            expires_at = min(expires_at, expiry_bound(session.data, expires_at))
        if expires_at is None:
            expires_at = now() + int(settings.SESSION_COOKIE_AGE)
        if expires_at <= now():
            return None
        return Found(session.data, expires_at, session.format, session.dropped)

    def delete(self, key: str) -> None:
        self.cache.delete(self.cache_key(key))

    def write(self, key: str, session: Mapping[str, Any], expires_at: int) -> None:
        # The stock format is the cache's own pickle of the dict; writing it runs nothing.
        self.cache.set(self.cache_key(key), dict(session), max(1, expires_at - now()))

    def session_keys(self) -> Iterator[str]:
        from django_picklesessions.legacy import cacheraw

        prefix = self.cache.make_and_validate_key(self.cache_key(""))
        for full_key in cacheraw.redis_scan(self.cache, prefix):
            yield full_key[len(prefix) :]


class CachedDbSource(DbSource):
    """The signed db row is the record; the unsigned cache copy is only ever deleted."""

    kind = "cached_db"

    def _cache_copy(self) -> CacheSource:
        source = CacheSource.__new__(CacheSource)
        source.kind = "cached_db"
        source.engine = self.engine
        source.store_class = self.store_class
        return source

    def delete(self, key: str) -> None:
        super().delete(key)
        self._cache_copy().delete(key)

    def delete_many(self, keys: list[str]) -> None:
        super().delete_many(keys)
        cache = self._cache_copy()
        cache.cache.delete_many([cache.cache_key(key) for key in keys])

    def write(self, key: str, session: Mapping[str, Any], expires_at: int) -> None:
        super().write(key, session, expires_at)
        # A stale copy would shadow the row just written: the stock engine refills it.
        self._cache_copy().delete(key)


class SignedCookiesSource(Source):
    """The cookie is the session: nothing to delete, nothing to write server-side."""

    kind = "signed_cookies"

    def read(self, key: str) -> Found | None:
        if len(key) > conf.MAX_RECORD_SIZE:
            from django_picklesessions.legacy.signing import LegacyError

            raise LegacyError("format")
        # The stock engine loads the cookie for SESSION_COOKIE_AGE after it was signed.
        return self._verify(key, None, max_age=int(settings.SESSION_COOKIE_AGE))

    def delete(self, key: str) -> None:
        """The browser drops the cookie when our engine sets its own."""

    def write(self, key: str, session: Mapping[str, Any], expires_at: int) -> None:
        """Check E012 refuses dual-write for this source: the cookie holds our key."""


_SOURCES: dict[str, type[Source]] = {
    "db": DbSource,
    "file": FileSource,
    "cache": CacheSource,
    "cached_db": CachedDbSource,
    "signed_cookies": SignedCookiesSource,
}


def for_engine(engine: str) -> Source:
    """Return the source of stock engine ``engine`` (a dotted module path)."""
    return _SOURCES[engines.stock_kind(engine)](engine)


def active() -> Source | None:
    """The legacy source while legacy reading is on, else None."""
    if not conf.LEGACY_ACTIVE:
        return None
    engine = conf.LEGACY_ENGINE
    assert engine is not None
    return for_engine(engine)
