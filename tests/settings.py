"""Settings for the test suite: the in-memory engine, SQLite in memory."""

SECRET_KEY = "tests-only-not-a-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["testserver"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django_picklesessions",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "tests.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
SESSION_ENGINE = "django_picklesessions.backends.locmem"
PICKLESESSIONS_ALLOWED_CLASSES = ["tests.cart.LineItem", "tests.cart.Cart", "tests.cart.Money"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
