"""The classes a session value may contain, as exact ``(module, qualname)`` pairs.

Builtin scalars and containers (``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``,
``bytearray``, ``list``, ``tuple``, ``dict``, ``set``, ``frozenset``) need no entry: pickle
protocol 5 writes them with opcodes, not globals. Everything else must be listed here or in
``PICKLESESSIONS_ALLOWED_CLASSES``, and must be a class. The never-allow list below wins over
settings: it names the callables and modules that pickle gadgets are built from.
"""

from __future__ import annotations

import functools
import importlib
import sys
import types
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

from django_picklesessions.conf import conf, on_change

#: Reviewed default entries: plain value types whose constructors take data, not code.
DEFAULT_ALLOWED_CLASSES: tuple[str, ...] = (
    "datetime.date",
    "datetime.time",
    "datetime.datetime",
    "datetime.timedelta",
    "datetime.timezone",
    "decimal.Decimal",
    "uuid.UUID",
    "fractions.Fraction",
    "collections.OrderedDict",
)

#: Exact names that are never allowed, whatever the settings say.
NEVER_ALLOWED_NAMES: frozenset[str] = frozenset(
    {
        *(
            f"builtins.{name}"
            for name in (
                "eval",
                "exec",
                "compile",
                "__import__",
                "open",
                "getattr",
                "setattr",
                "delattr",
                "globals",
                "locals",
                "vars",
                "type",
                "object",
                "super",
                "breakpoint",
                "input",
                "memoryview",
                "map",
                "filter",
                "iter",
                "next",
                "classmethod",
                "staticmethod",
                "property",
                "print",
                "help",
                "exit",
                "quit",
            )
        ),
        "functools.partial",
        "functools.partialmethod",
        "functools.reduce",
        *(
            f"{module}.{name}"
            for module in ("operator", "_operator")
            for name in ("attrgetter", "itemgetter", "methodcaller", "call")
        ),
        "copyreg._reconstructor",
        "copyreg.__newobj__",
        "copyreg.__newobj_ex__",
    }
)

#: Modules none of whose names may be allowed (submodules included).
NEVER_ALLOWED_MODULES: frozenset[str] = frozenset(
    (
        "os",
        "posix",
        "nt",
        "sys",
        "subprocess",
        "_posixsubprocess",
        "pty",
        "runpy",
        "importlib",
        "pkgutil",
        "pydoc",
        "code",
        "codeop",
        "pdb",
        "bdb",
        "profile",
        "cProfile",
        "timeit",
        "trace",
        "ctypes",
        "types",
        "pickle",
        "_pickle",
        "pickletools",
        "marshal",
        "shelve",
        "dbm",
        "codecs",
        "_codecs",
        "copyreg",
        "io",
        "_io",
        "socket",
        "ssl",
        "shutil",
        "tempfile",
        "glob",
        "multiprocessing",
        "threading",
        "_thread",
        "asyncio",
        "concurrent",
        "signal",
        "webbrowser",
        "platform",
        "sysconfig",
        "site",
        "inspect",
        "gc",
        "weakref",
        "ast",
        "builtins",
        "zipimport",
    )
)


def never_allowed(module: str, qualname: str) -> bool:
    """Return True if ``module.qualname`` is on the never-allow list."""
    if f"{module}.{qualname}" in NEVER_ALLOWED_NAMES:
        return True
    if module == "uuid":
        # uuid holds helpers that run commands (_get_command_stdout); only the class is data.
        return qualname != "UUID"
    root = module.split(".", 1)[0]
    return module in NEVER_ALLOWED_MODULES or root in NEVER_ALLOWED_MODULES


@dataclass(frozen=True)
class AllowList:
    """The resolved allow-list: exact names to classes, and the same classes as a set."""

    by_name: dict[tuple[str, str], type]
    classes: frozenset[type]
    #: Allowed classes whose reduction is pickle's default (cannot reduce to a bare name).
    default_reduce: frozenset[type]
    #: Allowed classes our writer builds with NEWOBJ (pickle's default reduction), not REDUCE.
    new_object: frozenset[type] = frozenset()


class EntryProblem(Exception):
    """An allow-list entry that cannot be used; the message says what to change."""

    def __init__(self, message: str, *, never_allowed: bool = False) -> None:
        super().__init__(message)
        #: True when the entry is on the never-allow list (check E003 rather than E002).
        self.never_allowed = never_allowed


def _never_allowed_problem(entry: object) -> EntryProblem:
    return EntryProblem(
        f"{entry!r} is on the never-allow list (it can be used to run code) and cannot be "
        "allowed by settings. Remove it.",
        never_allowed=True,
    )


