"""Group H: architecture and configuration: one pickle sink, writer parity, allow-list
integrity, log hygiene."""
# ruff: noqa: N802  (test names carry the catalogue's case ids, which are upper case)

from __future__ import annotations

import ast
import collections
import logging
import re
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy

import django_picklesessions
from django_picklesessions import allowlist, checks
from django_picklesessions.allowlist import get_allow_list
from tests import canary
from tests.attacks.audit import AuditGuard
from tests.attacks.kit import (
    OS_SYSTEM_GADGET,
    VICTIM,
    call,
    global_,
    load_under,
    p5,
    plant,
    plant_value,
    saved,
    sign_payload,
    store_class,
    stored,
    text,
)
from tests.helpers import sign_raw

PACKAGE = Path(django_picklesessions.__file__).parent
SINK = PACKAGE / "unpickler.py"
LOADER_NAMES = frozenset({"load", "loads", "Unpickler", "_Unpickler", "_load", "_loads"})
PICKLE_MODULES = frozenset({"pickle", "_pickle"})
FORBIDDEN_MODULES = frozenset({"_pickle", "marshal", "shelve", "dill", "cloudpickle"})


def sink_violations(source: str) -> list[str]:
    """What in ``source`` loads pickles (or marshal/shelve data) or could reach a loader."""
    found = []
    pickle_aliases: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                if root in FORBIDDEN_MODULES:
                    found.append(f"import {alias.name}")
                if alias.name == "pickle":
                    pickle_aliases.add(alias.asname or "pickle")
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            if root in FORBIDDEN_MODULES:
                found.append(f"from {node.module} import ...")
            elif root == "pickle":
                found += [f"from pickle import {a.name}" for a in node.names if a.name != "Pickler"]
            elif root == "copyreg":
                found += [f"from copyreg import {a.name}" for a in node.names]
        elif isinstance(node, ast.Attribute):
            if node.attr in ("Unpickler", "_Unpickler") or node.attr == "add_extension":
                found.append(f".{node.attr}")
            elif node.attr in LOADER_NAMES and (
                isinstance(node.value, ast.Name) and node.value.id in pickle_aliases
            ):
                found.append(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.Name) and node.id in ("Unpickler", "_Unpickler"):
            found.append(node.id)
        elif isinstance(node, ast.Call) and any(
            isinstance(arg, ast.Constant) and arg.value in PICKLE_MODULES | FORBIDDEN_MODULES
            for arg in node.args
        ):
            found.append(f"dynamic import of {ast.unparse(node)}")
    return found


def test_H1_single_sink_lint() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert SINK in modules and len(modules) > 10
    offenders = {
        str(path.relative_to(PACKAGE)): problems
        for path in modules
        if path != SINK and (problems := sink_violations(path.read_text()))
    }
    assert offenders == {}
    # The sink itself imports nothing dynamically and never walks stream-derived names.
    tree = ast.parse(SINK.read_text())
    calls = {
        ast.unparse(node.func)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute))
    }
    assert not calls & {"__import__", "getattr", "eval", "exec", "importlib.import_module"}
    assert "importlib" not in SINK.read_text()


@pytest.mark.parametrize(
    "source",
    [
        "import pickle\npickle.loads(b'')",
        "import pickle as p\np.load(f)",
        "from pickle import loads",
        "from pickle import Unpickler",
        "import pickle\nclass U(pickle.Unpickler): pass",
        "import _pickle",
        "import marshal",
        "from marshal import loads",
        "import shelve",
        "import dill",
        "import copyreg\ncopyreg.add_extension('os', 'system', 1)",
        "import importlib\nimportlib.import_module('pickle')",
        "__import__('marshal')",
    ],
)
def test_H1_the_lint_finds_each_loader(source: str) -> None:
    assert sink_violations(source) != []


def test_H1_writing_pickles_is_allowed() -> None:
    assert sink_violations("import pickle\npickle.dumps(1, 5)\npickle.Pickler\n") == []


class _SetSubclass(set[int]):
    pass


