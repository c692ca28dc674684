"""The legacy codec reads and writes exactly what Django's stock engines store."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.core import signing
from django.test import override_settings

from django_picklesessions.legacy import signing as legacy
from django_picklesessions.legacy.engines import LegacyEngineProblem
from tests.legacy import fixturetypes

MANIFEST = Path(__file__).parent / "fixtures" / "django42.json"
SALT = "django.contrib.sessions.SessionStore"
NOW = 1764547200.75


class StdlibPickle:
    """Django 4.2's PickleSerializer: pickle.dumps(obj, HIGHEST_PROTOCOL == 5)."""

    def dumps(self, obj: Any) -> bytes:
        return pickle.dumps(obj, 5)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)  # noqa: S301 - the test's own bytes


@pytest.mark.parametrize(
    "engine,salt",
    [
        ("django.contrib.sessions.backends.db", SALT),
        ("django.contrib.sessions.backends.file", SALT),
        ("django.contrib.sessions.backends.cache", SALT),
        ("django.contrib.sessions.backends.cached_db", SALT),
        (
            "django.contrib.sessions.backends.signed_cookies",
            "django.contrib.sessions.backends.signed_cookies",
        ),
        ("tests.legacy.custom_engine", "django.contrib.sessions.ShopSessionStore"),
    ],
)
def test_salt_for_each_engine(engine: str, salt: str) -> None:
    assert legacy.salt_for(engine) == salt


def test_salt_for_refuses_an_engine_of_ours() -> None:
    with pytest.raises(LegacyEngineProblem):
        legacy.salt_for("django_picklesessions.backends.db")


SESSIONS = [
    {"_auth_user_id": "1"},  # too short to be worth compressing
    {"_auth_user_id": "42", "note": "x" * 500, "visits": 3, "flags": [True, None]},
]


@pytest.mark.parametrize("session", SESSIONS)
@pytest.mark.parametrize("format", ["pickle", "json"])
def test_dumps_equals_django_signing(session: dict[str, Any], format: str) -> None:
    serializer = StdlibPickle if format == "pickle" else signing.JSONSerializer
    with mock.patch("time.time", return_value=NOW):
        stock = signing.dumps(session, salt=SALT, serializer=serializer, compress=True)
        ours = legacy.dumps(session, salt=SALT, format=format)
    assert ours == stock
    read = legacy.loads(ours, salt=SALT, formats={format})
    assert read == legacy.LegacySession(data=session, signed_at=int(NOW), format=format)


def test_dumps_names_a_key_json_cannot_hold() -> None:
    with pytest.raises(TypeError, match="Session key 'when' cannot be stored as JSON"):
        legacy.dumps({"ok": 1, "when": object()}, salt=SALT, format="json")


def test_loads_accepts_bytes() -> None:
    text = legacy.dumps({"a": 1}, salt=SALT, format="json")
    assert legacy.loads(text.encode(), salt=SALT, formats={"json"}).data == {"a": 1}


def golden_signed() -> list[dict[str, Any]]:
    records = json.loads(MANIFEST.read_text())["records"]
    return [r for r in records if r.get("db") or r.get("file") or r.get("cookie")]


@pytest.mark.parametrize(
    "record",
    golden_signed(),
    ids=lambda r: f"{r['engine']}-{r['serializer']}-{r['cache']}-{r['form']}",
)
@pytest.mark.parametrize("strict", [False, True], ids=["default", "strict"])
def test_reads_every_signed_golden_record(record: dict[str, Any], strict: bool) -> None:
    fx = json.loads(MANIFEST.read_text())
    text = (
        (record.get("db") or {}).get("session_data")
        or (record.get("file") or {}).get("content")
        or record["cookie"]
    )
    cookies = record["engine"] == "signed_cookies"
    salt = legacy.SIGNED_COOKIES_SALT if cookies else SALT
    with override_settings(
        SECRET_KEY=fx["secret_key"],
        PICKLESESSIONS_ALLOWED_CLASSES=fx["allowed_classes"],
        PICKLESESSIONS_STRICT_UNPICKLING=strict,
    ):
        session = legacy.loads(text, salt=salt, formats={"json", "pickle"})
    assert session.format == record["serializer"]
    assert session.signed_at == fx["signed_at"] == record["signed_at"]
    assert session.data == fixturetypes.decode(record["expected"])
    assert sorted(key for key, _ in session.dropped) == sorted(record["dropped"])
