"""The restricted unpickler: the only module of the package that calls pickle's loaders.

Bytes reach this module only after the record's MAC verified (``record.py``). This is the
second wall, for an attacker who holds the key *and* can write the storage: globals resolve
through an exact ``(module, qualname)`` dictionary of allowed classes, never by import or
attribute walk, so no function, module or gadget class can be reached.

Default mode runs CPython's C unpickler with that ``find_class``. The opcodes that bypass
``find_class`` are handled as follows:

* ``PERSID``/``BINPERSID``: refused by the C unpickler, which has no ``persistent_load`` here.
* ``NEXT_BUFFER``: refused by the C unpickler, which is given no out-of-band buffers.
* ``EXT1``/``EXT2``/``EXT4``: resolve through ``copyreg``'s extension registry, and once its
  cache is primed they skip ``find_class``. With the registry empty (as in any process that
  never calls ``copyreg.add_extension``) they fail; when it is not empty, every load falls
  back to strict mode, which refuses them by opcode.
* ``READONLY_BUFFER``: accepted by the C unpickler, where its only effect is to turn a
  ``bytearray`` into a read-only ``memoryview`` of it. Strict mode refuses it.

The C unpickler does not bound what a stream may ask it to allocate: a 9-byte memo index
or a length field makes it allocate gigabytes, and colliding dictionary keys cost quadratic
time. Strict mode (``PICKLESESSIONS_STRICT_UNPICKLING = True``) therefore first simulates the
stream in Python (:func:`validate_opcodes`) and refuses, before the C unpickler allocates
anything, every opcode our writer never emits and every stream over the ``MAX_STRICT_*``
bounds below; ``docs/settings.md`` lists what each mode guarantees.
"""

from __future__ import annotations

import collections
import contextlib
import copyreg
import datetime
import decimal
import fractions
import functools
import io
import pickle
import pickletools
import re
import reprlib
import struct
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django_picklesessions.allowlist import (
    NEVER_ALLOWED_MODULES,
    NEVER_ALLOWED_NAMES,
    AllowList,
    get_allow_list,
    never_allowed,
)
from django_picklesessions.conf import conf
from django_picklesessions.exceptions import ValueRejected

#: Opcodes that ``pickle.dumps(value, 5)`` emits for allowed values; strict mode refuses others.
STRICT_OPCODES: frozenset[str] = frozenset(
    (
        "PROTO",
        "FRAME",
        "STOP",
        "MARK",
        "POP",
        "POP_MARK",
        "NONE",
        "NEWTRUE",
        "NEWFALSE",
        "BININT",
        "BININT1",
        "BININT2",
        "LONG1",
        "LONG4",
        "BINFLOAT",
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "SHORT_BINBYTES",
        "BINBYTES",
        "BYTEARRAY8",
        "EMPTY_LIST",
        "APPEND",
        "APPENDS",
        "EMPTY_TUPLE",
        "TUPLE",
        "TUPLE1",
        "TUPLE2",
        "TUPLE3",
        "EMPTY_DICT",
        "SETITEM",
        "SETITEMS",
        "EMPTY_SET",
        "ADDITEMS",
        "FROZENSET",
        "MEMOIZE",
        "BINGET",
        "LONG_BINGET",
        "STACK_GLOBAL",
        "REDUCE",
        "NEWOBJ",
        "NEWOBJ_EX",
        "BUILD",
    )
)

# Strict mode's bounds, per session value. Values our writer produces for real sessions stay
# far below them; each one caps a resource that an opcode stream could otherwise inflate.
#: Opcodes in one value (bounds the simulation's time and the C unpickler's work).
MAX_STRICT_OPCODES = 200_000
#: Nesting of containers and objects, counting shared references (C recursion in pickle,
#: ``copy``, ``repr`` and comparisons follows them).
MAX_STRICT_DEPTH = 100
#: Containers and objects created.
MAX_STRICT_OBJECTS = 100_000
#: Objects reached by walking a value, shared references counted each time: what hashing,
#: ``==``, ``copy`` and ``repr`` visit.
MAX_STRICT_EXPANDED = 1_000_000
#: Memo entries (``MEMOIZE``); the memo opcodes with explicit indexes are refused outright.
MAX_STRICT_MEMO = 100_000
#: Bytes of one ``LONG4`` integer: 8,192 bits, which ``str()`` can still print.
MAX_STRICT_INT_BYTES = 1024
#: Numeric keys of one dict or set sharing a hash (Python's int and float hashes are not
#: randomised, so colliding keys cost quadratic time to insert).
MAX_STRICT_COLLISIONS = 8
#: Keys of one dict or set whose hash the simulation cannot compute (tuples holding objects,
#: frozensets, instances): caps what crafted collisions among them can cost.
MAX_STRICT_OPAQUE_KEYS = 1024
#: Significant digits and absolute adjusted exponent of a ``decimal.Decimal``: beyond them,
#: ``int(value)`` or arithmetic outside the default context can take unbounded time.
MAX_STRICT_DECIMAL_DIGITS = 100
MAX_STRICT_DECIMAL_EXPONENT = 4300


class SuspiciousValue(ValueRejected):
    """A value our writer can never have produced: a refused function, opcode or stream.

    Under a valid MAC only a holder of the signing key can have written it, so it is worth
    a security alert, unlike a class that a deploy removed from the allow-list.
    """

    suspicious = True


class _Refusal(pickle.UnpicklingError):
    """Strict mode's verdict on a stream; ``limit`` marks a resource bound, not a forgery."""

    def __init__(self, message: str, *, limit: bool = False) -> None:
        super().__init__(message)
        self.limit = limit


_STREAM_ERRORS = ("unsupported pickle protocol", "unregistered extension code")


