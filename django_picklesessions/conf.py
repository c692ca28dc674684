"""Every ``PICKLESESSIONS_*`` setting, with its default, read in this one place.

Values are read once and dropped whenever Django's ``setting_changed`` signal says a setting
changed (``override_settings`` sends it). Objects derived from settings (the keyring, the
allow-list) are cached by their modules and dropped the same way.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from functools import cached_property
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils import timezone

PREFIX = "PICKLESESSIONS_"


class _EngineDefault:
    """The default of a setting whose value each engine chooses (an engine class attribute)."""

    def __repr__(self) -> str:
        return "each engine's own (docs/settings.md)"


#: The value of an unset ``PICKLESESSIONS_COMPRESS_MIN_SIZE``: the engine decides.
ENGINE_DEFAULT: Any = _EngineDefault()

#: Defaults of every setting; ``docs/settings.md`` documents each one.
DEFAULTS: dict[str, Any] = {
    "KEYS": None,
    "ALLOWED_CLASSES": (),
    "MAX_RECORD_SIZE": 256 * 1024,
    "MAX_PAYLOAD_SIZE": 1024 * 1024,
    "COMPRESS_MIN_SIZE": ENGINE_DEFAULT,
    "STRICT_UNPICKLING": False,
    "FILE_PATH": None,
    "FILE_FSYNC": False,
    "CONFLICT_POLICIES": {},
    # The redis engine (docs/engines.md): where the server is, and how keys are named.
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "REDIS_OPTIONS": {},
    "REDIS_SENTINELS": None,
    "REDIS_SENTINEL_SERVICE": None,
    "REDIS_CLUSTER": False,
    "REDIS_CACHE_ALIAS": None,
    "REDIS_PREFIX": "picklesessions:",
    # The cached_db engine: the Django cache in front of the table (None: SESSION_CACHE_ALIAS).
    "CACHE_ALIAS": None,
    # Issue 9, the upgrade path from Django's stock engines (docs/settings.md, "Legacy sessions").
    "LEGACY_ENGINE": None,
    "LEGACY_FORMATS": ("json",),
    "LEGACY_WRITE": False,
    "LEGACY_UNTIL": None,
    # The size budget (docs/operations.md): a save over it logs a warning (None: no budget).
    "SOFT_RECORD_SIZE": None,
    # Log out everywhere (docs/operations.md): link sessions to their user's id (db, cached_db,
    # redis), and delete a user's other sessions when their password changes.
    "USER_LINK": False,
    "LOGOUT_ON_PASSWORD_CHANGE": False,
}

#: Payload formats of Django's stock serializers that ``PICKLESESSIONS_LEGACY_FORMATS`` may name.
LEGACY_FORMAT_NAMES: frozenset[str] = frozenset(("json", "pickle"))


class Settings:
    """Attribute access to the package's settings, by their names without the prefix.

    Values are read once and kept until a ``PICKLESESSIONS_*`` setting changes: an unset
    setting costs Django's lazy settings an exception on every read, and these are read on
    every request. Each is converted once too (``cached_property``), so that a read is a plain
    attribute lookup; those that depend on more than these settings stay properties.
    """

    def __init__(self) -> None:
        self._values: dict[str, Any] | None = None

    def _get(self, name: str) -> Any:
        values = self._values
        if values is None:
            values = self._values = {
                key: getattr(django_settings, PREFIX + key, default)
                for key, default in DEFAULTS.items()
            }
        return values[name]

    def reset(self) -> None:
        """Forget the values read so far, and what was derived from them."""
        self.__dict__.clear()
        self._values = None

    # The names mirror the settings, hence upper case.
    @cached_property
    def KEYS(self) -> Any:  # noqa: N802
        return self._get("KEYS")

    @cached_property
    def ALLOWED_CLASSES(self) -> Any:  # noqa: N802
        return self._get("ALLOWED_CLASSES")

    @cached_property
    def MAX_RECORD_SIZE(self) -> int:  # noqa: N802
        return int(self._get("MAX_RECORD_SIZE"))

    @cached_property
    def MAX_PAYLOAD_SIZE(self) -> int:  # noqa: N802
        return int(self._get("MAX_PAYLOAD_SIZE"))

    def compress_min_size(self, engine_default: int | None) -> int | None:
        """Return the compression threshold: the setting if set, else the engine's default."""
        value = self._get("COMPRESS_MIN_SIZE")
        if value is ENGINE_DEFAULT:
            return engine_default
        return None if value is None else int(value)

    @cached_property
    def STRICT_UNPICKLING(self) -> bool:  # noqa: N802
        return bool(self._get("STRICT_UNPICKLING"))

    @cached_property
    def CONFLICT_POLICIES(self) -> Any:  # noqa: N802
        return self._get("CONFLICT_POLICIES")

    @cached_property
    def FILE_PATH(self) -> Any:  # noqa: N802
        return self._get("FILE_PATH")

    @cached_property
    def FILE_FSYNC(self) -> bool:  # noqa: N802
        return bool(self._get("FILE_FSYNC"))

    @cached_property
    def REDIS_URL(self) -> str:  # noqa: N802
        return str(self._get("REDIS_URL"))

    @property  # a fresh dict each time: callers may add to it
    def REDIS_OPTIONS(self) -> dict[str, Any]:  # noqa: N802
        return dict(self._get("REDIS_OPTIONS") or {})

    @cached_property
    def REDIS_SENTINELS(self) -> Any:  # noqa: N802
        return self._get("REDIS_SENTINELS")

    @cached_property
    def REDIS_SENTINEL_SERVICE(self) -> str | None:  # noqa: N802
        value = self._get("REDIS_SENTINEL_SERVICE")
        return None if value is None else str(value)

    @cached_property
    def REDIS_CLUSTER(self) -> bool:  # noqa: N802
        return bool(self._get("REDIS_CLUSTER"))

    @cached_property
    def REDIS_CACHE_ALIAS(self) -> str | None:  # noqa: N802
        value = self._get("REDIS_CACHE_ALIAS")
        return None if value is None else str(value)

    @cached_property
    def REDIS_PREFIX(self) -> str:  # noqa: N802
        return str(self._get("REDIS_PREFIX"))

    @property
    def CACHE_ALIAS(self) -> str:  # noqa: N802
        value = self._get("CACHE_ALIAS")
        return str(django_settings.SESSION_CACHE_ALIAS if value is None else value)

    @cached_property
    def LEGACY_ENGINE(self) -> str | None:  # noqa: N802
        """Dotted path of the stock engine the site used before, or None (legacy reads off)."""
        value = self._get("LEGACY_ENGINE")
        return None if value is None else str(value)

    @cached_property
    def LEGACY_FORMATS(self) -> frozenset[str]:  # noqa: N802
        """Payload formats imported from the legacy store: a subset of ``{"json", "pickle"}``."""
        value = self._get("LEGACY_FORMATS")
        problem = legacy_formats_problem(value)
        if problem:
            # Check E011 reports the same at startup; servers that skip checks fail here.
            raise ImproperlyConfigured(f"{PREFIX}LEGACY_FORMATS {problem}.")
        return frozenset(value)

    @cached_property
    def LEGACY_WRITE(self) -> bool:  # noqa: N802
        """Also write and delete the stock-format record on every save (dual-write period)."""
        return bool(self._get("LEGACY_WRITE"))

    @cached_property
    def LEGACY_UNTIL(self) -> datetime.date | None:  # noqa: N802
        """Last day legacy records are read or written; None for no end."""
        value = self._get("LEGACY_UNTIL")
        try:
            return parse_legacy_until(value)
        except ValueError as exc:
            # Check E013 reports the same at startup.
            raise ImproperlyConfigured(f"{PREFIX}LEGACY_UNTIL {exc}.") from None

    @property
    def LEGACY_ACTIVE(self) -> bool:  # noqa: N802
        """True while legacy records are read (and, with LEGACY_WRITE, written).

        That is: LEGACY_ENGINE is set and today (the site's date, through Django's clock)
        is not after LEGACY_UNTIL.
        """
        if self.LEGACY_ENGINE is None:
            return False
        until = self.LEGACY_UNTIL
        return until is None or today() <= until

    @cached_property
    def SOFT_RECORD_SIZE(self) -> int | None:  # noqa: N802
        value = self._get("SOFT_RECORD_SIZE")
        return None if value is None else int(value)

    @cached_property
    def USER_LINK(self) -> bool:  # noqa: N802
        return bool(self._get("USER_LINK"))

    # Two of Django's own settings, read on every save: cached the same way, and dropped
    # when they change (``_setting_changed``).
    @cached_property
    def SESSION_COOKIE_AGE(self) -> int:  # noqa: N802
        age: int = django_settings.SESSION_COOKIE_AGE
        return age

    @cached_property
    def SESSION_SAVE_EVERY_REQUEST(self) -> bool:  # noqa: N802
        return bool(django_settings.SESSION_SAVE_EVERY_REQUEST)

    @cached_property
    def LOGOUT_ON_PASSWORD_CHANGE(self) -> bool:  # noqa: N802
        return bool(self._get("LOGOUT_ON_PASSWORD_CHANGE"))


