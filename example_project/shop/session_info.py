"""What the current session holds and what its stored record costs, for the session page."""

from __future__ import annotations

import dataclasses
import datetime
import os
import pickle
from collections import deque
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY
from django.contrib.sessions.backends.base import SessionBase

from django_picklesessions.backends import db
from django_picklesessions.backends.base import PickleSessionBase

# The engines store each value pickled on its own with this protocol.
PROTOCOL = 5
#: Bounds of a value's preview, in characters, cut only between words.
PREVIEW_LENGTH = 240
#: How many objects inside one value are looked at to list their types.
MAX_NESTED = 2000
_WORD_ENDS = " ,\n"


@dataclass(frozen=True)
class Entry:
    key: str
    type_name: str
    size: int  # bytes of this value's pickle inside the record
    preview: str
    nested: tuple[str, ...] = ()  # the types of the objects inside the value
    decoded: bool = False  # unpickled by this request before the page described it


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


def described_type(value: Any) -> str:
    """Return the type's name, saying whether a datetime is aware (and in which zone)."""
    name = type_name(value)
    if isinstance(value, (datetime.datetime, datetime.time)):
        zone = value.tzinfo.tzname(None) if value.tzinfo else None  # type: ignore[arg-type]
        return f"{name} (aware, {zone})" if value.tzinfo else f"{name} (naive)"
    return name


def nested_types(value: Any) -> tuple[str, ...]:
    """Return the distinct types of the objects inside ``value``, breadth first."""
    found: dict[str, None] = {}
    queue: deque[Any] = deque(_children(value))
    seen = 0
    while queue and seen < MAX_NESTED:
        item = queue.popleft()
        seen += 1
        found.setdefault(described_type(item))
        queue.extend(_children(item))
    return tuple(found)


def _children(value: Any) -> list[Any]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [getattr(value, field.name) for field in dataclasses.fields(value)]
    if isinstance(value, dict):
        return [item for pair in value.items() for item in pair]
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    return []


def bounded(text: str, limit: int = PREVIEW_LENGTH) -> str:
    """Return ``text`` cut to at most ``limit`` characters (and " …"), never inside a word."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    if text[limit] not in _WORD_ENDS:
        end = max(cut.rfind(char) for char in _WORD_ENDS)
        cut = cut[: end + 1] if end > 0 else ""
    return (cut.rstrip() + " …").lstrip()


def _preview(value: Any) -> str:
    return bounded(repr(value))


def entries(session: SessionBase, decoded: frozenset[str] = frozenset()) -> list[Entry]:
    """Describe each key of the session; ``decoded`` names the keys already unpickled."""
    return [
        Entry(
            key,
            described_type(value),
            len(pickle.dumps(value, PROTOCOL)),
            # Derived from the password hash: no page needs to show it.
            "(not shown)" if key == HASH_SESSION_KEY else _preview(value),
            nested_types(value),
            key in decoded,
        )
        for key, value in session.items()
    ]


def decoded_keys(session: SessionBase) -> frozenset[str]:
    """Return the keys this request has unpickled (or set) so far: lazy decoding, made visible."""
    if not isinstance(session, PickleSessionBase):
        return frozenset(session.keys())
    # Iterating the session would decode every key (a refused one then drops out of all
    # views at once): ask for the decoded ones instead.
    return frozenset(session._session.decoded_keys())


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
