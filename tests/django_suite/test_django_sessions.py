"""Django's own session test suite (``tests/sessions_tests``), run against each of our engines.

The suite is downloaded for the running Django version (see ``suite.py``). For every engine in
``engines.ENGINES`` two classes are made here: ``Test<Engine>Store`` (Django's
``SessionTestsMixin`` plus the contract tests borrowed from its engine-specific classes) and
``Test<Engine>Middleware`` (Django's ``SessionMiddlewareTests`` with SESSION_ENGINE set to the
engine). Tests that do not apply to a third-party store are listed in ``selection.EXCLUDED``
and reported as skipped with their reason; engines not written yet are skipped as a whole.
"""

from __future__ import annotations

import os
import re
import types
import unittest
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from django.contrib.sessions.backends.base import SessionBase
from django.test import SimpleTestCase, TestCase

from tests.django_suite import suite
from tests.django_suite.engines import ENGINES, Engine, override
from tests.django_suite.selection import BORROWED, EXCLUDED, RUN


def _load_django_tests() -> types.ModuleType:
    """Return Django's session tests; skip this module without them, but fail in CI."""
    try:
        return suite.load()
    except suite.SuiteUnavailable as exc:
        reason = str(exc)
    if os.environ.get("CI"):
        pytest.fail(f"Django's session test suite is required when CI is set: {reason}", False)
    pytest.skip(f"Django's session test suite is unavailable: {reason}", allow_module_level=True)


django_tests: Any = _load_django_tests()

DOC = Path(__file__).resolve().parents[2] / "docs" / "django-session-suite.md"


class _Counted:
    """Stands in for a session model in Django's clearsessions tests: counts stored records."""

    def __init__(self, count: Callable[[], int]) -> None:
        self.objects = self
        self._count = count

    def count(self) -> int:
        return self._count()

    async def acount(self) -> int:
        return await sync_to_async(self._count)()


class _StoredSessions:
    """Stands in for Django's ``Session`` model in ``test_empty_session_saved``.

    ``objects.get(session_key=...)`` finds the record through the engine, and the row's
    ``get_decoded()`` is what a fresh store loads for that key.
    """

    def __init__(self, store: type[SessionBase]) -> None:
        self.objects = self
        self._store = store

    def get(self, session_key: str) -> types.SimpleNamespace:
        if not self._store().exists(session_key):
            raise LookupError(f"no stored session for {session_key!r}")
        return types.SimpleNamespace(get_decoded=lambda: dict(self._store(session_key).load()))


class StoreContract(django_tests.SessionTestsMixin):
    """Django's SessionTestsMixin and the borrowed contract tests, for ``engine``."""

    __test__ = False
    engine: Engine
    backend: type[SessionBase]

    @classmethod
    def setUpClass(cls) -> None:
        cls.backend = cls.engine.store()
        super().setUpClass()

    def setUp(self) -> None:
        self.engine.setup(self)
        super().setUp()

    @property
    def session_engine(self) -> str:
        """The SESSION_ENGINE value of this engine (DatabaseSessionTests has the same)."""
        return self.engine.module

    @property
    def model(self) -> _Counted:
        """What DatabaseSessionTests counts rows of: here, the engine's stored records."""
        return _Counted(lambda: self.engine.count_records(self.backend))


def _borrow(target: type) -> None:
    """Copy the BORROWED tests that this Django version has onto ``target``."""
    for source, names in BORROWED.items():
        for name in names:
            test = getattr(getattr(django_tests, source, None), name, None)
            if test is not None:
                setattr(target, name, test)


_borrow(StoreContract)


class MiddlewareContract(django_tests.SessionMiddlewareTests):
    """Django's SessionMiddlewareTests with SESSION_ENGINE set to ``engine``."""

    __test__ = False
    engine: Engine
    backend: type[SessionBase]

    @classmethod
    def setUpClass(cls) -> None:
        cls.backend = cls.engine.store()
        super().setUpClass()

    def setUp(self) -> None:
        super().setUp()
        override(self, SESSION_ENGINE=self.engine.module)
        self.engine.setup(self)

    def test_session_update_error_redirect(self) -> None:
        """Django's test, on this engine's store instead of the stock db one it names."""
        with mock.patch.object(django_tests, "DatabaseSession", self.backend):
            super().test_session_update_error_redirect()

    def test_empty_session_saved(self) -> None:
        """Django's test, reading the saved session through the engine, not its Session."""
        with mock.patch.object(django_tests, "Session", _StoredSessions(self.backend)):
            super().test_empty_session_saved()


def _excluded(reason: str) -> Callable[..., None]:
    """Return a test that reports itself skipped as excluded, with ``reason``."""

    @unittest.skip(f"excluded: {reason}")
    def test(self: unittest.TestCase) -> None:
        raise AssertionError("excluded tests never run")

    return test


def _engine_classes(engine: Engine) -> list[type]:
    """Return the test classes of one engine: its store contract and its middleware tests."""
    title = "".join(part.capitalize() for part in engine.name.split("_"))
    case = TestCase if engine.uses_db else SimpleTestCase
    marks = [pytest.mark.db] if engine.uses_db else []
    marks += [pytest.mark.redis] if engine.uses_redis else []
    missing = engine.missing()
    made = []
    for kind, bases, django_class in (
        ("Store", (StoreContract, case), "SessionTestsMixin"),
        ("Middleware", (MiddlewareContract,), "SessionMiddlewareTests"),
    ):
        attrs: dict[str, Any] = {
            "__module__": __name__,
            "__doc__": f"Django's {django_class} against {engine.module}.",
            "__test__": True,
            "engine": engine,
            "pytestmark": marks,
        }
        prefix = f"{django_class}."
        for name, reason in EXCLUDED.items():
            if name.startswith(prefix):
                attrs[name.removeprefix(prefix)] = _excluded(reason)
        if kind == "Store":
            for name, reason in engine.excluded.items():
                attrs[name] = _excluded(reason)
        made_class = type(f"Test{title}{kind}", bases, attrs)
        if missing:
            made_class = unittest.skip(missing)(made_class)
        made.append(made_class)
    return made


for _class in [made for engine in ENGINES for made in _engine_classes(engine)]:
    globals()[_class.__name__] = _class
del _class


def _django_test_names() -> dict[str, list[str]]:
    """Return each class of Django's suite that defines tests, with the tests it defines."""
    found = {}
    for name, value in vars(django_tests).items():
        if isinstance(value, type) and value.__module__ == django_tests.__name__:
            tests = [attr for attr in vars(value) if attr.startswith("test")]
            if tests:
                found[name] = tests
    return found


def test_every_django_test_is_run_or_excluded() -> None:
    """No test of Django's suite is dropped silently, e.g. one a new Django version adds."""
    found = _django_test_names()
    assert set(RUN) <= set(found)
    unaccounted = [
        f"{cls}.{test}"
        for cls, tests in found.items()
        if cls not in RUN and cls not in EXCLUDED
        for test in tests
        if test not in BORROWED.get(cls, ()) and f"{cls}.{test}" not in EXCLUDED
    ]
    assert unaccounted == [], "run, borrow or exclude (with a reason) each of these"


def test_exclusions_are_documented() -> None:
    """The "Excluded tests" table of docs/django-session-suite.md lists EXCLUDED, no more."""
    section = DOC.read_text("utf-8").split("\n## Excluded tests\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Za-z_.]+)` \|", section, re.M))
    assert documented == set(EXCLUDED)