class _NotAllowed(pickle.UnpicklingError):
    """A global outside the allow-list; suspicious unless it looks like a removed class."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"global '{_clip(module)}.{_clip(name)}' is not allowed")
        self.module, self.name = module, name
        self.suspicious = (
            not _plain_class_name(module, name)
            or never_allowed(module, name)
            or _names_a_loaded_non_class(module, name)
        )


def _names_a_loaded_non_class(module: str, name: str) -> bool:
    """Return True if ``module.name`` is, in this process, something other than a class.

    Our writer writes classes only, so a function (``import_string``) or any other object is
    a forgery; a name that does not resolve may be a class a deploy removed or moved. Only
    modules already imported are consulted, through their dict: nothing is imported or run.
    """
    loaded = sys.modules.get(module)
    if loaded is None:
        return False
    found = loaded.__dict__.get(name)
    return found is not None and not isinstance(found, type)


def _plain_class_name(module: str, name: str) -> bool:
    # What our writer can emit: dotted identifiers, no dunder, a module-level name.
    parts = [*module.split("."), name]
    return all(part.isidentifier() and "__" not in part for part in parts)


def clip(text: str, limit: int = 100) -> str:
    """Shorten and escape attacker-chosen text before it reaches a log line."""
    clipped = text[:limit] + ("…" if len(text) > limit else "")
    return clipped if clipped.isprintable() else repr(clipped)[1:-1]


_clip = clip


class _BoundedRepr(reprlib.Repr):
    """``repr`` that stops early: loaded values may share references exponentially."""

    def repr_instance(self, obj: Any, level: int) -> str:
        # Never call a loaded object's own __repr__ (a dataclass's recurses without bound);
        # the few value types whose repr is short and flat are shown as themselves.
        cls = type(obj)
        if cls in _FLAT_REPR or cls.__dict__.get("_flat_repr") is True:
            with contextlib.suppress(Exception):
                return clip(repr(obj), self.maxother)
        return f"<{clip(cls.__module__)}.{clip(cls.__qualname__)} object>"


_FLAT_REPR: frozenset[type] = frozenset(
    (decimal.Decimal, datetime.date, datetime.datetime, datetime.time, datetime.timedelta)
)
_repr = _BoundedRepr()
_repr.maxlevel = 3
_repr.maxother = 60


def bounded_repr(value: Any) -> str:
    """Return a short repr of a loaded value, in time bounded whatever it holds."""
    return clip(_repr.repr(value), 300)


class _RestrictedUnpickler(pickle.Unpickler):
    """C unpickler whose globals come from the allow-list dictionary and nowhere else."""

    # Set on the subclass made for each allow-list: class attributes, so that creating an
    # unpickler per value costs no Python-level __init__. ``allowed`` maps names to the
    # classes (what strict mode checks); ``loaders`` to what the C unpickler is handed.
    allowed: dict[tuple[str, str], type] = {}
    loaders: dict[tuple[str, str], type] = {}

    #: The stand-ins this load handed out (set per load by ``loads``).
    fetched: list[type]

    def find_class(self, module: str, name: str) -> type:
        try:
            found = self.loaders[module, name]
        except (KeyError, TypeError):
            raise _NotAllowed(str(module), str(name)) from None
        if type(found) is _StandInMeta:
            self.fetched.append(found)
        return found


# --- Stand-ins: what the C unpickler gets instead of some allowed classes ------------------
#
# BUILD applied to a class object sets attributes on the class itself, for the whole process
# (``Fraction._numerator = 5`` breaks every Fraction). The C unpickler applies BUILD to
# whatever is on its stack, and only a stack simulation could tell it a class from an
# instance. Instead, a class that BUILD could change (a mutable type) never reaches the stack:
# ``find_class`` hands out a stand-in, a class of the metaclass below, whose construction
# builds the real class's instance exactly as REDUCE or NEWOBJ would, and which refuses
# BUILD and attribute changes. The same stand-ins re-validate the values whose C constructor
# skips validation when given its pickled state (a ``date`` of year 0, an hour of 200), and
# accept only the argument shapes our writer emits where other shapes cost unbounded time.

#: ``Py_TPFLAGS_IMMUTABLETYPE``: a type whose attributes cannot be set (CPython >= 3.10).
_IMMUTABLE_TYPE = 1 << 8


class _StandInMeta(type):
    """Metaclass of the stand-ins: BUILD on one, or setting its attributes, is refused."""

    target: type

    def __setattr__(cls, name: str, value: Any) -> None:
        raise _bad("BUILD on a class object")

    def __delattr__(cls, name: str) -> None:
        raise _bad("BUILD on a class object")

    def __setstate__(cls, state: Any) -> None:
        # BUILD looks __setstate__ up on its target first: on a stand-in it finds this.
        raise _bad("BUILD on a class object")


_FRACTION_TEXT = re.compile(r"-?[0-9]{1,4300}(?:/[0-9]{1,4300})?")


def _new_fraction(cls: type, *args: Any) -> Any:
    # Our writer emits (numerator, denominator), or str(fraction) on older Pythons; any
    # other form (a float, "1e100000000") is refused before Fraction parses it.
    if len(args) == 2 and type(args[0]) is int and type(args[1]) is int and args[1] > 0:
        return cls(*args)
    if len(args) == 1 and type(args[0]) is str and _FRACTION_TEXT.fullmatch(args[0]):
        return cls(*args)
    raise _bad("fractions.Fraction is only built from two integers or its str()")


def _new_ordered_dict(cls: type, *args: Any) -> Any:
    # Our writer emits OrderedDict() then SETITEMS, which strict mode bounds; pairs passed
    # to the constructor would escape those bounds.
    if args:
        raise _bad("collections.OrderedDict is only built empty")
    return cls()


def _datetime_builder(cls: type) -> Callable[..., Any]:
    """Return the datetime stand-in's ``__new__``, inlined: sessions hold many datetimes."""
    date_of, time_of = datetime.datetime.date, datetime.datetime.time

    def build_datetime(_: type, *args: Any) -> Any:
        value = cls(*args)
        try:
            # From its pickled state the C type does not validate (and some invalid states
            # crash CPython: ctime() on year 0); date() and time() validate.
            date_of(value)
            time_of(value)
        except ValueError:
            raise _bad("invalid datetime.datetime state") from None
        return value

    return build_datetime


def _new_validated(cls: type, *args: Any) -> Any:
    value = cls(*args)
    try:
        value.replace()  # through the validating constructor, as for datetime above
    except ValueError:
        raise _bad(f"invalid {cls.__module__}.{cls.__qualname__} state") from None
    return value


_SHAPED: dict[type, Any] = {
    fractions.Fraction: _new_fraction,
    collections.OrderedDict: _new_ordered_dict,
    datetime.date: _new_validated,
    datetime.datetime: _datetime_builder,
    datetime.time: _new_validated,
}


def _stand_in(cls: type, newobj: bool, shapes: bool = True) -> type | None:
    """Return what ``find_class`` hands out for ``cls``, or None when ``cls`` itself is safe.

    ``newobj``: our writer builds ``cls`` with NEWOBJ (``cls.__new__(cls, *args)``, no
    ``__init__``) rather than REDUCE (``cls(*args)``); the stand-in does the same for both
    opcodes, and so never calls anything but that class.
    """
    shaped = _SHAPED.get(cls) if shapes else None
    if shaped is None and cls.__flags__ & _IMMUTABLE_TYPE:
        return None
    namespace = {
        "__new__": _builder(cls, shaped, newobj),
        "__slots__": (),
        "__qualname__": cls.__qualname__,
    }
    stand_in = _StandInMeta(cls.__name__, (), namespace)
    type.__setattr__(stand_in, "target", cls)
    return stand_in


def _builder(cls: type, shaped: Callable[..., Any] | None, newobj: bool) -> Callable[..., Any]:
    """Return the stand-in's ``__new__``: it receives the stand-in, then the arguments."""
    if shaped is _datetime_builder:
        return _datetime_builder(cls)  # type: ignore[no-any-return]
    if shaped is not None:
        return functools.partial(_drop_first, shaped, cls)
    if (
        newobj
        and cls.__new__ is object.__new__  # type: ignore[comparison-overlap]
        and type.__getattribute__(cls, "__init__") is not object.__init__
    ):
        # C speed: object.__new__(cls, stand_in, *args) builds a bare cls, ignoring extra
        # arguments as it does for every class with its own __init__ (what NEWOBJ does).
        return functools.partial(object.__new__, cls)
    if newobj:

        def build_bare(_: type, *args: Any, **kwargs: Any) -> Any:
            return cls.__new__(cls, *args, **kwargs)

        return build_bare

    def build(_: type, *args: Any, **kwargs: Any) -> Any:
        return cls(*args, **kwargs)

    return build


