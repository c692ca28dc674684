"""Settings of the real-server project, configured from the environment the test sets.

``REALSERVER_ENGINE`` is ``db``, ``file``, ``redis`` or ``cached_db``. For ``db`` and
``cached_db``, ``REALSERVER_DB`` is ``sqlite``
(``REALSERVER_DB_NAME`` is the path of a WAL-mode file), ``postgresql`` or ``mariadb``
(``REALSERVER_DB_NAME`` is a scratch database the test creates). For ``file``,
``REALSERVER_FILE_PATH`` is the sessions directory. ``redis`` and ``cached_db`` (whose cache is
a Django RedisCache, shared by the workers) keep their keys under ``REALSERVER_REDIS_PREFIX``.
"""

from __future__ import annotations

import os
from typing import Any

SECRET_KEY = "realserver-tests-only-not-a-secret-0123456789-abcdefghijklmnop"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "tests.real_server.urls"
WSGI_APPLICATION = "tests.real_server.wsgi.application"
INSTALLED_APPS = ["django.contrib.messages", "django_picklesessions"]
MIDDLEWARE = [
    "django_picklesessions.middleware.SessionMiddleware",  # the change check shared with save
    "django.contrib.messages.middleware.MessageMiddleware",
]
# Each add leaves an "Added …" message in the session: the default _messages merge keeps all.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REALSERVER_ENGINE = os.environ.get("REALSERVER_ENGINE", "db")
# Our db or file engine, logging its lost races (tests/real_server/engines.py).
SESSION_ENGINE = "tests.real_server.engines"
PICKLESESSIONS_FILE_PATH = os.environ.get("REALSERVER_FILE_PATH")
# The cart is {product_id: quantity}: concurrent changes add up instead of replacing each
# other. The ``seen_<client>`` keys have no policy: each is changed by one client only.
PICKLESESSIONS_CONFLICT_POLICIES = {"cart": "tests.merges.sum_counts"}

_DB = os.environ.get("REALSERVER_DB", "sqlite")
_NAME = os.environ.get("REALSERVER_DB_NAME", "")
_DATABASES: dict[str, dict[str, Any]] = {
    # A file, shared by the workers; the busy timeout covers writers waiting for each other.
    "sqlite": {"ENGINE": "django.db.backends.sqlite3", "NAME": _NAME, "OPTIONS": {"timeout": 20}},
    "postgresql": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": "127.0.0.1",
        "PORT": "5432",
        "NAME": _NAME,
        "USER": os.environ.get("PGUSER", "postgres"),
    },
    "mariadb": {
        "ENGINE": "django.db.backends.mysql",
        "HOST": "127.0.0.1",
        "PORT": "3306",
        "NAME": _NAME,
        "USER": "root",
        "PASSWORD": "",
        "OPTIONS": {"charset": "utf8mb4"},
    },
}
_USES_DB = REALSERVER_ENGINE in ("db", "cached_db")
DATABASES = {"default": _DATABASES[_DB]} if _USES_DB else {}
if _USES_DB and _DB == "mariadb":
    import pymysql  # type: ignore[import-untyped]

    pymysql.install_as_MySQLdb()

_REDIS_URL = os.environ.get("PICKLESESSIONS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
_REDIS_PREFIX = os.environ.get("REALSERVER_REDIS_PREFIX", "picklesessions-realserver:")
PICKLESESSIONS_REDIS_URL = _REDIS_URL
PICKLESESSIONS_REDIS_PREFIX = _REDIS_PREFIX
# The cache in a database of its own, as check W033 asks: its clear() is FLUSHDB.
_REDIS_CACHE_URL = os.environ.get("PICKLESESSIONS_TEST_REDIS_CACHE_URL", "redis://127.0.0.1:6379/1")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": _REDIS_CACHE_URL,
        "KEY_PREFIX": _REDIS_PREFIX + "cache",
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {
        "tests.real_server": {"handlers": ["stderr"], "level": "INFO"},
        "django": {"handlers": ["stderr"], "level": "WARNING"},
        "django_picklesessions": {"handlers": ["stderr"], "level": "WARNING"},
    },
}
