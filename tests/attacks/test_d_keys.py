"""Group D: keys and rotation, including an attacker who holds an old (fallback) key (A5)."""
# ruff: noqa: N802  (test names carry the catalogue's case ids, which are upper case)

from __future__ import annotations

import hashlib
import hmac
import sys
import time
from typing import Any

import pytest
from django.core.checks import Error, Warning
from django.test import RequestFactory, override_settings
from django.views.debug import ExceptionReporter

from django_picklesessions import record
from django_picklesessions.checks import check_signing_key_strength
from django_picklesessions.conf import conf
from django_picklesessions.exceptions import RecordError
from django_picklesessions.keys import Keyring, derive, get_keyring
from tests.attacks.audit import AuditGuard
from tests.attacks.kit import (
    CANARY_GADGET,
    assert_record_rejected,
    plant,
    saved,
    store_class,
    stored,
)
from tests.helpers import sign_raw

OLD = "old-key-for-the-rotation-attacks-0123456789-abcdefghijklmnopq"
NEW = "new-key-for-the-rotation-attacks-0123456789-rstuvwxyzABCDEFGH"
KEY = "rotation0session0key0abcdefghijk"


def verifies_with(data: bytes, session_key: str, secret: str) -> bool:
    """True if ``data`` verifies for ``session_key`` under ``secret`` and no other key."""
    only = derive(secret)
    try:
        record.decode(
            data,
            sid=record.session_id(session_key),
            now=int(time.time()),
            keyring=Keyring(current=only, by_id={only.key_id: only}),
            max_record_size=1 << 20,
            max_payload_size=1 << 20,
        )
    except RecordError:
        return False
    return True


def test_D1_fallback_accept_and_upgrade() -> None:
    with override_settings(SECRET_KEY=OLD, SECRET_KEY_FALLBACKS=[]):
        session_key = saved("locmem", _auth_user_id="5")
    with override_settings(SECRET_KEY=NEW, SECRET_KEY_FALLBACKS=[OLD]):
        store = store_class("locmem")(session_key)
        assert store["_auth_user_id"] == "5"
        store.save()  # verified with a fallback: re-signed even though nothing changed
        data = stored("locmem", session_key)
        assert data is not None
        assert verifies_with(data, session_key, NEW) and not verifies_with(data, session_key, OLD)
    with override_settings(SECRET_KEY=NEW, SECRET_KEY_FALLBACKS=[]):
        assert store_class("locmem")(session_key)["_auth_user_id"] == "5"


def test_D2_removed_fallback(audit: AuditGuard, security_log: Any, unpickle_spy: Any) -> None:
    with override_settings(SECRET_KEY=OLD, SECRET_KEY_FALLBACKS=[]):
        plant("locmem", KEY, sign_raw(KEY, {"_auth_user_id": CANARY_GADGET}))
        forged_id = sign_raw(KEY, {"_auth_user_id": CANARY_GADGET})
    with override_settings(SECRET_KEY=NEW, SECRET_KEY_FALLBACKS=[]):
        assert_record_rejected(audit, "locmem", KEY, security_log, "unknown_key", unpickle_spy)
        # The holder of the old key names the current key's id: the MAC still fails.
        current_id = get_keyring().current.key_id
        plant("locmem", KEY, forged_id[:6] + current_id + forged_id[10:])
        assert_record_rejected(audit, "locmem", KEY, security_log, "bad_mac", unpickle_spy)


@override_settings(SECRET_KEY=NEW, SECRET_KEY_FALLBACKS=[OLD, "x" * 50 + "another-old-key"])
def test_D3_never_sign_with_fallback() -> None:
    store_type = store_class("locmem")
    for n in range(100):
        store = store_type()
        store["n"] = n
        store.save()
        if n % 10 == 0:
            store.cycle_key()
        assert store.session_key
        data = stored("locmem", store.session_key)
        assert data is not None and verifies_with(data, store.session_key, NEW)


def test_D5_weak_and_default_keys(settings: Any) -> None:
    weak = [
        "x1y2z3" * 8 + "a",  # 49 characters
        "a" * 60,
        "django-insecure-" + "k3j4h5g6f7d8s9a0" * 3,
        # Apache Superset's published defaults (CVE-2023-27524), among others.
        "CHANGE_ME_TO_A_COMPLEX_RANDOM_SECRET",
        "\x02\x01thisismyscretkey\x01\x02\\e\\y\\y\\h",
        "thisISaSECRET_1234",
        "YOUR_OWN_RANDOM_GENERATED_SECRET_KEY",
        "TEST_NON_DEV_SECRET",
    ]
    for secret in weak:
        for debug, level in ((False, Error), (True, Warning)):
            with override_settings(PICKLESESSIONS_KEYS=[secret], DEBUG=debug):
                found = check_signing_key_strength()
                assert [type(m) for m in found] == [level], (secret, debug)