def _refused_values() -> dict[str, Any]:
    reducing = object.__new__(canary.Canary)  # its __reduce__ would fire the canary
    return {
        "lambda": lambda: None,
        "model": User(username="someone"),
        "zoneinfo": zoneinfo.ZoneInfo("UTC"),
        "lazy": gettext_lazy("Hello"),
        "set-subclass": _SetSubclass({1}),
        "reducing": reducing,
        "nested": [1, {"deep": reducing}],
    }


@pytest.mark.parametrize("name", sorted(_refused_values()))
def test_H2_writer_side_allow_list(name: str, audit: AuditGuard) -> None:
    key = saved("locmem", n=1)
    before = stored("locmem", key)
    store = store_class("locmem")(key)
    store[name] = _refused_values()[name]
    with audit, pytest.raises(TypeError, match=repr(name)):
        store.save()
    audit.assert_clean()
    assert stored("locmem", key) == before


def test_H2_allowed_defaults_round_trip() -> None:
    value = collections.OrderedDict([("b", 1), ("a", 2)])
    key = saved("locmem", ordered=value)
    assert store_class("locmem")(key)["ordered"] == value


def test_H3_allow_list_integrity(settings: Any) -> None:
    for entry in allowlist.DEFAULT_ALLOWED_CLASSES:
        cls = allowlist.resolve_entry(entry)
        assert isinstance(cls, type)
        assert f"{cls.__module__}.{cls.__qualname__}" == entry and "." not in cls.__qualname__
        assert not allowlist.never_allowed(cls.__module__, cls.__qualname__)
    assert all(isinstance(cls, type) for cls in get_allow_list().by_name.values())
    bad = {
        "builtins.getattr": "E003",
        "datetime": "E002",
        "collections.*": "E002",
        "os.path.join": "E003",
        "datetime.datetime.__base__": "E002",
    }
    for entry, check_id in bad.items():
        settings.PICKLESESSIONS_ALLOWED_CLASSES = [entry]
        ids = [m.id for m in checks.check_allowed_classes()]
        assert ids == [f"django_picklesessions.{check_id}"], entry
        with pytest.raises(ImproperlyConfigured):
            get_allow_list()


SECURITY = "django.security.SuspiciousSession"


def test_H4_log_hygiene(caplog: pytest.LogCaptureFixture, audit: AuditGuard) -> None:
    caplog.set_level(logging.DEBUG)
    genuine = sign_raw(VICTIM, {"_auth_user_id": b"\x80\x05\x8c\x08LEAKMARK\x94."})
    rejections = {
        "format": b"LEAKMARK" * 10,
        "bad_mac": genuine[:-32] + bytes(32),
        "size": b"LEAKMARK" * 40_000,
        "payload": sign_payload(VICTIM, b"\x00\x00\x00\x02LEAKMARK"),
    }
    mac_hex = genuine[-32:].hex()
    for reason, data in rejections.items():
        caplog.clear()
        plant("locmem", VICTIM, data)
        values, _ = load_under(audit, "locmem", VICTIM)
        assert values == {}
        lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [(r.name, r.levelname) for r in lines] == [(SECURITY, "WARNING")], reason
        message = lines[0].getMessage()
        assert f"({reason})" in message
        assert re.search(r"session [0-9a-f]{8}…", message)
        for record in caplog.records:
            shown = f"{record.getMessage()} {record.args!r}"
            assert "LEAKMARK" not in shown and VICTIM not in shown and mac_hex not in shown


def test_H4_attacker_chosen_names_are_clipped_in_logs(
    caplog: pytest.LogCaptureFixture, audit: AuditGuard
) -> None:
    caplog.set_level(logging.DEBUG)
    name = "fire\nFORGED LOG LINE " + "x" * 10_000
    plant_value(p5(call(global_("tests.canary", name), text("x"))))
    load_under(audit, "locmem", VICTIM)
    messages = [r.getMessage() for r in caplog.records]
    assert messages and all("\n" not in m and len(m) < 500 for m in messages)


def test_H4_gadget_under_a_valid_mac_is_a_security_event(security_log: Any) -> None:
    plant_value(OS_SYSTEM_GADGET)
    assert dict(store_class("locmem")(VICTIM).items()) == {"_auth_user_id": "1"}
    assert ["os.system" in r.getMessage() for r in security_log()] == [True]
