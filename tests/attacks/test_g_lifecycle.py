"""Group G: the session lifecycle (fixation, login, logout, expiry) and failures as seen by
a browser: nothing here may turn into an error page."""
# ruff: noqa: N802  (test names carry the catalogue's case ids, which are upper case)

from __future__ import annotations

import datetime
import os
import pickle
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import login
from django.contrib.auth.models import User
from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.exceptions import SessionInterrupted
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory
from django.utils import timezone

from django_picklesessions.backends.base import PickleSessionBase
from tests.attacks.audit import AuditGuard
from tests.attacks.kit import (
    CANARY_GADGET,
    OS_SYSTEM_GADGET,
    USER,
    load_under,
    plant,
    saved,
    store_class,
    stored,
    watched,
)
from tests.helpers import sign_raw

ENGINES = {
    "locmem": "django_picklesessions.backends.locmem",
    "file": "django_picklesessions.backends.file",
    "db": "django_picklesessions.backends.db",
    "redis": "django_picklesessions.backends.redis",
    "cached_db": "django_picklesessions.backends.cached_db",
}
ATTACKER_KEY = "attacker0planted0key0abcdefghij"


def later(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Move Django's clock, which the engines read, ``seconds`` ahead."""
    real = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real() + datetime.timedelta(seconds=seconds))


def record_count(engine: str, root: Path | None) -> int:
    if engine == "locmem":
        from django_picklesessions.backends import locmem

        return len(locmem._records)
    if engine == "file":
        assert root is not None
        return len([p for p in root.rglob("*") if p.is_file()]) if root.exists() else 0
    if engine == "redis":
        from django_picklesessions.backends import redis
        from django_picklesessions.conf import conf

        return len(list(redis.sync_client().scan_iter(match=conf.REDIS_PREFIX + "*")))
    from django_picklesessions.models import Session

    return Session.objects.count()


def test_G1_fixation(engine: str, settings: Any, audit: AuditGuard) -> None:
    settings.SESSION_ENGINE = ENGINES[engine]
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = ATTACKER_KEY
    with watched(audit):
        response = client.get("/set/theme/dark/")
    assert response.status_code == 200
    issued = response.cookies[settings.SESSION_COOKIE_NAME].value
    assert issued and issued != ATTACKER_KEY
    assert stored(engine, ATTACKER_KEY) is None
    assert store_class(engine)(issued)["theme"] == "dark"


@pytest.mark.django_db
def test_G2_login_rotates_the_key(engine: str, security_log: Any, unpickle_spy: Any) -> None:
    request = RequestFactory().get("/")
    request.session = store_class(engine)()
    request.session["cart"] = [1, 2]
    request.session.save()
    old = request.session.session_key
    assert old
    user = User.objects.create_user("shopper", password="not-used-here-0123456789")
    login(request, user)
    request.session.save()  # SessionMiddleware's part
    new = request.session.session_key
    assert new and new != old
    assert stored(engine, old) is None
    assert store_class(engine)(new)["cart"] == [1, 2]
    assert store_class(engine)(new)["_auth_user_id"] == str(user.pk)
    # The new record is bound to the new key: put back under the old one, it fails.
    moved = stored(engine, new)
    assert moved is not None
    plant(engine, old, moved)
    calls = unpickle_spy.calls
    assert dict(store_class(engine)(old).items()) == {}
    assert "(bad_mac)" in security_log()[-1].getMessage()
    assert unpickle_spy.calls == calls


def test_G3_logout_replay(engine: str, monkeypatch: pytest.MonkeyPatch, audit: AuditGuard) -> None:
    key = saved(engine, _auth_user_id="4")
    envelope = stored(engine, key)
    assert envelope is not None
    store_class(engine)(key).flush()  # what logout() does
    values, store = load_under(audit, engine, key)
    assert values == {} and store.session_key is None
    # A storage writer puts the old record back: it loads until its signed expiry. This is
    # the documented residual (SECURITY.md), asserted so that it cannot silently grow.
    plant(engine, key, envelope, expires_at=int(time.time()) + 10**6)
    assert store_class(engine)(key)["_auth_user_id"] == "4"
    later(monkeypatch, 14 * 24 * 3600 + 60)  # past SESSION_COOKIE_AGE
    values, store = load_under(audit, engine, key)
    assert values == {} and store.session_key is None


def test_G4_no_resurrection(engine: str, settings: Any) -> None:
    key = saved(engine, n=1)
    first = store_class(engine)(key)
    first["n"] = 2
    store_class(engine)(key).delete()  # logged out in another tab
    with pytest.raises(UpdateError):
        first.save()
    assert stored(engine, key) is None
    # Through the middleware, Django turns it into SessionInterrupted (a 400).
    settings.SESSION_ENGINE = ENGINES[engine]
    key = saved(engine, n=1)

    def view(request: HttpRequest) -> HttpResponse:
        request.session["n"] = 3
        store_class(engine)(key).delete()
        return HttpResponse("ok")

    request = RequestFactory().get("/")
    request.COOKIES[settings.SESSION_COOKIE_NAME] = key
    with pytest.raises(SessionInterrupted):
        SessionMiddleware(view)(request)
    assert stored(engine, key) is None


