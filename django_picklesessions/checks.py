"""System checks: bad settings fail at startup with a message that says what to change."""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Callable, Sequence
from importlib import import_module
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.module_loading import import_string

from django_picklesessions import allowlist, keys, merge
from django_picklesessions.conf import DEFAULTS, ENGINE_DEFAULT, PREFIX

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
    unset = compress is None or compress is ENGINE_DEFAULT
    if not unset and (type(compress) is not int or compress < 0):
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
    if os.path.realpath(path) == temp:
        return error(
            f"{path!r} is the shared temp directory",
            "Other users can create or read entries there and temp cleaners delete old "
            f"files. {dedicated}",
        )
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return _check_future_parent(path, error, dedicated)
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


def _check_future_parent(
    path: str, error: Callable[[str, str], list[CheckMessage]], dedicated: str
) -> list[CheckMessage]:
    """A directory created on first use is only as safe as the nearest one that exists."""
    parent = os.path.dirname(path)
    while parent != os.path.dirname(parent) and not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    try:
        st = os.stat(parent)
    except OSError as exc:
        return error(
            f"{path!r} cannot be created: {parent!r} cannot be inspected ({exc.strerror})",
            dedicated,
        )
    if st.st_mode & 0o022:
        # Another user could create the directory first (or swap it) and read every session.
        return error(
            f"{path!r} does not exist yet, and {parent!r}, where it would be created, is "
            f"writable by other users (mode {stat.S_IMODE(st.st_mode):04o})",
            f"Create {path} yourself with mode 0700 beforehand, or choose a parent only this "
            f"user can write. {dedicated}",
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
    """E030-E036, W030, W033: the redis engine's client library and connection settings."""
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
    if not messages and sentinels is None and cluster is False:
        messages.extend(_flushed_with_a_cache(url, alias))
    return messages


def _redis_database(url: str) -> tuple[str, str, int] | None:
    """(scheme, server, database number) of a redis-py URL as written, or None if unparsable."""
    parts = urlsplit(url)
    try:
        query = parse_qs(parts.query)
        if parts.scheme == "unix":
            server, db = parts.path, int(query.get("db", ["0"])[0])
        else:
            host = (parts.hostname or "localhost").lower()
            server = f"{'127.0.0.1' if host == 'localhost' else host}:{parts.port or 6379}"
            path = parts.path.strip("/")
            db = int(path) if path else int(query.get("db", ["0"])[0])
    except ValueError:
        return None
    return parts.scheme, server, db


def _first_location(location: object) -> str | None:
    """The server a RedisCache writes to (and flushes): the first of its LOCATION."""
    if isinstance(location, (list, tuple)) and location:
        location = location[0]
    if not isinstance(location, str):
        return None
    return re.split("[;,]", location)[0].strip()


def _flushed_with_a_cache(url: str, alias: object) -> list[CheckMessage]:
    """W033: a RedisCache in use as a cache shares the sessions' Redis database."""
    caches = settings.CACHES
    if isinstance(alias, str):
        where = _first_location(caches[alias].get("LOCATION"))
        if where is None:
            return []
        url = where
    sessions = _redis_database(url)
    if sessions is None:
        return []
    shared = []
    for name, config in caches.items():
        if not _is_cache_kind(config.get("BACKEND"), _RAW_CACHES):
            continue
        if name == alias and name != "default":
            continue  # an entry the sessions borrow a pool from, not the site's cache
        location = _first_location(config.get("LOCATION"))
        if location is not None and _redis_database(location) == sessions:
            shared.append(name)
    if not shared:
        return []
    return [
        Warning(
            f"The redis session engine stores sessions in the Redis database of CACHES"
            f"[{shared[0]!r}]: that cache's clear() runs FLUSHDB, which deletes every "
            "session (every user is logged out).",
            hint="Give the sessions a database of their own (e.g. PICKLESESSIONS_REDIS_URL "
            "= 'redis://host:6379/1' while the cache uses /0), or another server.",
            id="django_picklesessions.W033",
        )
    ]


# Cache backends that store what they are given in process memory: nobody else can write it.
_IN_PROCESS_CACHES = ("django.core.cache.backends.locmem.LocMemCache",)
# Read as raw bytes by the cached_db engine, never through the cache's unpickling get().
_RAW_CACHES = ("django.core.cache.backends.redis.RedisCache",)
_DUMMY_CACHES = ("django.core.cache.backends.dummy.DummyCache",)


def _is_cache_kind(backend: object, kinds: tuple[str, ...]) -> bool:
    """Whether ``backend`` is one of ``kinds`` or a subclass, as the engine's isinstance sees it."""
    if backend in kinds:
        return True
    try:
        cls = import_string(backend) if isinstance(backend, str) else None
    except ImportError:
        return False  # Django's own checks and the first cache access say so
    return isinstance(cls, type) and any(issubclass(cls, import_string(k)) for k in kinds)


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
    if _is_cache_kind(backend, _DUMMY_CACHES):
        return [
            Warning(
                f"The cached_db session engine's cache {alias!r} is a DummyCache: every read "
                "goes to the database.",
                hint="Use the db engine instead, or give the engine a real cache.",
                id="django_picklesessions.W032",
            )
        ]
    if not _is_cache_kind(backend, _IN_PROCESS_CACHES + _RAW_CACHES):
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


# Allowed classes the allow-list accepts but that cannot work, or work against the app.
_FUNCTION_REDUCED = (
    (
        "django.db.models",
        "Model",
        "a model instance pickles through django.db.models.base."
        "model_unpickle, a function the reader never calls (and a forged one would be built with "
        "any field values, is_superuser included)",
        "store the primary key and fetch the object",
    ),
    (
        "zoneinfo",
        "ZoneInfo",
        "it pickles through ZoneInfo._unpickle, a function, and loading "
        "it would open a file under the tz database",
        "store aware datetimes in UTC",
    ),
    (
        "logging",
        "Logger",
        "it pickles through logging.getLogger, a function",
        "store the logger's name",
    ),
    (
        "django.utils.functional",
        "Promise",
        "a lazy object pickles through a function",
        "store str(value)",
    ),
)
_QUESTIONABLE = (
    (
        "django.utils.safestring",
        "SafeData",
        "a forged one renders as HTML without escaping",
        "store str(value) and mark it safe where it is rendered",
    ),
    (
        "decimal",
        "Context",
        "a forged one carries any precision, rounding and traps",
        "store the few settings you need as plain values",
    ),
    (
        "pathlib",
        "PurePath",
        "a forged one can name any file on the server",
        "store str(path) and check it where it is used",
    ),
)


_QUESTIONS: tuple[tuple[Any, type[Error] | type[Warning], str, tuple[str, str]], ...] = (
    (
        _FUNCTION_REDUCED,
        Error,
        "django_picklesessions.E020",
        ("cannot be stored: {why}", "Remove it and {instead}."),
    ),
    (
        _QUESTIONABLE,
        Warning,
        "django_picklesessions.W020",
        ("is allowed, but {why}", "Unless you have reviewed that risk, remove it and {instead}."),
    ),
)


def _subclass_of(cls: type, module: str, name: str) -> bool:
    try:
        base = getattr(import_module(module), name)
    except (ImportError, AttributeError):
        return False
    return isinstance(base, type) and issubclass(cls, base)


@register()
def check_questionable_classes(
    *, app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E020/W020: allowed classes that cannot be stored, or that a forgery turns against you."""
    entries = getattr(settings, PREFIX + "ALLOWED_CLASSES", [])
    if not isinstance(entries, (list, tuple)):
        return []  # E002's to report
    found: list[CheckMessage] = []
    for entry in entries:
        try:
            cls = allowlist.resolve_entry(entry)
        except allowlist.EntryProblem:
            continue  # E002 or E003 reports it
        for table, level, check_id, text in _QUESTIONS:
            hit = next((row for row in table if _subclass_of(cls, row[0], row[1])), None)
            if hit is not None:
                message, hint = text
                found.append(
                    level(
                        f"{PREFIX}ALLOWED_CLASSES: {entry!r} {message.format(why=hit[2])}.",
                        hint=hint.format(instead=hit[3]),
                        id=check_id,
                    )
                )
                break
    return found


# --- Issue 9: SESSION_SERIALIZER and the upgrade path from the stock engines -------------

#: Django's pickle serializers, deprecated in 4.1 and removed in 5.0.
REMOVED_SERIALIZERS: frozenset[str] = frozenset(
    (
        "django.contrib.sessions.serializers.PickleSerializer",
        "django.core.serializers.base.PickleSerializer",
    )
)
BRIDGE_SERIALIZER = "django_picklesessions.serializers.PickleSerializer"

#: Cache backends whose raw stored bytes the legacy cache source reads itself, so that the
#: cache's own (unrestricted) unpickling never runs on a legacy session.
LEGACY_CACHE_BACKENDS: frozenset[str] = frozenset(
    (
        "django.core.cache.backends.locmem.LocMemCache",
        "django.core.cache.backends.filebased.FileBasedCache",
        "django.core.cache.backends.db.DatabaseCache",
        "django.core.cache.backends.redis.RedisCache",
        "django.core.cache.backends.dummy.DummyCache",
    )
)


def _is_ours(engine: str) -> bool | None:
    """Whether SESSION_ENGINE is one of our engines; None when it cannot be imported."""
    from django_picklesessions.backends.base import PickleSessionBase

    try:
        store = import_module(engine).SessionStore
    except Exception:
        return None
    return isinstance(store, type) and issubclass(store, PickleSessionBase)


@register()
def check_session_serializer(
    *, app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """W010: SESSION_SERIALIZER cannot be imported or is Django's removed PickleSerializer;
    W011: the bridge serializer with the stock cache engine, which never calls it."""
    from django_picklesessions.legacy import engines

    name = settings.SESSION_SERIALIZER
    engine = settings.SESSION_ENGINE
    ours = _is_ours(engine)
    messages: list[CheckMessage] = []
    problem = None
    if name in REMOVED_SERIALIZERS:
        problem = "is Django's PickleSerializer, removed in Django 5.0"
    else:
        try:
            import_string(name)
        except ImportError as exc:
            problem = f"cannot be imported ({exc})"
    if problem:
        if ours:
            hint = (
                "Delete the setting: django_picklesessions' engines never use a serializer. "
                f"(With Django's stock engines, use {BRIDGE_SERIALIZER!r}.)"
            )
        else:
            hint = (
                f"With Django's stock engines, set it to {BRIDGE_SERIALIZER!r}: it reads and "
                "writes the same bytes as Django 4.2's PickleSerializer, through an allow-list. "
                "Or delete the setting if the sessions are JSON; django_picklesessions' "
                "engines ignore it."
            )
        messages.append(
            Warning(
                f"SESSION_SERIALIZER {name!r} {problem}; on Django 5 and later a stock "
                "engine then fails on every request.",
                hint=hint,
                id="django_picklesessions.W010",
            )
        )
    if name == BRIDGE_SERIALIZER and not ours:
        try:
            kind = engines.stock_kind(engine)
        except engines.LegacyEngineProblem:
            kind = None
        if kind == "cache":
            messages.append(
                Warning(
                    f"SESSION_SERIALIZER is {BRIDGE_SERIALIZER!r}, but the stock cache engine "
                    "never calls a serializer: the cache holds each session as an unsigned "
                    "pickle, read by the cache's own unrestricted unpickling.",
                    hint=(
                        "Move to django_picklesessions' engines with PICKLESESSIONS_LEGACY_ENGINE"
                        " = 'django.contrib.sessions.backends.cache' (see docs/migrating.md), or "
                        "use the stock cached_db or db engine, which do call the serializer."
                    ),
                    id="django_picklesessions.W011",
                )
            )
    return messages


@register(Tags.security)
def check_legacy(
    *, app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E010–E015, W012–W014: the PICKLESESSIONS_LEGACY_* settings of the upgrade path."""
    from django_picklesessions import conf as conf_module
    from django_picklesessions.legacy import engines

    engine = getattr(settings, PREFIX + "LEGACY_ENGINE", None)
    formats = getattr(settings, PREFIX + "LEGACY_FORMATS", DEFAULTS["LEGACY_FORMATS"])
    write = getattr(settings, PREFIX + "LEGACY_WRITE", False)
    until = getattr(settings, PREFIX + "LEGACY_UNTIL", None)
    messages: list[CheckMessage] = []

    def error(check_id: str, text: str, hint: str) -> None:
        messages.append(Error(text, hint=hint, id=f"django_picklesessions.{check_id}"))

    def warning(check_id: str, text: str, hint: str) -> None:
        messages.append(Warning(text, hint=hint, id=f"django_picklesessions.{check_id}"))

    formats_problem = conf_module.legacy_formats_problem(formats)
    if formats_problem:
        error(
            "E011",
            f"{PREFIX}LEGACY_FORMATS {formats_problem}.",
            "Use ['json'] (the default) for JSONSerializer sessions, or ['pickle', 'json'] to "
            "also import PickleSerializer sessions (unpickled through the allow-list).",
        )
    try:
        until_date = conf_module.parse_legacy_until(until)
    except ValueError as exc:
        until_date = None
        error("E013", f"{PREFIX}LEGACY_UNTIL {exc}.", "For example datetime.date(2027, 3, 31).")
    if type(write) is not bool:
        error(
            "E012",
            f"{PREFIX}LEGACY_WRITE must be True or False, not {write!r}.",
            "True during the dual-write period (rolling deploys, rollback), else False.",
        )
    if engine is None:
        if write is True:
            error(
                "E012",
                f"{PREFIX}LEGACY_WRITE is on but {PREFIX}LEGACY_ENGINE is not set, so no "
                "stock-format record is written and a rollback would log users out.",
                f"Set {PREFIX}LEGACY_ENGINE to the engine the site used, or remove "
                f"{PREFIX}LEGACY_WRITE.",
            )
        stray = [n for n in ("LEGACY_FORMATS", "LEGACY_UNTIL") if hasattr(settings, PREFIX + n)]
        if stray:
            warning(
                "W013",
                f"{', '.join(PREFIX + name for name in stray)} "
                f"{'has' if len(stray) == 1 else 'have'} no effect without "
                f"{PREFIX}LEGACY_ENGINE.",
                "Set PICKLESESSIONS_LEGACY_ENGINE, or remove them.",
            )
        return messages
    try:
        kind = engines.stock_kind(engine)
    except engines.LegacyEngineProblem as exc:
        error(
            "E010",
            f"{PREFIX}LEGACY_ENGINE: {exc}.",
            "Name the engine the site used before, as it was in SESSION_ENGINE: "
            "'django.contrib.sessions.backends.db', '.file', '.cache', '.cached_db' or "
            "'.signed_cookies', or a module of the project whose SessionStore subclasses one.",
        )
        return messages
    if write is True and kind == "signed_cookies":
        error(
            "E012",
            f"{PREFIX}LEGACY_WRITE cannot be used with the signed_cookies engine: the browser "
            "holds that session, in the same cookie our engine's session key then occupies.",
            "Remove PICKLESESSIONS_LEGACY_WRITE. To go back to signed cookies, revert "
            "SESSION_ENGINE: users whose cookie was replaced log in again.",
        )
    if kind in ("db", "cached_db") and not apps.is_installed("django.contrib.sessions"):
        error(
            "E014",
            f"{PREFIX}LEGACY_ENGINE is the {kind} engine, whose table needs "
            "'django.contrib.sessions' in INSTALLED_APPS.",
            "Keep 'django.contrib.sessions' in INSTALLED_APPS until the legacy period ends "
            "and the django_session table is dropped.",
        )
    if kind == "cache":
        alias = settings.SESSION_CACHE_ALIAS
        backend = settings.CACHES.get(alias, {}).get("BACKEND")
        if backend not in LEGACY_CACHE_BACKENDS:
            error(
                "E015",
                f"{PREFIX}LEGACY_ENGINE is the cache engine, and cache {alias!r} uses "
                f"{backend!r}, whose stored bytes django_picklesessions cannot read itself. "
                "Reading through the cache would unpickle them without any restriction.",
                "Use one of Django's built-in cache backends ("
                + ", ".join(sorted(b.rsplit(".", 1)[1] for b in LEGACY_CACHE_BACKENDS))
                + ") for SESSION_CACHE_ALIAS, or let those sessions expire.",
            )
    if until_date is not None and conf_module.today() > until_date:
        warning(
            "W012",
            f"{PREFIX}LEGACY_UNTIL ({until_date.isoformat()}) has passed: legacy sessions are "
            "no longer read or written.",
            "Remove the PICKLESESSIONS_LEGACY_* settings (and SESSION_SERIALIZER), and drop "
            "the legacy store (docs/migrating.md).",
        )
    if _is_ours(settings.SESSION_ENGINE) is False:
        warning(
            "W014",
            f"{PREFIX}LEGACY_ENGINE is set but SESSION_ENGINE ({settings.SESSION_ENGINE!r}) "
            "is not one of django_picklesessions' engines, so nothing reads the legacy store.",
            "Set SESSION_ENGINE to 'django_picklesessions.backends.db' (or .file), or remove "
            "the PICKLESESSIONS_LEGACY_* settings.",
        )
    return messages


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


@register()
def check_user_link(
    *, app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E060: a user-link setting is not a bool; E061: log out on password change without the
    link; W061: the link is on with an engine that keeps none (file, locmem, Django's own, a
    Redis Cluster)."""
    messages: list[CheckMessage] = []
    names = ("USER_LINK", "LOGOUT_ON_PASSWORD_CHANGE")
    values = {name: getattr(settings, PREFIX + name, False) for name in names}
    for name, value in values.items():
        if type(value) is not bool:
            messages.append(
                Error(
                    f"{PREFIX}{name} must be True or False, not {value!r}.",
                    hint="It is off by default; set it to True to turn it on.",
                    id="django_picklesessions.E060",
                )
            )
    if messages:
        return messages
    if values["LOGOUT_ON_PASSWORD_CHANGE"] and not values["USER_LINK"]:
        messages.append(
            Error(
                f"{PREFIX}LOGOUT_ON_PASSWORD_CHANGE needs {PREFIX}USER_LINK: without the link no "
                "session records its user, so none can be logged out.",
                hint=f"Set {PREFIX}USER_LINK = True (db, cached_db or redis engine).",
                id="django_picklesessions.E061",
            )
        )
    if values["USER_LINK"]:
        from django_picklesessions.users import SUPPORTING_ENGINES

        engine = settings.SESSION_ENGINE
        # An engine that cannot be imported is Django's to report.
        supported = _is_ours(engine) is None or any(
            _engine_in_use(module, module) for module in SUPPORTING_ENGINES
        )
        cluster = getattr(settings, PREFIX + "REDIS_CLUSTER", False) and _engine_in_use(
            "django_picklesessions.backends.redis", "django_picklesessions.backends.redis"
        )
        if not supported or cluster:
            where = "a Redis Cluster" if cluster else f"SESSION_ENGINE {engine!r}"
            messages.append(
                Warning(
                    f"{PREFIX}USER_LINK is on, but {where} keeps no user link: logout_user() "
                    "raises, and a password change logs nobody out.",
                    hint=f"Use one of {', '.join(SUPPORTING_ENGINES)} (redis standalone or "
                    f"Sentinel), or set {PREFIX}USER_LINK = False.",
                    id="django_picklesessions.W061",
                )
            )
    return messages