def split_entry(entry: object) -> tuple[str, str]:
    """Split ``"module.Class"`` or ``"module:Class"`` into module and name, or raise EntryProblem.

    For the dotted form the module is the longest importable prefix, so that
    ``"shop.cart.Cart.Inner"`` is recognised as a nested name rather than a missing module.
    """
    if not isinstance(entry, str) or not entry.strip():
        raise EntryProblem(f"{entry!r} is not a dotted class path such as 'shop.cart.Cart'.")
    if entry.endswith((".*", ":*", ".", ":")):
        raise EntryProblem(
            f"{entry!r} is a module-wide entry; list each class on its own, e.g. 'shop.cart.Cart'."
        )
    naive_module, _, naive_name = entry.replace(":", ".").rpartition(".")
    if never_allowed(naive_module, naive_name):
        # Refuse before importing anything the entry names.
        raise _never_allowed_problem(entry)
    if ":" in entry:
        module, _, qualname = entry.partition(":")
    else:
        parts = entry.split(".")
        cut = len(parts) - 1
        for end in range(len(parts), 0, -1):
            prefix = ".".join(parts[:end])
            if _importable(prefix):
                # Keep the longest module only if what follows it exists in it: otherwise
                # a missing submodule would be reported as a nested name.
                if end == len(parts) or hasattr(sys.modules[prefix], parts[end]):
                    cut = end
                break
        module, qualname = ".".join(parts[:cut]), ".".join(parts[cut:])
    if not module:
        raise EntryProblem(f"{entry!r} is not a dotted class path such as 'shop.cart.Cart'.")
    if not qualname:
        raise EntryProblem(
            f"{entry!r} is a module; module-wide entries are refused. List each class on its own."
        )
    if "." in qualname:
        raise EntryProblem(
            f"{entry!r} names a nested attribute ({qualname!r}); dotted names are refused "
            "because they let a pickle walk attributes. Move the class to module level."
        )
    return module, qualname


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def resolve_entry(entry: object) -> type:
    """Import the class an entry names and check it is exactly what pickle will write."""
    module_name, qualname = split_entry(entry)
    if never_allowed(module_name, qualname):
        raise _never_allowed_problem(entry)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EntryProblem(
            f"{entry!r}: module {module_name!r} cannot be imported ({exc})."
        ) from exc
    obj = getattr(module, qualname, None)
    if isinstance(obj, types.ModuleType):
        raise EntryProblem(
            f"{entry!r} is a module; module-wide entries are refused. List each class on its own."
        )
    if obj is None:
        raise EntryProblem(f"{entry!r}: {module_name!r} has no attribute {qualname!r}.")
    if not isinstance(obj, type):
        raise EntryProblem(
            f"{entry!r} is a {type(obj).__name__}, not a class; only classes can be allowed."
        )
    real = (obj.__module__, obj.__qualname__)
    if real != (module_name, qualname):
        raise EntryProblem(
            f"{entry!r} is the class {real[0]}.{real[1]}; pickle records it under that name, "
            f"so list it as '{real[0]}.{real[1]}'."
        )
    if never_allowed(*real):
        raise _never_allowed_problem(entry)
    return obj


def check_entries(entries: object) -> list[str]:
    """Return one message per unusable entry of ``PICKLESESSIONS_ALLOWED_CLASSES``."""
    if isinstance(entries, str) or not isinstance(entries, (list, tuple)):
        return [
            f"PICKLESESSIONS_ALLOWED_CLASSES must be a list of dotted class paths, not {entries!r}."
        ]
    problems = []
    for entry in entries:
        try:
            resolve_entry(entry)
        except EntryProblem as exc:
            problems.append(str(exc))
    return problems


def _uses_default_reduce(cls: type) -> bool:
    return (
        getattr(cls, "__reduce_ex__", None) is object.__reduce_ex__
        and getattr(cls, "__reduce__", None) is object.__reduce__
    )


@functools.cache
def get_allow_list() -> AllowList:
    """Resolve defaults plus settings once; raise ImproperlyConfigured on a bad entry."""
    configured = conf.ALLOWED_CLASSES
    problems = check_entries(configured)
    if problems:
        # System check E002 reports the same at startup; servers that skip checks fail here.
        raise ImproperlyConfigured("PICKLESESSIONS_ALLOWED_CLASSES: " + " ".join(problems))
    classes = [resolve_entry(entry) for entry in (*DEFAULT_ALLOWED_CLASSES, *configured)]
    defaults = {resolve_entry(entry) for entry in DEFAULT_ALLOWED_CLASSES}
    return AllowList(
        by_name={(cls.__module__, cls.__qualname__): cls for cls in classes},
        classes=frozenset(classes),
        # The stdlib defaults reduce to (class, args) tuples; reviewed with the list above.
        default_reduce=frozenset(
            cls for cls in classes if cls in defaults or _uses_default_reduce(cls)
        ),
        new_object=frozenset(cls for cls in classes if _uses_default_reduce(cls)),
    )


@on_change("PICKLESESSIONS_ALLOWED_CLASSES")
def _clear() -> None:
    get_allow_list.cache_clear()
