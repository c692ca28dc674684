"""The bridge serializer on Django's stock engines: Django 4.2's pickle bytes, restricted."""

from __future__ import annotations

import datetime as dt
import json
import os
import pickle
from collections.abc import Iterator
from decimal import Decimal
from importlib import import_module
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.models import Session
from django.core import signing
from django.test import override_settings
from django.utils import timezone

from django_picklesessions.serializers import PickleSerializer
from tests.cart import Cart, LineItem
from tests.legacy import fixturetypes

BRIDGE = "django_picklesessions.serializers.PickleSerializer"
STOCK = "django.contrib.sessions.backends."
SALT = "django.contrib.sessions.SessionStore"
MANIFEST = Path(__file__).parent / "fixtures" / "django42.json"
UTC = dt.timezone.utc


class StdlibPickle:
    """What Django 4.2's PickleSerializer is: pickle.dumps(obj, HIGHEST_PROTOCOL == 5)."""

    def dumps(self, obj: Any) -> bytes:
        return pickle.dumps(obj, 5)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)  # noqa: S301 - the test's own bytes, the stock reader


def rich_session() -> dict[str, Any]:
    added = dt.datetime(2025, 11, 30, 18, 0, tzinfo=UTC)
    return {
        "_auth_user_id": "42",
        "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
        "_auth_user_hash": "a" * 64,
        "cart": Cart([LineItem(1, "Tea", Decimal("4.50"), 2, added)], {"WINTER"}),
        "price": Decimal("19.90"),
        "tags": {"new", "sale"},
        "history": [1, 2.5, "three", None, True, (4, 5)],
    }


def assert_same(loaded: Any, expected: dict[str, Any]) -> None:
    assert dict(loaded) == expected
    for key, value in expected.items():
        assert type(loaded[key]) is type(value), key


@pytest.fixture
def file_path(tmp_path: Path) -> Iterator[str]:
    from django.contrib.sessions.backends.file import SessionStore as FileStore

    path = tmp_path / "stock-sessions"
    path.mkdir()
    # The stock file engine caches its directory on the class.
    forget = lambda: "_storage_path" in vars(FileStore) and delattr(FileStore, "_storage_path")  # noqa: E731
    forget()
    with override_settings(SESSION_FILE_PATH=str(path)):
        yield str(path)
    forget()


def store(engine: str) -> type[SessionBase]:
    cls: type[SessionBase] = import_module(STOCK + engine).SessionStore
    return cls


ENGINES = ["db", "file", "cached_db", "signed_cookies"]


# --- Bytes -------------------------------------------------------------------------------


def test_dumps_is_the_stock_pickle_of_the_whole_dict() -> None:
    session = rich_session()
    assert PickleSerializer().dumps(session) == pickle.dumps(session, 5)


def test_signed_string_equals_django_42s() -> None:
    # The stored text is Django's signing of our bytes: equal to PickleSerializer's.
    session = rich_session()
    with mock.patch("time.time", return_value=1764547200.25):
        ours = signing.dumps(session, salt=SALT, serializer=PickleSerializer, compress=True)
        stock = signing.dumps(session, salt=SALT, serializer=StdlibPickle, compress=True)
    assert ours == stock
    assert signing.loads(stock, salt=SALT, serializer=PickleSerializer) == session


def test_dumps_refuses_what_the_reader_would_refuse() -> None:
    session = {"_auth_user_id": "1", "when": timezone.now(), "user": object()}
    with pytest.raises(TypeError) as caught:
        PickleSerializer().dumps(session)
    message = str(caught.value)
    assert "Session key 'user'" in message
    assert "builtins.object" in message
    assert "PICKLESESSIONS_ALLOWED_CLASSES" in message


def test_loads_reads_json_bytes() -> None:
    data = signing.JSONSerializer().dumps({"_auth_user_id": "1", "visits": 3})
    assert PickleSerializer().loads(data) == {"_auth_user_id": "1", "visits": 3}


