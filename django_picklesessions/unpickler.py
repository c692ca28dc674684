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

Strict mode (``PICKLESESSIONS_STRICT_UNPICKLING = True``) also walks the opcode stream before
loading and refuses any opcode our writer never emits, a stream that is not one protocol-5
pickle ending exactly at ``STOP``, and streams of more than ``MAX_STRICT_OPCODES`` opcodes.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import pickletools
from typing import Any

from django_picklesessions.allowlist import AllowList, get_allow_list
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

#: Strict mode's bound on the opcodes of one value.
MAX_STRICT_OPCODES = 200_000


class _RestrictedUnpickler(pickle.Unpickler):
    """C unpickler whose globals come from the allow-list dictionary and nowhere else."""

    # Set on the subclass made for each allow-list: a class attribute, so that creating an
    # unpickler per value costs no Python-level __init__.
    allowed: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> type:
        try:
            return self.allowed[module, name]
        except (KeyError, TypeError):
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed") from None


_unpickler_cache: tuple[AllowList, type[_RestrictedUnpickler]] | None = None


def _unpickler_class(allow: AllowList) -> type[_RestrictedUnpickler]:
    global _unpickler_cache
    cached = _unpickler_cache
    if cached is None or cached[0] is not allow:
        cls = type("RestrictedUnpickler", (_RestrictedUnpickler,), {"allowed": allow.by_name})
        cached = _unpickler_cache = (allow, cls)
    return cached[1]


def validate_opcodes(data: bytes) -> None:
    """Refuse a stream with an opcode outside ``STRICT_OPCODES`` or trailing bytes."""
    count = 0
    end = -1
    try:
        for index, (opcode, arg, pos) in enumerate(pickletools.genops(data)):
            if index == 0 and (opcode.name != "PROTO" or arg != 5):
                raise pickle.UnpicklingError("stream does not start with PROTO 5")
            if opcode.name not in STRICT_OPCODES:
                raise pickle.UnpicklingError(f"opcode {opcode.name} is not allowed")
            count += 1
            if count > MAX_STRICT_OPCODES:
                raise pickle.UnpicklingError("too many opcodes")
            end = pos or 0
    except ValueError as exc:  # pickletools reports truncation and unknown opcodes so
        raise pickle.UnpicklingError(str(exc)) from None
    if end != len(data) - 1:
        raise pickle.UnpicklingError("bytes after STOP")


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
    """Unpickle one session value through the allow-list; raise ValueRejected on any failure."""
    if not (data.startswith(b"\x80\x05") and data.endswith(b".")):
        raise ValueRejected("not a protocol-5 pickle")
    try:
        value = _simple(data)
    except UnicodeDecodeError as exc:
        raise ValueRejected(f"UnicodeDecodeError: {exc}") from exc
    if value is not _NOT_SIMPLE:
        return value
    unpickler = _unpickler_class(get_allow_list())  # outside the try: settings errors stay loud
    try:
        if conf.STRICT_UNPICKLING or _extensions_registered():
            validate_opcodes(data)
        # fix_imports=False: no Python 2 name remapping, names are taken as written.
        return unpickler(io.BytesIO(data), fix_imports=False).load()
    except RecursionError as exc:
        raise ValueRejected("nesting too deep") from exc
    except MemoryError as exc:
        raise ValueRejected("out of memory") from exc
    except Exception as exc:
        # Any constructor of an allowed class may raise anything; it is still just bad data.
        raise ValueRejected(f"{type(exc).__name__}: {exc}") from exc
