"""A management command in a process of its own, on the parent test's storage.

``python -m tests.ops.child SETTINGS_JSON [--kill-after-rekeyed N] COMMAND [ARG...]``: the
parent's storage settings (database, file path, Redis prefix, keys) come as JSON. The command's
output goes to stdout; the last line on stderr is the process's peak resident memory in KiB
(``VmHWM``: ``ru_maxrss`` would carry over the parent's size from before ``exec``). With
``--kill-after-rekeyed N`` the process sends itself SIGKILL right after its N-th re-signed record
is written: nothing of it runs to the end (no ``finally``, no exit handler, no closing).
"""

from __future__ import annotations

import json
import os
import signal
import sys


def _kill_after_rekeyed(count: int) -> None:
    from django_picklesessions import rekeying
    from django_picklesessions.backends.base import PickleSessionBase

    real = rekeying.rekey_one
    rekeyed = 0

    def rekey_one(store: PickleSessionBase, address: str, data: bytes | None, now: int) -> str:
        nonlocal rekeyed
        outcome = real(store, address, data, now)
        if outcome == "rekeyed":
            rekeyed += 1
            if rekeyed == count:
                os.kill(os.getpid(), signal.SIGKILL)
        return outcome

    rekeying.rekey_one = rekey_one


def main(argv: list[str]) -> None:
    overrides: dict[str, object] = json.loads(argv[0])
    args = argv[1:]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django
    from django.conf import settings

    for name, value in overrides.items():
        setattr(settings, name, value)
    django.setup()
    from django.core.management import call_command

    if args[0] == "--kill-after-rekeyed":
        _kill_after_rekeyed(int(args[1]))
        args = args[2:]
    try:
        call_command(*args)
    finally:
        print(_peak_rss_kib(), file=sys.stderr)


def _peak_rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    main(sys.argv[1:])
