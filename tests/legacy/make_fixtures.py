"""Write golden session records as Django 4.2's stock engines store them.

Run with ``tox -e legacyfixtures`` (Django 4.2, Redis on 127.0.0.1:6379); it rewrites
``tests/legacy/fixtures/django42.json``. The clock is frozen at ``SIGNED_AT`` so the output
only changes when Django's formats do, and the cookie age is ten years so that the records
stay unexpired wherever the tests replay them. Nothing here runs in the normal test suite:
the tests read the manifest this writes, on any Django version.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import django
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "fixtures" / "django42.json"

SECRET_KEY = "legacy-fixtures-only-not-a-secret-4f2b9c1d7e"
SIGNED_AT = 1764547200  # 2025-12-01 00:00:00 UTC
COOKIE_AGE = 10 * 365 * 24 * 3600
USER = {"id": 42, "username": "alice", "password_plain": "correct horse battery staple"}
ENGINES = ("db", "file", "cache", "cached_db", "signed_cookies")
SERIALIZERS = {
    "pickle": "django.contrib.sessions.serializers.PickleSerializer",
    "json": "django.contrib.sessions.serializers.JSONSerializer",
}
CACHE_BACKENDS = {
    "locmem": "django.core.cache.backends.locmem.LocMemCache",
    "filebased": "django.core.cache.backends.filebased.FileBasedCache",
    "redis": "django.core.cache.backends.redis.RedisCache",
}
REDIS_URL = "redis://127.0.0.1:6379/13"
EXPIRY_FORMS: dict[str, Any] = {
    "expiry-int": 5 * 365 * 24 * 3600,
    "expiry-datetime": dt.datetime(2033, 6, 1, 12, 0, tzinfo=dt.timezone.utc),
    "expiry-zero": 0,
}


def configure(workdir: str) -> None:
    sys.path.insert(0, str(ROOT))
    caches: dict[str, Any] = {
        "default": {"BACKEND": CACHE_BACKENDS["locmem"], "LOCATION": "default"},
        "locmem": {"BACKEND": CACHE_BACKENDS["locmem"], "LOCATION": "sessions"},
        "filebased": {
            "BACKEND": CACHE_BACKENDS["filebased"],
            "LOCATION": os.path.join(workdir, "cache"),
        },
        "redis": {"BACKEND": CACHE_BACKENDS["redis"], "LOCATION": REDIS_URL},
    }
    settings.configure(
        SECRET_KEY=SECRET_KEY,
        USE_TZ=True,
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
            "django.contrib.messages",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        CACHES=caches,
        SESSION_COOKIE_AGE=COOKIE_AGE,
        SESSION_FILE_PATH=os.path.join(workdir, "files"),
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.PBKDF2PasswordHasher"],
    )
    os.makedirs(settings.SESSION_FILE_PATH)
    django.setup()


def freeze_clock() -> None:
    """Make Django's signing timestamps, expiry dates and cache expiries all ``SIGNED_AT``."""
    from django.utils import timezone

    frozen = dt.datetime.fromtimestamp(SIGNED_AT, tz=dt.timezone.utc)
    time.time = lambda: float(SIGNED_AT)
    timezone.now = lambda: frozen


def make_user() -> dict[str, Any]:
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User

    password = make_password(USER["password_plain"], salt="legacyfixturesalt")
    user = User.objects.create(id=USER["id"], username=USER["username"], password=password)
    return {"id": user.pk, "username": user.username, "password": password}


def login_values() -> dict[str, Any]:
    """What ``django.contrib.auth.login`` stores for the fixed user."""
    from django.contrib.auth.models import User

    user = User.objects.get(pk=USER["id"])
    return {
        "_auth_user_id": str(user.pk),
        "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
        "_auth_user_hash": user.get_session_auth_hash(),
    }


def messages_value() -> str:
    """The ``_messages`` text Django's session message storage writes for two messages."""
    from django.contrib.messages import constants
    from django.contrib.messages.storage.session import SessionStorage
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.session = {}  # type: ignore[assignment]
    storage = SessionStorage(request)
    storage.add(constants.SUCCESS, "Welcome back")
    storage.add(constants.INFO, "Your cart was saved", extra_tags="cart")
    storage.update(None)
    value: str = request.session["_messages"]
    return value


def contents(serializer: str, form: str) -> tuple[dict[str, Any], list[str]]:
    """Return a session's contents and the keys the allow-list must drop from it."""
    from tests.legacy import fixturetypes

    values = dict(login_values())
    values.update(fixturetypes.json_values())
    values["_messages"] = messages_value()
    dropped: list[str] = []
    if serializer == "pickle":
        values.update(fixturetypes.rich_values())
    if form == "refused":
        from django.contrib.auth.models import User
        from django.utils.translation import gettext_lazy

        values["user_obj"] = User.objects.get(pk=USER["id"])
        values["greeting"] = gettext_lazy("Hello")
        dropped = ["greeting", "user_obj"]
    return values, dropped


