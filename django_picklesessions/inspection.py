"""What the stored sessions hold, judged by the current settings: ``manage.py check_sessions``.

Every record is verified with the configured keys and every value of a live record is loaded
through the restricted unpickler, exactly as a request would load it; nothing is written. The
report holds counts and a bounded number of examples, so its size does not grow with the
number of sessions.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django_picklesessions import record, unpickler
from django_picklesessions.conf import conf
from django_picklesessions.exceptions import RecordError
from django_picklesessions.keys import KEY_ID_SIZE, Keyring, get_keyring

#: Session ids (first 12 hex digits of the address) kept per group of refused values.
EXAMPLES = 5
#: The key Django's auth stores the logged-in user's id under.
AUTH_KEY = "_auth_user_id"

#: What each kind of refusal means, for the text report.
KINDS = {
    "not_allowed": "class not in the allow-list",
    "class_gone": "class removed or moved: not in the code",
    "strict_bound": "over a strict-mode bound",
    "suspicious": "bytes our writer never produces",
    "error": "the class's constructor raised",
}


@dataclass
class Loss:
    """The values of one session key that fail to load for one reason and class."""

    key: str
    kind: str
    name: str
    message: str
    sessions: int = 0
    logged_in: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass
class Report:
    """Counts over every record of the engine."""

    records: int = 0
    #: Verified records by key id (hex), and the role of each configured key id.
    by_key_id: Counter[str] = field(default_factory=Counter)
    key_roles: dict[str, str] = field(default_factory=dict)
    current: int = 0
    fallback: int = 0
    unknown: int = 0
    #: Records that no check passes, by reason (``bad_mac``, ``format``, ``size`` …).
    invalid: Counter[str] = field(default_factory=Counter)
    expired: int = 0
    soft_limit: int | None = None
    over_soft_limit: int = 0
    over_soft_limit_examples: list[str] = field(default_factory=list)
    losses: dict[tuple[str, str, str], Loss] = field(default_factory=dict)
    sessions_losing: int = 0
    logged_in_losing: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data."""
        return {
            "records": self.records,
            "keys": {"current": self.current, "fallback": self.fallback, "unknown": self.unknown},
            "by_key_id": {
                key_id: {"role": self.key_roles.get(key_id, "unknown"), "records": count}
                for key_id, count in sorted(self.by_key_id.items())
            },
            "invalid": dict(sorted(self.invalid.items())),
            "expired_not_cleaned": self.expired,
            "soft_record_size": self.soft_limit,
            "over_soft_record_size": self.over_soft_limit,
            "over_soft_record_size_examples": self.over_soft_limit_examples,
            "losses": [
                {
                    "key": loss.key,
                    "kind": loss.kind,
                    "class": loss.name,
                    "message": loss.message,
                    "sessions": loss.sessions,
                    "logged_in_sessions": loss.logged_in,
                    "examples": loss.examples,
                }
                for loss in self.sorted_losses()
            ],
            "sessions_losing_values": self.sessions_losing,
            "logged_in_sessions_losing_values": self.logged_in_losing,
        }

    def sorted_losses(self) -> list[Loss]:
        return sorted(self.losses.values(), key=lambda x: (-x.logged_in, -x.sessions, x.key))


def inspect(
    items: Iterable[tuple[str, bytes]],
    *,
    now: int,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Verify each ``(address, record)`` and try loading each value; return the counts."""
    keyring = get_keyring()
    report = Report(soft_limit=conf.SOFT_RECORD_SIZE)
    for key in keyring.by_id.values():
        report.key_roles[key.key_id.hex()] = "current" if key.position == 0 else "fallback"
    for address, data in items:
        report.records += 1
        _inspect_one(report, address, data, now, keyring)
        if progress is not None:
            progress(report.records)
    return report


def _inspect_one(report: Report, address: str, data: bytes, now: int, keyring: Keyring) -> None:
    try:
        verified = verify(address, data, now=now, keyring=keyring, check_expiry=False)
    except RecordError as exc:
        if exc.reason == "unknown_key":
            report.unknown += 1
            report.by_key_id[key_id_of(data)] += 1
        else:
            report.invalid[exc.reason] += 1
        return
    report.by_key_id[key_id_of(data)] += 1
    if verified.key_position == 0:
        report.current += 1
    else:
        report.fallback += 1
    if verified.expires_at <= now:
        report.expired += 1  # it will never load: its values are lost already
        return
    session_id = address[:12]
    if report.soft_limit is not None and len(data) > report.soft_limit:
        report.over_soft_limit += 1
        if len(report.over_soft_limit_examples) < EXAMPLES:
            report.over_soft_limit_examples.append(session_id)
    logged_in = AUTH_KEY in verified.entries
    losing = False
    for key, value in verified.entries.items():
        refusal = unpickler.diagnose(value)
        if refusal is None:
            continue
        losing = True
        kind, name = refusal.kind, ""
        if refusal.module or refusal.qualname:
            name = f"{refusal.module}.{refusal.qualname}"
            if kind == "not_allowed" and not class_exists(refusal.module, refusal.qualname):
                kind = "class_gone"
        loss = report.losses.get((key, kind, name))
        if loss is None:
            loss = report.losses[key, kind, name] = Loss(key, kind, name, refusal.message)
        loss.sessions += 1
        loss.logged_in += logged_in
        if len(loss.examples) < EXAMPLES:
            loss.examples.append(session_id)
    if losing:
        report.sessions_losing += 1
        report.logged_in_losing += logged_in


def verify(
    address: str, data: bytes, *, now: int, keyring: Keyring, check_expiry: bool
) -> record.Record:
    """Verify a stored record as a load would; raise RecordError with the reason if not.

    The address is the SHA-256 of the session key, which is what the MAC binds: no session
    key is needed to verify a record where it is stored.
    """
    return record.decode(
        data,
        sid=bytes.fromhex(address),
        now=now,
        keyring=keyring,
        max_record_size=conf.MAX_RECORD_SIZE,
        max_payload_size=conf.MAX_PAYLOAD_SIZE,
        check_expiry=check_expiry,
    )


def key_id_of(data: bytes) -> str:
    """The hex key id in a record's header (after magic, format version and flags)."""
    return data[6 : 6 + KEY_ID_SIZE].hex()


def class_exists(module: str, qualname: str) -> bool:
    """Say whether ``module.qualname`` names something in the code, running no new module.

    An imported module is looked into. One not imported yet is only looked for on the path:
    its classes cannot be seen without running it, so they count as present.
    """
    loaded = sys.modules.get(module)
    if loaded is None:
        # find_spec("a.b") imports "a": look no further than what is imported already.
        parent = module.rpartition(".")[0]
        name = module if not parent or parent in sys.modules else module.partition(".")[0]
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            return False
    target: Any = loaded
    for part in qualname.split("."):
        target = getattr(target, part, None)
        if target is None:
            return False
    return True