def _drop_first(shaped: Callable[..., Any], cls: type, _: type, *args: Any) -> Any:
    return shaped(cls, *args)


# One unpickler class, with its own stand-ins, per thread: a stand-in's references then
# change only with this thread's own load, which is what ``_holds_stand_ins`` counts.
_local = threading.local()


def _unpickler_class(allow: AllowList) -> type[_RestrictedUnpickler]:
    cached: tuple[AllowList, type[_RestrictedUnpickler]] | None = _local.__dict__.get("cache")
    if cached is None or cached[0] is not allow:
        cached = _local.cache = (allow, build_unpickler_class(allow.by_name, allow.new_object))
    return cached[1]


def build_unpickler_class(
    allowed: dict[tuple[str, str], type],
    new_object: frozenset[type],
    stand_ins: bool = True,
    shapes: bool = True,
) -> type[_RestrictedUnpickler]:
    """Return an unpickler class for ``allowed``.

    Turning ``stand_ins`` (item B6) or ``shapes`` (B8 and the argument shapes) off is for
    the benchmark alone, which times what each guard costs.
    """
    loaders: dict[tuple[str, str], type] = {}
    for name, cls in allowed.items():
        found = _stand_in(cls, cls in new_object, shapes) if stand_ins else None
        loaders[name] = found or cls
    namespace = {"allowed": allowed, "loaders": loaders}
    subclass = type("RestrictedUnpickler", (_RestrictedUnpickler,), namespace)
    for name in [name for name, found in loaders.items() if type(found) is _StandInMeta]:
        _calibrate(subclass, name)
    return subclass


def _excess(stand_in: type, fetched: list[type]) -> int:
    return sys.getrefcount(stand_in) - fetched.count(stand_in)


def _holds_stand_ins(fetched: list[type]) -> bool:
    """Return True if something besides ``fetched`` still refers to a stand-in it lists.

    Once the unpickler is gone, a stand-in is referred to by the loaders' table and by
    ``fetched`` only, unless the value holds it (a class stored as a value) or another
    thread's load is using it (then the walk that follows finds nothing, at some cost).
    """
    # A loop, not any(): the same references as in _calibrate, which sets the baseline.
    for stand_in in set(fetched):  # noqa: SIM110
        if _excess(stand_in, fetched) > stand_in.at_rest:  # type: ignore[attr-defined]
            return True
    return False


def _calibrate(subclass: type[_RestrictedUnpickler], name: tuple[str, str]) -> None:
    """Count a stand-in's references at rest, through the very path ``loads`` checks them."""
    stand_in = subclass.loaders[name]
    type.__setattr__(stand_in, "at_rest", 1 << 30)
    del stand_in
    # The stand-in fetched, then popped: the value (None) holds nothing.
    stream = b"\x80\x05" + _text(name[0]) + _text(name[1]) + b"\x930N."
    reader = subclass(io.BytesIO(stream), fix_imports=False)
    fetched: list[type] = []
    reader.fetched = fetched
    reader.load()
    del reader
    for fetched_stand_in in set(fetched):
        # Computed first: an argument already pushed for the call would count as a reference.
        excess = _excess(fetched_stand_in, fetched)
        type.__setattr__(fetched_stand_in, "at_rest", excess)


def _text(value: str) -> bytes:
    raw = value.encode("utf-8", "surrogatepass")
    return b"X" + len(raw).to_bytes(4, "little") + raw


def _with_classes(value: Any, seen: dict[int, Any]) -> Any:
    """Return ``value`` with every stand-in inside it replaced by its class.

    Only runs for a value that holds a class object (rare: our writer stores classes as
    globals); containers are changed in place, tuples and frozensets rebuilt once each.
    """
    kind = type(value)
    if kind is _StandInMeta:
        return value.target
    if kind in _ATOMS:
        return value
    known = seen.get(id(value), _NOT_SIMPLE)
    if known is not _NOT_SIMPLE:
        return known
    seen[id(value)] = value
    if kind is list:
        value[:] = [_with_classes(item, seen) for item in value]
    elif kind is dict or kind is collections.OrderedDict:
        pairs = [(_with_classes(k, seen), _with_classes(v, seen)) for k, v in value.items()]
        value.clear()
        value.update(pairs)
    elif kind is set:
        items = [_with_classes(item, seen) for item in value]
        value.clear()
        value.update(items)
    elif kind is tuple or kind is frozenset:
        rebuilt = kind(_with_classes(item, seen) for item in value)
        seen[id(value)] = rebuilt
        return rebuilt
    else:
        # Instance state through the class's own dict and slot descriptors: names come from
        # the class, never from the stream.
        try:
            state = value.__dict__
        except AttributeError:
            state = None
        if type(state) is dict:
            for key, item in list(state.items()):
                state[key] = _with_classes(item, seen)
        for klass in kind.__mro__:
            slots = klass.__dict__.get("__slots__", ())
            for slot in (slots,) if isinstance(slots, str) else slots:
                descriptor = klass.__dict__.get(slot)
                if slot in ("__dict__", "__weakref__") or descriptor is None:
                    continue
                try:
                    item = descriptor.__get__(value, kind)
                except AttributeError:
                    continue  # an unset slot
                if type(item) not in _ATOMS:
                    descriptor.__set__(value, _with_classes(item, seen))
    return value


_ATOMS: frozenset[type] = frozenset(
    (str, bytes, bytearray, int, float, bool, type(None), decimal.Decimal, *_SHAPED)
)


# --- Strict mode: a simulation of the stream -------------------------------------------

_OPCODE_NAMES: dict[int, str] = {ord(op.code): op.name for op in pickletools.opcodes}
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")
_F64 = struct.Struct(">d")
# Text up to this many bytes is decoded, for global names, Decimal arguments and key hashes.
_DECODED_TEXT = 128

_LIST, _DICT, _SET, _TUPLE, _FROZENSET, _OBJECT, _GLOBAL = range(7)
_APPEND_TARGETS = frozenset((_LIST, _OBJECT))
_SETITEM_TARGETS = frozenset((_DICT, _OBJECT))
_ADDITEMS_TARGETS = frozenset((_SET, _OBJECT))
_NUMERIC: frozenset[type] = frozenset((int, float, bool, type(None)))


class _Node:
    """A container or object of the simulated stack; scalars are pushed as plain values."""

    __slots__ = ("kind", "depth", "size", "inside", "items", "hashes", "opaque", "cls")

    def __init__(self, kind: int, depth: int = 1, items: list[Any] | None = None) -> None:
        self.kind = kind
        self.depth = depth
        #: Objects reached when walking it, shared references counted each time they occur.
        self.size = 1
        #: Placed in another container or object: from then on it must not change.
        self.inside = False
        self.items = items
        self.hashes: dict[int, int] | None = None
        self.opaque = 0
        self.cls: type | None = None