def legacy_formats_problem(value: Any) -> str | None:
    """Say what is wrong with a ``LEGACY_FORMATS`` value, or return None if it is usable."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        return f"must be a list of format names such as ['json', 'pickle'], not {value!r}"
    if not value:
        return "is empty; name at least one format, or unset PICKLESESSIONS_LEGACY_ENGINE"
    unknown = [name for name in value if name not in LEGACY_FORMAT_NAMES]
    if unknown:
        return f"names unknown formats {unknown!r}; the formats are 'json' and 'pickle'"
    return None


def parse_legacy_until(value: Any) -> datetime.date | None:
    """Return a ``LEGACY_UNTIL`` value as a date; raise ValueError saying what is wrong."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        raise ValueError(f"must be a date, not a datetime ({value!r}); use {value.date()!r}")
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(
        f"must be None, a datetime.date or an ISO date string such as '2027-03-31', not {value!r}"
    )


def today() -> datetime.date:
    """The site's current date, through Django's clock (so tests can move it)."""
    now = timezone.now()
    return timezone.localdate(now) if timezone.is_aware(now) else now.date()


conf = Settings()

# Settings whose change must drop a derived cache, and the callbacks that drop it.
_invalidators: dict[str, list[Callable[[], None]]] = {}


def on_change(*setting_names: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """Register a function to call when any of ``setting_names`` changes."""

    def register(func: Callable[[], None]) -> Callable[[], None]:
        for name in setting_names:
            _invalidators.setdefault(name, []).append(func)
        return func

    return register


#: Django's settings that ``conf`` caches besides its own.
DJANGO_SETTINGS = frozenset(("SESSION_COOKIE_AGE", "SESSION_SAVE_EVERY_REQUEST"))


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith(PREFIX) or setting in DJANGO_SETTINGS:
        conf.reset()
    for func in _invalidators.get(setting, ()):
        func()


setting_changed.connect(_setting_changed, dispatch_uid="django_picklesessions.conf")
