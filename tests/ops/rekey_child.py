"""A process of its own that runs ``manage.py rekey`` and kills itself part-way (SIGKILL).

``python -m tests.ops.rekey_child KILL_AFTER SETTINGS_JSON``: the parent test's storage settings
(database, file path, Redis prefix, keys) come as JSON; the process sends itself SIGKILL right
after its ``KILL_AFTER``-th re-signed record is written, so nothing of it runs to the end: no
``finally``, no exit handler, no closing of files or connections.
"""

from __future__ import annotations

import json
import os
import signal
import sys


def main(kill_after: int, overrides: dict[str, object]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django
    from django.conf import settings

    for name, value in overrides.items():
        setattr(settings, name, value)
    django.setup()

    from django.core.management import call_command

    from django_picklesessions import rekeying
    from django_picklesessions.backends.base import PickleSessionBase

    real = rekeying.rekey_one
    rekeyed = 0

    def rekey_one(store: PickleSessionBase, address: str, data: bytes | None, now: int) -> str:
        nonlocal rekeyed
        outcome = real(store, address, data, now)
        if outcome == "rekeyed":
            rekeyed += 1
            if rekeyed == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        return outcome

    rekeying.rekey_one = rekey_one
    call_command("rekey", "--batch-size", "2")


if __name__ == "__main__":
    main(int(sys.argv[1]), json.loads(sys.argv[2]))