def _spec_mac(secret: bytes, session_key: str, signed: bytes) -> bytes:
    """``docs/format.md``'s MAC, computed from the page, not from the package."""
    mac_key = hmac.new(secret, b"django_picklesessions/v1/record-mac", hashlib.sha256).digest()
    sid = hashlib.sha256(session_key.encode()).digest()
    return hmac.new(mac_key, sid + signed, hashlib.sha256).digest()


KATS = [
    (
        "clé secrète — only for this known-answer test, 0123456789",
        "3f992ffb92a90d40b9bdded95f733066bbcc3d1186eb480ea995e3c402c42858",
        "3edbcf85",
        "bf27ba5f2154bdb50c067a868075997e91e92306d9e4d1888676bc5e27eab31b",
    ),
    (
        b"\xe7" * 32,
        "6822169d124b023a7adf9462c14ddee4907f193d4789b4676ff317349a1f0ab1",
        "b3094fcc",
        "dc6fb6ca28b7dd34364cf16727a3f1e846180fc539bb6bdbec19009d3cf00dd8",
    ),
]


@pytest.mark.parametrize("secret,mac_key,key_id,mac", KATS, ids=["non-ascii-str", "bytes"])
def test_D6_key_derivation_known_answers(
    secret: str | bytes, mac_key: str, key_id: str, mac: str
) -> None:
    key = derive(secret)
    assert (key.mac_key.hex(), key.key_id.hex()) == (mac_key, key_id)
    session_key = "kat0session0key0abcdefghijklmnop"
    data = record.encode(
        {"_auth_user_id": b"\x80\x05K\x07."},
        sid=record.session_id(session_key),
        issued_at=1767225600,
        expires_at=1768435200,
        version=3,
        keyring=Keyring(current=key, by_id={key.key_id: key}),
        max_record_size=1 << 20,
        max_payload_size=1 << 20,
        compress_min_size=None,
    )
    assert data[-32:].hex() == mac
    raw = secret.encode() if isinstance(secret, str) else secret
    assert _spec_mac(raw, session_key, data[:-32]).hex() == mac


def test_D7_runtime_settings_rotation(security_log: Any) -> None:
    with override_settings(SECRET_KEY=OLD, SECRET_KEY_FALLBACKS=[]):
        session_key = saved("locmem", _auth_user_id="9")
        assert store_class("locmem")(session_key)["_auth_user_id"] == "9"  # keyring cached
    with override_settings(SECRET_KEY=NEW, SECRET_KEY_FALLBACKS=[OLD]):
        assert store_class("locmem")(session_key)["_auth_user_id"] == "9"
    with override_settings(SECRET_KEY=NEW, SECRET_KEY_FALLBACKS=[]):
        assert dict(store_class("locmem")(session_key).items()) == {}
    with override_settings(PICKLESESSIONS_KEYS=[NEW, OLD]):
        assert store_class("locmem")(session_key)["_auth_user_id"] == "9"
    assert [("unknown_key" in r.getMessage()) for r in security_log()] == [True]


SECRET = "dedicated-session-secret-that-must-never-show-0123456789abcdef"


def test_D8_secret_masking() -> None:
    with override_settings(PICKLESESSIONS_KEYS=[SECRET], DEBUG=True):
        store = store_class("locmem")()
        store["a"] = 1
        store.save()
        mac_key = get_keyring().current.mac_key
        for shown in (repr(store), repr(get_keyring()), repr(conf), repr(get_keyring().current)):
            assert SECRET not in shown and mac_key.hex() not in shown and str(mac_key) not in shown
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            page = ExceptionReporter(RequestFactory().get("/"), *sys.exc_info())
            html = page.get_traceback_html()
    assert SECRET not in html
    assert "PICKLESESSIONS_KEYS" in html and "********************" in html


def test_D8_secret_masking_in_a_traceback_through_the_keyring() -> None:
    # A blank fallback (an unset environment variable) makes the keyring raise at runtime;
    # with DEBUG off, Django's reporter cleanses only frames marked sensitive.
    with override_settings(PICKLESESSIONS_KEYS=[SECRET, ""], DEBUG=False):
        try:
            get_keyring()
        except Exception:
            report = ExceptionReporter(RequestFactory().get("/"), *sys.exc_info(), is_email=True)
            html = report.get_traceback_html()
        else:
            raise AssertionError("an empty key must be refused")
    assert SECRET not in html
