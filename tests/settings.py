"""Settings for the test suite.

``PICKLESESSIONS_TEST_DB`` picks the database: ``sqlite`` (default, in memory),
``postgresql`` (127.0.0.1:5432, database ``test``, trust auth) or ``mariadb``
(127.0.0.1:3306, root, empty password, database ``test``). ``make test`` runs the tests
marked ``db`` on all three.
"""

import os
import tempfile

SECRET_KEY = "tests-only-not-a-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["testserver"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.admin",
    "django.contrib.messages",
    "django_picklesessions",
    "tests.custom_sessions",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
ROOT_URLCONF = "tests.urls"
# Users are created and logged in by many tests; the default PBKDF2 (a million iterations)
# costs a third of a second per hash here. The session auth hash works alike with this one.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

TEST_DB = os.environ.get("PICKLESESSIONS_TEST_DB", "sqlite")
# Parallel runs (tox environments, a developer's terminals) share the servers and the temp
# directory: each run gets test databases of its own.
_TEST_NAME = f"test_picklesessions_{os.getpid()}"
_DATABASES = {
    # A file, not ":memory:": the threads of the concurrency tests need real connections
    # that wait for each other's locks (shared-cache memory databases fail at once instead).
    "sqlite": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": ":memory:",
        "TEST": {"NAME": os.path.join(tempfile.gettempdir(), _TEST_NAME + ".sqlite3")},
    },
    "postgresql": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": "127.0.0.1",
        "PORT": "5432",
        "NAME": "test",
        "USER": os.environ.get("PGUSER", "postgres"),
        "TEST": {"NAME": _TEST_NAME},
    },
    "mariadb": {
        "ENGINE": "django.db.backends.mysql",
        "HOST": "127.0.0.1",
        "PORT": "3306",
        "NAME": "test",
        "USER": "root",
        "PASSWORD": "",
        "OPTIONS": {"charset": "utf8mb4"},
        "TEST": {"NAME": _TEST_NAME, "CHARSET": "utf8mb4"},
    },
}
DATABASES = {"default": _DATABASES[TEST_DB]}
if TEST_DB == "mariadb":
    # PyMySQL is pure Python: no C headers needed on a fresh machine.
    import pymysql  # type: ignore[import-untyped]

    pymysql.install_as_MySQLdb()

SESSION_ENGINE = "django_picklesessions.backends.locmem"
PICKLESESSIONS_ALLOWED_CLASSES = ["tests.cart.LineItem", "tests.cart.Cart", "tests.cart.Money"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Child processes of the file-engine tests get their directory from the parent.
PICKLESESSIONS_FILE_PATH = os.environ.get("PICKLESESSIONS_TEST_FILE_PATH")

# The redis and cached_db engines (tests marked ``redis`` need the Redis on 127.0.0.1:6379).
# Each run keeps its keys under a prefix of its own, removed at the end (tests/conftest.py).
REDIS_TEST_URL = os.environ.get("PICKLESESSIONS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PICKLESESSIONS_REDIS_URL = REDIS_TEST_URL
PICKLESESSIONS_REDIS_PREFIX = f"{_TEST_NAME}:"
# The cache gets a database of its own, as check W033 asks of a site.
REDIS_CACHE_TEST_URL = os.environ.get(
    "PICKLESESSIONS_TEST_REDIS_CACHE_URL", "redis://127.0.0.1:6379/1"
)
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "redis": {
        # clear() there deletes this run's keys only, never FLUSHDB (tests/rediscache.py).
        "BACKEND": "tests.rediscache.PrefixClearingRedisCache",
        "LOCATION": REDIS_CACHE_TEST_URL,
        "KEY_PREFIX": f"{_TEST_NAME}-cache",
    },
}