class _Opaque:
    """Text too long to decode, or bytes: a leaf whose hash is randomised."""

    __slots__ = ()


_TEXT = _Opaque()
_BYTES = _Opaque()


def _bad(message: str) -> _Refusal:
    return _Refusal(message)


def _over(what: str) -> _Refusal:
    return _Refusal(f"limit exceeded: {what}", limit=True)


def _place(parent: _Node, child: Any) -> None:
    """Record that ``child`` now sits inside ``parent``; refuse cycles and deep nesting."""
    if type(child) is _Node:
        if child is parent:
            raise _bad("reference cycle")
        child.inside = True
        # Hashing, comparing, copying or printing the value walks every reference: a DAG
        # of memo references ((t, t) at each level) is small to store and huge to walk.
        parent.size += child.size
        if parent.size > MAX_STRICT_EXPANDED:
            raise _over("expanded size")
        depth = child.depth + 1
        if depth > parent.depth:
            if depth > MAX_STRICT_DEPTH:
                raise _over("nesting depth")
            parent.depth = depth


# Python never returns -1 as a hash, so it can mean "not computable here".
_UNKNOWN_HASH = -1


def _key_hash(key: Any) -> int | None:
    """Return the hash a key will have, None if randomised, or ``_UNKNOWN_HASH``."""
    kind = type(key)
    if kind in _NUMERIC:
        return hash(key)
    if kind is not _Node:
        return None  # str and bytes: randomised per process
    if key.kind == _TUPLE and key.items is not None:
        randomised = False
        for item in key.items:
            if type(item) in _NUMERIC:
                continue
            if type(item) is str or type(item) is _Opaque:
                randomised = True
                continue
            return _UNKNOWN_HASH
        return None if randomised else hash(tuple(key.items))
    return _UNKNOWN_HASH


def _add_keys(target: _Node, keys: list[Any]) -> None:
    """Count hash collisions among the keys a dict or set receives."""
    for key in keys:
        digest = _key_hash(key)
        if digest is None:
            continue
        if digest == _UNKNOWN_HASH:
            target.opaque += 1
            if target.opaque > MAX_STRICT_OPAQUE_KEYS:
                raise _over("keys without a computable hash")
            continue
        hashes = target.hashes
        if hashes is None:
            hashes = target.hashes = {}
        count = hashes.get(digest, 0) + 1
        if count > MAX_STRICT_COLLISIONS:
            raise _over("hash collisions")
        hashes[digest] = count


def _check_decimal(args: _Node) -> None:
    items = args.items or []
    if len(items) != 1 or not isinstance(items[0], (str, _Opaque)):
        raise _bad("decimal.Decimal is only built from one string")
    if type(items[0]) is not str:
        raise _over("decimal digits")
    try:
        value = decimal.Decimal(items[0])
    except decimal.InvalidOperation:
        raise _bad("malformed decimal.Decimal") from None
    if value.is_finite() and (
        len(value.as_tuple().digits) > MAX_STRICT_DECIMAL_DIGITS
        or abs(value.adjusted()) > MAX_STRICT_DECIMAL_EXPONENT
    ):
        raise _over("decimal digits")


