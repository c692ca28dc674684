"""PICKLESESSIONS_SOFT_RECORD_SIZE: a save over it logs the three largest keys, rate-limited."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from django_picklesessions import budget
from django_picklesessions.backends.file import SessionStore as FileStore
from django_picklesessions.backends.locmem import SessionStore


@pytest.fixture(autouse=True)
def _fresh(settings: Any, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    settings.PICKLESESSIONS_SOFT_RECORD_SIZE = 2000
    caplog.set_level(logging.WARNING, logger="django_picklesessions")
    budget._last_warned.clear()
    yield
    budget._last_warned.clear()


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "django_picklesessions"]


def saved(store: Any = SessionStore, **values: Any) -> Any:
    session = store()
    session.update(values)
    session.save()
    return session


def test_a_save_over_the_budget_names_the_three_largest_keys(
    caplog: pytest.LogCaptureFixture,
) -> None:
    session = saved(blob="x" * 2000, notes="y" * 500, cart=list(range(50)), tiny=1)
    (message,) = warnings(caplog)
    assert "over PICKLESESSIONS_SOFT_RECORD_SIZE (2000)" in message
    sizes = {k: len(v) for k, v in session._get_session()._base.items()}
    assert (
        f"Largest keys: 'blob' ({sizes['blob']} bytes), 'notes' ({sizes['notes']} bytes), "
        f"'cart' ({sizes['cart']} bytes)."
    ) in message
    assert "tiny" not in message


def test_under_the_budget_or_without_one_nothing_is_logged(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    saved(blob="x" * 1000)
    settings.PICKLESESSIONS_SOFT_RECORD_SIZE = None
    saved(blob="x" * 100_000)
    assert warnings(caplog) == []


def test_one_warning_per_largest_key_per_interval(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = saved(blob="x" * 3000)
    session["blob"] = "z" * 3000
    session.save()
    saved(blob="w" * 3000)
    assert len(warnings(caplog)) == 1
    saved(other="x" * 3000)  # another key: its own warning
    assert len(warnings(caplog)) == 2
    monkeypatch.setattr(budget, "WARNING_INTERVAL", 0.0)
    saved(blob="v" * 3000)
    assert len(warnings(caplog)) == 3


def test_remembered_names_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "MAX_REMEMBERED", 3)
    for n in range(5):
        saved(**{f"k{n}": "x" * 3000})
    assert list(budget._last_warned) == ["k2", "k3", "k4"]


def test_the_file_engine_warns_too(
    settings: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.PICKLESESSIONS_FILE_PATH = str(tmp_path / "sessions")
    saved(FileStore, blob="x" * 3000)
    assert len(warnings(caplog)) == 1
