"""Report, after a run, which Django session suite ran and which engines it could not run."""

from __future__ import annotations

import sys

import django
import pytest

from tests.django_suite import suite
from tests.django_suite.engines import ENGINES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line for the suite's source, one per engine that does not exist yet."""
    tests = sys.modules.get(f"{suite.PACKAGE}.tests")
    if tests is None:  # not collected in this run, or unavailable (the skip says why)
        return
    terminalreporter.write_sep("-", "Django session suite")
    terminalreporter.write_line(f"Django {django.get_version()}: {tests.__file__}")
    for engine in ENGINES:
        missing = engine.missing()
        status = f"SKIPPED, {missing}" if missing else "run"
        terminalreporter.write_line(f"engine {engine.name} ({engine.module}): {status}")