def validate_opcodes(data: bytes, allowed: dict[tuple[str, str], type] | None = None) -> None:
    """Simulate a pickle stream; raise UnpicklingError unless strict mode may load it.

    Refuses opcodes outside ``STRICT_OPCODES``, a stream that is not one protocol-5 pickle
    ending exactly at ``STOP``, declared lengths beyond the data, frames that lie, memo
    references to missing entries, objects modified after being placed in another (so
    reference cycles too), and anything over the ``MAX_STRICT_*`` bounds. Given ``allowed``,
    globals outside it are refused here, before the C unpickler sees the stream.
    """
    size = len(data)
    if size < 3 or data[0] != 0x80 or data[1] != 5:
        raise _bad("stream does not start with PROTO 5")
    stack: list[Any] = []
    marks: list[int] = []
    memo: list[Any] = []
    push, pop = stack.append, stack.pop
    fence = 0  # stack length at the innermost MARK
    frame_end = 0
    opcodes = objects = 0
    pos = 2
    while True:
        if pos >= size:
            raise _bad("pickle ends without STOP")
        start = pos
        op = data[pos]
        pos += 1
        opcodes += 1
        if opcodes > MAX_STRICT_OPCODES:
            raise _over("opcodes")
        # Opcodes in rough order of frequency in our writer's output.
        if op == 0x94:  # MEMOIZE
            if len(stack) <= fence:
                raise _bad("MEMOIZE on an empty stack")
            memo.append(stack[-1])
            if len(memo) > MAX_STRICT_MEMO:
                raise _over("memo entries")
        elif op == 0x68 or op == 0x6A:  # BINGET, LONG_BINGET
            width = 1 if op == 0x68 else 4
            if pos + width > size:
                raise _bad("truncated memo index")
            index = data[pos] if width == 1 else _U32.unpack_from(data, pos)[0]
            pos += width
            if index >= len(memo):
                raise _bad("reference to a missing memo entry")
            push(memo[index])
        elif op == 0x8C or op == 0x58 or op == 0x43 or op == 0x42:
            # SHORT_BINUNICODE, BINUNICODE, SHORT_BINBYTES, BINBYTES
            if op == 0x8C or op == 0x43:
                if pos >= size:
                    raise _bad("truncated length")
                length = data[pos]
                pos += 1
            else:
                if pos + 4 > size:
                    raise _bad("truncated length")
                length = _U32.unpack_from(data, pos)[0]
                pos += 4
            if length > size - pos:
                raise _bad("declared length exceeds the data")
            if op == 0x43 or op == 0x42:
                push(_BYTES)
            elif length <= _DECODED_TEXT:
                try:
                    push(data[pos : pos + length].decode("utf-8", "surrogatepass"))
                except UnicodeDecodeError:
                    raise _bad("malformed UTF-8") from None
            else:
                push(_TEXT)
            pos += length
        elif op == 0x4B:  # BININT1
            if pos >= size:
                raise _bad("truncated integer")
            push(data[pos])
            pos += 1
        elif op == 0x4A or op == 0x4D:  # BININT, BININT2
            width = 4 if op == 0x4A else 2
            if pos + width > size:
                raise _bad("truncated integer")
            push(_I32.unpack_from(data, pos)[0] if width == 4 else _U16.unpack_from(data, pos)[0])
            pos += width
        elif op == 0x8A or op == 0x8B:  # LONG1, LONG4
            if op == 0x8A:
                if pos >= size:
                    raise _bad("truncated length")
                length = data[pos]
                pos += 1
            else:
                if pos + 4 > size:
                    raise _bad("truncated length")
                length = _I32.unpack_from(data, pos)[0]
                pos += 4
                if length < 0:
                    raise _bad("negative length")
                if length > MAX_STRICT_INT_BYTES:
                    raise _over("integer size")
            if length > size - pos:
                raise _bad("declared length exceeds the data")
            push(int.from_bytes(data[pos : pos + length], "little", signed=True))
            pos += length
        elif op == 0x47:  # BINFLOAT
            if pos + 8 > size:
                raise _bad("truncated float")
            push(_F64.unpack_from(data, pos)[0])
            pos += 8
        elif op == 0x4E or op == 0x88 or op == 0x89:  # NONE, NEWTRUE, NEWFALSE
            push(None if op == 0x4E else op == 0x88)
        elif op == 0x28:  # MARK
            marks.append(fence)
            fence = len(stack)
        elif op in _CONTAINER_OPCODES:
            objects += 1
            if objects > MAX_STRICT_OBJECTS:
                raise _over("objects")
            kind = _CONTAINER_OPCODES[op]
            if kind == _TUPLE and op != 0x29:  # TUPLE, TUPLE1, TUPLE2, TUPLE3
                if op == 0x74:
                    if not marks:
                        raise _bad("TUPLE without MARK")
                    items = stack[fence:]
                    del stack[fence:]
                    fence = marks.pop()
                else:
                    count = op - 0x84
                    if len(stack) - fence < count:
                        raise _bad("stack underflow")
                    items = stack[-count:]
                    del stack[-count:]
                node = _Node(_TUPLE, 1, items)
                for item in items:
                    _place(node, item)
            elif kind == _FROZENSET:
                if not marks:
                    raise _bad("FROZENSET without MARK")
                items = stack[fence:]
                del stack[fence:]
                fence = marks.pop()
                node = _Node(_FROZENSET)
                for item in items:
                    _place(node, item)
                _add_keys(node, items)
            else:  # EMPTY_LIST, EMPTY_DICT, EMPTY_SET, EMPTY_TUPLE
                node = _Node(kind, 1, [] if kind == _TUPLE else None)
            push(node)
        elif op in _FILL_OPCODES:  # APPEND(S), SETITEM(S), ADDITEMS
            targets = _FILL_OPCODES[op]
            if op == 0x61 or op == 0x73:  # APPEND, SETITEM
                count = 1 if op == 0x61 else 2
                if len(stack) - fence < count + 1:
                    raise _bad("stack underflow")
                items = stack[-count:]
                del stack[-count:]
            else:
                if not marks:
                    raise _bad("missing MARK")
                items = stack[fence:]
                del stack[fence:]
                fence = marks.pop()
                if len(stack) <= fence:
                    raise _bad("stack underflow")
            target = stack[-1]
            if type(target) is not _Node or target.kind not in targets:
                raise _bad(f"{_OPCODE_NAMES[op]} on a value that cannot take it")
            if target.inside:
                raise _bad("object modified after being placed in another")
            for item in items:
                _place(target, item)
            if op == 0x73 or op == 0x75:  # SETITEM, SETITEMS
                if len(items) % 2:
                    raise _bad("odd number of items for SETITEMS")
                _add_keys(target, items[0::2])
            elif op == 0x90:  # ADDITEMS
                _add_keys(target, items)
        elif op == 0x93:  # STACK_GLOBAL
            if len(stack) - fence < 2:
                raise _bad("stack underflow")
            name, module = pop(), pop()
            if not isinstance(module, (str, _Opaque)) or not isinstance(name, (str, _Opaque)):
                raise _bad("STACK_GLOBAL needs two strings")
            node = _Node(_GLOBAL, 0)
            if allowed is not None:
                if type(module) is not str or type(name) is not str:
                    raise _bad("global name too long")
                found = allowed.get((module, name))
                if found is None:
                    raise _NotAllowed(module, name)
                node.cls = found
            push(node)
        elif op == 0x52 or op == 0x81 or op == 0x92:  # REDUCE, NEWOBJ, NEWOBJ_EX
            count = 3 if op == 0x92 else 2
            if len(stack) - fence < count:
                raise _bad("stack underflow")
            operands = stack[-count:]
            del stack[-count:]
            cls, args = operands[0], operands[1]
            if type(cls) is not _Node or (
                cls.kind != _GLOBAL and not (cls.kind == _OBJECT and cls.cls is _Placeholder)
            ):
                # (Salvage only: what a refused global returned is an inert placeholder.)
                raise _bad(f"{_OPCODE_NAMES[op]} of something that is not an allowed class")
            if type(args) is not _Node or args.kind != _TUPLE:
                raise _bad(f"{_OPCODE_NAMES[op]} arguments are not a tuple")
            if cls.cls is decimal.Decimal:
                if op != 0x52:
                    raise _bad("decimal.Decimal is only built by REDUCE")
                _check_decimal(args)
            objects += 1
            if objects > MAX_STRICT_OBJECTS:
                raise _over("objects")
            node = _Node(_OBJECT, 1)
            if cls.cls is _Placeholder:
                node.cls = _Placeholder
            for operand in operands[1:]:
                _place(node, operand)
            node.depth = max(node.depth - 1, 1)  # the arguments' tuple is not a level
            push(node)
        elif op == 0x62:  # BUILD
            if len(stack) - fence < 2:
                raise _bad("stack underflow")
            state = pop()
            target = stack[-1]
            if type(target) is not _Node or target.kind != _OBJECT:
                raise _bad("BUILD on a value that is not an object")
            if target.inside:
                raise _bad("object modified after being placed in another")
            _place(target, state)
        elif op == 0x95:  # FRAME
            if pos + 8 > size:
                raise _bad("truncated frame length")
            length = _U64.unpack_from(data, pos)[0]
            pos += 8
            if start < frame_end:
                raise _bad("FRAME inside a frame")
            if length > size - pos:
                raise _bad("declared length exceeds the data")
            frame_end = pos + length
        elif op == 0x30:  # POP
            if len(stack) <= fence:
                raise _bad("stack underflow")
            pop()
        elif op == 0x31:  # POP_MARK
            if not marks:
                raise _bad("POP_MARK without MARK")
            del stack[fence:]
            fence = marks.pop()
        elif op == 0x96:  # BYTEARRAY8
            if pos + 8 > size:
                raise _bad("truncated length")
            length = _U64.unpack_from(data, pos)[0]
            pos += 8
            if length > size - pos:
                raise _bad("declared length exceeds the data")
            push(_BYTES)
            pos += length
        elif op == 0x2E:  # STOP
            if pos != size:
                raise _bad("bytes after STOP")
            if len(stack) != 1 or marks:
                raise _bad("STOP with more than one value on the stack")
            if start < frame_end < pos:
                raise _bad("opcode crosses the end of its frame")
            return
        elif op == 0x80:
            raise _bad("a second PROTO")
        else:
            name = _OPCODE_NAMES.get(op)
            raise _bad(f"opcode {name} is not allowed" if name else f"unknown opcode {op:#04x}")
        if start < frame_end < pos:
            raise _bad("opcode crosses the end of its frame")


