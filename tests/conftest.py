from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from django_picklesessions import unpickler
from django_picklesessions.backends import locmem


@pytest.fixture(autouse=True)
def _empty_locmem() -> Iterator[None]:
    locmem._records.clear()
    yield
    locmem._records.clear()


@pytest.fixture
def security_log(caplog: pytest.LogCaptureFixture) -> Any:
    """The records logged on django.security.SuspiciousSession during the test."""
    caplog.set_level(logging.WARNING, logger="django.security.SuspiciousSession")

    def records() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "django.security.SuspiciousSession"]

    return records


class UnpickleSpy:
    """Counts calls into the restricted unpickler, passing them through."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, data: bytes) -> Any:
        self.calls += 1
        return _real_loads(data)


_real_loads = unpickler.loads


@pytest.fixture
def unpickle_spy(monkeypatch: pytest.MonkeyPatch) -> UnpickleSpy:
    spy = UnpickleSpy()
    monkeypatch.setattr(unpickler, "loads", spy)
    return spy