def fill(store: Any, values: dict[str, Any], form: str) -> None:
    for key, value in values.items():
        store[key] = value
    if form in EXPIRY_FORMS:
        store.set_expiry(EXPIRY_FORMS[form])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def raw_cache(alias: str, key: str) -> dict[str, Any]:
    """Return what cache ``alias`` stores for session cache key ``key``: the exact bytes."""
    from django.core.cache import caches

    cache: Any = caches[alias]
    full_key = cache.make_and_validate_key(key)
    out: dict[str, Any] = {"alias": alias, "key": full_key}
    if alias == "locmem":
        out["value"] = b64(cache._cache[full_key])
        out["expires"] = cache._expire_info[full_key]
    elif alias == "filebased":
        name = hashlib.md5(full_key.encode(), usedforsecurity=False).hexdigest() + ".djcache"
        with open(os.path.join(cache._dir, name), "rb") as f:
            out["value"] = b64(f.read())
        out["file_name"] = name
    else:
        client = cache._cache.get_client(full_key)
        out["value"] = b64(client.get(full_key))
        out["ttl"] = client.ttl(full_key)
        client.delete(full_key)
    return out


def record(engine: str, serializer: str, cache_alias: str | None, form: str) -> dict[str, Any]:
    from importlib import import_module

    from django.test import override_settings

    from tests.legacy import fixturetypes

    overrides: dict[str, Any] = {"SESSION_SERIALIZER": SERIALIZERS[serializer]}
    if cache_alias:
        overrides["SESSION_CACHE_ALIAS"] = cache_alias
    with override_settings(**overrides):
        module = import_module(f"django.contrib.sessions.backends.{engine}")
        store = module.SessionStore()
        values, dropped = contents(serializer, form)
        fill(store, values, form)
        store.save()
        key = store.session_key
        entry: dict[str, Any] = {
            "engine": engine,
            "serializer": serializer,
            "cache": cache_alias,
            "form": form,
            "session_key": key,
            "signed_at": SIGNED_AT,
            "expires_at": int(store.get_expiry_date().timestamp()),
            # Everything the stock store holds (set_expiry's _session_expiry included).
            "expected": fixturetypes.encode(
                {k: v for k, v in store._session.items() if k not in dropped}
            ),
            "dropped": dropped,
        }
        if engine in ("db", "cached_db"):
            from django.contrib.sessions.models import Session

            row = Session.objects.get(session_key=key)
            entry["db"] = {
                "session_data": row.session_data,
                "expire_date": int(row.expire_date.timestamp()),
            }
        if engine == "file":
            name = settings.SESSION_COOKIE_NAME + key
            with open(os.path.join(settings.SESSION_FILE_PATH, name)) as f:
                entry["file"] = {"name": name, "content": f.read(), "mtime": SIGNED_AT}
        if engine in ("cache", "cached_db"):
            entry["cache_raw"] = raw_cache(cache_alias or "", module.KEY_PREFIX + key)
        if engine == "signed_cookies":
            entry["cookie"] = key
    return entry


def main() -> None:
    # ``--out PATH``: the live cross-version test writes a fresh manifest elsewhere.
    out = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else OUT
    if django.VERSION[:2] != (4, 2):
        raise SystemExit(f"Needs Django 4.2 (found {django.get_version()}): tox -e legacyfixtures")
    with tempfile.TemporaryDirectory() as workdir:
        configure(workdir)
        # Django 4.2 warns each time its PickleSerializer is built: that is the point here.
        warnings.simplefilter("ignore")
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        freeze_clock()
        user = make_user()
        records = []
        for serializer in SERIALIZERS:
            forms = [*EXPIRY_FORMS, "no-expiry"] + (["refused"] if serializer == "pickle" else [])
            for engine in ENGINES:
                aliases: list[str | None] = [None]
                if engine == "cache":
                    aliases = list(CACHE_BACKENDS)
                elif engine == "cached_db":
                    aliases = ["locmem", "redis"]
                for alias in aliases:
                    for form in forms:
                        records.append(record(engine, serializer, alias, form))
    manifest = {
        "generated_by": "tests/legacy/make_fixtures.py (tox -e legacyfixtures)",
        "django": django.get_version(),
        "python": sys.version.split()[0],
        "secret_key": SECRET_KEY,
        "signed_at": SIGNED_AT,
        "session_cookie_age": COOKIE_AGE,
        "allowed_classes": ["tests.legacy.fixturetypes.Voucher"],
        "user": user,
        "records": records,
    }
    out.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"{len(records)} records written to {out}")


if __name__ == "__main__":
    main()
