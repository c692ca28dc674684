"""Settings of the example shop. Example only: nothing here is fit for production.

Environment variables:

- ``EXAMPLE_SESSION_ENGINE``: ``db`` (default), ``file`` (``var/sessions``), ``locmem``,
  ``redis`` or ``cached_db`` (both on the Redis at ``EXAMPLE_REDIS_URL``, default
  ``redis://127.0.0.1:6379/0``);
- ``EXAMPLE_DATABASE``: ``sqlite`` (default, ``var/db.sqlite3``) or ``postgresql``
  (127.0.0.1:5432, database ``test``, user ``postgres``);
- ``EXAMPLE_VAR_DIR``: where runtime data goes (default ``example_project/var``);
- ``EXAMPLE_DEBUG`` (``1`` by default) and ``EXAMPLE_SECRET_KEY``;
- ``EXAMPLE_ALLOWED_HOSTS``: comma-separated host names the shop answers to (default the
  loopback names).

Static files are served by WhiteNoise, as in production: under runserver, and under gunicorn
(``make serve``) from ``collectstatic``'s ``var/static``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}.")
    return value


# Example only: not a secret. A real project reads its key from the environment.
SECRET_KEY = os.environ.get(
    "EXAMPLE_SECRET_KEY", "example-project-only-NOT-A-SECRET-7f3c9a1e5b2d8f4a6c0e9b7d5a3f1c8e"
)
DEBUG = os.environ.get("EXAMPLE_DEBUG", "1") == "1"
ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("EXAMPLE_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")
    if host.strip()
] + ["testserver"]  # Django's test client

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_picklesessions",
    "shop",
]
MIDDLEWARE = [
    # Static files without a separate web server: first, so that they skip the session.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django_picklesessions.middleware.SessionMiddleware",  # Django's, one change check
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "config.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "shop.context_processors.shop",
            ]
        },
    }
]
WSGI_APPLICATION = "config.wsgi.application"
STATIC_URL = "static/"
LOGIN_URL = "login"
# A form posted from a tab opened before signing in carries the token of before (login
# rotates it): a page that says so and offers the same action again, not a bare 403.
CSRF_FAILURE_VIEW = "shop.views.csrf_failure"
LOGIN_REDIRECT_URL = "shop:product_list"

VAR_DIR = Path(os.environ.get("EXAMPLE_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)
# collectstatic's target, which WhiteNoise serves; with DEBUG on it also finds files in the
# apps, so runserver and a bare gunicorn need no collectstatic.
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns about a missing one
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Gzip and Brotli copies at collectstatic; no manifest, so no collectstatic is needed
    # to render a page.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

_DATABASES: dict[str, dict[str, Any]] = {
    "sqlite": {"ENGINE": "django.db.backends.sqlite3", "NAME": VAR_DIR / "db.sqlite3"},
    "postgresql": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": "127.0.0.1",
        "PORT": "5432",
        "NAME": "test",
        "USER": "postgres",
        # Parallel runs (tox environments, several checkouts) share the server: each run
        # gets a test database of its own.
        "TEST": {"NAME": f"test_example_{os.getpid()}"},
    },
}
DATABASES = {"default": _DATABASES[_choice("EXAMPLE_DATABASE", "sqlite", tuple(_DATABASES))]}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

SESSION_ENGINE = "django_picklesessions.backends." + _choice(
    "EXAMPLE_SESSION_ENGINE", "db", ("db", "file", "locmem", "redis", "cached_db")
)
# The redis engine's server, and the cache the cached_db engine reads through (a RedisCache:
# shared by every worker, and read by the engine as raw bytes).
PICKLESESSIONS_REDIS_URL = os.environ.get("EXAMPLE_REDIS_URL", "redis://127.0.0.1:6379/0")
PICKLESESSIONS_REDIS_PREFIX = "example-shop:"
if SESSION_ENGINE.endswith(".cached_db"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": PICKLESESSIONS_REDIS_URL,
            "KEY_PREFIX": "example-shop-cache",
        }
    }
# A directory for sessions only, created 0700 by the file engine on first use.
PICKLESESSIONS_FILE_PATH = VAR_DIR / "sessions"
# The classes a session may hold besides the defaults (datetime types, Decimal, UUID...).
# Keep their import paths stable: a class that moved can no longer be unpickled, and its
# key is dropped from the sessions that hold it.
PICKLESESSIONS_ALLOWED_CLASSES = ["shop.cart.Cart", "shop.cart.LineItem"]
# Two tabs adding to the cart at once: merge their changes instead of keeping the last one.
PICKLESESSIONS_CONFLICT_POLICIES = {"cart": "shop.cart.merge_carts"}
# Flash messages go into the session too (as a JSON string), next to the cart.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
