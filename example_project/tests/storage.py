"""Read and overwrite stored records behind the engine's back, to play the attacker."""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

from django_picklesessions.models import Session


def _path(address: str) -> Path:
    return Path(settings.PICKLESESSIONS_FILE_PATH) / address[:2] / address


def read(engine: str, address: str) -> bytes:
    if engine == "db":
        return bytes(Session.objects.get(address=address).record)
    return _path(address).read_bytes()


def write(engine: str, address: str, data: bytes) -> None:
    """Replace a stored record, keeping its expiry metadata (column or mtime) as it was."""
    if engine == "db":
        assert Session.objects.filter(address=address).update(record=data) == 1
        return
    path = _path(address)
    st = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
