"""The ``engine`` fixture: each operations test runs on db, cached_db, file and redis."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ops.storage import ENGINES, NEW, OLD, SOFT


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, settings: Any, tmp_path: Any) -> str:
    name: str = request.param
    settings.SESSION_ENGINE = f"django_picklesessions.backends.{name}"
    settings.PICKLESESSIONS_FILE_PATH = str(tmp_path / "sessions")
    settings.PICKLESESSIONS_KEYS = [NEW, OLD]
    settings.PICKLESESSIONS_SOFT_RECORD_SIZE = SOFT
    return name
