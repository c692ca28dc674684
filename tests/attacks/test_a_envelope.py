"""Group A: the envelope and its MAC, attacked by someone who can write storage (A3)."""
# ruff: noqa: N802  (test names carry the catalogue's case ids, which are upper case)

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import inspect
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.sessions.backends.db import SessionStore as StockDbStore
from django.core import signing
from django.utils.crypto import salted_hmac

from django_picklesessions import record, unpickler
from django_picklesessions.backends import base
from django_picklesessions.keys import Keyring, derive, get_keyring
from tests.attacks.audit import AuditGuard
from tests.attacks.kit import (
    CANARY_GADGET,
    OS_SYSTEM_GADGET,
    PROTOCOL0_GADGET,
    assert_record_rejected,
    load_under,
    plant,
    saved,
    store_class,
    stored,
)
from tests.helpers import sign_raw

KEY = "attacker0chosen0key0abcdefghijkl"
LEAK = b"LEAKMARK"


def gadget_record(session_key: str = KEY, **extra: bytes) -> bytes:
    """A record signed with the real key whose values are the canary gadget."""
    return sign_raw(session_key, {"_auth_user_id": CANARY_GADGET, **extra})


def with_mac(data: bytes, mac: bytes) -> bytes:
    return data[: -record.MAC_SIZE] + mac


def resigned(data: bytes, session_key: str = KEY, keyring: Keyring | None = None) -> bytes:
    """Recompute the MAC over (possibly edited) header and payload with the real key."""
    key = (keyring or get_keyring()).current
    body = data[: -record.MAC_SIZE]
    mac = hmac.digest(key.mac_key, record.session_id(session_key) + body, "sha256")
    return body + mac


@pytest.mark.parametrize(
    "raw", [PROTOCOL0_GADGET, CANARY_GADGET, OS_SYSTEM_GADGET], ids=["proto0", "canary", "system"]
)
def test_A1_unsigned_raw_pickle(
    engine: str, raw: bytes, audit: AuditGuard, security_log: Any, unpickle_spy: Any
) -> None:
    plant(engine, KEY, raw)
    assert_record_rejected(audit, engine, KEY, security_log, "format", unpickle_spy)


@pytest.mark.parametrize("forgery", ["random", "zeros", "wrong-key", "unknown-key-id"])
def test_A2_forged_mac(
    engine: str, forgery: str, audit: AuditGuard, security_log: Any, unpickle_spy: Any
) -> None:
    genuine = gadget_record()
    stranger = derive("a key the attacker made up, long and varied enough: 0123456789abcdef")
    if forgery == "random":
        data, reason = with_mac(genuine, os.urandom(32)), "bad_mac"
    elif forgery == "zeros":
        data, reason = with_mac(genuine, bytes(32)), "bad_mac"
    elif forgery == "wrong-key":
        # The real key id in the header, a MAC computed with another key.
        impostor = type(stranger)(get_keyring().current.key_id, stranger.mac_key, 0)
        data = resigned(genuine, keyring=Keyring(current=impostor, by_id={}))
        reason = "bad_mac"
    else:
        data = sign_raw(KEY, {"x": CANARY_GADGET}, keyring=Keyring(stranger, {}))
        reason = "unknown_key"
    plant(engine, KEY, data)
    assert_record_rejected(audit, engine, KEY, security_log, reason, unpickle_spy)


def test_A3_tamper_transforms_and_every_bit_flip(
    audit: AuditGuard, security_log: Any, unpickle_spy: Any
) -> None:
    genuine = saved("locmem", _auth_user_id="7", cart=[1, 2, 3], flag=True)
    data = stored("locmem", genuine)
    assert data is not None
    # Django's signing-test transforms, translated to a binary record.
    variants = [
        data.upper(),
        data.lower(),
        data + b"x",
        b"\x00" + data[1:],
        data.replace(b"\x00", b""),  # the closest thing to removing separators
        data[: record.HEADER.size] + data[-record.MAC_SIZE :],
    ]
    variants += [
        data[:i] + bytes([data[i] ^ (1 << bit)]) + data[i + 1 :]
        for i in range(len(data))
        for bit in range(8)
    ]
    store = store_class("locmem")
    before = len(security_log())
    with audit:
        for variant in variants:
            assert variant != data
            plant("locmem", genuine, variant)
            session = store(genuine)
            assert dict(session.items()) == {}
            assert session.session_key is None
    audit.assert_clean()
    assert len(security_log()) - before == len(variants)
    assert unpickle_spy.calls == 0
    plant("locmem", genuine, data)
    assert dict(store(genuine).items()) == {"_auth_user_id": "7", "cart": [1, 2, 3], "flag": True}


