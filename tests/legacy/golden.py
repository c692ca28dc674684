"""The golden Django 4.2 records (fixtures/django42.json): loading, planting, settings."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.test import override_settings

from tests.legacy import fixturetypes

MANIFEST = Path(__file__).parent / "fixtures" / "django42.json"
STOCK = "django.contrib.sessions.backends."
REDIS_URL = "redis://127.0.0.1:6379/12"
# The fixtures' session keys are fixed; a prefix of this run's own keeps two runs (tox runs
# environments side by side) from planting and deleting each other's copies.
REDIS_KEY_PREFIX = f"legacy{os.getpid()}"


@functools.cache
def manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(MANIFEST.read_text())
    return data


def records() -> list[dict[str, Any]]:
    return list(manifest()["records"])


def cells() -> list[tuple[str, str, str | None]]:
    """Every (engine, serializer, cache backend) the fixtures cover, in a stable order."""
    seen: dict[tuple[str, str, str | None], None] = {}
    for r in records():
        seen[(r["engine"], r["serializer"], r["cache"])] = None
    return list(seen)


def cell_records(engine: str, serializer: str, cache: str | None) -> list[dict[str, Any]]:
    return [
        r
        for r in records()
        if (r["engine"], r["serializer"], r["cache"]) == (engine, serializer, cache)
    ]


def expected(record: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = fixturetypes.decode(record["expected"])
    return value


def caches_setting(cache_dir: str) -> dict[str, Any]:
    return {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "locmem": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "legacy-sessions",
        },
        "filebased": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": cache_dir,
        },
        "redis": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": REDIS_KEY_PREFIX,
        },
    }


def legacy_settings(
    engine: str, serializer: str, cache: str | None, workdir: Path, **extra: Any
) -> override_settings:
    """Settings of a site that used ``engine`` under Django 4.2 and now runs ours."""
    m = manifest()
    allowed = [*settings.PICKLESESSIONS_ALLOWED_CLASSES, *m["allowed_classes"]]
    values: dict[str, Any] = {
        "SECRET_KEY": m["secret_key"],
        "SESSION_COOKIE_AGE": m["session_cookie_age"],
        "SESSION_ENGINE": "django_picklesessions.backends.db",
        "SESSION_FILE_PATH": str(workdir / "stock-files"),
        "SESSION_CACHE_ALIAS": cache or "default",
        "CACHES": caches_setting(str(workdir / "stock-cache")),
        "PICKLESESSIONS_ALLOWED_CLASSES": allowed,
        "PICKLESESSIONS_FILE_PATH": str(workdir / "ours"),
        "PICKLESESSIONS_LEGACY_ENGINE": STOCK + engine,
        # The stock cache engine pickles whatever the serializer: importing it needs "pickle".
        "PICKLESESSIONS_LEGACY_FORMATS": (
            ["pickle", "json"] if serializer == "pickle" or engine == "cache" else ["json"]
        ),
        "ROOT_URLCONF": "tests.legacy.urls",
    }
    values.update(extra)
    return override_settings(**values)


def make_user() -> Any:
    from django.contrib.auth.models import User

    user = manifest()["user"]
    made, _ = User.objects.get_or_create(
        id=user["id"], defaults={"username": user["username"], "password": user["password"]}
    )
    return made


def cookie_of(record: dict[str, Any]) -> str:
    """What the browser sends: the session key, or the whole session for signed cookies."""
    value: str = record["cookie"] if record["engine"] == "signed_cookies" else record["session_key"]
    return value


def plant(record: dict[str, Any]) -> None:
    """Put ``record`` where the stock engine kept it (call under legacy_settings)."""
    key = record["session_key"]
    if "db" in record:
        from django.contrib.sessions.models import Session

        Session.objects.create(
            session_key=key,
            session_data=record["db"]["session_data"],
            expire_date=dt.datetime.fromtimestamp(record["db"]["expire_date"], tz=dt.timezone.utc),
        )
    if "file" in record:
        os.makedirs(settings.SESSION_FILE_PATH, exist_ok=True)
        path = os.path.join(settings.SESSION_FILE_PATH, record["file"]["name"])
        with open(path, "w") as f:
            f.write(record["file"]["content"])
        os.utime(path, (record["file"]["mtime"], record["file"]["mtime"]))
    if "cache_raw" in record:
        plant_cache(record["cache_raw"])


def plant_cache(raw: dict[str, Any]) -> None:
    cache: Any = caches[raw["alias"]]
    value = base64.b64decode(raw["value"])
    if raw["alias"] == "locmem":
        with cache._lock:
            cache._cache[raw["key"]] = value
            cache._expire_info[raw["key"]] = raw["expires"]
    elif raw["alias"] == "filebased":
        os.makedirs(cache._dir, exist_ok=True)
        with open(os.path.join(cache._dir, raw["file_name"]), "wb") as f:
            f.write(value)
    else:
        key = redis_key(raw)
        cache._cache.get_client(key, write=True).set(key, value, ex=raw["ttl"])


def redis_key(raw: dict[str, Any]) -> str:
    """Where this run keeps a record that Django 4.2 stored under ``raw["key"]`` (no prefix)."""
    return REDIS_KEY_PREFIX + str(raw["key"])


def legacy_present(record: dict[str, Any]) -> dict[str, bool]:
    """Which of the record's legacy copies are still stored."""
    key = record["session_key"]
    present: dict[str, bool] = {}
    if "db" in record:
        from django.contrib.sessions.models import Session

        present["db"] = Session.objects.filter(session_key=key).exists()
    if "file" in record:
        present["file"] = os.path.exists(
            os.path.join(settings.SESSION_FILE_PATH, record["file"]["name"])
        )
    if "cache_raw" in record:
        present["cache"] = caches[record["cache_raw"]["alias"]].has_key(
            record["cache_raw"]["key"].split(":", 2)[2]
        )
    return present


def forget(record: dict[str, Any]) -> None:
    """Remove what ``plant`` put in the caches (the db and tmp_path go with the test)."""
    raw = record.get("cache_raw")
    if raw and raw["alias"] == "redis":
        key = redis_key(raw)
        caches["redis"]._cache.get_client(key, write=True).delete(key)
    elif raw and raw["alias"] == "locmem":
        caches["locmem"].clear()


def typed(value: Any) -> Any:
    """``value`` with every type spelled out: equal only for equal values of equal types."""
    if isinstance(value, dict):
        return ("dict", sorted((k, typed(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [typed(v) for v in value])
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, sorted(typed(v) for v in value))
    if isinstance(value, fixturetypes.Voucher):
        return ("Voucher", typed(vars(value)))
    return (type(value).__name__, repr(value))


def typed_items(session: dict[str, Any]) -> dict[str, Any]:
    """Each key's value with its types spelled out (a readable diff when one differs)."""
    return {key: typed(value) for key, value in session.items()}
