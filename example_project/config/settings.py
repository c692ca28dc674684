"""Settings of the example project. Example only: nothing here is fit for production."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# Example only: not a secret. A real project reads its key from the environment.
SECRET_KEY = os.environ.get(
    "EXAMPLE_SECRET_KEY", "example-project-only-NOT-A-SECRET-7f3c9a1e5b2d8f4a6c0e9b7d5a3f1c8e"
)
DEBUG = os.environ.get("EXAMPLE_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django_picklesessions",
    "demo",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "config.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
WSGI_APPLICATION = "config.wsgi.application"

VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": VAR_DIR / "db.sqlite3"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

# EXAMPLE_SESSION_ENGINE=db (default: SQLite, table created by migrate) or locmem.
SESSION_ENGINE = "django_picklesessions.backends." + os.environ.get("EXAMPLE_SESSION_ENGINE", "db")
# The classes a session may hold besides the built-in defaults. Keep their import path
# stable: a renamed class can no longer be unpickled, and its key is dropped.
PICKLESESSIONS_ALLOWED_CLASSES = ["demo.basket.Basket", "demo.basket.Purchase"]