def test_A4_truncation_sweep(
    audit: AuditGuard, security_log: Any, unpickle_spy: Any, settings: Any
) -> None:
    # Incompressible, so the record is over 64 KiB: MySQL's TEXT would cut it at 65535.
    settings.PICKLESESSIONS_COMPRESS_MIN_SIZE = None
    big = saved("locmem", _auth_user_id="7", blob=os.urandom(100_000))
    small = saved("locmem", _auth_user_id="7")
    big_data, small_data = stored("locmem", big), stored("locmem", small)
    assert big_data is not None and small_data is not None and len(big_data) > 65535
    cuts = [(big, big_data[:65535]), (big, big_data[:-1])]
    cuts += [(small, small_data[:length]) for length in range(len(small_data))]
    store = store_class("locmem")
    before = len(security_log())
    with audit:
        for session_key, cut in cuts:
            plant("locmem", session_key, cut)
            assert dict(store(session_key).items()) == {}
    audit.assert_clean()
    assert len(security_log()) - before == len(cuts)
    assert unpickle_spy.calls == 0


def test_A5_cross_session_swap(
    engine: str, audit: AuditGuard, security_log: Any, unpickle_spy: Any
) -> None:
    victim = saved(engine, _auth_user_id="1", is_admin=True)
    attacker = saved(engine, _auth_user_id="666")
    victim_record = stored(engine, victim)
    assert victim_record is not None
    plant(engine, attacker, victim_record)
    assert_record_rejected(audit, engine, attacker, security_log, "bad_mac", unpickle_spy)
    assert dict(store_class(engine)(victim).items()) == {"_auth_user_id": "1", "is_admin": True}


@pytest.mark.db
@pytest.mark.django_db
def test_A5_swap_between_file_and_db(
    file_engine: Path, audit: AuditGuard, security_log: Any, unpickle_spy: Any
) -> None:
    on_file = saved("file", _auth_user_id="1")
    in_db = saved("db", _auth_user_id="2")
    file_record, db_record = stored("file", on_file), stored("db", in_db)
    assert file_record is not None and db_record is not None
    attacker_file = saved("file", _auth_user_id="666")
    attacker_db = saved("db", _auth_user_id="667")
    plant("db", attacker_db, file_record)
    plant("file", attacker_file, db_record)
    assert_record_rejected(audit, "db", attacker_db, security_log, "bad_mac", unpickle_spy)
    assert_record_rejected(audit, "file", attacker_file, security_log, "bad_mac", unpickle_spy)
    # The same session key in the other engine is the same session: that record does load.
    plant("db", on_file, file_record)
    assert dict(store_class("db")(on_file).items()) == {"_auth_user_id": "1"}


def test_A6_cross_purpose_signatures(
    audit: AuditGuard, security_log: Any, unpickle_spy: Any
) -> None:
    payload = {"_auth_user_id": "1"}
    foreign = [
        signing.dumps(payload),
        signing.dumps(payload, salt="django.contrib.sessions.backends.db.SessionStore"),
        signing.Signer().sign("1"),
        signing.get_cookie_signer(salt="sessionid").sign("1"),
        StockDbStore(KEY).encode(payload),
    ]
    for value in foreign:
        plant("locmem", KEY, value.encode())
        assert_record_rejected(audit, "locmem", KEY, security_log, "format", unpickle_spy)


def _legacy_django_record() -> bytes:
    """Django's pre-3.1 session encoding, with a correct legacy hash: base64(hash:pickle)."""
    serialized = CANARY_GADGET
    digest = salted_hmac("django.contrib.sessionsSessionStore", serialized, algorithm="sha1")
    digest_hex = digest.hexdigest()
    return base64.b64encode(digest_hex.encode() + b":" + serialized)


@pytest.mark.parametrize(
    "downgrade",
    ["format-0", "format-2", "magic-dps0", "magic-dps2", "sha1-mac", "no-mac", "none", "legacy"],
)
def test_A7_version_and_algorithm_downgrade(
    downgrade: str, audit: AuditGuard, security_log: Any, unpickle_spy: Any
) -> None:
    genuine = gadget_record()
    body = genuine[: -record.MAC_SIZE]
    if downgrade.startswith("format-"):
        edited = body[:4] + bytes([int(downgrade[-1])]) + body[5:] + bytes(32)
        data = resigned(edited)  # a correct MAC: the version byte alone must refuse it
    elif downgrade.startswith("magic-"):
        data = resigned(downgrade[-4:].encode() + b"." + body[5:] + bytes(32))
    elif downgrade == "sha1-mac":
        mac_key = get_keyring().current.mac_key
        data = body + hmac.digest(mac_key, record.session_id(KEY) + body, "sha1")
    elif downgrade == "no-mac":
        data = body
    elif downgrade == "none":
        data = body + b"none"
    else:
        data = _legacy_django_record()
    plant("locmem", KEY, data)
    assert_record_rejected(audit, "locmem", KEY, security_log, "format", unpickle_spy)


