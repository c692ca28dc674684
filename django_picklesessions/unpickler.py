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

import copyreg
import decimal
import io
import pickle
import pickletools
import struct
from dataclasses import dataclass
from typing import Any

from django_picklesessions.allowlist import AllowList, get_allow_list, never_allowed
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


class _NotAllowed(pickle.UnpicklingError):
    """A global outside the allow-list; suspicious unless it looks like a removed class."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"global '{_clip(module)}.{_clip(name)}' is not allowed")
        self.module, self.name = module, name
        self.suspicious = not _plain_class_name(module, name) or never_allowed(module, name)


def _plain_class_name(module: str, name: str) -> bool:
    # What our writer can emit: dotted identifiers, no dunder, a module-level name.
    parts = [*module.split("."), name]
    return all(part.isidentifier() and "__" not in part for part in parts)


def _clip(text: str, limit: int = 100) -> str:
    """Shorten and escape attacker-chosen text before it reaches a log line."""
    clipped = text[:limit] + ("…" if len(text) > limit else "")
    return clipped if clipped.isprintable() else repr(clipped)[1:-1]


class _RestrictedUnpickler(pickle.Unpickler):
    """C unpickler whose globals come from the allow-list dictionary and nowhere else."""

    # Set on the subclass made for each allow-list: a class attribute, so that creating an
    # unpickler per value costs no Python-level __init__.
    allowed: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> type:
        try:
            return self.allowed[module, name]
        except (KeyError, TypeError):
            raise _NotAllowed(str(module), str(name)) from None


_unpickler_cache: tuple[AllowList, type[_RestrictedUnpickler]] | None = None


def _unpickler_class(allow: AllowList) -> type[_RestrictedUnpickler]:
    global _unpickler_cache
    cached = _unpickler_cache
    if cached is None or cached[0] is not allow:
        cls = type("RestrictedUnpickler", (_RestrictedUnpickler,), {"allowed": allow.by_name})
        cached = _unpickler_cache = (allow, cls)
    return cached[1]


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

    __slots__ = ("kind", "depth", "inside", "items", "hashes", "opaque", "cls")

    def __init__(self, kind: int, depth: int = 1, items: list[Any] | None = None) -> None:
        self.kind = kind
        self.depth = depth
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
            if type(cls) is not _Node or cls.kind != _GLOBAL:
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
_FRAMED = b"\x80\x05\x95"  # PROTO 5, FRAME
_NOT_SIMPLE = object()


def _simple(data: bytes) -> Any:
    """Decode the few exact shapes ``pickle.dumps(x, 5)`` gives a str, small int, bool or None.

    Most session keys hold such scalars (the auth keys, flags, counters). Reading them needs
    no unpickler at all: these shapes contain no global, so parsing them here is both safe
    and several times faster. Any other shape returns ``_NOT_SIMPLE``.
    """
    n = len(data)
    if n == 4 and data[3] == 0x2E:  # PROTO 5, NONE / NEWTRUE / NEWFALSE, STOP
        return _CONSTANTS.get(data[2], _NOT_SIMPLE)
    if n == 5 and data[2] == 0x4B and data[4] == 0x2E:  # BININT1
        return data[3]
    if (
        n < 15
        or not data.startswith(_FRAMED)
        or int.from_bytes(data[3:11], "little") != n - 11
        or data[-1] != 0x2E
    ):
        return _NOT_SIMPLE
    opcode = data[11]
    if opcode == 0x8C and data[12] == n - 15 and data[-2] == 0x94:  # SHORT_BINUNICODE, MEMOIZE
        return data[13:-2].decode("utf-8", "surrogatepass")
    binunicode = opcode == 0x58 and n >= 20 and data[-2] == 0x94  # BINUNICODE, MEMOIZE
    if binunicode and int.from_bytes(data[12:16], "little") == n - 18:
        return data[16:-2].decode("utf-8", "surrogatepass")
    if opcode == 0x4D and n == 15:  # BININT2
        return int.from_bytes(data[12:14], "little")
    if opcode == 0x4A and n == 17:  # BININT
        return int.from_bytes(data[12:16], "little", signed=True)
    return _NOT_SIMPLE


def loads(data: bytes) -> Any:
    """Unpickle one session value through the allow-list; raise ValueRejected on any failure.

    The exception is a :class:`SuspiciousValue` when our writer cannot have produced the
    bytes; messages are clipped and escaped, as they may quote attacker-chosen names.
    """
    if not (data.startswith(b"\x80\x05") and data.endswith(b".")):
        raise SuspiciousValue("not a protocol-5 pickle")
    try:
        value = _simple(data)
    except UnicodeDecodeError as exc:
        raise SuspiciousValue(f"UnicodeDecodeError: {exc}") from exc
    if value is not _NOT_SIMPLE:
        return value
    unpickler = _unpickler_class(get_allow_list())  # outside the try: settings errors stay loud
    try:
        if conf.STRICT_UNPICKLING or _extensions_registered():
            validate_opcodes(data, unpickler.allowed)
        stream = io.BytesIO(data)
        # fix_imports=False: no Python 2 name remapping, names are taken as written.
        value = unpickler(stream, fix_imports=False).load()
        if stream.tell() != len(data):  # the C unpickler ignores what follows STOP
            raise _bad("bytes after STOP")
        return value
    except _NotAllowed as exc:
        raise (SuspiciousValue if exc.suspicious else ValueRejected)(str(exc)) from exc
    except _Refusal as exc:
        raise (ValueRejected if exc.limit else SuspiciousValue)(str(exc)) from exc
    except RecursionError as exc:
        raise SuspiciousValue("nesting too deep") from exc
    except MemoryError as exc:
        raise SuspiciousValue("out of memory") from exc
    except (pickle.UnpicklingError, EOFError) as exc:
        raise SuspiciousValue(_clip(f"{type(exc).__name__}: {exc}", 200)) from exc
    except Exception as exc:
        # Any constructor of an allowed class may raise anything; it is still just bad data.
        raise ValueRejected(_clip(f"{type(exc).__name__}: {exc}", 200)) from exc


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


def diagnose(data: bytes) -> Refusal | None:
    """Load ``data`` as a request would; return None if it loads, or why it does not."""
    try:
        loads(data)
    except ValueRejected as exc:
        cause = exc.__cause__
        if isinstance(cause, _NotAllowed):
            kind = "suspicious" if cause.suspicious else "not_allowed"
            return Refusal(kind, cause.module, cause.name, str(exc))
        if isinstance(cause, _Refusal) and cause.limit:
            return Refusal("strict_bound", "", "", str(exc))
        kind = "suspicious" if isinstance(exc, SuspiciousValue) else "error"
        return Refusal(kind, "", "", str(exc))
    return None
