"""One test per system check of the redis and cached_db engines (E030-E037, W030-W033)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.test import override_settings

REDIS = "django_picklesessions.backends.redis"
CACHED_DB = "django_picklesessions.backends.cached_db"


def found(check_id: str) -> list[str]:
    return [f"{m.msg} {m.hint}" for m in run_checks() if m.id == check_id]


def ours() -> list[str]:
    return [m.id for m in run_checks() if (m.id or "").startswith("django_picklesessions.")]


@pytest.mark.parametrize("engine", [REDIS, CACHED_DB, "tests.custom_sessions.store"])
def test_the_test_settings_pass_on_each_engine(engine: str) -> None:
    with override_settings(SESSION_ENGINE=engine):
        assert ours() == []


def test_settings_of_an_unused_engine_are_not_checked() -> None:
    with override_settings(PICKLESESSIONS_REDIS_URL=42, PICKLESESSIONS_CACHE_ALIAS="nope"):
        assert ours() == []


@override_settings(SESSION_ENGINE=REDIS)
def test_e030_redis_py_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis raises ImportError
    assert "pip install 'django-picklesessions[redis]'" in found("django_picklesessions.E030")[0]


@pytest.mark.parametrize("url", ["http://localhost", "127.0.0.1:6379", 6379, ""])
def test_e031_bad_url(url: object) -> None:
    with override_settings(SESSION_ENGINE=REDIS, PICKLESESSIONS_REDIS_URL=url):
        assert "REDIS_URL must be a redis://" in found("django_picklesessions.E031")[0]


@pytest.mark.parametrize(
    "options,text",
    [(["max_connections"], "must be a dict"), ({"decode_responses": True}, "records are binary")],
)
def test_e032_bad_options(options: object, text: str) -> None:
    with override_settings(SESSION_ENGINE=REDIS, PICKLESESSIONS_REDIS_OPTIONS=options):
        assert text in found("django_picklesessions.E032")[0]


@pytest.mark.parametrize(
    "sentinels,service,text",
    [
        ([("10.0.0.1", "26379")], "mymaster", "(host, port) pairs"),
        ([], "mymaster", "(host, port) pairs"),
        ([("10.0.0.1", 26379)], None, "go together"),
        (None, "mymaster", "go together"),
    ],
)
def test_e033_bad_sentinels(sentinels: object, service: object, text: str) -> None:
    with override_settings(
        SESSION_ENGINE=REDIS,
        PICKLESESSIONS_REDIS_SENTINELS=sentinels,
        PICKLESESSIONS_REDIS_SENTINEL_SERVICE=service,
    ):
        assert text in found("django_picklesessions.E033")[0]


@pytest.mark.parametrize(
    "extra,text",
    [
        ({"PICKLESESSIONS_REDIS_CLUSTER": "yes"}, "must be True or False"),
        ({"PICKLESESSIONS_REDIS_CLUSTER": True, "PICKLESESSIONS_REDIS_CACHE_ALIAS": "redis"}, ""),
    ],
)
def test_e034_bad_cluster_setting(extra: dict[str, object], text: str) -> None:
    with override_settings(SESSION_ENGINE=REDIS, **extra):
        assert text in found("django_picklesessions.E034")[0]


@pytest.mark.parametrize("alias", ["missing", "default"])
def test_e035_cache_alias_that_is_not_a_redis_cache(alias: str) -> None:
    with override_settings(SESSION_ENGINE=REDIS, PICKLESESSIONS_REDIS_CACHE_ALIAS=alias):
        assert "RedisCache" in found("django_picklesessions.E035")[0]


@pytest.mark.parametrize("prefix", ["", None, b"sessions:"])
def test_e036_bad_prefix(prefix: object) -> None:
    with override_settings(SESSION_ENGINE=REDIS, PICKLESESSIONS_REDIS_PREFIX=prefix):
        assert "non-empty str" in found("django_picklesessions.E036")[0]


@override_settings(
    SESSION_ENGINE=REDIS,
    PICKLESESSIONS_REDIS_CLUSTER=True,
    PICKLESESSIONS_REDIS_PREFIX="{sessions}:",
)
def test_w030_hash_tag_in_a_cluster_prefix() -> None:
    assert "one slot" in found("django_picklesessions.W030")[0]


def _redis_cache(location: str | list[str]) -> dict[str, object]:
    return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": location}


@pytest.mark.parametrize(
    "sessions_url,cache_location,alias,warned",
    [
        # The same database written two ways: localhost is 127.0.0.1, no number is /0.
        ("redis://localhost:6379", "redis://127.0.0.1:6379/0", None, True),
        ("redis://127.0.0.1:6379/0?db=0", ["redis://127.0.0.1/0", "redis://replica/0"], None, True),
        ("redis://127.0.0.1:6379/1", "redis://127.0.0.1:6379/0", None, False),
        ("redis://127.0.0.1:6380/0", "redis://127.0.0.1:6379/0", None, False),
        # Sessions through the default cache's own pool: it is the site's cache.
        ("redis://unused:1/5", "redis://127.0.0.1:6379/0", "default", True),
    ],
)
def test_w033_sessions_in_the_database_of_a_cache(
    sessions_url: str, cache_location: str | list[str], alias: str | None, warned: bool
) -> None:
    caches = {"default": _redis_cache(cache_location)}
    with override_settings(
        SESSION_ENGINE=REDIS,
        CACHES=caches,
        PICKLESESSIONS_REDIS_URL=sessions_url,
        PICKLESESSIONS_REDIS_CACHE_ALIAS=alias,
    ):
        messages = found("django_picklesessions.W033")
    assert bool(messages) is warned, messages
    if warned:
        assert "CACHES['default']" in messages[0] and "FLUSHDB" in messages[0]


def test_w033_not_for_an_entry_kept_for_the_sessions() -> None:
    """A CACHES entry only the sessions borrow a pool from is cleared by nobody."""
    caches = {
        "default": _redis_cache("redis://127.0.0.1:6379/0"),
        "sessions": _redis_cache("redis://127.0.0.1:6379/2"),
    }
    with override_settings(
        SESSION_ENGINE=REDIS, CACHES=caches, PICKLESESSIONS_REDIS_CACHE_ALIAS="sessions"
    ):
        assert found("django_picklesessions.W033") == []


@pytest.mark.parametrize(
    "extra,source",
    [
        ({"PICKLESESSIONS_CACHE_ALIAS": "nope"}, "PICKLESESSIONS_CACHE_ALIAS"),
        ({"SESSION_CACHE_ALIAS": "nope"}, "SESSION_CACHE_ALIAS"),
    ],
)
def test_e037_cache_alias_not_in_caches(extra: dict[str, str], source: str) -> None:
    with override_settings(SESSION_ENGINE=CACHED_DB, **extra):
        assert found("django_picklesessions.E037")[0].startswith(f"{source} is 'nope'")


@pytest.mark.parametrize(
    "backend",
    [
        "django.core.cache.backends.db.DatabaseCache",
        "django.core.cache.backends.filebased.FileBasedCache",
    ],
)
def test_w031_a_cache_that_unpickles_what_it_reads(backend: str, tmp_path: Path) -> None:
    # Django's own cache checks open the cache: the directory is this test's.
    caches = {"default": {"BACKEND": backend, "LOCATION": str(tmp_path / "cache")}}
    with override_settings(SESSION_ENGINE=CACHED_DB, CACHES=caches):
        assert "can run code" in found("django_picklesessions.W031")[0]


def test_w031_not_for_a_subclass_of_redis_cache() -> None:
    """The engine reads any RedisCache subclass as raw bytes (isinstance); so does the check."""
    caches = {
        "default": {
            "BACKEND": "tests.rediscache.PrefixClearingRedisCache",
            "LOCATION": "redis://127.0.0.1:6379/0",
        }
    }
    with override_settings(SESSION_ENGINE=CACHED_DB, CACHES=caches):
        assert found("django_picklesessions.W031") == []


def test_w032_a_dummy_cache() -> None:
    caches = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    with override_settings(SESSION_ENGINE=CACHED_DB, CACHES=caches):
        assert "DummyCache" in found("django_picklesessions.W032")[0]