def test_G5_signed_expiry_and_future_issue_time(
    monkeypatch: pytest.MonkeyPatch, audit: AuditGuard, security_log: Any
) -> None:
    now = int(time.time())
    cases = {
        "expired": sign_raw(ATTACKER_KEY, {"a": USER}, issued_at=now - 99, expires_at=now - 1),
        "future": sign_raw(ATTACKER_KEY, {"a": USER}, issued_at=now + 3600, expires_at=now + 7200),
    }
    for reason, data in cases.items():
        plant("locmem", ATTACKER_KEY, data)
        values, _ = load_under(audit, "locmem", ATTACKER_KEY)
        assert values == {}
        assert f"({reason})" in security_log()[-1].getMessage()
    store = store_class("locmem")()
    store["a"] = 1
    store.set_expiry(60)
    store.save()
    key = store.session_key
    assert key and store_class("locmem")(key)["a"] == 1
    later(monkeypatch, 61)  # the clock jumps across the signed expiry
    values, _ = load_under(audit, "locmem", key)
    assert values == {}
    assert "(expired)" in security_log()[-1].getMessage()


def test_G6_no_records_on_read(engine: str, settings: Any, tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    store = store_class(engine)
    for _ in range(10_000 if engine in ("locmem", "file") else 2_000):
        session = store(secrets.token_hex(16))
        assert session.load() == {}
        assert not session.exists(session.session_key or "x")
    settings.SESSION_ENGINE = ENGINES[engine]
    client = Client()
    for _ in range(100):
        client.cookies[settings.SESSION_COOKIE_NAME] = secrets.token_hex(16)
        assert client.get("/auth/").content == b"None"
    assert record_count(engine, root) == 0


def _value_corpus() -> list[bytes]:
    """Values a key holder could plant (groups B and C), safe to load in default mode."""
    return [
        CANARY_GADGET,
        OS_SYSTEM_GADGET,
        b"cos\nsystem\n(S'true'\ntR.",
        b"\x80\x05\x97.",
        b"\x80\x05\x8c\x03fooQ.",
        b"\x80\x05\x82\xf0)R.",
        b"\x80\x05j\xff\xff\xff\x0f.",
        b"\x80\x05X\xff\xff\xff\xffabcd.",
        b"\x80\x05\x8b\xff\xff\xff\x7fabcd.",
        pickle.dumps([1], 5) + CANARY_GADGET,
        pickle.dumps([1], 2),
        b"\x80\x05.",
        b"\x80\x05(.",
    ]


def _record_corpus() -> list[bytes]:
    """Records a storage writer could plant (group A)."""
    genuine = sign_raw(ATTACKER_KEY, {"_auth_user_id": USER})
    return [
        OS_SYSTEM_GADGET,
        b"",
        b"\x89DPS",
        genuine[:-1],
        genuine[:-32] + bytes(32),
        genuine + b"\n",
        bytes(300 * 1024),
    ]


def test_G7_decode_never_raises(settings: Any, audit: AuditGuard) -> None:
    settings.SESSION_ENGINE = ENGINES["locmem"]
    planted = [sign_raw(ATTACKER_KEY, {"_auth_user_id": v, "cart": v}) for v in _value_corpus()]
    client = Client(raise_request_exception=False)
    for data in [*_record_corpus(), *planted]:
        for strict in (False, True):
            settings.PICKLESESSIONS_STRICT_UNPICKLING = strict
            plant("locmem", ATTACKER_KEY, data)
            client.cookies[settings.SESSION_COOKIE_NAME] = ATTACKER_KEY
            with watched(audit):
                responses = [client.get("/auth/"), client.get("/cart/")]
            assert [r.status_code for r in responses] == [200, 200], data[:40]
            assert responses[0].content == b"None"


def test_G7_file_attacks_through_the_middleware(
    file_engine: Path, settings: Any, tmp_path: Path, audit: AuditGuard
) -> None:
    settings.SESSION_ENGINE = ENGINES["file"]
    client = Client(raise_request_exception=False)
    for kind in ("symlink", "fifo", "directory", "mode"):
        key = saved("file", _auth_user_id="1")
        address = PickleSessionBase.address(key)
        path = file_engine / address[:2] / address
        if kind == "mode":
            os.chmod(path, 0o644)
        else:
            path.unlink()
            if kind == "symlink":
                path.symlink_to("/etc/passwd")
            elif kind == "fifo":
                os.mkfifo(path, 0o600)
            else:
                path.mkdir()
        client.cookies[settings.SESSION_COOKIE_NAME] = key
        with watched(audit):
            response = client.get("/auth/")
        assert (response.status_code, response.content) == (200, b"None")


UNSAVABLE = {
    # What the C unpickler accepts but our writer refuses: a read-only buffer, and nesting
    # deeper than the pickler's recursion limit.
    "readonly-buffer": pickle.dumps(bytearray(b"x"), 5)[:-1] + b"\x98.",
    "deep-nesting": b"\x80\x05" + b"]" * 5000 + b"a" * 4999 + b".",
}


@pytest.mark.parametrize("case", sorted(UNSAVABLE))
def test_G7_forged_value_the_writer_refuses_gives_200(case: str, settings: Any) -> None:
    settings.SESSION_ENGINE = ENGINES["locmem"]
    plant("locmem", ATTACKER_KEY, sign_raw(ATTACKER_KEY, {"cart": UNSAVABLE[case]}))
    client = Client(raise_request_exception=False)
    client.cookies[settings.SESSION_COOKIE_NAME] = ATTACKER_KEY
    assert client.get("/cart/").status_code == 200


@pytest.mark.parametrize("case", sorted(UNSAVABLE))
def test_G7_forged_value_the_writer_refuses_is_dropped_in_strict_mode(
    case: str, settings: Any
) -> None:
    settings.SESSION_ENGINE = ENGINES["locmem"]
    settings.PICKLESESSIONS_STRICT_UNPICKLING = True
    plant("locmem", ATTACKER_KEY, sign_raw(ATTACKER_KEY, {"cart": UNSAVABLE[case]}))
    client = Client(raise_request_exception=False)
    client.cookies[settings.SESSION_COOKIE_NAME] = ATTACKER_KEY
    response = client.get("/cart/")
    assert (response.status_code, response.content) == (200, b"none")
