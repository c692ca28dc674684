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

from django_picklesessions.allowlist import get_allow_list
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

    def __init__(self, data: bytes, allowed: dict[tuple[str, str], type]) -> None:
        # fix_imports=False: no Python 2 name remapping, the names are taken as written.
        super().__init__(io.BytesIO(data), fix_imports=False)
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> type:
        try:
            return self._allowed[module, name]
        except (KeyError, TypeError):
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed") from None


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


def loads(data: bytes) -> Any:
    """Unpickle one session value through the allow-list; raise ValueRejected on any failure."""
    allowed = get_allow_list().by_name  # outside the try: a settings error must stay loud
    try:
        if conf.STRICT_UNPICKLING or _extensions_registered():
            validate_opcodes(data)
        return _RestrictedUnpickler(data, allowed).load()
    except RecursionError as exc:
        raise ValueRejected("nesting too deep") from exc
    except MemoryError as exc:
        raise ValueRejected("out of memory") from exc
    except Exception as exc:
        # Any constructor of an allowed class may raise anything; it is still just bad data.
        raise ValueRejected(f"{type(exc).__name__}: {exc}") from exc
