"""manage.py rekey killed with SIGKILL part-way, in a process of its own, then run again.

The rotation runbook says the command is safe to interrupt: what a killed run re-signed stays
re-signed, what it had not reached is still on the fallback key, nothing is lost or changed,
and running it again finishes the job.
"""

from __future__ import annotations

import io
import json
import signal
import time
from typing import Any

import pytest
from django.core.management import call_command

from django_picklesessions import inspection, inventory
from django_picklesessions.exceptions import RecordError
from django_picklesessions.keys import get_keyring
from tests.helpers import sign_raw
from tests.ops.storage import OLD, dumps, fill, new_key, put, ring, run_child

#: The child kills itself right after its third re-signed record is written.
KILL_AFTER = 3
#: Fallback records besides the fixture's own one.
EXTRA_FALLBACK = 6

# The child must see the parent's rows and the parent the child's: real commits, no test
# transaction. cached_db shares its cache through Redis, as two web servers would.
ENGINES = [
    pytest.param("db", marks=[pytest.mark.db, pytest.mark.django_db(transaction=True)]),
    pytest.param(
        "cached_db",
        marks=[pytest.mark.db, pytest.mark.redis, pytest.mark.django_db(transaction=True)],
    ),
    pytest.param("file"),
    pytest.param("redis", marks=pytest.mark.redis),
]


def contents() -> dict[str, Any]:
    """Each record's verified entries, or its raw bytes where it does not verify."""
    now = int(time.time())
    out: dict[str, Any] = {}
    for address, data in inventory.records(inventory.store_class()):
        try:
            verified = inspection.verify(
                address, data, now=now, keyring=get_keyring(), check_expiry=True
            )
        except RecordError:
            out[address] = data
        else:
            out[address] = verified.entries
    return out


def on_fallback() -> int:
    out = io.StringIO()
    call_command("check_sessions", "--json", stdout=out, stderr=io.StringIO())
    count: int = json.loads(out.getvalue())["keys"]["fallback"]
    return count


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_a_killed_rekey_loses_nothing_and_running_it_again_finishes(
    engine: str, settings: Any
) -> None:
    if engine == "cached_db":
        settings.PICKLESESSIONS_CACHE_ALIAS = "redis"
    fill(engine)
    expires = int(time.time()) + 3600
    for n in range(EXTRA_FALLBACK):
        key = new_key()
        put(inventory.store_class(), key, sign_raw(key, dumps(n=n), keyring=ring(OLD)), expires)
    before = contents()
    assert on_fallback() == EXTRA_FALLBACK + 1

    child = run_child(settings, "--kill-after-rekeyed", str(KILL_AFTER), "rekey", "--batch-size=2")
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert on_fallback() == EXTRA_FALLBACK + 1 - KILL_AFTER
    assert contents() == before

    out = io.StringIO()
    call_command("rekey", stdout=out, stderr=io.StringIO())
    assert f"re-signed with the current key: {EXTRA_FALLBACK + 1 - KILL_AFTER}" in out.getvalue()
    assert on_fallback() == 0
    assert contents() == before