_CONTAINER_OPCODES: dict[int, int] = {
    0x5D: _LIST,  # EMPTY_LIST
    0x7D: _DICT,  # EMPTY_DICT
    0x8F: _SET,  # EMPTY_SET
    0x29: _TUPLE,  # EMPTY_TUPLE
    0x74: _TUPLE,  # TUPLE
    0x85: _TUPLE,  # TUPLE1
    0x86: _TUPLE,  # TUPLE2
    0x87: _TUPLE,  # TUPLE3
    0x91: _FROZENSET,  # FROZENSET
}
_FILL_OPCODES: dict[int, frozenset[int]] = {
    0x61: _APPEND_TARGETS,  # APPEND
    0x65: _APPEND_TARGETS,  # APPENDS
    0x73: _SETITEM_TARGETS,  # SETITEM
    0x75: _SETITEM_TARGETS,  # SETITEMS
    0x90: _ADDITEMS_TARGETS,  # ADDITEMS
}


def _extensions_registered() -> bool:
    # Private copyreg state is what the C unpickler consults for EXT opcodes.
    registry: dict[Any, Any] = copyreg._extension_registry  # type: ignore[attr-defined]
    cache: dict[Any, Any] = copyreg._extension_cache  # type: ignore[attr-defined]
    return bool(registry or cache)


_CONSTANTS: dict[int, Any] = {0x4E: None, 0x88: True, 0x89: False}
_PROTO_5 = b"\x80\x05"
_FRAMED = _PROTO_5 + b"\x95"  # PROTO 5, FRAME
_NOT_SIMPLE = object()
#: What precedes the text in ``pickle.dumps(s, 5)`` of a str of 0 to 255 UTF-8 bytes, by that
#: length: PROTO 5, FRAME (length + 4), SHORT_BINUNICODE length. MEMOIZE and STOP follow it.
_SHORT_TEXT_HEADS = [_FRAMED + (n + 4).to_bytes(8, "little") + bytes((0x8C, n)) for n in range(256)]
_MEMOIZE_STOP = b"\x94."
#: The first opcode after the frame of the other framed shapes: BINUNICODE, BININT2, BININT.
_FRAMED_SCALAR_OPCODES = frozenset((0x58, 0x4D, 0x4A))


def simple(data: bytes) -> Any:
    """Decode the few exact shapes ``pickle.dumps(x, 5)`` gives a str, small int, bool or None.

    Most session keys hold such scalars (the auth keys, flags, counters). Reading them needs
    no unpickler at all: these shapes contain no global, so parsing them here is both safe
    and several times faster. Any other shape returns ``NOT_SIMPLE``, and so does text that
    is not UTF-8 (which ``loads_full`` refuses); it never raises.
    """
    n = len(data)
    try:
        # The commonest shape first, matched whole: one comparison checks both lengths.
        if (
            15 <= n <= 270
            and data[:13] == _SHORT_TEXT_HEADS[n - 15]
            and data.endswith(_MEMOIZE_STOP)
        ):
            return data[13:-2].decode("utf-8", "surrogatepass")
        if n < 15:
            if not data.startswith(_PROTO_5):
                return _NOT_SIMPLE  # another protocol is the full reader's to refuse
            if n == 4 and data[3] == 0x2E:  # PROTO 5, NONE / NEWTRUE / NEWFALSE, STOP
                return _CONSTANTS.get(data[2], _NOT_SIMPLE)
            if n == 5 and data[2] == 0x4B and data[4] == 0x2E:  # BININT1
                return data[3]
            return _NOT_SIMPLE
        opcode = data[11]
        if (
            opcode not in _FRAMED_SCALAR_OPCODES  # first: every other value's pickle stops here
            or not data.startswith(_FRAMED)
            or int.from_bytes(data[3:11], "little") != n - 11
            or data[-1] != 0x2E
        ):
            return _NOT_SIMPLE
        binunicode = opcode == 0x58 and n >= 20 and data[-2] == 0x94  # BINUNICODE, MEMOIZE
        if binunicode and int.from_bytes(data[12:16], "little") == n - 18:
            return data[16:-2].decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return _NOT_SIMPLE
    if opcode == 0x4D and n == 15:  # BININT2
        return int.from_bytes(data[12:14], "little")
    if opcode == 0x4A and n == 17:  # BININT
        return int.from_bytes(data[12:16], "little", signed=True)
    return _NOT_SIMPLE


NOT_SIMPLE = _NOT_SIMPLE


def loads(data: bytes) -> Any:
    """Unpickle one session value through the allow-list; raise ValueRejected on any failure.

    The exception is a :class:`SuspiciousValue` when our writer cannot have produced the
    bytes; messages are clipped and escaped, as they may quote attacker-chosen names.
    """
    value = simple(data)
    return loads_full(data) if value is _NOT_SIMPLE else value


def loads_full(data: bytes) -> Any:
    """:func:`loads` without the scalar shapes: for bytes that :func:`simple` declined.

    Text that is not UTF-8 in a scalar's shape comes here too, and is refused like any
    malformed stream.
    """
    if not (data.startswith(b"\x80\x05") and data.endswith(b".")):
        raise SuspiciousValue("not a protocol-5 pickle")
    unpickler = _unpickler_class(get_allow_list())  # outside the try: settings errors stay loud
    try:
        if conf.STRICT_UNPICKLING or _extensions_registered():
            validate_opcodes(data, unpickler.allowed)
        stream = io.BytesIO(data)
        # fix_imports=False: no Python 2 name remapping, names are taken as written.
        reader = unpickler(stream, fix_imports=False)
        fetched = reader.fetched = []
        value = reader.load()
        del reader  # and with it the memo and stack, which refer to the stand-ins
        if stream.tell() != len(data):  # the C unpickler ignores what follows STOP
            raise _bad("bytes after STOP")
        if fetched and _holds_stand_ins(fetched):
            value = _with_classes(value, {})
        return value
    except _NotAllowed as exc:
        raise (SuspiciousValue if exc.suspicious else ValueRejected)(str(exc)) from exc
    except _Refusal as exc:
        raise (ValueRejected if exc.limit else SuspiciousValue)(str(exc)) from exc
    except RecursionError as exc:
        raise SuspiciousValue("nesting too deep") from exc
    except MemoryError as exc:
        raise SuspiciousValue("out of memory") from exc
    except (pickle.UnpicklingError, EOFError, UnicodeDecodeError) as exc:
        # The stream itself is malformed (names and text our writer encodes are UTF-8).
        raise SuspiciousValue(_clip(f"{type(exc).__name__}: {exc}", 200)) from exc
    except ValueError as exc:
        # What the C unpickler says of opcodes our writer never emits (EXT*, PROTO > 5),
        # as distinct from an allowed constructor's own ValueError on bad state.
        kind = SuspiciousValue if str(exc).startswith(_STREAM_ERRORS) else ValueRejected
        raise kind(_clip(f"{type(exc).__name__}: {exc}", 200)) from exc
    except Exception as exc:
        # Any constructor of an allowed class may raise anything; it is still just bad data.
        raise ValueRejected(_clip(f"{type(exc).__name__}: {exc}", 200)) from exc


# --- Salvage: a legacy whole-dict pickle, dropping only the keys that hold refused values ---