def test_loads_salvages_and_keeps_the_login(caplog: pytest.LogCaptureFixture) -> None:
    from django.utils.translation import gettext_lazy

    session = {**rich_session(), "greeting": gettext_lazy("Hello"), "odd": Session()}
    kept = PickleSerializer().loads(pickle.dumps(session, 5))
    assert_same(kept, rich_session())
    warnings = [r.getMessage() for r in caplog.records if r.name == "django_picklesessions.legacy"]
    assert len(warnings) == 2
    assert any("'greeting'" in w and "_lazy_proxy_unpickle" in w for w in warnings)
    assert any("'odd'" in w and "model_unpickle" in w for w in warnings)


# --- Round trips on each stock engine ------------------------------------------------------


@pytest.mark.db
@pytest.mark.django_db
@pytest.mark.parametrize("engine", ENGINES)
def test_round_trip_on_each_stock_engine(engine: str, file_path: str) -> None:
    with override_settings(SESSION_ENGINE=STOCK + engine, SESSION_SERIALIZER=BRIDGE):
        first = store(engine)()
        first.update(rich_session())
        first.save()
        again = store(engine)(first.session_key)
        assert_same(again, rich_session())
        again["visits"] = 2
        again.save()
        assert store(engine)(again.session_key)["visits"] == 2
    if engine == "file":
        assert os.listdir(file_path) == ["sessionid" + first.session_key]


@pytest.mark.db
@pytest.mark.django_db
def test_db_row_is_what_django_42_would_have_written() -> None:
    session = rich_session()
    with (
        override_settings(SESSION_ENGINE=STOCK + "db", SESSION_SERIALIZER=BRIDGE),
        mock.patch("time.time", return_value=1764547200.0),
    ):
        written = store("db")()
        written.update(session)
        written.save()
        stock = signing.dumps(session, salt=SALT, serializer=StdlibPickle, compress=True)
    assert Session.objects.get(session_key=written.session_key).session_data == stock


# --- Golden records written by real Django 4.2 --------------------------------------------


def golden() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(MANIFEST.read_text())
    return data


def golden_records() -> list[dict[str, Any]]:
    return [r for r in golden()["records"] if r["engine"] in ENGINES]


def plant(record: dict[str, Any], file_path: str) -> str:
    """Put a golden record where its stock engine reads it; return the key to load."""
    key: str = record["session_key"]
    engine = record["engine"]
    if engine in ("db", "cached_db"):
        Session.objects.create(
            session_key=key,
            session_data=record["db"]["session_data"],
            expire_date=dt.datetime.fromtimestamp(record["db"]["expire_date"], UTC),
        )
    elif engine == "file":
        path = os.path.join(file_path, "sessionid" + key)
        Path(path).write_text(record["file"]["content"])
    return key


@pytest.mark.db
@pytest.mark.django_db
@pytest.mark.parametrize(
    "record",
    golden_records(),
    ids=lambda r: f"{r['engine']}-{r['serializer']}-{r['form']}",
)
def test_golden_django_42_records_read_through_the_bridge(
    record: dict[str, Any], file_path: str, security_log: Any
) -> None:
    fx = golden()
    with override_settings(
        SECRET_KEY=fx["secret_key"],
        SESSION_COOKIE_AGE=fx["session_cookie_age"],
        SESSION_ENGINE=STOCK + record["engine"],
        SESSION_SERIALIZER=BRIDGE,
        PICKLESESSIONS_ALLOWED_CLASSES=fx["allowed_classes"],
    ):
        key = plant(record, file_path)
        loaded = store(record["engine"])(key)
        assert_same(loaded, fixturetypes.decode(record["expected"]))
        assert loaded.get("_auth_user_id") == str(fx["user"]["id"])
        # Written back, 4.2's own PickleSerializer (the stdlib pickle) reads it.
        loaded["visits"] = 99
        loaded.save()
        if record["engine"] == "db":
            text = Session.objects.get(session_key=key).session_data
            assert signing.loads(text, salt=SALT, serializer=StdlibPickle)["visits"] == 99
    assert security_log() == []


def test_every_stock_engine_and_format_has_golden_records() -> None:
    cells = {(r["engine"], r["serializer"]) for r in golden_records()}
    assert cells == {(e, s) for e in ENGINES for s in ("pickle", "json")}
