"""Live cross-version run: Django 4.2 writes sessions now, this Django replays them.

Needs an interpreter with Django 4.2 (and redis) in ``PICKLESESSIONS_DJANGO42_PYTHON``,
for example ``.tox/legacyfixtures/bin/python`` after ``tox -e legacyfixtures``; it takes a
subprocess start of Django 4.2, too slow for every run. Without it the committed golden
records (tests/legacy/test_replay.py) cover the same cells.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import django
import pytest

from tests.legacy import golden
from tests.legacy.test_replay import CELLS, switch_and_count

DJANGO42 = os.environ.get("PICKLESESSIONS_DJANGO42_PYTHON")
pytestmark = [
    pytest.mark.db,
    pytest.mark.django_db,
    pytest.mark.skipif(not DJANGO42, reason="PICKLESESSIONS_DJANGO42_PYTHON is not set"),
]


def test_sessions_written_by_django42_now_log_nobody_out_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert DJANGO42 is not None
    manifest = tmp_path / "live.json"
    script = Path(golden.__file__).with_name("make_fixtures.py")
    done = subprocess.run(
        [DJANGO42, str(script), "--out", str(manifest)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    monkeypatch.setattr(golden, "MANIFEST", manifest)
    golden.manifest.cache_clear()
    try:
        assert golden.manifest()["django"].startswith("4.2.")
        assert golden.cells() == CELLS
        logged_out = {
            "-".join(p for p in cell if p): switch_and_count(
                cell, tmp_path / "-".join(p for p in cell if p), "django_picklesessions.backends.db"
            )
            for cell in CELLS
        }
    finally:
        golden.manifest.cache_clear()
    sys.stdout.write(f"Django {django.get_version()} replaying live 4.2 records: {logged_out}\n")
    assert set(logged_out.values()) == {0}
