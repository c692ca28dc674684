"""Re-sign records still verified by a fallback key with the current key: ``manage.py rekey``.

Each record is written back with compare-and-swap against the version it was read at, so a
request that saved the session meanwhile is never overwritten: the record is read again and
re-signed only if it still needs it. The values are the stored bytes, never unpickled, and
the signed expiry and issue time stay as they were; only the key and the version change.
Running it again finds nothing to do, so an interrupted run is resumed by starting it again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from django.contrib.sessions.backends.base import UpdateError

from django_picklesessions import record
from django_picklesessions.backends.base import PickleSessionBase
from django_picklesessions.conf import conf
from django_picklesessions.exceptions import RecordError, SessionTooLarge, VersionConflict
from django_picklesessions.inspection import verify
from django_picklesessions.keys import get_keyring

#: Times one record is read again after losing a race, before it is left for the next run.
ATTEMPTS = 5

#: The outcomes counted, in the order the command prints them.
OUTCOMES = (
    "rekeyed",
    "current",
    "expired",
    "unknown_key",
    "invalid",
    "deleted",
    "too_large",
    "conflicts",
)


def rekey(
    store: PickleSessionBase,
    items: Iterable[tuple[str, bytes]],
    *,
    now: int,
    progress: Callable[[int], None] | None = None,
) -> Counter[str]:
    """Re-sign every fallback-verified record of ``items``; count what happened to each."""
    outcomes: Counter[str] = Counter()
    for count, (address, data) in enumerate(items, 1):
        outcomes[rekey_one(store, address, data, now)] += 1
        if progress is not None:
            progress(count)
    return outcomes


def rekey_one(store: PickleSessionBase, address: str, data: bytes | None, now: int) -> str:
    """Re-sign one record if a fallback key verifies it; return the outcome (``OUTCOMES``)."""
    sid = bytes.fromhex(address)
    keyring = get_keyring()
    for _ in range(ATTEMPTS):
        if data is None:
            return "deleted"
        try:
            verified = verify(address, data, now=now, keyring=keyring, check_expiry=True)
        except RecordError as exc:
            return exc.reason if exc.reason in ("expired", "unknown_key") else "invalid"
        if verified.key_position == 0:
            return "current"
        try:
            fresh = record.encode(
                verified.entries,
                sid=sid,
                issued_at=verified.issued_at,
                expires_at=verified.expires_at,
                version=verified.version + 1,
                keyring=keyring,
                max_record_size=conf.MAX_RECORD_SIZE,
                max_payload_size=conf.MAX_PAYLOAD_SIZE,
                compress_min_size=store._compress_min_size(),
            )
        except SessionTooLarge:
            return "too_large"
        try:
            store._write(address, fresh, verified.expires_at, False, verified.version)
        except VersionConflict:
            # A request saved the session since it was read: look again at what it stored.
            data = store._read(address)
            continue
        except UpdateError:
            return "deleted"
        return "rekeyed"
    return "conflicts"
