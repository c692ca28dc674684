"""Group F: the db engine, on SQLite, PostgreSQL and MariaDB (run with ``-m db``)."""
# ruff: noqa: N802  (test names carry the catalogue's case ids, which are upper case)

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_picklesessions import record
from django_picklesessions.admin import describe
from django_picklesessions.backends.db import SessionStore
from django_picklesessions.exceptions import SessionTooLarge
from django_picklesessions.keys import get_keyring
from django_picklesessions.models import Session
from tests.attacks.audit import AuditGuard
from tests.attacks.kit import (
    CANARY_GADGET,
    OS_SYSTEM_GADGET,
    assert_record_rejected,
    load_under,
    plant,
    saved,
    stored,
    watched,
)
from tests.helpers import sign_raw

pytestmark = [pytest.mark.db, pytest.mark.django_db]

KEY = "db0attack0session0key0abcdefghi"


def forged_mac(session_key: str) -> bytes:
    genuine = sign_raw(session_key, {"_auth_user_id": CANARY_GADGET})
    return genuine[:-32] + bytes(32)


@pytest.mark.parametrize("payload", ["raw-pickle", "forged-mac"])
def test_F1_injection_through_every_reader(
    payload: str,
    audit: AuditGuard,
    security_log: Any,
    unpickle_spy: Any,
    settings: Any,
) -> None:
    data = OS_SYSTEM_GADGET if payload == "raw-pickle" else forged_mac(KEY)
    reason = "format" if payload == "raw-pickle" else "bad_mac"
    plant("db", KEY, data)
    assert_record_rejected(audit, "db", KEY, security_log, reason, unpickle_spy)
    # The admin's decoder goes through the same verification.
    with watched(audit):
        verified, rows = describe(SessionStore.address(KEY), data)
    assert verified is None and f"record refused ({reason})" in rows[0][1]
    # clearsessions decides from the expiry column: an expired gadget row goes unread.
    Session.objects.filter(address=SessionStore.address(KEY)).update(expires_at=0)
    settings.SESSION_ENGINE = "django_picklesessions.backends.db"
    call_command("clearsessions")  # warm up: its first run imports the command module
    plant("db", KEY, data, expires_at=0)
    with watched(audit):
        call_command("clearsessions")
    assert not Session.objects.filter(address=SessionStore.address(KEY)).exists()
    assert unpickle_spy.calls == 0


def test_F2_column_expiry_tampering(audit: AuditGuard, security_log: Any) -> None:
    now = int(time.time())
    plant(
        "db", KEY, sign_raw(KEY, {"a": b"\x80\x05K\x01."}, issued_at=now - 99, expires_at=now - 1)
    )
    Session.objects.filter(address=SessionStore.address(KEY)).update(expires_at=4102444800)
    values, _ = load_under(audit, "db", KEY)
    assert values == {}
    assert ["(expired)" in r.getMessage() for r in security_log()] == [True]
    # A valid row whose column says "expired" is skipped by the query: fail closed.
    valid = saved("db", a=1)
    Session.objects.filter(address=SessionStore.address(valid)).update(expires_at=now - 1)
    values, _ = load_under(audit, "db", valid)
    assert values == {}


def test_F3_no_raw_keys_at_rest(audit: AuditGuard) -> None:
    keys = [saved("db", _auth_user_id=str(n)) for n in range(50)]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {Session._meta.db_table}")
        dump = [
            b"|".join(
                b"" if c is None else str(c).encode() if isinstance(c, (str, int)) else bytes(c)
                for c in row
            )
            for row in cursor.fetchall()
        ]
    assert len(dump) == 50
    for key in keys:
        assert not [row for row in dump if key.encode() in row]
    # What a table reader holds cannot be used as a cookie.
    for address in Session.objects.values_list("address", flat=True)[:5]:
        values, store = load_under(audit, "db", address)
        assert values == {} and store.session_key is None


def test_F4_write_size_enforcement(
    settings: Any, security_log: Any, unpickle_spy: Any, audit: AuditGuard, monkeypatch: Any
) -> None:
    settings.PICKLESESSIONS_MAX_RECORD_SIZE = 4096
    settings.PICKLESESSIONS_COMPRESS_MIN_SIZE = None
    key = saved("db", a=1)
    before = stored("db", key)
    store = SessionStore(key)
    store["blob"] = "x" * 5000
    with pytest.raises(SessionTooLarge, match="'blob'"):
        store.save()
    assert stored("db", key) == before
    macs: list[object] = []
    get_keyring()  # derive the keys now (also HMACs): only record MACs are counted below
    monkeypatch.setattr(record.hmac, "digest", lambda *a: macs.append(a) or b"")
    plant("db", key, bytes(4097))
    assert_record_rejected(audit, "db", key, security_log, "size", unpickle_spy)
    assert macs == []


def test_F5_charset_round_trip() -> None:
    values = {"emoji": "😀", "nul": "\u0000", "astral": "\U0001f600\U00010348" * 2500}
    key = saved("db", **values)
    written = stored("db", key)
    assert dict(SessionStore(key).items()) == values
    # A binary column: the record comes back byte for byte, whatever the connection charset.
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT record FROM {Session._meta.db_table} WHERE address = %s",
            [SessionStore.address(key)],
        )
        assert bytes(cursor.fetchone()[0]) == written


def test_F8_lookup_uses_the_hash() -> None:
    key = saved("db", a=1)
    with CaptureQueriesContext(connection) as queries:
        assert SessionStore(key)["a"] == 1
        SessionStore(KEY).load()
    sql = " ".join(q["sql"] for q in queries)
    assert hashlib.sha256(key.encode()).hexdigest() in sql
    assert hashlib.sha256(KEY.encode()).hexdigest() in sql
    assert key not in sql and KEY not in sql
