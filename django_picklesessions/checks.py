"""System checks: bad settings fail at startup with a message that says what to change."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Sequence
from importlib import import_module
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from django_picklesessions import allowlist, keys, merge
from django_picklesessions.conf import DEFAULTS, PREFIX

_KEYS_HINT = (
    "Generate one with django.core.management.utils.get_random_secret_key() and keep it "
    "out of source control."
)


@register(Tags.security)
def check_signing_keys(
    *, app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E004: a malformed PICKLESESSIONS_KEYS, or two keys that are equal."""
    raw = getattr(settings, "PICKLESESSIONS_KEYS", None)
    if raw is not None and (
        isinstance(raw, (str, bytes))
        or not isinstance(raw, (list, tuple))
        or not raw
        or not all(isinstance(s, (str, bytes)) and s for s in raw)
    ):
        return [
            Error(
                "PICKLESESSIONS_KEYS must be a non-empty list of secrets (str or bytes), "
                "newest first.",
                hint="Set it to [new_key, old_key, ...], or remove it to use SECRET_KEY.",
                id="django_picklesessions.E004",
            )
        ]
    source = "PICKLESESSIONS_KEYS" if raw is not None else "SECRET_KEY/SECRET_KEY_FALLBACKS"
    secrets = keys.configured_secrets()
    ids = [keys.derive(secret).key_id for secret in secrets if isinstance(secret, (str, bytes))]
    if len(set(ids)) != len(ids):
        return [
            Error(
                f"Two keys in {source} are equal or share a key id.",
                hint="Remove the duplicate, or replace one key with a new random one.",
                id="django_picklesessions.E004",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def check_signing_key_strength(
    *, app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E001/W001 (``check --deploy`` only): a weak entry of PICKLESESSIONS_KEYS.

    A weak SECRET_KEY or SECRET_KEY_FALLBACKS entry is Django's to report, with the same
    rules (security.W009 and W025): saying it twice would only add noise.
    """
    raw = getattr(settings, "PICKLESESSIONS_KEYS", None)
    if not isinstance(raw, (list, tuple)):
        return []  # unset (Django's keys), or malformed (E004)
    messages: list[CheckMessage] = []
    for position, secret in enumerate(raw):
        why = keys.weakness(secret) if isinstance(secret, (str, bytes)) and secret else None
        if why is None:  # strong, or malformed (E004)
            continue
        which = "The current key" if position == 0 else f"Fallback key #{position}"
        text = f"{which} in PICKLESESSIONS_KEYS is too weak to sign pickle sessions: {why}."
        if settings.DEBUG:
            messages.append(Warning(text, hint=_KEYS_HINT, id="django_picklesessions.W001"))
        else:
            messages.append(Error(text, hint=_KEYS_HINT, id="django_picklesessions.E001"))
    return messages


@register(Tags.security)
def check_allowed_classes(
    *, app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E002: an unusable allow-list entry; E003: an entry on the never-allow list."""
    entries = getattr(settings, "PICKLESESSIONS_ALLOWED_CLASSES", ())
    if isinstance(entries, str) or not isinstance(entries, (list, tuple)):
        return [
            Error(
                "PICKLESESSIONS_ALLOWED_CLASSES must be a list of dotted class paths.",
                hint="For example ['shop.cart.Cart', 'shop.cart.LineItem'].",
                id="django_picklesessions.E002",
            )
        ]
    messages: list[CheckMessage] = []
    for entry in entries:
        try:
            allowlist.resolve_entry(entry)
        except allowlist.EntryProblem as exc:
            messages.append(
                Error(
                    f"PICKLESESSIONS_ALLOWED_CLASSES entry {entry!r} cannot be used.",
                    hint=str(exc),
                    id=f"django_picklesessions.{'E003' if exc.never_allowed else 'E002'}",
                )
            )
    return messages


@register()
def check_sizes(
    *, app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E005: size and mode settings of the wrong type or range."""
    messages: list[CheckMessage] = []

    def bad(name: str, what: str) -> None:
        messages.append(
            Error(
                f"{PREFIX}{name} must be {what}.",
                hint=f"The default is {DEFAULTS[name]!r}.",
                id="django_picklesessions.E005",
            )
        )

    values = {name: getattr(settings, PREFIX + name, DEFAULTS[name]) for name in DEFAULTS}
    for name in ("MAX_RECORD_SIZE", "MAX_PAYLOAD_SIZE"):
        value = values[name]
        if type(value) is not int or value < 1024:
            bad(name, "an int of at least 1024 (bytes)")
    compress = values["COMPRESS_MIN_SIZE"]
    if compress is not None and (type(compress) is not int or compress < 0):
        bad("COMPRESS_MIN_SIZE", "None or a non-negative int (bytes)")
    if type(values["STRICT_UNPICKLING"]) is not bool:
        bad("STRICT_UNPICKLING", "True or False")
    return messages


@register(Tags.security)
def check_file_path(
    *, app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E006: the file engine's directory is unset, shared, or open to other users."""
    engine = settings.SESSION_ENGINE
    if engine != "django_picklesessions.backends.file":
        try:
            from django_picklesessions.backends.file import SessionStore as FileStore

            store = import_module(engine).SessionStore
        except Exception:  # a broken SESSION_ENGINE is Django's to report, not this check's
            return []
        if not (isinstance(store, type) and issubclass(store, FileStore)):
            return []

    def error(problem: str, hint: str) -> list[CheckMessage]:
        return [Error(f"{PREFIX}FILE_PATH {problem}.", hint=hint, id="django_picklesessions.E006")]

    raw = getattr(settings, PREFIX + "FILE_PATH", None)
    dedicated = (
        "Set it to the absolute path of a directory used only for sessions, such as "
        "BASE_DIR / 'var' / 'sessions'; it is created with mode 0700 on first use."
    )
    if raw is None:
        return error("is not set, and the file session engine needs it", dedicated)
    path = os.fspath(raw) if isinstance(raw, (str, os.PathLike)) else None
    if not isinstance(path, str):
        return error(f"must be a path (str or pathlib.Path), not {type(raw).__name__}", dedicated)
    if not os.path.isabs(path):
        return error(
            f"{path!r} is relative, so it depends on the server's working directory", dedicated
        )
    temp = os.path.realpath(tempfile.gettempdir())
    if os.path.commonpath([os.path.realpath(path), temp]) == temp:
        return error(
            f"{path!r} is in the shared temp directory {temp!r}",
            "Other users can create or read entries there and temp cleaners delete old "
            f"files. {dedicated}",
        )
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return []  # created on first use, with mode 0700
    except OSError as exc:
        return error(f"{path!r} cannot be inspected ({exc.strerror})", dedicated)
    if stat.S_ISLNK(st.st_mode):
        return error(
            f"{path!r} is a symbolic link",
            "Point the setting at the real directory: whoever can change the link could "
            "redirect every session file.",
        )
    if not stat.S_ISDIR(st.st_mode):
        return error(f"{path!r} exists but is not a directory", dedicated)
    if not os.access(path, os.W_OK | os.X_OK):
        return error(
            f"{path!r} is not writable by this process",
            "Make the user the server runs as its owner, with mode 0700.",
        )
    if st.st_uid != os.geteuid():
        return error(
            f"{path!r} belongs to another user (uid {st.st_uid})",
            "Make the user the server runs as its owner, with mode 0700: the engine refuses "
            "files it does not own.",
        )
    if st.st_mode & 0o077:
        return error(
            f"{path!r} is open to other users (mode {stat.S_IMODE(st.st_mode):04o})",
            f"Run chmod 700 {path}: other users must not list, read or plant session files.",
        )
    return []


@register()
def check_conflict_policies(
    *, app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E007: a conflict policy that is neither a known name nor an importable function."""
    policies = getattr(settings, PREFIX + "CONFLICT_POLICIES", {})
    return [
        Error(
            f"{PREFIX}CONFLICT_POLICIES: {problem}",
            hint=(
                "Map each session key to 'last-writer-wins', 'raise', or a merge function "
                "(or its dotted path) called as merge(base, ours, theirs)."
            ),
            id="django_picklesessions.E007",
        )
        for problem in merge.check_policies(policies)
    ]


@register()
def check_file_path_not_djangos(
    *, app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """W040: PICKLESESSIONS_FILE_PATH is the directory of Django's own file engine."""
    ours, djangos = getattr(settings, PREFIX + "FILE_PATH", None), settings.SESSION_FILE_PATH
    if not (isinstance(ours, (str, os.PathLike)) and isinstance(djangos, (str, os.PathLike))):
        return []
    if os.path.realpath(os.fspath(ours)) != os.path.realpath(os.fspath(djangos)):
        return []
    return [
        Warning(
            f"{PREFIX}FILE_PATH is the same directory as SESSION_FILE_PATH ({os.fspath(ours)!r}).",
            hint=(
                "Give each engine a directory of its own, so that their files, modes and "
                "cleanup stay apart: Django's file engine writes its unsigned 'sessionid…' "
                "files there with the process umask, beside the 0700 tree of pickle "
                "records. For example PICKLESESSIONS_FILE_PATH = BASE_DIR / 'var' / "
                "'pickle-sessions'."
            ),
            id="django_picklesessions.W040",
        )
    ]


def _engine_in_use(module: str, store_path: str) -> bool:
    """Return True if SESSION_ENGINE is ``module`` or a store subclassing ``store_path``'s."""
    engine = settings.SESSION_ENGINE
    if engine == module:
        return True
    try:
        ours = import_module(store_path).SessionStore
        store = import_module(engine).SessionStore
    except Exception:  # a broken SESSION_ENGINE is Django's to report; no redis-py: not ours
        return False
    return isinstance(store, type) and issubclass(store, ours)


_REDIS_SCHEMES = ("redis", "rediss", "unix")


@register()
def check_redis_settings(
    *, app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E030-E036, W030: the redis engine's client library and connection settings."""
    module = "django_picklesessions.backends.redis"
    if not _engine_in_use(module, module):
        return []
    messages: list[CheckMessage] = []

    def error(number: int, text: str, hint: str) -> None:
        messages.append(Error(text, hint=hint, id=f"django_picklesessions.E{number:03d}"))

    try:
        import redis  # noqa: F401
    except ImportError:
        error(
            30,
            "The redis session engine needs redis-py, which is not installed.",
            "pip install 'django-picklesessions[redis]' (or add redis>=5 to your requirements).",
        )
        return messages
    value = {name: getattr(settings, PREFIX + name, DEFAULTS[name]) for name in DEFAULTS}
    sentinels, service = value["REDIS_SENTINELS"], value["REDIS_SENTINEL_SERVICE"]
    cluster, alias = value["REDIS_CLUSTER"], value["REDIS_CACHE_ALIAS"]
    url = value["REDIS_URL"]
    if (
        sentinels is None
        and alias is None
        and (
            not isinstance(url, str)
            or url.split("://", 1)[0] not in _REDIS_SCHEMES
            or "://" not in url
        )
    ):
        error(
            31,
            f"{PREFIX}REDIS_URL must be a redis://, rediss:// or unix:// URL, not {url!r}.",
            "For example 'redis://127.0.0.1:6379/0' or 'rediss://user:password@host:6380/0'.",
        )
    options = value["REDIS_OPTIONS"]
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        error(
            32,
            f"{PREFIX}REDIS_OPTIONS must be a dict of redis-py client keyword arguments.",
            "For example {'max_connections': 50, 'socket_timeout': 1.0}.",
        )
    elif options.get("decode_responses"):
        error(
            32,
            f"{PREFIX}REDIS_OPTIONS sets decode_responses: records are binary.",
            "Remove decode_responses; the engine reads and writes bytes.",
        )
    pairs = isinstance(sentinels, (list, tuple)) and all(
        isinstance(s, (list, tuple)) and len(s) == 2 and isinstance(s[0], str) and type(s[1]) is int
        for s in sentinels
    )
    if sentinels is not None and (not pairs or not sentinels):
        error(
            33,
            f"{PREFIX}REDIS_SENTINELS must be a non-empty list of (host, port) pairs.",
            "For example [('10.0.0.1', 26379), ('10.0.0.2', 26379)].",
        )
    elif bool(sentinels) != (service is not None) or (
        service is not None and (not isinstance(service, str) or not service)
    ):
        error(
            33,
            f"{PREFIX}REDIS_SENTINELS and {PREFIX}REDIS_SENTINEL_SERVICE go together.",
            "Set both (the Sentinels, and the name of the service they monitor), or neither.",
        )
    if type(cluster) is not bool:
        error(34, f"{PREFIX}REDIS_CLUSTER must be True or False.", "The default is False.")
    elif cluster and (sentinels or alias is not None):
        error(
            34,
            f"{PREFIX}REDIS_CLUSTER cannot be combined with Sentinels or a cache alias.",
            "A Cluster is reached through REDIS_URL (any node); pick one way to connect.",
        )
    if alias is not None:
        backend = settings.CACHES.get(alias, {}).get("BACKEND") if isinstance(alias, str) else None
        if backend != "django.core.cache.backends.redis.RedisCache":
            error(
                35,
                f"{PREFIX}REDIS_CACHE_ALIAS {alias!r} must name a CACHES entry whose BACKEND "
                f"is django.core.cache.backends.redis.RedisCache (it is {backend!r}).",
                "Name such an alias, or remove the setting and set REDIS_URL instead.",
            )
    prefix = value["REDIS_PREFIX"]
    if not isinstance(prefix, str) or not prefix:
        error(
            36,
            f"{PREFIX}REDIS_PREFIX must be a non-empty str.",
            f"The default is {DEFAULTS['REDIS_PREFIX']!r}: it keeps sessions apart from others.",
        )
    elif cluster is True and "{" in prefix and "}" in prefix.split("{", 1)[1]:
        messages.append(
            Warning(
                f"{PREFIX}REDIS_PREFIX {prefix!r} holds a Cluster hash tag: every session "
                "would live in one slot, on one node.",
                hint="Remove the braces; each session's commands touch one key, no tag needed.",
                id="django_picklesessions.W030",
            )
        )
    return messages


# Cache backends that store what they are given in process memory: nobody else can write it.
_IN_PROCESS_CACHES = ("django.core.cache.backends.locmem.LocMemCache",)
# Read as raw bytes by the cached_db engine, never through the cache's unpickling get().
_RAW_CACHES = ("django.core.cache.backends.redis.RedisCache",)


@register(Tags.security)
def check_cached_db_cache(
    *, app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E037: the cached_db engine's cache alias is missing; W031/W032: a risky or dummy cache."""
    module = "django_picklesessions.backends.cached_db"
    if not _engine_in_use(module, module):
        return []
    raw = getattr(settings, PREFIX + "CACHE_ALIAS", None)
    alias = settings.SESSION_CACHE_ALIAS if raw is None else raw
    source = f"{PREFIX}CACHE_ALIAS" if raw is not None else "SESSION_CACHE_ALIAS"
    if not isinstance(alias, str) or alias not in settings.CACHES:
        return [
            Error(
                f"{source} is {alias!r}, which is not an alias in CACHES.",
                hint="Name one of the CACHES entries, e.g. 'default'.",
                id="django_picklesessions.E037",
            )
        ]
    backend = settings.CACHES[alias].get("BACKEND", "")
    if backend == "django.core.cache.backends.dummy.DummyCache":
        return [
            Warning(
                f"The cached_db session engine's cache {alias!r} is a DummyCache: every read "
                "goes to the database.",
                hint="Use the db engine instead, or give the engine a real cache.",
                id="django_picklesessions.W032",
            )
        ]
    if backend not in _IN_PROCESS_CACHES + _RAW_CACHES:
        return [
            Warning(
                f"The cached_db session engine's cache {alias!r} ({backend}) unpickles what "
                "it reads: whoever can write to that cache's storage can run code on every "
                "web server, whatever the sessions in it hold.",
                hint="Use django.core.cache.backends.redis.RedisCache (read as raw bytes by "
                "the engine) or the redis session engine, and keep the cache server private.",
                id="django_picklesessions.W031",
            )
        ]
    return []


@register()
def check_soft_record_size(
    *, app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E050: the size budget is not a positive int; W050: it is not below the hard limit."""
    soft = getattr(settings, PREFIX + "SOFT_RECORD_SIZE", None)
    if soft is None:
        return []
    if type(soft) is not int or soft < 1:
        return [
            Error(
                f"{PREFIX}SOFT_RECORD_SIZE must be None or a positive int (bytes), not {soft!r}.",
                hint="Set it to the record size you want sessions to stay under, or None.",
                id="django_picklesessions.E050",
            )
        ]
    hard = getattr(settings, PREFIX + "MAX_RECORD_SIZE", DEFAULTS["MAX_RECORD_SIZE"])
    if type(hard) is int and soft >= hard:
        return [
            Warning(
                f"{PREFIX}SOFT_RECORD_SIZE ({soft}) is not below {PREFIX}MAX_RECORD_SIZE "
                f"({hard}): a record over it is refused before it could be warned about.",
                hint="Set the budget below the hard limit (a half or a quarter of it, say).",
                id="django_picklesessions.W050",
            )
        ]
    return []
