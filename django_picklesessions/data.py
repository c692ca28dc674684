"""A session's contents: lazy per-key unpickling and exact change detection.

The store (``backends/base.py``) hands :class:`SessionData` the pickles of a verified record and
takes back what to write. Everything about "what changed in this request" lives here: values
read and mutated in place are re-pickled and compared byte for byte, values never read go back
as the bytes they came as.
"""

from __future__ import annotations

import datetime
import decimal
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

from django_picklesessions import merge, unpickler
from django_picklesessions.exceptions import ValueRejected
from django_picklesessions.pickler import Writer

security_logger = logging.getLogger("django.security.SuspiciousSession")
logger = logging.getLogger("django_picklesessions")

# Marks a value that is still pickled; a private class so no session value can be it.
_Pending = type("_Pending", (), {"__repr__": lambda self: "<not decoded>", "_flat_repr": True})
_PENDING = _Pending()

# Values of these types cannot change in place: read-only access needs no re-pickling.
_IMMUTABLE: frozenset[type] = frozenset(
    {
        str,
        int,
        float,
        bool,
        type(None),
        bytes,
        complex,
        decimal.Decimal,
        datetime.date,
        datetime.timedelta,
        uuid.UUID,
    }
)
# ...and these too, unless their tzinfo is something else than datetime.timezone (an
# allowed class of the application's, which could be mutable).
_ZONED: frozenset[type] = frozenset({datetime.datetime, datetime.time})


def _unchangeable(value: Any) -> bool:
    """Return True if ``value`` cannot have changed in place since it was unpickled."""
    cls = type(value)
    if cls in _IMMUTABLE:
        return True
    if cls in _ZONED:
        zone = value.tzinfo
        return zone is None or type(zone) is datetime.timezone
    return False


