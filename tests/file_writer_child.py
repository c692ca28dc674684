"""A separate process that saves file-engine sessions, for crash and concurrency tests.

``python -m tests.file_writer_child MODE DIR KEY...`` with MODE one of:

- ``write``: after a line on stdin, save the sessions over and over (prints ``writing`` once
  the first save is done) until killed;
- ``stall``: update the first session once, stalling halfway through writing the temp file
  (prints ``stalled``), so the parent can kill it at exactly that point;
- ``hammer SECONDS WRITER``: after a line on stdin, load, check and save the sessions for
  SECONDS; exits 1 on the first load that is not a complete record.

The test imports :func:`payload` and :func:`is_consistent` from here to check what it reads.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from typing import Any

#: Bytes per record: large enough that a kill often lands inside a write.
BLOB_REPEAT = 16_000
#: A writer left behind by a crashed test stops by itself after this many seconds.
LIFETIME = 20.0


def payload(n: int, writer: int = 0) -> dict[str, Any]:
    """The session contents written at step ``n``; the blob is derived from ``n``."""
    return {"n": n, "writer": writer, "blob": f"{n:010d}" * BLOB_REPEAT}


def is_consistent(data: Mapping[str, Any]) -> bool:
    """Return True if ``data`` is exactly one complete :func:`payload`."""
    return (
        set(data) == {"n", "writer", "blob"}
        and isinstance(data["n"], int)
        and data == payload(data["n"], data["writer"])
    )


def _save(key: str, n: int, writer: int) -> None:
    from django_picklesessions.backends.file import SessionStore

    store = SessionStore(key)
    store.update(payload(n, writer))
    store.save()


def _write(keys: list[str]) -> None:
    sys.stdin.readline()
    deadline = time.monotonic() + LIFETIME
    n = 0
    while time.monotonic() < deadline:
        n += 1
        for key in keys:
            _save(key, n, 0)
        if n == 1:
            print("writing", flush=True)


def _stall(keys: list[str]) -> None:
    real_write = os.write

    def half_then_stall(fd: int, data: Any) -> int:
        written = real_write(fd, bytes(data[: len(data) // 2]))
        print("stalled", flush=True)
        time.sleep(LIFETIME)
        return written

    os.write = half_then_stall
    _save(keys[0], 1, 0)


def _hammer(seconds: float, writer: int, keys: list[str]) -> int:
    from django_picklesessions.backends.file import SessionStore

    print("ready", flush=True)
    sys.stdin.readline()
    deadline = time.monotonic() + seconds
    saves = 0
    while time.monotonic() < deadline:
        for key in keys:
            store = SessionStore(key)
            data = dict(store.items())
            if not is_consistent(data):
                print(f"torn or missing record: {sorted(data)}", file=sys.stderr)
                return 1
            store.update(payload(data["n"] + 1, writer))
            store.save()
            saves += 1
    print(f"saves {saves}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    mode, directory, *rest = argv
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django
    from django.test.utils import override_settings

    django.setup()
    override_settings(PICKLESESSIONS_FILE_PATH=directory).enable()
    if mode == "write":
        _write(rest)
    elif mode == "stall":
        _stall(rest)
    elif mode == "hammer":
        seconds, writer, *keys = rest
        return _hammer(float(seconds), int(writer), keys)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
