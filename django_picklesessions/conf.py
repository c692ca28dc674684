"""Every ``PICKLESESSIONS_*`` setting, with its default, read in this one place.

Values are read once and dropped whenever Django's ``setting_changed`` signal says a setting
changed (``override_settings`` sends it). Objects derived from settings (the keyring, the
allow-list) are cached by their modules and dropped the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed

PREFIX = "PICKLESESSIONS_"

#: Defaults of every setting; ``docs/settings.md`` documents each one.
DEFAULTS: dict[str, Any] = {
    "KEYS": None,
    "ALLOWED_CLASSES": (),
    "MAX_RECORD_SIZE": 256 * 1024,
    "MAX_PAYLOAD_SIZE": 1024 * 1024,
    "COMPRESS_MIN_SIZE": 64 * 1024,
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
    # The size budget (docs/operations.md): a save over it logs a warning (None: no budget).
    "SOFT_RECORD_SIZE": None,
}


class Settings:
    """Attribute access to the package's settings, by their names without the prefix.

    Values are read once and kept until a ``PICKLESESSIONS_*`` setting changes: an unset
    setting costs Django's lazy settings an exception on every read, and these are read on
    every request.
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
        """Forget the values read so far."""
        self._values = None

    # The names mirror the settings, hence upper case.
    @property
    def KEYS(self) -> Any:  # noqa: N802
        return self._get("KEYS")

    @property
    def ALLOWED_CLASSES(self) -> Any:  # noqa: N802
        return self._get("ALLOWED_CLASSES")

    @property
    def MAX_RECORD_SIZE(self) -> int:  # noqa: N802
        return int(self._get("MAX_RECORD_SIZE"))

    @property
    def MAX_PAYLOAD_SIZE(self) -> int:  # noqa: N802
        return int(self._get("MAX_PAYLOAD_SIZE"))

    @property
    def COMPRESS_MIN_SIZE(self) -> int | None:  # noqa: N802
        value = self._get("COMPRESS_MIN_SIZE")
        return None if value is None else int(value)

    @property
    def STRICT_UNPICKLING(self) -> bool:  # noqa: N802
        return bool(self._get("STRICT_UNPICKLING"))

    @property
    def CONFLICT_POLICIES(self) -> Any:  # noqa: N802
        return self._get("CONFLICT_POLICIES")

    @property
    def FILE_PATH(self) -> Any:  # noqa: N802
        return self._get("FILE_PATH")

    @property
    def FILE_FSYNC(self) -> bool:  # noqa: N802
        return bool(self._get("FILE_FSYNC"))

    @property
    def REDIS_URL(self) -> str:  # noqa: N802
        return str(self._get("REDIS_URL"))

    @property
    def REDIS_OPTIONS(self) -> dict[str, Any]:  # noqa: N802
        return dict(self._get("REDIS_OPTIONS") or {})

    @property
    def REDIS_SENTINELS(self) -> Any:  # noqa: N802
        return self._get("REDIS_SENTINELS")

    @property
    def REDIS_SENTINEL_SERVICE(self) -> str | None:  # noqa: N802
        value = self._get("REDIS_SENTINEL_SERVICE")
        return None if value is None else str(value)

    @property
    def REDIS_CLUSTER(self) -> bool:  # noqa: N802
        return bool(self._get("REDIS_CLUSTER"))

    @property
    def REDIS_CACHE_ALIAS(self) -> str | None:  # noqa: N802
        value = self._get("REDIS_CACHE_ALIAS")
        return None if value is None else str(value)

    @property
    def REDIS_PREFIX(self) -> str:  # noqa: N802
        return str(self._get("REDIS_PREFIX"))

    @property
    def CACHE_ALIAS(self) -> str:  # noqa: N802
        value = self._get("CACHE_ALIAS")
        return str(django_settings.SESSION_CACHE_ALIAS if value is None else value)

    @property
    def SOFT_RECORD_SIZE(self) -> int | None:  # noqa: N802
        value = self._get("SOFT_RECORD_SIZE")
        return None if value is None else int(value)


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


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith(PREFIX):
        conf.reset()
    for func in _invalidators.get(setting, ()):
        func()


setting_changed.connect(_setting_changed, dispatch_uid="django_picklesessions.conf")
