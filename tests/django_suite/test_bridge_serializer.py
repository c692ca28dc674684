"""Django's own tests of its stock engines, run with our bridge serializer as SESSION_SERIALIZER.

``django_picklesessions.serializers.PickleSerializer`` claims to be a drop-in serializer for
Django's ``db``, ``file``, ``cached_db`` and ``signed_cookies`` engines: here Django's own
test classes for those engines run unchanged under ``SESSION_SERIALIZER`` set to it. Tests
that cannot apply are listed in ``selection.BRIDGE_EXCLUDED`` with the reason, and reported
as skipped; ``docs/django-session-suite.md`` lists the same.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import TestCase, override_settings

from tests.django_suite.selection import BRIDGE_EXCLUDED, BRIDGE_RUN
from tests.django_suite.test_django_sessions import DOC, _excluded, django_tests

BRIDGE = "django_picklesessions.serializers.PickleSerializer"


def _bridge_class(name: str) -> type:
    django_class: type = getattr(django_tests, name)
    attrs: dict[str, Any] = {
        "__module__": __name__,
        "__doc__": f"Django's {name} with SESSION_SERIALIZER = {BRIDGE!r}.",
        "__test__": True,
        "pytestmark": [pytest.mark.db] if issubclass(django_class, TestCase) else [],
    }
    for excluded, reason in BRIDGE_EXCLUDED.items():
        method = excluded.removeprefix(f"{name}.")
        if method != excluded and hasattr(django_class, method):  # 4.2 has no async tests
            attrs[method] = _excluded(reason)
    made = type(f"TestBridge{name}", (django_class,), attrs)
    return override_settings(SESSION_SERIALIZER=BRIDGE)(made)


for _name in BRIDGE_RUN:
    if hasattr(django_tests, _name):  # every supported Django version has all of them
        globals()[f"TestBridge{_name}"] = _bridge_class(_name)
del _name


@override_settings(SESSION_SERIALIZER=BRIDGE)
def test_the_stores_under_test_use_the_bridge() -> None:
    from django_picklesessions.serializers import PickleSerializer

    for name in ("DatabaseSession", "CacheDBSession", "FileSession", "CookieSession"):
        assert getattr(django_tests, name)().serializer is PickleSerializer


def test_bridge_exclusions_are_documented() -> None:
    """The bridge's exclusion table in docs/django-session-suite.md lists BRIDGE_EXCLUDED."""
    text = DOC.read_text("utf-8")
    section = text.split("\n## The bridge serializer on the stock engines\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Za-z_.]+)` \|", section, re.M))
    assert documented == set(BRIDGE_EXCLUDED)
