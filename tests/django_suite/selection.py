"""Which of Django's session tests run against our engines, and why the others do not.

Every test method of ``sessions_tests/tests.py`` is accounted for here, checked by
``test_every_django_test_is_run_or_excluded``:

- ``RUN``: classes whose every test runs against every engine (subclassed per engine);
- ``BORROWED``: tests Django files under one of its own engines that test the contract any
  store must honour; they are copied onto every engine's class;
- ``EXCLUDED``: a class or ``Class.method`` name, with the reason it does not apply to a
  third-party store. ``docs/django-session-suite.md`` lists the same names.

A test that fails against our store because of a bug in our store is never excluded.
"""

from __future__ import annotations

#: Classes run whole, once per engine.
RUN: tuple[str, ...] = ("SessionTestsMixin", "SessionMiddlewareTests")

#: Contract tests that Django writes under one of its own engines: class -> method names.
BORROWED: dict[str, tuple[str, ...]] = {
    # Count records through the engine instead of Django's Session model.
    "DatabaseSessionTests": ("test_clearsessions_command", "test_aclear_expired"),
    "CacheSessionTests": ("test_load_overlong_key",),
    # They run on SessionBase() in Django; here on the engine's store.
    "SessionBaseTests": ("test_test_cookie", "test_atest_cookie", "test_is_empty", "test_bool"),
}

_STOCK_MODEL = "reads django.contrib.sessions' own Session model"
_NOT_IMPLEMENTED = "checks that SessionBase itself raises NotImplementedError"

#: Django tests that do not apply to a third-party store: name -> reason.
EXCLUDED: dict[str, str] = {
    # django.contrib.sessions.backends.db and its model.
    "DatabaseSessionTests.test_session_str": (
        f"{_STOCK_MODEL} (str(row) is the session key; our rows hold only its hash)"
    ),
    "DatabaseSessionTests.test_session_get_decoded": f"{_STOCK_MODEL} (Session.get_decoded)",
    "DatabaseSessionTests.test_sessionmanager_save": f"{_STOCK_MODEL} (SessionManager.save)",
    "DatabaseSessionWithTimeZoneTests": (
        "DatabaseSessionTests again under USE_TZ=True, which tests.settings always sets"
    ),
    "CustomDatabaseSessionTests": (
        "a custom model of the stock db engine (sessions_tests.models.CustomSession)"
    ),
    # django.contrib.sessions.backends.cached_db and .cache.
    "CacheDBSessionTests": (
        "the stock cached_db engine's cache (SESSION_CACHE_ALIAS, cache failures); its"
        " test_load_overlong_key is the same as CacheSessionTests', which is borrowed"
    ),
    "CacheDBSessionWithTimeZoneTests": "CacheDBSessionTests again under USE_TZ=True",
    "CacheSessionTests.test_default_cache": "the stock cache engine's cache_key in CACHES",
    "CacheSessionTests.test_non_default_cache": "the stock cache engine's SESSION_CACHE_ALIAS",
    "CacheSessionTests.test_create_and_save": "the stock cache engine's cache_key in CACHES",
    "CacheSessionTests.test_create_and_save_async": "the stock cache engine's cache_key",
    # django.contrib.sessions.backends.file.
    "FileSessionTests": (
        "the stock file engine's internals: SESSION_FILE_PATH, _storage_path, _key_to_file"
        " and its file naming (our file engine hashes keys and has its own setting)"
    ),
    "FileSessionPathLibTests": "FileSessionTests with a pathlib.Path SESSION_FILE_PATH",
    # django.contrib.sessions.backends.signed_cookies.
    "CookieSessionTests": "the stock signed-cookie engine and its JSON serializer",
    # The clearsessions command and SessionBase itself, not a store.
    "ClearSessionsCommandTests": (
        "clearsessions with an engine that lacks clear_expired (sessions_tests.no_clear_expired)"
    ),
    "SessionBaseTests.test_create": _NOT_IMPLEMENTED,
    "SessionBaseTests.test_acreate": _NOT_IMPLEMENTED,
    "SessionBaseTests.test_delete": _NOT_IMPLEMENTED,
    "SessionBaseTests.test_adelete": _NOT_IMPLEMENTED,
    "SessionBaseTests.test_exists": _NOT_IMPLEMENTED,
    "SessionBaseTests.test_aexists": _NOT_IMPLEMENTED,
    "SessionBaseTests.test_load": _NOT_IMPLEMENTED,
    "SessionBaseTests.test_aload": _NOT_IMPLEMENTED,
    "SessionBaseTests.test_save": _NOT_IMPLEMENTED,
    "SessionBaseTests.test_asave": _NOT_IMPLEMENTED,
}

#: Django's tests of its own engines, run with the bridge serializer as SESSION_SERIALIZER
#: (tests/django_suite/test_bridge_serializer.py).
BRIDGE_RUN: tuple[str, ...] = (
    "DatabaseSessionTests",
    "CacheDBSessionTests",
    "FileSessionTests",
    "FileSessionPathLibTests",
    "CookieSessionTests",
)

#: Tests of those classes that cannot apply with another serializer: name -> reason.
BRIDGE_EXCLUDED: dict[str, str] = {
    "CookieSessionTests.test_unpickling_exception": (
        "asserts that the store's serializer is Django's default JSONSerializer"
    ),
    "CacheDBSessionTests.test_cache_set_failure_non_fatal": (
        "needs cache.failing_cache from Django's own cache tests, which the harness does not"
        " fetch (only sessions_tests)"
    ),
    "CacheDBSessionTests.test_cache_async_set_failure_non_fatal": (
        "needs cache.failing_cache from Django's own cache tests, which the harness does not"
        " fetch (only sessions_tests)"
    ),
}
