"""The writer: pickles session values with protocol 5, refusing what the reader would refuse.

"Saved" must always mean "loadable": a value holding a class the allow-list does not name
(or a function, a module, a lazy translation string, a ``ZoneInfo``...) fails at ``save()``
with a ``TypeError`` that names the session key and the class, instead of being written and
then silently dropped on the next request.
"""

from __future__ import annotations

import io
import pickle
import threading
from collections.abc import Mapping
from typing import Any

from django_picklesessions.allowlist import AllowList, get_allow_list

PROTOCOL = 5
# Exact types pickle writes with opcodes alone, never with a global.
_SCALARS: frozenset[type] = frozenset({str, int, float, bool, type(None), bytes})


class _Refused(Exception):
    def __init__(self, cls: type, why: str) -> None:
        super().__init__(cls, why)
        self.cls = cls
        self.why = why


class _CheckingPickler(pickle.Pickler):
    """C pickler that consults the allow-list for every object that is not a builtin."""

    def __init__(self, file: io.BytesIO, allow: AllowList) -> None:
        super().__init__(file, protocol=PROTOCOL)
        self._allow = allow

    def reducer_override(self, obj: Any) -> Any:
        # Called for every object except exact builtin scalars and containers.
        cls = type(obj)
        if cls in self._allow.default_reduce:
            return NotImplemented
        if isinstance(obj, type):
            if obj in self._allow.classes:
                return NotImplemented  # written as a global the reader will find
            raise _Refused(obj, "it is a class that is not in PICKLESESSIONS_ALLOWED_CLASSES")
        if cls in self._allow.classes:
            # A custom __reduce__ may return a bare global name, which the reader refuses.
            reduced = obj.__reduce_ex__(PROTOCOL)
            if isinstance(reduced, str):
                raise _Refused(cls, "its __reduce__ returns a global name, not a constructor call")
            return reduced
        raise _Refused(cls, "it is not in PICKLESESSIONS_ALLOWED_CLASSES")


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class Writer:
    """Pickle one value at a time, reusing one pickler and buffer for a whole session."""

    def __init__(self, allow: AllowList) -> None:
        self.allow = allow
        self._buffer = io.BytesIO()
        self._pickler = _CheckingPickler(self._buffer, allow)

    def dumps(self, key: str, value: Any) -> bytes:
        """Return the pickle of ``value``, or raise TypeError naming ``key`` and the class."""
        if type(value) in _SCALARS:
            return pickle.dumps(value, PROTOCOL)  # no globals possible: nothing to check
        buffer = self._buffer
        buffer.seek(0)
        buffer.truncate()
        self._pickler.clear_memo()
        try:
            self._pickler.dump(value)
        except _Refused as exc:
            name = _name(exc.cls)
            raise TypeError(
                f"Session key {key!r} cannot be stored: it holds a {name}, and {exc.why}. "
                f"Add '{name}' to PICKLESESSIONS_ALLOWED_CLASSES if it is a plain data class, "
                "or store plain values instead."
            ) from None
        except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
            raise TypeError(
                f"Session key {key!r} cannot be stored: pickling its {_name(type(value))} "
                f"failed ({exc})."
            ) from exc
        return buffer.getvalue()


_local = threading.local()


def get_writer() -> Writer:
    """Return this thread's writer for the current allow-list (building one costs ~2 µs)."""
    allow = get_allow_list()
    writer: Writer | None = getattr(_local, "writer", None)
    if writer is None or writer.allow is not allow:
        writer = _local.writer = Writer(allow)
    return writer


def dumps_session(session: Mapping[str, Any]) -> bytes:
    """Return ``pickle.dumps(dict(session), 5)``, as Django 4.2's PickleSerializer wrote it.

    Byte for byte the stock pickle of the whole dict, but written through the checking
    pickler: a value the reader would refuse raises the TypeError of :meth:`Writer.dumps`,
    naming its session key and class.
    """
    data = dict(session)
    allow = get_allow_list()
    buffer = io.BytesIO()
    try:
        _CheckingPickler(buffer, allow).dump(data)
    except (_Refused, pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
        # Name the key: the first value that does not pickle on its own raises TypeError.
        writer = Writer(allow)
        for key, value in data.items():
            writer.dumps(key, value)
        raise TypeError(f"The session cannot be pickled: {exc!r}") from exc
    return buffer.getvalue()
