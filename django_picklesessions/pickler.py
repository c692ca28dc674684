"""The writer: pickles session values with protocol 5, refusing what the reader would refuse.

"Saved" must always mean "loadable": a value holding a class the allow-list does not name
(or a function, a module, a lazy translation string, a ``ZoneInfo``...) fails at ``save()``
with a ``TypeError`` that names the session key and the class, instead of being written and
then silently dropped on the next request.
"""

from __future__ import annotations

import copyreg
import datetime
import io
import pickle
import sys
import threading
import types
from collections.abc import Mapping
from typing import Any

from django_picklesessions import allowlist
from django_picklesessions.allowlist import AllowList, get_allow_list

PROTOCOL = 5
# Exact types pickle writes with opcodes alone, never with a global.
_SCALARS: frozenset[type] = frozenset({str, int, float, bool, type(None), bytes})
#: After a pickle this long, the writer starts afresh: the pickler's memo table keeps the
#: size its largest value needed, and clearing it costs that much on every later dump.
_FRESH_AFTER = 16 * 1024


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
        # The per-type verdict for nearly every object a session holds, bound once: this
        # method runs for each of them (69 times for a 20-line cart).
        self._default_reduce = allow.default_reduce
        #: Set when a value was reduced by its class's own ``__reduce__``, whose output (a
        #: set subclass lists its elements in hash order) equal values need not share.
        self.reduced_by_class = False

    def reducer_override(self, obj: Any) -> Any:
        # Called for every object except exact builtin scalars and containers.
        cls = type(obj)
        if cls in self._default_reduce:
            if obj is _UTC:
                return _UTC_REDUCED  # what its __reduce__ returns, which costs 3 µs a call
            return NotImplemented
        if isinstance(obj, type):
            if obj in self._allow.classes:
                return NotImplemented  # written as a global the reader will find
            target = getattr(type(obj), "target", None)
            if isinstance(target, type) and type(obj).__name__ == "_StandInMeta":
                raise _Refused(
                    target,
                    "the value holds that class itself inside a container, which the reader "
                    "gives back as a stand-in; store the class's dotted path as a str instead",
                )
            raise _Refused(obj, "it is a class that is not in PICKLESESSIONS_ALLOWED_CLASSES")
        if cls in self._allow.classes:
            # A custom __reduce__ may return a bare global name, which the reader refuses.
            reduced = obj.__reduce_ex__(PROTOCOL)
            if isinstance(reduced, str):
                raise _Refused(cls, "its __reduce__ returns a global name, not a constructor call")
            if (
                isinstance(reduced, tuple)
                and reduced
                and not isinstance(reduced[0], type)
                and reduced[0] not in _NEW_OBJECT
            ):
                raise _Refused(
                    cls,
                    f"its __reduce__ rebuilds it through {_callable_name(reduced[0])}, a "
                    "function, which the reader never calls",
                )
            self.reduced_by_class = True
            return reduced
        raise _Refused(cls, "it is not in PICKLESESSIONS_ALLOWED_CLASSES")


# The tzinfo of nearly every aware datetime a Django site stores (USE_TZ). Only this one
# object: timezones with the same offset compare equal whatever their names.
_UTC = datetime.timezone.utc
_UTC_REDUCED = _UTC.__reduce__()

# What pickle's own reduction names as its callable; the pickler writes NEWOBJ for them.
_NEW_OBJECT = (copyreg.__newobj__, copyreg.__newobj_ex__)  # type: ignore[attr-defined]


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _callable_name(func: object) -> str:
    module = getattr(func, "__module__", None) or type(func).__module__
    return f"{module}.{getattr(func, '__qualname__', type(func).__qualname__)}"


def _is_subclass(cls: type, module: str, name: str) -> bool:
    """issubclass(cls, module.name), without importing a module nobody imported yet."""
    loaded = sys.modules.get(module)
    base = getattr(loaded, name, None) if loaded is not None else None
    return isinstance(base, type) and issubclass(cls, base)


