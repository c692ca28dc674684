"""One test per system check of the upgrade path (W010, W011, E010–E015, W012–W014)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_picklesessions.conf import conf
from tests.test_checks import ids, messages

DB = "django.contrib.sessions.backends.db"
CACHE = "django.contrib.sessions.backends.cache"
COOKIES = "django.contrib.sessions.backends.signed_cookies"
BRIDGE = "django_picklesessions.serializers.PickleSerializer"
OURS = "django_picklesessions.backends.db"


def test_legacy_settings_that_work_pass() -> None:
    with override_settings(
        SESSION_ENGINE=OURS,
        PICKLESESSIONS_LEGACY_ENGINE=DB,
        PICKLESESSIONS_LEGACY_FORMATS=["pickle", "json"],
        PICKLESESSIONS_LEGACY_WRITE=True,
        PICKLESESSIONS_LEGACY_UNTIL="2999-12-31",
    ):
        assert ids() == []
        assert conf.LEGACY_ACTIVE
        assert {"pickle", "json"} == conf.LEGACY_FORMATS
        assert datetime.date(2999, 12, 31) == conf.LEGACY_UNTIL
    with override_settings(
        SESSION_ENGINE=OURS, PICKLESESSIONS_LEGACY_ENGINE="tests.legacy.custom_engine"
    ):
        assert ids() == []


@pytest.mark.parametrize(
    "serializer,text",
    [
        ("django.contrib.sessions.serializers.PickleSerializer", "removed in Django 5.0"),
        ("django.core.serializers.base.PickleSerializer", "removed in Django 5.0"),
        ("tests.nowhere.Serializer", "cannot be imported"),
    ],
)
@pytest.mark.parametrize("engine", [OURS, DB])
def test_w010_session_serializer_removed_or_missing(
    serializer: str, text: str, engine: str
) -> None:
    with override_settings(SESSION_SERIALIZER=serializer, SESSION_ENGINE=engine):
        assert ids() == ["django_picklesessions.W010"]
        found = messages("django_picklesessions.W010")[0]
        assert text in found
        assert BRIDGE in found
        if engine == OURS:
            assert "Delete the setting" in found


def test_w011_bridge_serializer_with_the_stock_cache_engine() -> None:
    with override_settings(SESSION_SERIALIZER=BRIDGE, SESSION_ENGINE=CACHE):
        assert "django_picklesessions.W011" in ids()
        assert "unsigned" in messages("django_picklesessions.W011")[0]
    with override_settings(SESSION_SERIALIZER=BRIDGE, SESSION_ENGINE=DB):
        assert "django_picklesessions.W011" not in ids()


@pytest.mark.parametrize(
    "engine,text",
    [
        ("tests.nowhere", "cannot be imported"),
        ("tests.cart", "has no SessionStore"),
        (OURS, "not one of Django's stock engines"),
        ("django.contrib.sessions.backends.base", "has no SessionStore"),
    ],
)
def test_e010_legacy_engine_unusable(engine: str, text: str) -> None:
    with override_settings(SESSION_ENGINE=OURS, PICKLESESSIONS_LEGACY_ENGINE=engine):
        assert ids() == ["django_picklesessions.E010"]
        assert text in messages("django_picklesessions.E010")[0]


@pytest.mark.parametrize("formats", ["json", ["json", "msgpack"], [], None])
def test_e011_legacy_formats_unknown(formats: object) -> None:
    with override_settings(
        SESSION_ENGINE=OURS, PICKLESESSIONS_LEGACY_ENGINE=DB, PICKLESESSIONS_LEGACY_FORMATS=formats
    ):
        assert ids() == ["django_picklesessions.E011"]
        with pytest.raises(ImproperlyConfigured, match="LEGACY_FORMATS"):
            assert conf.LEGACY_FORMATS is None


@pytest.mark.parametrize(
    "engine,write,text",
    [
        (COOKIES, True, "signed_cookies"),
        (None, True, "LEGACY_ENGINE is not set"),
        (DB, "yes", "True or False"),
    ],
)
def test_e012_legacy_write_impossible(engine: str | None, write: object, text: str) -> None:
    with override_settings(
        SESSION_ENGINE=OURS, PICKLESESSIONS_LEGACY_ENGINE=engine, PICKLESESSIONS_LEGACY_WRITE=write
    ):
        assert ids() == ["django_picklesessions.E012"]
        assert text in messages("django_picklesessions.E012")[0]


@pytest.mark.parametrize(
    "until", ["31/03/2027", "2027-02-30", 20270331, datetime.datetime(2027, 3, 31, 12, 0)]
)
def test_e013_legacy_until_malformed(until: object) -> None:
    with override_settings(
        SESSION_ENGINE=OURS, PICKLESESSIONS_LEGACY_ENGINE=DB, PICKLESESSIONS_LEGACY_UNTIL=until
    ):
        assert ids() == ["django_picklesessions.E013"]
        with pytest.raises(ImproperlyConfigured, match="LEGACY_UNTIL"):
            assert conf.LEGACY_UNTIL is None


@pytest.mark.parametrize("engine", [DB, "django.contrib.sessions.backends.cached_db"])
def test_e014_db_source_without_contrib_sessions(engine: str, settings: Any) -> None:
    apps = [app for app in settings.INSTALLED_APPS if app != "django.contrib.sessions"]
    with override_settings(
        INSTALLED_APPS=apps, SESSION_ENGINE=OURS, PICKLESESSIONS_LEGACY_ENGINE=engine
    ):
        assert ids() == ["django_picklesessions.E014"]
        assert "INSTALLED_APPS" in messages("django_picklesessions.E014")[0]


def test_e015_cache_source_with_a_foreign_cache_backend() -> None:
    foreign = {"default": {"BACKEND": "tests.legacy.custom_cache.FancyCache"}}
    builtin = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with override_settings(SESSION_ENGINE=OURS, PICKLESESSIONS_LEGACY_ENGINE=CACHE, CACHES=foreign):
        assert ids() == ["django_picklesessions.E015"]
        assert "tests.legacy.custom_cache.FancyCache" in messages("django_picklesessions.E015")[0]
    with override_settings(SESSION_ENGINE=OURS, PICKLESESSIONS_LEGACY_ENGINE=CACHE, CACHES=builtin):
        assert ids() == []


def test_w012_legacy_until_passed() -> None:
    with override_settings(
        SESSION_ENGINE=OURS,
        PICKLESESSIONS_LEGACY_ENGINE=DB,
        PICKLESESSIONS_LEGACY_UNTIL=datetime.date(2020, 1, 31),
    ):
        assert ids() == ["django_picklesessions.W012"]
        assert "Remove the PICKLESESSIONS_LEGACY_*" in messages("django_picklesessions.W012")[0]
        assert not conf.LEGACY_ACTIVE


def test_w013_legacy_settings_without_legacy_engine() -> None:
    with override_settings(PICKLESESSIONS_LEGACY_FORMATS=["pickle"]):
        assert ids() == ["django_picklesessions.W013"]
        assert not conf.LEGACY_ACTIVE


def test_w014_legacy_engine_with_a_stock_session_engine() -> None:
    with override_settings(SESSION_ENGINE=DB, PICKLESESSIONS_LEGACY_ENGINE=DB):
        assert ids() == ["django_picklesessions.W014"]
