"""The engines' hooks for the upgrade path: import on a miss, mirror saves, forget on delete.

While ``PICKLESESSIONS_LEGACY_ENGINE`` is set (and ``LEGACY_UNTIL`` has not passed), a
session key our store does not know is looked up in the stock engine's store. A verified
record is written into ours under the same key, insert-only and with its expiry never
extended, and then deleted from the legacy store (kept in step under ``LEGACY_WRITE``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.contrib.sessions.backends.base import CreateError

from django_picklesessions.conf import conf
from django_picklesessions.legacy import sources

if TYPE_CHECKING:
    from django_picklesessions.backends.base import PickleSessionBase, SessionData
    from django_picklesessions.legacy.signing import LegacyError

logger = logging.getLogger("django_picklesessions.legacy")
security_logger = logging.getLogger("django.security.SuspiciousSession")


def active() -> bool:
    """True while legacy records are read."""
    return conf.LEGACY_ACTIVE


def writes() -> bool:
    """True while every save also writes the stock-format record (dual-write)."""
    return conf.LEGACY_WRITE and conf.LEGACY_ACTIVE


def reads_cookies() -> bool:
    """True while stock signed_cookies sessions are imported: such cookies are expected."""
    source = sources.active()
    return source is not None and source.kind == "signed_cookies"


def on_load(
    store: PickleSessionBase, address: str | None, data: bytes | None
) -> SessionData | None:
    """Return the session to use instead of ``data``, or None to go on with ``data``.

    ``address`` is None for a key our engines never issue: only a signed cookie can then
    be a legacy session.
    """
    source = sources.active()
    key = store.session_key
    if data is not None or source is None or key is None:
        return None
    if (source.kind == "signed_cookies") != (address is None):
        return None
    from django_picklesessions.legacy.signing import LegacyError

    try:
        found = source.read(key)
    except LegacyError as exc:
        _refused(store, source, exc)
        return None
    if found is None:
        if address is not None:
            # A concurrent request may have imported (and deleted) it since our read.
            again = store._read(address)
            if again is not None:
                reloaded: SessionData = store._loaded(again)
                return reloaded
        return None
    return _import(store, source, found, address)


def _refused(store: PickleSessionBase, source: sources.Source, exc: LegacyError) -> None:
    if exc.reason == "expired":
        return
    # Tampered, truncated or foreign: one line, and the session is empty (never a 500).
    leaked = " (only a holder of SECRET_KEY could sign this: it may have leaked)"
    security_logger.warning(
        "Legacy %s session refused (%s) for session %s…%s",
        source.kind,
        exc,
        _tag(store),
        leaked if exc.suspicious else "",
    )


def _tag(store: PickleSessionBase) -> str:
    """A log-safe name for the session: its address prefix, never the key itself."""
    return store.address(store.session_key or "")[:8]


def store_found(store: PickleSessionBase, found: sources.Found, new_key: bool = False) -> bool:
    """Write ``found`` as ``store``'s record, insert-only, its expiry never extended.

    Returns False when a record of ours already holds the key (a concurrent import, or a
    session of ours): that record wins and nothing is written. With ``new_key`` the
    session gets a fresh key of ours (a signed cookie held data, not a key).
    """
    from django_picklesessions.backends.base import SessionData
    from django_picklesessions.pickler import get_writer

    writer = get_writer()
    session = SessionData()
    for key, value in found.data.items():
        try:
            writer.dumps(key, value)
        except TypeError as exc:
            logger.warning("Legacy session key %r dropped at import: %s", key, exc)
            continue
        session[key] = value
    store._session_cache = session
    store._import_expiry = found.expires_at
    try:
        if new_key:
            store.create()
        else:
            store.save(must_create=True)
    except CreateError:
        return False
    finally:
        store._import_expiry = None
    return True


def _import(
    store: PickleSessionBase, source: sources.Source, found: sources.Found, address: str | None
) -> SessionData:
    legacy_key = store.session_key
    assert legacy_key is not None
    if not store_found(store, found, new_key=source.kind == "signed_cookies"):
        # A concurrent request imported it first: its record is the session.
        assert address is not None
        result: SessionData = store._loaded(store._read(address))
        return result
    session: SessionData = store._session_cache
    logger.info(
        "Imported legacy %s session %s… (%s, %d keys, %d dropped).",
        source.kind,
        _tag(store),
        found.format,
        len(session),
        len(found.data) - len(session) + len(found.dropped),
    )
    if not conf.LEGACY_WRITE:
        source.delete(legacy_key)
    return session


def mirror(store: PickleSessionBase, data: SessionData, expires_at: int) -> None:
    """Write the stock-format copy of what ``store`` just saved (dual-write)."""
    source = sources.active()
    key = store.session_key
    if source is None or key is None or source.kind == "signed_cookies":
        return
    source.write(key, dict(data.items()), expires_at)


def forget(key: str) -> None:
    """Delete the legacy record of ``key``: a logout or key cycle must not be undone."""
    from django_picklesessions.backends.base import valid_session_key

    source = sources.active()
    if source is not None and source.kind != "signed_cookies" and valid_session_key(key):
        source.delete(key)