class _Placeholder:
    """Stands, inertly, for a global the allow-list refused, or for an object that failed.

    Whatever the stream asks of it (calling, building, filling) does nothing and returns
    another placeholder; it holds no state but the name it stands for.
    """

    __slots__ = ("refused",)
    refused: str
    #: The refused ``module.name``; set on the subclass made for each name.
    global_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> _Placeholder:
        self = object.__new__(cls)
        self.refused = cls.global_name
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Placeholder:
        result = type(self)()
        result.refused = self.refused
        return result

    def __setstate__(self, state: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def add(self, item: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<refused {self.refused}>"


def _legacy_suspicious(module: str, name: str) -> bool:
    """Whether a global in a legacy pickle can only be a gadget, never data Django wrote.

    Stock Django pickled anything, so a legacy session may name functions and nested names
    (a lazy string holds ``django.utils.functional._lazy_proxy_unpickle`` and ``builtins.str``,
    a ZoneInfo ``builtins.getattr`` of ``zoneinfo.ZoneInfo``): those are dropped as not
    allowed. A forgery is a never-allowed name (``os.system``, ``builtins.eval``,
    ``functools.partial``), a name in a never-allowed module other than ``builtins`` (whose
    types stock pickles use), a qualname walking into one of those modules, or a name
    protocol 5 never writes (dunder or non-identifier parts).
    """
    parts = [*module.split("."), *name.split(".")]
    if not all(part.isidentifier() and "__" not in part for part in parts):
        return True
    full = f"{module}.{name}"
    if full == "builtins.getattr":
        return False  # how pickle writes a bound method: ZoneInfo pickles as one
    if full in NEVER_ALLOWED_NAMES or module == "uuid" and name != "UUID":
        return True
    root = parts[0]
    return (root != "builtins" and never_allowed(module, name)) or any(
        part in NEVER_ALLOWED_MODULES for part in name.split(".")[:-1]
    )


class _LenientNames(dict[tuple[str, str], type]):
    """Strict mode's view of the globals in salvage: any refused name becomes a placeholder."""

    def get(self, key: tuple[str, str], default: Any = None) -> type:
        return super().get(key) or _Placeholder


_GETATTR = ("builtins", "getattr")


def _global_name(obj: Any) -> str:
    if isinstance(obj, _Placeholder):
        return obj.refused
    if isinstance(obj, type):
        return obj.global_name if issubclass(obj, _Placeholder) else _clip(obj.__qualname__)
    return type(obj).__qualname__


def _poison_reason(func: Any, args: Any, exc: Exception) -> str:
    for arg in args if isinstance(args, tuple) else ():
        if isinstance(arg, _Placeholder):
            return str(arg.refused)  # the refused global that made the constructor fail
    what = _global_name(func)
    return _clip(f"{what}() failed: {type(exc).__name__}: {exc}", 200)


_NOTHING = object()


class _SalvageUnpickler(pickle._Unpickler):
    """Pure-Python unpickler for salvage: refused globals and failed constructions become
    placeholders instead of failing the whole load. Used only after the C loader refused."""

    # The pure-Python unpickler's internals (CPython 3.10 to 3.13 alike).
    dispatch = dict(pickle._Unpickler.dispatch)
    stack: list[Any]
    memo: dict[int, Any]
    append: Callable[[Any], None]
    pop_mark: Callable[[], list[Any]]

    def __init__(self, file: io.BytesIO, allowed: dict[tuple[str, str], type]) -> None:
        super().__init__(file, fix_imports=False)
        self._allowed = allowed
        self._placeholders: dict[tuple[str, str], type[_Placeholder]] = {}

    def find_class(self, module: str, name: str) -> type:
        found = self._allowed.get((module, name))
        if found is not None:
            return found
        if _legacy_suspicious(module, name):
            raise SuspiciousValue(f"global '{_clip(module)}.{_clip(name)}' is never allowed")
        cls = self._placeholders.get((module, name))
        if cls is None:
            cls = type(
                "Refused", (_Placeholder,), {"__slots__": (), "global_name": f"{module}.{name}"}
            )
            self._placeholders[module, name] = cls
        return cls

    def _poison(self, reason: str, target: Any = _NOTHING) -> None:
        # Replace the failed object on the stack and wherever the memo already holds it, so
        # that no later reference reaches a half-built object.
        poison = _Placeholder()
        poison.refused = reason
        self.stack[-1] = poison
        if target is not _NOTHING:
            for index, value in list(self.memo.items()):
                if value is target:
                    self.memo[index] = poison

    def load_reduce(self) -> None:
        stack = self.stack
        args = stack.pop()
        func = stack[-1]
        if not isinstance(func, (type, _Placeholder)):
            # Stock pickles call only globals and bound methods (placeholders: getattr is not
            # allowed); calling an object of an allowed class would run its __call__.
            raise _bad("REDUCE of something that is not a class")
        try:
            result = func(*args)
        except _Refusal:
            raise
        except Exception as exc:
            self._poison(_poison_reason(func, args, exc))
            return
        if isinstance(result, _Placeholder) and func is self._placeholders.get(_GETATTR):
            # A bound method (getattr(owner, name)): name the method, not getattr.
            owner, attribute = (args + (None, None))[:2]
            if isinstance(attribute, str):
                result.refused = f"{_global_name(owner)}.{_clip(attribute)}"
        stack[-1] = result

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(None)
        try:
            self.stack[-1] = cls.__new__(cls, *args)
        except _Refusal:
            raise
        except Exception as exc:
            self._poison(_poison_reason(cls, args, exc))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(None)
        try:
            self.stack[-1] = cls.__new__(cls, *args, **kwargs)
        except _Refusal:
            raise
        except Exception as exc:
            self._poison(_poison_reason(cls, args, exc))

    def _fill(self, action: Callable[[Any, Any], None], operand: Any) -> None:
        target = self.stack[-1]
        try:
            action(target, operand)
        except _Refusal:
            raise
        except Exception as exc:
            self._poison(_poison_reason(type(target), (), exc), target)

    def load_build(self) -> None:
        target = self.stack[-2]
        try:
            pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]  # pops the state first: on failure the target is on top
        except _Refusal:
            raise
        except Exception as exc:
            self._poison(_poison_reason(type(target), (), exc), target)

    def load_append(self) -> None:
        value = self.stack.pop()
        self._fill(_append, value)

    def load_appends(self) -> None:
        items = self.pop_mark()
        self._fill(_extend, items)

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._fill(_setitems, [key, value])

    def load_setitems(self) -> None:
        items = self.pop_mark()
        self._fill(_setitems, items)

    def load_additems(self) -> None:
        items = self.pop_mark()
        self._fill(_additems, items)

    def refuse_opcode(self) -> None:
        raise _bad("opcode not allowed in a session pickle")


for _opcode, _method in (
    (pickle.REDUCE, "load_reduce"),
    (pickle.NEWOBJ, "load_newobj"),
    (pickle.NEWOBJ_EX, "load_newobj_ex"),
    (pickle.BUILD, "load_build"),
    (pickle.APPEND, "load_append"),
    (pickle.APPENDS, "load_appends"),
    (pickle.SETITEM, "load_setitem"),
    (pickle.SETITEMS, "load_setitems"),
    (pickle.ADDITEMS, "load_additems"),
    # Opcodes Django's protocol-5 pickles never hold; EXT* and PERSID skip find_class.
    *(
        (opcode, "refuse_opcode")
        for opcode in (
            pickle.GLOBAL,
            pickle.INST,
            pickle.OBJ,
            pickle.EXT1,
            pickle.EXT2,
            pickle.EXT4,
            pickle.PERSID,
            pickle.BINPERSID,
        )
    ),
):
    _SalvageUnpickler.dispatch[_opcode[0]] = vars(_SalvageUnpickler)[_method]
del _opcode, _method


def _append(target: Any, value: Any) -> None:
    target.append(value)


def _extend(target: Any, items: list[Any]) -> None:
    if isinstance(target, list):
        target.extend(items)
    else:
        for item in items:
            target.append(item)


def _setitems(target: Any, items: list[Any]) -> None:
    for i in range(0, len(items), 2):
        target[items[i]] = items[i + 1]


def _additems(target: Any, items: list[Any]) -> None:
    if isinstance(target, set):
        target.update(items)
    else:
        for item in items:
            target.add(item)


class _Found(Exception):
    pass


class _PlaceholderFinder(pickle.Pickler):
    """Walks a value as pickling would (what a save stores) and stops at a placeholder."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _Placeholder):
            raise _Found(obj.refused)
        if isinstance(obj, type) and issubclass(obj, _Placeholder):
            raise _Found(obj.global_name)
        return NotImplemented


def _refused_inside(value: Any) -> str | None:
    """Return the refused global (or failure) a value holds, or None if it holds none."""
    try:
        _PlaceholderFinder(io.BytesIO(), protocol=5).dump(value)
    except _Found as found:
        return str(found)
    except Exception as exc:
        return _clip(f"cannot be checked: {type(exc).__name__}: {exc}", 200)
    return None


def salvage_loads(data: bytes) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Unpickle a legacy session, a protocol-5 pickle of the whole dict, keeping what is allowed.

    Returns ``(kept, dropped)``: the session without the top-level keys whose values hold a
    global the allow-list refuses (a model instance, a lazy string, a ZoneInfo...), and
    ``(key, refused global or reason)`` for each key dropped. The login keys are plain
    strings, so they survive a refused cart.

    Raises :class:`SuspiciousValue` when the stream names a global that can only be a gadget
    (the never-allow list, a dunder or non-identifier name, an attribute walk into it) or is
    malformed: under a valid MAC that means a forgery. Raises ValueRejected when strict mode
    refuses the stream for a resource bound.

    Why it cannot be used to build anything: globals still come only from the exact
    allow-list dictionary, so the only callables the stream can reach are allowed classes
    and :class:`_Placeholder`, which does nothing and returns only placeholders; a
    never-allowed name stops the load at ``find_class``, before anything is called. A
    construction that fails (an allowed constructor handed a placeholder) yields a
    placeholder too, replacing the half-built object in the memo. Every kept value is then
    walked as a save would pickle it, and any value reaching a placeholder is dropped whole.
    Strict mode and the opcodes refused are those of :func:`loads`, plus GLOBAL, INST, OBJ,
    EXT* and PERSID, which a protocol-5 pickle of Django's never holds.
    """
    if not (data.startswith(b"\x80\x05") and data.endswith(b".")):
        raise SuspiciousValue("not a protocol-5 pickle")
    allow = get_allow_list()
    unpickler = _unpickler_class(allow)
    try:
        if conf.STRICT_UNPICKLING or _extensions_registered():
            validate_opcodes(data, _LenientNames(allow.by_name))
        try:
            stream = io.BytesIO(data)
            reader = unpickler(stream, fix_imports=False)
            fetched = reader.fetched = []
            value = reader.load()
            del reader  # and with it the memo and stack, which refer to the stand-ins
            if stream.tell() == len(data) and _is_session(value):
                if fetched and _holds_stand_ins(fetched):
                    value = _with_classes(value, {})
                return value, []
        except (RecursionError, MemoryError, _Refusal):
            raise  # a guard of the stand-ins (BUILD on a class, a bad date): a forgery
        except Exception:
            pass  # a refused global or a failed construction: salvage what can be kept
        stream = io.BytesIO(data)
        # The same stand-ins as the C loader's: BUILD on a class and invalid dates are
        # refused here too, whole (the _Refusal passes through every placeholder path).
        value = _SalvageUnpickler(stream, unpickler.loaders).load()
        if stream.tell() != len(data):
            raise _bad("bytes after STOP")
        value = _with_classes(value, {})
    except (SuspiciousValue, ValueRejected):
        raise
    except _Refusal as exc:
        raise (ValueRejected if exc.limit else SuspiciousValue)(str(exc)) from exc
    except RecursionError as exc:
        raise SuspiciousValue("nesting too deep") from exc
    except MemoryError as exc:
        raise SuspiciousValue("out of memory") from exc
    except Exception as exc:
        raise SuspiciousValue(_clip(f"{type(exc).__name__}: {exc}", 200)) from exc
    if not _is_session(value):
        raise SuspiciousValue("not a session: a dict with str keys")
    kept: dict[str, Any] = {}
    dropped: list[tuple[str, str]] = []
    for key, item in value.items():
        refused = _refused_inside(item)
        if refused is None:
            kept[key] = item
        else:
            dropped.append((key, refused))
    return kept, dropped


def _is_session(value: Any) -> bool:
    return type(value) is dict and all(type(key) is str for key in value)


@dataclass(frozen=True)
class Refusal:
    """Why :func:`loads` refuses a value, for reports (``manage.py check_sessions``)."""

    #: ``not_allowed`` (a global outside the allow-list), ``strict_bound`` (over a
    #: strict-mode bound), ``suspicious`` (bytes our writer never produces) or ``error``
    #: (an allowed class's constructor raised).
    kind: str
    #: The refused global (``not_allowed`` only), as written in the stream, unclipped.
    module: str
    qualname: str
    message: str


_CHAIN_LIMIT = 16


def diagnose(data: bytes) -> Refusal | None:
    """Load ``data`` as a request would; return None if it loads, or why it does not."""
    try:
        loads(data)
    except ValueRejected as exc:
        cause = exc.__cause__
        # The tracebacks tie each exception to the frames that raised it, in cycles only
        # the garbage collector frees: a scan of a million refused values would pile them up.
        # Every exception of the chain holds one (a KeyError inside find_class, say); the
        # walk is bounded, as a constructor's own exceptions may chain in a loop.
        link: BaseException | None = exc
        for _ in range(_CHAIN_LIMIT):
            if link is None:
                break
            link.__traceback__ = None
            link = link.__cause__ or link.__context__
        if isinstance(cause, _NotAllowed):
            kind = "suspicious" if cause.suspicious else "not_allowed"
            return Refusal(kind, cause.module, cause.name, str(exc))
        if isinstance(cause, _Refusal) and cause.limit:
            return Refusal("strict_bound", "", "", str(exc))
        kind = "suspicious" if isinstance(exc, SuspiciousValue) else "error"
        return Refusal(kind, "", "", str(exc))
    return None
