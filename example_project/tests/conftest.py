"""Fixtures of the example's tests: the seeded catalog, and a client per session engine."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.test import Client

from django_picklesessions.backends.base import PickleSessionBase

# The data migration holds the seed data; its module name starts with a digit.
seed_migration = importlib.import_module("shop.migrations.0002_catalog")


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    # Django's advice for fast tests: the default hasher is slow on purpose.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def catalog(db: None) -> None:
    """The seeded catalog, even after a transactional test has emptied the tables."""
    seed_migration.seed(apps, None)


@pytest.fixture(params=["db", "file"])
def engine(request: pytest.FixtureRequest, settings: Any, tmp_path: Path) -> str:
    """Run the test once with each engine; file sessions go to a fresh directory."""
    settings.SESSION_ENGINE = f"django_picklesessions.backends.{request.param}"
    settings.PICKLESESSIONS_FILE_PATH = tmp_path / "sessions"
    name: str = request.param
    return name


@pytest.fixture
def client(engine: str) -> Client:
    return Client()


def session_address(client: Client) -> str:
    """Return where the client's session is stored (the SHA-256 of its key)."""
    key = client.cookies["sessionid"].value
    return PickleSessionBase.address(key)
