"""A session store holding one of every kind of record the operations commands tell apart."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.utils.crypto import get_random_string

from django_picklesessions import inventory
from django_picklesessions.backends.base import PickleSessionBase
from django_picklesessions.keys import Keyring, derive
from tests.cart import Cart, NotAllowed
from tests.helpers import sign_raw

NEW = "new-key-for-the-operations-tests-0123456789-abcdefghijklmnop"
OLD = "old-key-for-the-operations-tests-0123456789-abcdefghijklmnop"
FOREIGN = "a-key-nobody-configured-0123456789-abcdefghijklmnopqrstuvwxyz"
#: PICKLESESSIONS_SOFT_RECORD_SIZE of the fixture: only the "big" record is over it.
SOFT = 1500

ENGINES = [
    pytest.param("db", marks=[pytest.mark.db, pytest.mark.django_db]),
    pytest.param("cached_db", marks=[pytest.mark.db, pytest.mark.django_db]),
    pytest.param("file"),
    pytest.param("redis", marks=pytest.mark.redis),
]


def ring(secret: str) -> Keyring:
    """A keyring whose current key is ``secret`` (to sign as an old or foreign deploy did)."""
    key = derive(secret)
    return Keyring(current=key, by_id={key.key_id: key})


def dumps(**values: Any) -> dict[str, bytes]:
    return {key: pickle.dumps(value, 5) for key, value in values.items()}


def vanished() -> bytes:
    """A pickle of a class that was in tests.cart and is not anymore (same name length)."""
    data = pickle.dumps(NotAllowed(), 5)
    assert data.count(b"NotAllowed") == 1
    return data.replace(b"NotAllowed", b"Vanished12")


def new_key() -> str:
    return get_random_string(32, VALID_KEY_CHARS)


@dataclass
class Fixture:
    """What was stored, by kind: session keys, and the counts check_sessions must find."""

    engine: str
    store: type[PickleSessionBase]
    keys: dict[str, str] = field(default_factory=dict)
    expired: int = 0

    def address(self, kind: str) -> str:
        return self.store.address(self.keys[kind])


def put(store: type[PickleSessionBase], key: str, data: bytes, expires_at: int) -> None:
    store()._write(store.address(key), data, expires_at, True, None)


def fill(engine: str) -> Fixture:
    """Store the fixture records with the configured engine; the settings hold NEW, OLD."""
    store = inventory.store_class()
    fixture = Fixture(engine, store)
    now = int(time.time())
    login = dumps(_auth_user_id="1")
    cart = Cart()
    kinds: dict[str, tuple[dict[str, bytes], Keyring | None, int]] = {
        "anonymous": (dumps(theme="dark"), None, now + 3600),
        "cart": ({**login, **dumps(cart=cart)}, None, now + 3600),
        "fallback": ({**login, **dumps(cart=cart, n=1)}, ring(OLD), now + 3600),
        "unknown": (login, ring(FOREIGN), now + 3600),
        "big": (dumps(blob="x" * 2000), None, now + 3600),
        "refused_logged_in": ({**login, **dumps(promo=NotAllowed())}, None, now + 3600),
        "refused_anonymous": (dumps(promo=NotAllowed()), None, now + 3600),
        "gone": ({**login, "promo": vanished()}, None, now + 3600),
        "bad_mac": (login, None, now + 3600),
    }
    if engine != "redis":  # Redis itself drops a record whose expiry passed (EXAT)
        kinds["expired"] = (login, None, now - 10)
        fixture.expired = 1
    for kind, (entries, keyring, expires_at) in kinds.items():
        key = fixture.keys[kind] = new_key()
        data = sign_raw(key, entries, keyring=keyring, expires_at=expires_at, issued_at=now - 60)
        if kind == "bad_mac":
            data = data[:-1] + bytes([data[-1] ^ 1])
        put(store, key, data, expires_at)
    return fixture


def snapshot(engine: str) -> Any:
    """Everything the engine stores, with the metadata a write would change."""
    if engine in ("db", "cached_db"):
        from django_picklesessions.models import Session

        rows = Session.objects.order_by("address").values_list(
            "address", "record", "expires_at", "version"
        )
        return [(a, bytes(r), e, v) for a, r, e, v in rows]
    if engine == "file":
        from django.conf import settings

        root = Path(settings.PICKLESESSIONS_FILE_PATH)
        out = {}
        for path in sorted(root.rglob("*")):
            st = os.stat(path, follow_symlinks=False)
            body = path.read_bytes() if path.is_file() else b""
            out[str(path)] = (st.st_mtime_ns, st.st_ino, st.st_mode, body)
        return out
    from django_picklesessions.backends import redis
    from django_picklesessions.conf import conf

    client = redis.sync_client()
    keys = sorted(client.scan_iter(match=conf.REDIS_PREFIX + "*"))
    return [(k, client.get(k), client.execute_command("EXPIRETIME", k)) for k in keys]


def put_many(engine: str, items: list[tuple[str, bytes]], expires_at: int) -> None:
    """Store ``(address, record)`` pairs the quick way (bulk inserts, a pipeline, plain files).

    Only for filling large stores: the engine's own path (:func:`put`) is tested elsewhere.
    """
    if engine in ("db", "cached_db"):
        from django_picklesessions.models import Session

        Session.objects.bulk_create(
            (Session(address=a, record=d, expires_at=expires_at, version=1) for a, d in items),
            batch_size=2000,
        )
    elif engine == "file":
        from django.conf import settings

        root = Path(settings.PICKLESESSIONS_FILE_PATH)
        for address, data in items:
            directory = root / address[:2]
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = directory / address
            path.write_bytes(data)
            os.utime(path, (expires_at, expires_at))
    else:
        from django_picklesessions.backends import redis

        client = redis.sync_client()
        for start in range(0, len(items), 1000):
            with client.pipeline(transaction=False) as pipe:
                for address, data in items[start : start + 1000]:
                    pipe.set(redis.SessionStore.record_key(address), data, exat=expires_at)
                pipe.execute()


ROOT = Path(__file__).resolve().parents[2]


def run_child(settings: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tests.ops.child`` (a command in a process of its own) on this storage."""
    from django.db import connection

    db = connection.settings_dict
    overrides = {
        "SESSION_ENGINE": settings.SESSION_ENGINE,
        "PICKLESESSIONS_KEYS": list(settings.PICKLESESSIONS_KEYS),
        "PICKLESESSIONS_FILE_PATH": settings.PICKLESESSIONS_FILE_PATH,
        "PICKLESESSIONS_REDIS_PREFIX": settings.PICKLESESSIONS_REDIS_PREFIX,
        "PICKLESESSIONS_CACHE_ALIAS": getattr(settings, "PICKLESESSIONS_CACHE_ALIAS", None),
        "PICKLESESSIONS_SOFT_RECORD_SIZE": settings.PICKLESESSIONS_SOFT_RECORD_SIZE,
        "DATABASES": {
            "default": {
                name: db[name]
                for name in ("ENGINE", "NAME", "HOST", "PORT", "USER", "PASSWORD", "OPTIONS")
            }
        },
    }
    return subprocess.run(
        [sys.executable, "-m", "tests.ops.child", json.dumps(overrides), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