@pytest.mark.parametrize(
    "encoding", ["bom", "newline", "padding", "nul", "space", "base64", "urlsafe-base64"]
)
def test_A8_non_canonical_encoding(
    encoding: str, audit: AuditGuard, security_log: Any, unpickle_spy: Any
) -> None:
    genuine = gadget_record()
    data = {
        "bom": b"\xef\xbb\xbf" + genuine,
        "newline": genuine + b"\n",
        "padding": genuine + b"==",
        "nul": genuine + b"\x00",
        "space": b" " + genuine,
        "base64": base64.b64encode(genuine),
        "urlsafe-base64": base64.urlsafe_b64encode(genuine).rstrip(b"="),
    }[encoding]
    plant("locmem", KEY, data)
    assert_record_rejected(audit, "locmem", KEY, security_log, "format", unpickle_spy)


def test_A8_record_read_back_as_text_is_rejected(security_log: Any, unpickle_spy: Any) -> None:
    # A text column would hand the record back as str: never decoded, never unpickled.
    store = store_class("locmem")(KEY)
    assert store.decode(gadget_record().decode("latin-1")) == {}
    assert "(format)" in security_log()[-1].getMessage()
    assert unpickle_spy.calls == 0


def test_A9_constant_time_compare(monkeypatch: pytest.MonkeyPatch, security_log: Any) -> None:
    calls: list[tuple[type, int, type, int]] = []
    real = record.hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((type(a), len(a), type(b), len(b)))
        return real(a, b)

    monkeypatch.setattr(record.hmac, "compare_digest", spy)
    session_key = saved("locmem", _auth_user_id="3")
    genuine = stored("locmem", session_key)
    assert genuine is not None
    for data in (genuine, with_mac(genuine, bytes(32)), with_mac(genuine, genuine[-32:][::-1])):
        plant("locmem", session_key, data)
        dict(store_class("locmem")(session_key).items())
    assert calls == [(bytes, 32, bytes, 32)] * 3


def test_A9_no_mac_is_compared_with_equality() -> None:
    # Lint: in the record module no ==/!= has an operand named like a MAC or digest.
    tree = ast.parse(inspect.getsource(record))
    suspects = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(
            isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops
        ):
            names = {
                sub.id if isinstance(sub, ast.Name) else sub.attr
                for sub in ast.walk(node)
                if isinstance(sub, (ast.Name, ast.Attribute))
            }
            if any(("mac" in n.lower() and n != "MAC_SIZE") or "digest" in n for n in names):
                suspects.append(ast.unparse(node))
    assert suspects == []


def test_A10_no_payload_leak_on_failure(
    caplog: pytest.LogCaptureFixture, audit: AuditGuard, unpickle_spy: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    genuine = sign_raw(KEY, {"_auth_user_id": b"\x80\x05\x8c\x08LEAKMARK\x94."})
    assert LEAK in genuine
    tampered = genuine[:-1] + bytes([genuine[-1] ^ 1])
    plant("locmem", KEY, tampered)
    values, _ = load_under(audit, "locmem", KEY)
    assert values == {}
    for entry in caplog.records:
        shown = f"{entry.getMessage()} {entry.args!r} {entry.exc_text} {entry.__dict__!r}"
        assert "LEAKMARK" not in shown and "4c45414b4d41524b" not in shown.lower()
    with pytest.raises(record.RecordError) as info:
        record.decode(
            tampered,
            sid=record.session_id(KEY),
            now=int(time.time()),
            keyring=get_keyring(),
            max_record_size=1 << 20,
            max_payload_size=1 << 20,
        )
    assert "LEAKMARK" not in repr(info.value) and LEAK not in repr(info.value.args).encode()
    assert unpickle_spy.calls == 0
    # No public function hands out what failed verification.
    for module in (record, unpickler, base):
        names = [name for name in vars(module) if not name.startswith("_")]
        assert not [n for n in names if "unsafe" in n.lower() or "unverified" in n.lower()]


def test_A10_mac_key_is_never_exposed() -> None:
    key = get_keyring().current
    assert key.mac_key.hex() not in repr(get_keyring())
    assert hashlib.sha256(key.mac_key).hexdigest() not in repr(key)