class SessionData(MutableMapping[str, Any]):
    """A session's contents, unpickling each value the first time it is read.

    Keeps the pickles it was loaded from, so that a save can tell exactly what changed:
    a value read and mutated in place is re-pickled and compared byte for byte, and a
    value never read is written back as the same bytes without being unpickled.
    """

    __slots__ = ("_base", "_items", "_assigned", "_clean", "_touched", "_refused", "_checked")

    def __init__(self, base: Mapping[str, bytes] | None = None) -> None:
        #: The pickles the storage holds; a save compares against them.
        self._base: dict[str, bytes] = dict(base) if base else {}
        self._items: dict[str, Any] = dict.fromkeys(self._base, _PENDING)
        #: Keys set since the storage last matched ``_base``.
        self._assigned: set[str] = set()
        #: What ``modified = False`` declared unmodified, when that differs from ``_base``,
        #: and the keys set since.
        self._clean: dict[str, bytes] | None = None
        self._touched: set[str] = set()
        #: Keys whose stored value no longer loads (a class gone after a deploy): hidden from
        #: the mapping, their stored bytes kept until the application sets or deletes them.
        self._refused: set[str] = set()
        #: What :meth:`check` computed, for the save of the same pass; any set or delete
        #: forgets it.
        self._checked: dict[str, bytes] | None = None

    @classmethod
    def holding(cls, stored: Mapping[str, bytes], values: Mapping[str, Any]) -> SessionData:
        """Return contents whose values are already known and whose pickles are stored."""
        data = cls(stored)
        data._items = dict(values)
        return data

    def _decode(self, key: str, simple_declined: bool = False) -> Any:
        load = unpickler.loads_full if simple_declined else unpickler.loads
        try:
            value = load(self._base[key])
        except ValueRejected as exc:
            del self._items[key]
            if getattr(exc, "suspicious", False):
                # Our writer never produces such a value: whoever wrote it holds the key. It
                # is logged once and left out of the next save, so it is not logged again.
                security_logger.warning("Session value %r refused: %s", key, exc)
            else:
                # A class gone after a deploy: hide this key only, and keep its bytes, so
                # that rolling the deploy back brings the value back.
                self._refused.add(key)
                logger.warning(
                    "Session key %r could not be unpickled; its stored value is kept until "
                    "the application sets or deletes the key: %s",
                    key,
                    exc,
                )
            raise KeyError(key) from None
        self._items[key] = value
        return value

    def __getitem__(self, key: str) -> Any:
        value = self._items[key]
        if value is _PENDING:
            value = self._decode(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._checked = None
        self._refused.discard(key)
        self._items[key] = value
        self._assigned.add(key)
        self._touched.add(key)

    def __delitem__(self, key: str) -> None:
        self._checked = None
        # Deleting a key whose value did not load deletes its stored bytes too: a key the
        # application deleted never comes back.
        if key in self._refused:
            self._refused.discard(key)
            return
        del self._items[key]

    _MISSING = object()

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its value; a key that did not load is removed too."""
        if key in self._refused:
            self._refused.discard(key)
            if default is self._MISSING:
                raise KeyError(key)
            return default
        if default is self._MISSING:
            return super().pop(key)
        return super().pop(key, default)

    # Iteration and len() decode what is still pending, so that every view of the mapping
    # agrees on which keys it holds: a key is listed exactly when reading it succeeds.
    def __iter__(self) -> Iterator[str]:
        self._decode_all()
        return iter(self._items)

    def __len__(self) -> int:
        self._decode_all()
        return len(self._items)

    def _decode_all(self) -> None:
        items, base, simple = self._items, self._base, unpickler.simple
        for key in [k for k, v in items.items() if v is _PENDING]:
            # Scalars first, without a call per key into the full reader.
            value = simple(base[key])
            if value is not unpickler.NOT_SIMPLE:
                items[key] = value
                continue
            # try/except, not contextlib.suppress: this runs once per key of every load.
            try:  # noqa: SIM105
                self._decode(key, simple_declined=True)
            except KeyError:  # refused and logged by _decode
                pass

    def items(self) -> Any:
        self._decode_all()
        return self._items.items()

    def values(self) -> Any:
        self._decode_all()
        return self._items.values()

    def keys(self) -> Any:
        self._decode_all()
        return self._items.keys()

    def clear(self) -> None:
        self._checked = None
        self._items.clear()
        self._refused.clear()

    def __repr__(self) -> str:
        return f"SessionData({_bounded_repr(self._items)})"

    def rebase(self, stored: dict[str, bytes]) -> None:
        """Record that ``stored`` is what the storage now holds for this session."""
        self._base = stored
        self._checked = None
        self._assigned.clear()
        self._clean = None
        self._touched.clear()
        self._refused.intersection_update(stored)

    def replay_onto(self, theirs: dict[str, bytes], writer: Writer) -> None:
        """Rebase on ``theirs`` (what a concurrent save stored) and redo only our changes.

        Our changes are the keys whose pickles differ from the base we loaded (set or changed
        in place) and the keys we deleted. Everything else becomes theirs. A key both sides
        changed follows its conflict policy (``merge.resolve``).
        """
        base = self._base
        ours, _ = self.entries(writer)
        items: dict[str, Any] = dict.fromkeys(theirs, _PENDING)
        assigned: set[str] = set()

        def decoded(pickles: dict[str, bytes], key: str) -> Callable[[], Any]:
            def value() -> Any:
                try:
                    return unpickler.loads(pickles[key]) if key in pickles else merge.MISSING
                except ValueRejected:
                    return merge.MISSING

            return value

        changed = [key for key, data in ours.items() if base.get(key) != data]
        deleted = [key for key in base if key not in ours]
        for key in changed + deleted:
            value = self._items[key] if key in ours else merge.MISSING
            they_changed = theirs.get(key) != base.get(key)
            # Equal changes need no policy, unless a merge adds them up (both tabs adding
            # the same product turn {7: 1} into {7: 2}: the merge makes it {7: 3}).
            if they_changed and (theirs.get(key) != ours.get(key) or merge.merges(key)):
                value = merge.resolve(key, decoded(base, key), value, decoded(theirs, key))
            if value is merge.MISSING:
                items.pop(key, None)
            else:
                items[key] = value
                assigned.add(key)
        self._base = dict(theirs)
        self._items = items
        self._refused = set()  # their values are decoded afresh when read
        self._assigned = assigned
        self._clean = None
        self._touched = set(assigned)
        self._checked = None

    def mark_clean(self, writer: Writer) -> None:
        """Take the current contents as unmodified (``session.modified = False``)."""
        self._clean = self.entries(writer)[0]
        self._checked = None
        self._touched.clear()

    def decoded_keys(self) -> list[str]:
        """Return the keys unpickled (or set) in this request so far, decoding no other."""
        return [key for key, value in self._items.items() if value is not _PENDING]

    def is_decoded(self, key: str) -> bool:
        """Return True if ``key``'s value has been unpickled (or set) in this request."""
        return key in self._items and self._items[key] is not _PENDING

    def _pickled(self, writer: Writer, key: str, value: Any) -> bytes | None:
        """Pickle ``value`` again, or return None for a forged value that is to be dropped.

        A value the application set, or changed in place, that the writer refuses fails here
        with the ``TypeError`` naming key and class. Only a value the reader itself built from
        the stored bytes may fail without the application's doing (a read-only buffer, nesting
        too deep to pickle, state an allowed class cannot reduce): our writer cannot have
        produced those bytes, so the value is logged as a forgery and left out of the save.
        """
        try:
            return writer.dumps(key, value)
        except Exception as exc:
            if key in self._assigned or key not in self._base:
                raise
            if not self._stored_value_unsavable(writer, key):
                if isinstance(exc, TypeError):
                    raise
                raise TypeError(
                    f"Session key {key!r} cannot be stored: pickling its "
                    f"{type(value).__module__}.{type(value).__qualname__} failed "
                    f"({type(exc).__name__}: {unpickler.clip(str(exc), 200)})."
                ) from exc
            del self._items[key]
            security_logger.warning(
                "Session value %r refused: the value its stored bytes build cannot be "
                "pickled again, which our writer never produces (%s)",
                key,
                unpickler.clip(f"{type(exc).__name__}: {exc}", 200),
            )
            return None

    def _stored_value_unsavable(self, writer: Writer, key: str) -> bool:
        """Return True if the stored bytes of ``key``, decoded afresh, cannot be pickled."""
        try:
            writer.dumps(key, unpickler.loads(self._base[key]))
        except Exception:
            return True
        return False

    def entries(self, writer: Writer, reuse: bool = False) -> tuple[dict[str, bytes], bool]:
        """Pickle the current contents; return them and whether they differ from the base.

        With ``reuse``, what :meth:`check` computed is returned if nothing was set or deleted
        since: only for a caller that knows no code ran between the check and this call.
        """
        base = self._base
        if reuse and self._checked is not None:
            return self._checked, self._checked != base
        out: dict[str, bytes] = {}
        for key, value in list(self._items.items()):
            if value is _PENDING or (key not in self._assigned and _unchangeable(value)):
                out[key] = base[key]
                continue
            data = self._pickled(writer, key, value)
            if data is None:
                continue  # a forgery, dropped
            if key not in self._assigned and _same_value(base[key], data, value, writer):
                data = base[key]  # keep the stored bytes: nothing changed
            out[key] = data
        for key in self._refused:
            out[key] = base[key]
        return out, out != base

    def check(self, writer: Writer) -> bool:
        """Return whether a save would write, keeping its pickles for ``entries(reuse=True)``.

        The change check and the save of one pass (``PickleSessionBase.single_pass``) then
        pickle each value read once. After ``modified = False`` the baselines differ, and the
        check is :meth:`has_changes`, kept for no one.
        """
        if self._clean is not None:
            return self.has_changes(writer)
        try:
            entries, changed = self.entries(writer)
        except Exception:
            return True  # the save raises the TypeError naming the key, not this check
        self._checked = entries
        return changed

    def forget_check(self) -> None:
        """Drop what :meth:`check` kept: the pass it was for is over."""
        self._checked = None

    def has_changes(self, writer: Writer) -> bool:
        """Return True if the contents differ from what was last declared unmodified.

        A value that cannot be pickled counts as a change: the save that follows raises the
        ``TypeError`` naming it (or drops it, for a forgery), never this check.
        """
        if self._clean is None:
            baseline, touched = self._base, self._assigned
        else:
            baseline, touched = self._clean, self._touched
        if len(self._items) + len(self._refused) != len(baseline):
            return True
        for key, value in list(self._items.items()):
            if key not in baseline:
                return True
            if value is _PENDING or (key not in touched and _unchangeable(value)):
                continue
            try:
                if key in touched:
                    if writer.dumps(key, value) != baseline[key]:
                        return True
                    continue
                data = self._pickled(writer, key, value)
            except Exception:
                return True
            if data is None or not _same_value(baseline[key], data, value, writer):
                return True
        return False


def _may_hold_set(stored: bytes) -> bool:
    """Return False only if the pickle ``stored`` cannot hold a set.

    It cannot without an opcode that builds one (EMPTY_SET, ADDITEMS, FROZENSET) or the name a
    reduction to ``set`` or ``frozenset`` carries. Four byte searches, not one regex: a regex
    alternation steps through the pickle byte by byte (50 µs for a 2 KB cart, against 4 µs).
    """
    return b"\x8f" in stored or b"\x90" in stored or b"\x91" in stored or b"set" in stored


def _same_value(stored: bytes, pickled: bytes, value: Any, writer: Writer) -> bool:
    """Return True if a value read (not set) in this request still equals what is stored.

    Equal pickles settle it. Different pickles can still hold an unchanged value: a set's
    elements come out in an order that depends on the process's string hashing, so a set
    read and re-pickled may differ byte for byte. Then the stored value is unpickled and
    compared (same type, ``==``), so that reading a session never makes it look modified.
    A comparison that raises (a forged ``Decimal('sNaN')``) counts as a change.
    """
    if stored == pickled:
        return True
    if not writer.reduced_by_class and not _may_hold_set(stored):
        # Without a set, or a class's own __reduce__ (a set subclass, or a class listing
        # one), pickle writes equal values as equal bytes: no need to unpickle to compare.
        return False
    try:
        before = unpickler.loads(stored)
    except ValueRejected:
        return False
    try:
        return type(before) is type(value) and bool(before == value)
    except Exception:
        return False


def _bounded_repr(items: Mapping[str, Any]) -> str:
    """Return a repr of session contents that stays short whatever the values hold."""
    return unpickler.bounded_repr(dict(items))
