"""docs/security-tests.md accounts for all 75 catalogue cases, and names tests that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security-tests.md"
ATTACKS = Path(__file__).resolve().parent
GROUPS = {"A": 10, "B": 15, "C": 8, "D": 8, "E": 9, "F": 8, "G": 7, "H": 4, "I": 5}
STATUSES = ("tested", "tested (strict)", "adapted", "xfail", "not applicable")


def catalogue_ids() -> list[str]:
    ids = [f"{group}{n}" for group, count in GROUPS.items() for n in range(1, count + 1)]
    return [*ids, "G3b"]


def table() -> dict[str, tuple[str, str]]:
    """Id -> (status, last column) for each row of the catalogue table."""
    rows: dict[str, tuple[str, str]] = {}
    for line in DOC.read_text().splitlines():
        match = re.fullmatch(r"\| ([A-I]\d+b?) \| [^|]+ \| ([^|]+) \| (.+) \|", line)
        if match:
            case, status, where = match.groups()
            assert case not in rows, f"{case} listed twice"
            rows[case] = (status.strip(), where)
    return rows


def defined_tests() -> dict[str, set[str]]:
    """Module file name -> the test functions it defines, for every module under tests/."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text())
        names = {
            node.name
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        }
        found[str(path.relative_to(ROOT / "tests"))] = names
    return found


def test_every_case_is_listed_once_with_a_known_status() -> None:
    rows = table()
    assert len(catalogue_ids()) == 75
    assert sorted(rows) == sorted(catalogue_ids())
    assert {status for status, _ in rows.values()} <= set(STATUSES)


def test_every_named_test_exists_and_each_tested_case_has_its_own() -> None:
    functions = defined_tests()
    attack_functions = set().union(
        *(names for module, names in functions.items() if module.startswith("attacks/"))
    )
    for case, (status, where) in table().items():
        for module, name in re.findall(r"`([\w/]+\.py)::(\w+)`", where):
            key = module.removeprefix("tests/") if "/" in module else f"attacks/{module}"
            assert name in functions.get(key, set()), f"{case}: {module}::{name} does not exist"
        own = {name for name in attack_functions if name.startswith(f"test_{case}_")}
        if status == "not applicable":
            assert not own, f"{case} is not applicable but has tests {own}"
            assert len(where) > 40, f"{case} needs a reason"
        else:
            assert own, f"{case} is {status} but no test_{case}_... exists in tests/attacks"
            assert own <= set(re.findall(r"::(\w+)`", where)), f"{case}: unlisted {own}"


def test_xfail_cases_are_the_ones_with_xfail_tests() -> None:
    xfailing = set()
    for path in ATTACKS.glob("test_*.py"):
        for node in ast.parse(path.read_text()).body:
            case = re.match(r"test_([A-I]\d+b?)_", getattr(node, "name", ""))
            if case and isinstance(node, ast.FunctionDef) and "xfail" in ast.unparse(node):
                xfailing.add(case.group(1))  # C1 marks its db variant from inside the test
    assert xfailing == {case for case, (status, _) in table().items() if status == "xfail"}
