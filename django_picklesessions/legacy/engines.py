"""Which of Django's stock session engines a legacy engine module is, or derives from."""

from __future__ import annotations

import importlib

#: The stock engines, most derived first: cached_db's store subclasses db's.
STOCK_ENGINES: tuple[tuple[str, str], ...] = (
    ("cached_db", "django.contrib.sessions.backends.cached_db"),
    ("db", "django.contrib.sessions.backends.db"),
    ("file", "django.contrib.sessions.backends.file"),
    ("cache", "django.contrib.sessions.backends.cache"),
    ("signed_cookies", "django.contrib.sessions.backends.signed_cookies"),
)


class LegacyEngineProblem(Exception):
    """A legacy engine that cannot be used; the message says what to change."""


def store_class(engine: str) -> type:
    """Import ``engine`` and return its ``SessionStore``, or raise LegacyEngineProblem."""
    if not isinstance(engine, str) or not engine:
        raise LegacyEngineProblem(f"{engine!r} is not a dotted module path")
    try:
        module = importlib.import_module(engine)
    except ImportError as exc:
        raise LegacyEngineProblem(f"{engine!r} cannot be imported ({exc})") from exc
    store = getattr(module, "SessionStore", None)
    if not isinstance(store, type):
        raise LegacyEngineProblem(f"{engine!r} has no SessionStore class")
    return store


def stock_kind(engine: str) -> str:
    """Return "db", "file", "cache", "cached_db" or "signed_cookies" for ``engine``.

    ``engine`` is one of Django's stock engine modules, or a project module whose
    ``SessionStore`` subclasses one of theirs (it then stores sessions the same way).
    """
    store = store_class(engine)
    for kind, module in STOCK_ENGINES:
        if issubclass(store, importlib.import_module(module).SessionStore):
            return kind
    raise LegacyEngineProblem(
        f"{engine!r}'s SessionStore is not one of Django's stock engines "
        f"(django.contrib.sessions.backends.db, file, cache, cached_db, signed_cookies) "
        "nor a subclass of one"
    )
