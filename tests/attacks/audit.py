"""The audit hook that watches attacks: process, code, import, network and file events.

``sys.addaudithook`` cannot be removed, so one hook is installed for the whole run (when this
module is first imported) and records only while an :class:`AuditGuard` is active: around
the step where an attack would succeed (a load, a save), never around the test's own setup.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from pathlib import Path
from typing import Any

# Events a successful gadget, a path trick or a nested loader would raise.
_DANGEROUS_PREFIXES = (
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "os.kill",
    "os.putenv",
    "os.unsetenv",
    "subprocess.",
    "pty.",
    "exec",
    "compile",
    "code.__new__",
    "function.__new__",
    "import",
    "socket.",
    "ctypes.",
    "pickle.find_class",
    "marshal.",
    "shutil.",
    "urllib.",
    "http.client.",
    "webbrowser.",
    "builtins.input",
)
# File events: allowed only on the session directory's own names or under the test's root.
_FILE_EVENTS = frozenset(
    {
        "open",
        "os.listdir",
        "os.scandir",
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.mkdir",
        "os.chmod",
        "os.chown",
        "os.link",
        "os.symlink",
        "os.truncate",
        "os.utime",
        "os.chdir",
    }
)
# What the file engine opens relative to a directory descriptor.
_SESSION_NAME = re.compile(r"[0-9a-f]{2}|[0-9a-f]{64}|\.tmp-[0-9a-f]{16}")

_active: list[AuditGuard] = []
_lock = threading.Lock()


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not _active:
        return
    if event in _FILE_EVENTS or event.startswith(_DANGEROUS_PREFIXES):
        for guard in list(_active):
            guard.observe(event, args)


sys.addaudithook(_hook)


class AuditGuard:
    """Records process, code, import, network and file events while active."""

    def __init__(self, allowed_roots: list[Path], *, session_names: bool = True) -> None:
        self.allowed_roots = [str(root.resolve()) for root in allowed_roots]
        #: Whether relative session names (what the file engine opens by dir_fd) are allowed.
        self.session_names = session_names
        self.events: list[tuple[str, str]] = []

    def observe(self, event: str, args: tuple[Any, ...]) -> None:
        if event in _FILE_EVENTS and self._allowed_path(args[0] if args else None):
            return
        self.events.append((event, repr(args)[:200]))

    def _allowed_path(self, path: object) -> bool:
        if isinstance(path, int):
            return True  # a descriptor the engine opened under an allowed path
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str):
            return False
        if not os.path.isabs(path):
            return self.session_names and _SESSION_NAME.fullmatch(path) is not None
        real = os.path.realpath(path)
        return any(real == root or real.startswith(root + os.sep) for root in self.allowed_roots)

    def __enter__(self) -> AuditGuard:
        with _lock:
            _active.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with _lock:
            _active.remove(self)

    def assert_clean(self) -> None:
        """Fail with the events seen, if any."""
        assert self.events == [], f"audit events during the attack: {self.events}"