def advice(cls: type) -> str:
    """Say what to store instead of an instance of ``cls``: only what can work.

    Adding the class to ``PICKLESESSIONS_ALLOWED_CLASSES`` is suggested only for a class that
    the allow-list accepts and that the reader can build; for the rest, the usual alternative.
    """
    if issubclass(cls, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)) or (
        cls.__module__ == "builtins" and cls.__name__ in ("function", "method", "code")
    ):
        return (
            "Functions and methods cannot be stored: store the data they work on, or the "
            "function's dotted path as a str (django.utils.module_loading.import_string)."
        )
    if cls is memoryview:
        return "Store bytes(value)."
    if cls is types.ModuleType:
        return "Store the module's name as a str."
    if _is_subclass(cls, "zoneinfo", "ZoneInfo") or cls.__name__ == "ZoneInfo":
        return (
            "Store aware datetimes in UTC (value.astimezone(datetime.timezone.utc)) and "
            "convert them with django.utils.timezone.localtime() when reading."
        )
    if _is_subclass(cls, "django.utils.functional", "Promise") or "__proxy__" in cls.__qualname__:
        return "Store str(value): a lazy translation string is code, not data."
    if _is_subclass(cls, "django.db.models", "Model"):
        return "Store the instance's primary key (obj.pk) and fetch the object when reading."
    if _is_subclass(cls, "django.utils.safestring", "SafeData"):
        return "Store str(value) and mark it safe again where it is rendered, if it is."
    if _is_subclass(cls, "pathlib", "PurePath"):
        return "Store str(path)."
    if _is_subclass(cls, "logging", "Logger") or _is_subclass(cls, "decimal", "Context"):
        return "Store its name or settings as plain values and rebuild it when reading."
    if allowlist.never_allowed(cls.__module__, cls.__qualname__) or "<locals>" in cls.__qualname__:
        return "It can never be allowed: store plain values (str, int, dict, list) instead."
    return (
        f"Add '{_name(cls)}' to PICKLESESSIONS_ALLOWED_CLASSES if it is a plain data class "
        "built by its constructor, or store plain values instead."
    )


class Writer:
    """Pickle one value at a time, reusing one pickler and buffer for a whole session."""

    def __init__(self, allow: AllowList) -> None:
        self.allow = allow
        self._fresh()
        #: Whether the last dump reduced a value through its class's own ``__reduce__``.
        self.reduced_by_class = False

    def _fresh(self) -> None:
        self._buffer = io.BytesIO()
        self._pickler = _CheckingPickler(self._buffer, self.allow)

    def dumps(self, key: str, value: Any) -> bytes:
        """Return the pickle of ``value``, or raise TypeError naming ``key`` and the class."""
        if type(value) in _SCALARS:
            self.reduced_by_class = False
            return pickle.dumps(value, PROTOCOL)  # no globals possible: nothing to check
        buffer = self._buffer
        buffer.seek(0)
        buffer.truncate()
        pickler = self._pickler
        pickler.clear_memo()
        pickler.reduced_by_class = False
        try:
            pickler.dump(value)
        except _Refused as exc:
            name = _name(exc.cls)
            raise TypeError(
                f"Session key {key!r} cannot be stored: it holds a {name}, and {exc.why}. "
                f"{advice(exc.cls)}"
            ) from None
        except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
            raise TypeError(
                f"Session key {key!r} cannot be stored: pickling its {_name(type(value))} "
                f"failed ({exc})."
            ) from exc
        finally:
            self.reduced_by_class = pickler.reduced_by_class
        data = buffer.getvalue()
        if len(data) > _FRESH_AFTER:
            self._fresh()
        return data

    def dumps_all(self, session: Mapping[str, Any]) -> dict[str, bytes]:
        """Return ``{key: dumps(key, value)}`` for a whole session; keys must be str."""
        out: dict[str, bytes] = {}
        dumps = self.dumps
        for key, value in session.items():
            if type(key) is not str and not isinstance(key, str):
                raise TypeError(f"Session keys must be str, not {type(key).__name__}: {key!r}.")
            # The scalar case of dumps(), without its call: most session values are scalars.
            out[key] = (
                pickle.dumps(value, PROTOCOL) if type(value) in _SCALARS else dumps(key, value)
            )
        self.reduced_by_class = False  # a summary over many values would mean nothing
        return out


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
