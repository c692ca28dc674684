"""The store base every engine extends: record checks, storage addressing, saves.

An engine subclasses :class:`PickleSessionBase` and implements five storage primitives
(``_read``, ``_write``, ``_remove``, ``_contains``, ``clear_expired``), each addressed by the
hex SHA-256 of the session key, never the key itself. Everything Django's ``SessionBase``
contract asks for on top of them (``load``, ``save``, ``create``, ``exists``, ``delete``, the
async variants) is implemented here once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Literal, NamedTuple

from asgiref.sync import sync_to_async
from django.contrib.sessions.backends.base import (
    VALID_KEY_CHARS,
    CreateError,
    SessionBase,
    UpdateError,
)
from django.core import signing
from django.utils import timezone

from django_picklesessions import budget, record
from django_picklesessions.conf import conf
from django_picklesessions.data import SessionData
from django_picklesessions.exceptions import (
    RecordError,
    SessionConflict,
    SessionLockTimeout,
    VersionConflict,
)
from django_picklesessions.keys import get_keyring
from django_picklesessions.legacy import adoption
from django_picklesessions.pickler import get_writer

logger = logging.getLogger("django_picklesessions")
security_logger = logging.getLogger("django.security.SuspiciousSession")
legacy_logger = logging.getLogger("django_picklesessions.legacy")

#: Longest session key read from storage; Django's keys are 32 characters.
MAX_KEY_LENGTH = 64
_VALID_KEY_CHARS = frozenset(VALID_KEY_CHARS)

__all__ = ["PickleSessionBase", "SessionData", "epoch_now", "valid_session_key"]


def valid_session_key(key: str) -> bool:
    """Return True for a key these engines could have issued: at most 64 of [a-z0-9]."""
    return 0 < len(key) <= MAX_KEY_LENGTH and _VALID_KEY_CHARS.issuperset(key)


#: What ``_write`` links a record to: a user id, None (nobody is logged in), or False to leave
#: the stored link as it is (a writer that does not know the user, such as ``rekey``).
UserLink = str | None | Literal[False]

#: The longest user id the link stores (the db engine's column); a longer one is not linked.
MAX_USER_ID_LENGTH = 255


def linked_user(data: Mapping[str, Any]) -> str | None:
    """Return the id of the user logged in to session ``data``, as the user link stores it."""
    value = data.get("_auth_user_id")
    if value is None:
        return None
    user = str(value)
    if len(user) > MAX_USER_ID_LENGTH:
        logger.warning(
            "User id of %d characters not linked to its session (at most %d): "
            "logout_user() cannot find this session.",
            len(user),
            MAX_USER_ID_LENGTH,
        )
        return None
    return user


_django_now = timezone.now


def epoch_now() -> int:
    """Return the current Unix time in seconds.

    ``time.time()``, a seventh of what ``timezone.now().timestamp()`` costs; while something
    has replaced ``django.utils.timezone.now`` (a test moving Django's clock), that clock.
    """
    if timezone.now is _django_now:
        return int(time.time())
    return int(timezone.now().timestamp())


class _Prepared(NamedTuple):
    """A record ready to write, with what it holds."""

    data: bytes
    entries: dict[str, bytes]
    expires_at: int
    version: int
    sid: bytes
    #: The logged-in user's id for the user link (None: nobody, or the link is off).
    user: str | None = None


class PickleSessionBase(SessionBase):
    """Shared logic of the pickle engines; subclasses provide the storage primitives."""

    #: Payloads at least this large are zlib-compressed, unless the setting
    #: ``PICKLESESSIONS_COMPRESS_MIN_SIZE`` says otherwise; each engine sets its own.
    compress_min_size: int | None = 64 * 1024

    def _compress_min_size(self) -> int | None:
        return conf.compress_min_size(self.compress_min_size)

    def __init__(self, session_key: str | None = None) -> None:
        self._explicitly_modified = False
        # SessionBase.__init__ is not called: it imports SESSION_SERIALIZER, and on Django >= 5
        # a settings file still naming the removed PickleSerializer would make every request
        # raise ImportError. These engines never use a serializer (record.py is the format);
        # check W010 reports such a setting. tests/legacy/test_no_serializer_import.py keeps
        # these attributes equal to what SessionBase.__init__ sets.
        self._session_key = session_key
        self.accessed = False
        self.modified = False
        self.serializer = signing.JSONSerializer  # Django's default, for code that reads it
        # Identity, counter and key of the record this session was loaded from.
        self._loaded_sid: bytes | None = None
        self._loaded_version = 0
        self._loaded_with_fallback = False
        # While a legacy session is being imported: its expiry, which the import never extends.
        self._import_expiry: int | None = None

    @property
    def key_salt(self) -> str:
        # Not used for signing (record.py has its own derived keys); kept for API parity.
        return "django_picklesessions." + self.__class__.__qualname__

    #: True inside :meth:`single_pass`.
    _single_pass = False

    @contextlib.contextmanager
    def single_pass(self) -> Iterator[None]:
        """Let the ``modified`` check and the save in the block share one pickling pass.

        For a caller that runs no application code between the two, as
        ``django_picklesessions.middleware.SessionMiddleware`` does around Django's
        ``process_response``: an in-place change made between them would not be seen.
        Anywhere else the check and the save each pickle afresh, and nothing is missed.
        """
        self._single_pass = True
        try:
            yield
        finally:
            self._single_pass = False
            cache = self.__dict__.get("_session_cache")
            if isinstance(cache, SessionData):
                cache.forget_check()

    # ``modified`` also notices in-place changes to values that were read, so that
    # ``request.session["cart"].items.append(...)`` is saved without further ado.
    @property
    def modified(self) -> bool:
        if self._explicitly_modified:
            return True
        cache = self.__dict__.get("_session_cache")
        if not isinstance(cache, SessionData):
            return False
        if self._loaded_with_fallback:
            changed = True
        elif self._single_pass:
            changed = cache.check(get_writer())
        else:
            changed = cache.has_changes(get_writer())
        if changed:
            self._explicitly_modified = True
        return self._explicitly_modified

    @modified.setter
    def modified(self, value: bool) -> None:
        self._explicitly_modified = value
        cache = self.__dict__.get("_session_cache")
        if not value and isinstance(cache, SessionData):
            # What is there now counts as unmodified from here on.
            cache.mark_clean(get_writer())

    # --- Storage primitives, implemented by each engine --------------------------------

    def _read(self, address: str) -> bytes | None:
        """Return the stored record at ``address`` (hex SHA-256 of the key), or None."""
        raise NotImplementedError

    def _write(
        self,
        address: str,
        data: bytes,
        expires_at: int,
        must_create: bool,
        expected: int | None,
        user: UserLink = False,
    ) -> None:
        """Store ``data`` at ``address``.

        With ``must_create``, raise CreateError if a record exists. Otherwise raise
        UpdateError if none exists, and VersionConflict if ``expected`` is not None and the
        stored record's version is not ``expected`` (the compare of compare-and-swap).
        Engines that keep the user link store ``user`` with it (``UserLink``).
        """
        raise NotImplementedError

    def _remove(self, address: str) -> None:
        """Delete the record at ``address`` if there is one."""
        raise NotImplementedError

    def _contains(self, address: str) -> bool:
        """Return True if a record is stored at ``address``."""
        raise NotImplementedError

    def _try_lock(self, address: str, token: str, lease: float) -> bool:
        """Take the session's lock for ``token`` unless another holder's lease is running."""
        raise NotImplementedError

    def _unlock(self, address: str, token: str) -> None:
        """Release the lock if ``token`` still holds it."""
        raise NotImplementedError

    async def _aread(self, address: str) -> bytes | None:
        return await sync_to_async(self._read)(address)

    async def _awrite(
        self,
        address: str,
        data: bytes,
        expires_at: int,
        must_create: bool,
        expected: int | None,
        user: UserLink = False,
    ) -> None:
        await sync_to_async(self._write)(address, data, expires_at, must_create, expected, user)

    async def _aremove(self, address: str) -> None:
        await sync_to_async(self._remove)(address)

    async def _acontains(self, address: str) -> bool:
        return await sync_to_async(self._contains)(address)

    async def _atry_lock(self, address: str, token: str, lease: float) -> bool:
        return await sync_to_async(self._try_lock)(address, token, lease)

    async def _aunlock(self, address: str, token: str) -> None:
        await sync_to_async(self._unlock)(address, token)

    @staticmethod
    def address(session_key: str) -> str:
        """Return where a session is stored: the hex SHA-256 of its key."""
        return record.session_id(session_key).hex()

    #: The current session key, its record identity and its address, hashed once per key.
    _identity: tuple[str | None, bytes, str] | None = None

    def _current(self) -> tuple[str | None, bytes, str]:
        key = self.session_key
        identity = self._identity
        if identity is None or identity[0] != key:
            sid = record.session_id(key)
            identity = self._identity = (key, sid, sid.hex())
        return identity

    # --- Record encoding ----------------------------------------------------------------

    def decode_record(self, data: bytes | bytearray | memoryview | str | None) -> SessionData:
        """Verify a stored record for this session and return its lazy contents.

        Any failure logs one line on ``django.security.SuspiciousSession`` and returns an
        empty session; nothing of a failed record is unpickled.
        """
        self._loaded_sid = None
        self._loaded_version = 0
        self._loaded_with_fallback = False
        if data is None:
            return SessionData()
        sid = self._current()[1]
        try:
            if isinstance(data, str):
                raise RecordError("format")
            verified = record.decode(
                data,
                sid=sid,
                now=epoch_now(),
                keyring=get_keyring(),
                max_record_size=conf.MAX_RECORD_SIZE,
                max_payload_size=conf.MAX_PAYLOAD_SIZE,
            )
        except RecordError as exc:
            security_logger.warning(
                "Session data corrupted or invalid (%s) for session %s…", exc.reason, sid.hex()[:8]
            )
            return SessionData()
        self._loaded_sid = sid
        self._loaded_version = verified.version
        self._loaded_with_fallback = verified.key_position > 0
        return SessionData(verified.entries)

    def decode(self, session_data: Any) -> dict[str, Any]:
        """Return a record's contents as a plain dict, every value unpickled."""
        return dict(self.decode_record(session_data).items())

    def encode(self, session_dict: Mapping[str, Any]) -> bytes:  # type: ignore[override]
        """Return the record that would store ``session_dict`` for this session now."""
        prepared = self._prepare(session_dict, must_create=True)
        assert prepared is not None  # must_create always writes
        return prepared.data

    def _prepare(self, data: Mapping[str, Any], must_create: bool) -> _Prepared | None:
        """Build the record to write, or None when it would store exactly what is stored."""
        writer = get_writer()
        sid = self._current()[1]
        if isinstance(data, SessionData):
            entries, changed = data.entries(writer, reuse=self._single_pass)
            unchanged = (
                not changed
                and not must_create
                and sid == self._loaded_sid
                and not self._loaded_with_fallback
                and not conf.SESSION_SAVE_EVERY_REQUEST
            )
            if unchanged:
                return None
        else:
            entries = writer.dumps_all(data)
        now = epoch_now()
        # The expiry comes from the data being written, never from a (re)load of the store.
        expires_at = now + self.get_expiry_age(expiry=data.get("_session_expiry"))
        if self._import_expiry is not None:
            # An imported legacy session ends exactly when the stock engine would have ended
            # it: a bound counted from its last save, never later than now + age.
            expires_at = self._import_expiry
        version = 1 if must_create else self._loaded_version + 1
        data_bytes = record.encode(
            entries,
            sid=sid,
            issued_at=now,
            expires_at=expires_at,
            version=version,
            keyring=get_keyring(),
            max_record_size=conf.MAX_RECORD_SIZE,
            max_payload_size=conf.MAX_PAYLOAD_SIZE,
            compress_min_size=self._compress_min_size(),
        )
        budget.check(len(data_bytes), entries)
        user = linked_user(data) if conf.USER_LINK else None
        return _Prepared(data_bytes, entries, expires_at, version, sid, user)

    def _written(self, data: Mapping[str, Any], prepared: _Prepared) -> None:
        # What is stored now is the new base for change detection.
        if isinstance(data, SessionData):
            data.rebase(prepared.entries)
        else:
            self._session_cache = SessionData.holding(prepared.entries, data)
        self._loaded_sid = prepared.sid
        self._loaded_version = prepared.version
        self._loaded_with_fallback = False
        self._explicitly_modified = False

    # --- SessionBase contract -----------------------------------------------------------

    def get_session_cookie_age(self) -> int:
        # Django's reads its lazy settings object on every call (half a microsecond).
        return conf.SESSION_COOKIE_AGE

    def get_expiry_age(self, **kwargs: Any) -> int:
        # Django's computes timezone.now() on every call; it is needed only for a date.
        if "modification" not in kwargs:
            expiry = kwargs["expiry"] if "expiry" in kwargs else self.get("_session_expiry")
            if not expiry:
                return self.get_session_cookie_age()
            if not isinstance(expiry, (datetime.datetime, str)):
                return expiry  # type: ignore[no-any-return]
        return super().get_expiry_age(**kwargs)

    def _key_to_read(self) -> str | None:
        """Return the address to read, or None for no key or a key we never issue."""
        key = self.session_key
        if not key:
            return None
        if not valid_session_key(key):
            # Our keys are 32 of [a-z0-9]; anything else is a forged cookie. It is hashed like
            # any key, so it could do no harm in storage, but it is not worth a query either.
            # A stock signed_cookies session looks the same: while it may be imported, it is
            # verified instead (legacy.sources), and a bad one logged there.
            if not adoption.reads_cookies():
                security_logger.warning("Session key refused (format): %r…", key[:8])
            return None
        return self._current()[2]

    def _loaded(self, data: bytes | None) -> SessionData:
        session = self.decode_record(data)
        if self._loaded_sid is None:
            # Unknown or invalid: never adopt the key, a save issues a new one.
            self._session_key = None
        return session

    def load(self) -> SessionData:  # type: ignore[override]
        address = self._key_to_read()
        data = None if address is None else self._read(address)
        if data is None and self.session_key and adoption.active():
            # The upgrade path: a session only the legacy store holds is imported here.
            adopted: SessionData | None = adoption.on_load(self, address, data)
            if adopted is not None:
                return adopted
        return self._loaded(data)

    async def aload(self) -> SessionData:  # type: ignore[override]
        address = self._key_to_read()
        data = None if address is None else await self._aread(address)
        if data is None and self.session_key and adoption.active():
            adopted: SessionData | None = await sync_to_async(adoption.on_load)(self, address, data)
            if adopted is not None:
                return adopted
        return self._loaded(data)

    def exists(self, session_key: str) -> bool:
        return self._contains(self.address(session_key))

    async def aexists(self, session_key: str) -> bool:
        return await self._acontains(self.address(session_key))

    def create(self) -> None:
        while True:
            self._session_key = self._get_new_session_key()  # type: ignore[attr-defined]
            try:
                self.save(must_create=True)
            except CreateError:
                continue  # the new key was taken meanwhile; draw another
            self.modified = True
            return

    async def acreate(self) -> None:
        while True:
            self._session_key = await self._aget_new_session_key()  # type: ignore[attr-defined]
            try:
                await self.asave(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return

    #: How many times a save reloads and replays after losing the race to a concurrent save.
    save_attempts = 50

    def _expected_version(self, must_create: bool, sid: bytes) -> int | None:
        # Compare-and-swap only against a record this store loaded or wrote for this key;
        # contents set up without loading (clear() first) are written over what is there.
        if must_create or self._loaded_sid != sid:
            return None
        return self._loaded_version

    def _catch_up(self, data: Any, stored: bytes | None) -> None:
        """After a lost race, make ``stored`` our base and replay this request's changes."""
        fresh = self.decode_record(stored)
        if self._loaded_sid is None:
            raise UpdateError  # deleted (or broken) meanwhile: the session stays deleted
        data.replay_onto(fresh._base, get_writer())

    @staticmethod
    def _backoff(attempt: int) -> float:
        # Immediate first retry; then short random pauses, so that writers racing for one
        # session do not keep colliding in lockstep.
        return 0.0 if attempt == 0 else random.uniform(0, min(0.05, 0.002 * attempt))

    def _lost_the_race(self) -> SessionConflict:
        return SessionConflict(
            f"The session was saved by concurrent requests {self.save_attempts} times while "
            "this request tried to save it."
        )

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        data = self._get_session(no_load=must_create)
        address = self._current()[2]
        for attempt in range(self.save_attempts):
            prepared = self._prepare(data, must_create)
            if prepared is None:
                return
            expected = self._expected_version(must_create, prepared.sid)
            try:
                self._write(
                    address,
                    prepared.data,
                    prepared.expires_at,
                    must_create,
                    expected,
                    prepared.user,
                )
            except VersionConflict:
                time.sleep(self._backoff(attempt))
                self._catch_up(data, self._read(address))
                continue
            self._written(data, prepared)
            if self._import_expiry is None and adoption.writes():
                adoption.mirror(self, data, prepared.expires_at)
            return
        raise self._lost_the_race()

    async def asave(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return await self.acreate()
        data = await self._aget_session(no_load=must_create)
        address = self._current()[2]
        for attempt in range(self.save_attempts):
            prepared = self._prepare(data, must_create)
            if prepared is None:
                return
            expected = self._expected_version(must_create, prepared.sid)
            try:
                await self._awrite(
                    address,
                    prepared.data,
                    prepared.expires_at,
                    must_create,
                    expected,
                    prepared.user,
                )
            except VersionConflict:
                await asyncio.sleep(self._backoff(attempt))
                self._catch_up(data, await self._aread(address))
                continue
            self._written(data, prepared)
            if self._import_expiry is None and adoption.writes():
                await sync_to_async(adoption.mirror)(self, data, prepared.expires_at)
            return
        raise self._lost_the_race()

    # --- Scoped lock ----------------------------------------------------------------------

    def refresh(self) -> None:
        """Catch up with what concurrent requests saved, keeping this request's own changes."""
        cache = self.__dict__.get("_session_cache")
        if self.session_key is None:
            return
        if not isinstance(cache, SessionData):
            self.__dict__.pop("_session_cache", None)  # the next read loads afresh
            return
        self._catch_up(cache, self._read(self._current()[2]))

    def _lock_token(self, timeout: float, lease: float) -> tuple[str, str, float]:
        if timeout < 0 or lease <= 0:
            raise ValueError("locked() needs timeout >= 0 and lease > 0 (seconds).")
        if self.session_key is None:
            self.save()  # a lock needs a stored session to name
        assert self.session_key is not None
        return self.address(self.session_key), secrets.token_hex(16), time.monotonic() + timeout

    @contextlib.contextmanager
    def locked(self, timeout: float = 5.0, lease: float = 30.0) -> Iterator[PickleSessionBase]:
        """Hold this session's lock for the block, for flows where merging is wrong.

        Inside ``with request.session.locked():`` no other ``locked()`` block on the same
        session runs: the second waits up to ``timeout`` seconds (then raises
        SessionLockTimeout). On entry the session catches up with what others saved; on exit
        it is saved. A holder that outlives ``lease`` seconds loses the lock to the next
        request (db and locmem engines; the file engine's lock ends with its process).
        Ordinary saves never take the lock: they rely on compare-and-swap.
        """
        address, token, deadline = self._lock_token(timeout, lease)
        attempt = 0
        while not self._try_lock(address, token, lease):
            if time.monotonic() >= deadline:
                raise SessionLockTimeout(f"The session stayed locked for {timeout} s.")
            attempt += 1
            time.sleep(min(0.05, 0.002 * attempt))
        try:
            self.refresh()
            yield self
            self.save()
        finally:
            self._unlock(address, token)

    @contextlib.asynccontextmanager
    async def alocked(
        self, timeout: float = 5.0, lease: float = 30.0
    ) -> AsyncIterator[PickleSessionBase]:
        """The async form of :meth:`locked`: ``async with request.session.alocked():``."""
        if self.session_key is None:
            await self.asave()
        address, token, deadline = self._lock_token(timeout, lease)
        attempt = 0
        while not await self._atry_lock(address, token, lease):
            if time.monotonic() >= deadline:
                raise SessionLockTimeout(f"The session stayed locked for {timeout} s.")
            attempt += 1
            await asyncio.sleep(min(0.05, 0.002 * attempt))
        try:
            cache = self.__dict__.get("_session_cache")
            if isinstance(cache, SessionData):
                self._catch_up(cache, await self._aread(address))
            else:
                self.__dict__.pop("_session_cache", None)
            yield self
            await self.asave()
        finally:
            await self._aunlock(address, token)

    def _deleting(self, session_key: str | None) -> str | None:
        """Return the address to delete; forget what was loaded if it is this session's."""
        if session_key is None or session_key == self.session_key:
            if self.session_key is None:
                return None
            # A later save must write (and find the record gone), never skip as unchanged.
            self._loaded_sid = None
            session_key = self.session_key
        return self.address(session_key)

    def delete(self, session_key: str | None = None) -> None:
        raw_key = self.session_key if session_key is None else session_key
        address = self._deleting(session_key)
        if address is not None:
            self._remove(address)
        if raw_key and adoption.active():
            # Logout and cycle_key: the legacy copy must not bring the session back.
            adoption.forget(raw_key)

    async def adelete(self, session_key: str | None = None) -> None:
        raw_key = self.session_key if session_key is None else session_key
        address = self._deleting(session_key)
        if address is not None:
            await self._aremove(address)
        if raw_key and adoption.active():
            await sync_to_async(adoption.forget)(raw_key)

    def clear(self) -> None:
        # Django replaces the cache with {}; emptying ours keeps what was loaded, so the
        # save still knows the stored record had keys to delete.
        cache = self.__dict__.get("_session_cache")
        if isinstance(cache, SessionData):
            cache.clear()
        else:
            self._session_cache = SessionData()
        self.accessed = True
        self.modified = True

    def _get_session(self, no_load: bool = False) -> Any:
        session = super()._get_session(no_load)  # type: ignore[misc]
        if type(session) is dict and not session:
            # Django puts a plain {} here for new and cleared sessions; keep one type.
            session = self._session_cache = SessionData()
        return session

    async def _aget_session(self, no_load: bool = False) -> Any:
        session = await super()._aget_session(no_load)  # type: ignore[misc]
        if type(session) is dict and not session:
            session = self._session_cache = SessionData()
        return session

    # SessionBase binds ``_session`` to its own _get_session; rebind it to ours.
    _session = property(_get_session)
