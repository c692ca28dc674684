"""What the current session holds and what its stored record costs, for the session page."""

from __future__ import annotations

import datetime
import os
import pickle
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY
from django.contrib.sessions.backends.base import SessionBase

from django_picklesessions.backends import db
from django_picklesessions.backends.base import PickleSessionBase

# The engines store each value pickled on its own with this protocol.
PROTOCOL = 5
PREVIEW_LENGTH = 160


@dataclass(frozen=True)
class Entry:
    key: str
    type_name: str
    size: int  # bytes of this value's pickle inside the record
    preview: str


@dataclass(frozen=True)
class StoredRecord:
    size: int
    expires_at: datetime.datetime
    version: int | None  # the db engine keeps the record's version counter in a column


def type_name(value: Any) -> str:
    cls = type(value)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= PREVIEW_LENGTH else text[: PREVIEW_LENGTH - 1] + "…"


def entries(session: SessionBase) -> list[Entry]:
    """Describe each key of the session. Pickles to measure only: nothing is unpickled here."""
    return [
        Entry(
            key,
            type_name(value),
            len(pickle.dumps(value, PROTOCOL)),
            # Derived from the password hash: no page needs to show it.
            "(not shown)" if key == HASH_SESSION_KEY else _preview(value),
        )
        for key, value in session.items()
    ]


def record_size(session: SessionBase) -> int:
    """Return the size of the signed record a save would write now."""
    if not session.keys():
        return 0
    return len(session.encode(dict(session.items())))


def address(session: SessionBase) -> str | None:
    """Return where the session is stored: the SHA-256 of its key, never the key itself."""
    key = session.session_key
    if not key or not isinstance(session, PickleSessionBase):
        return None
    return session.address(key)


def stored_record(session: SessionBase) -> StoredRecord | None:
    """Read the stored record's size and expiry from the engine's storage, if it is known."""
    where = address(session)
    if where is None:
        return None
    if isinstance(session, db.SessionStore):
        rows = session.model._default_manager.filter(address=where)
        found = rows.values_list("record", "expires_at", "version").first()
        if found is None:
            return None
        record, expires_at, version = found
        return StoredRecord(len(record), _utc(expires_at), version)
    try:
        from django_picklesessions.backends import file
    except ImportError:  # the file engine is POSIX only
        return None

    if isinstance(session, file.SessionStore):
        # The documented layout: one subdirectory per first two hex digits of the address,
        # and the file's mtime is the record's signed expiry.
        path = os.path.join(settings.PICKLESESSIONS_FILE_PATH, where[:2], where)
        try:
            st = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return None
        return StoredRecord(st.st_size, _utc(st.st_mtime), None)
    return None


def _utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
