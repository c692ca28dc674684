"""``manage.py rekey``: re-sign every record still on a fallback key with the current key.

Part of a key rotation (docs/operations.md): once it reports nothing left on a fallback key,
the old key can be removed without logging anyone out.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_picklesessions import inventory, rekeying
from django_picklesessions.backends.base import epoch_now

_LABELS = {
    "rekeyed": "re-signed with the current key",
    "current": "already on the current key",
    "expired": "expired (left for clearsessions)",
    "unknown_key": "on a key no longer configured (cannot be re-signed)",
    "invalid": "invalid (left as they are)",
    "deleted": "deleted while the command ran",
    "too_large": "over the size limits now (left as they are)",
    "conflicts": "changed by requests on every attempt (run rekey again)",
}


class Command(BaseCommand):
    help = (
        "Re-sign every stored session verified by a fallback key with the current key, "
        "without overwriting concurrent saves. Safe to interrupt and run again."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        inventory.add_batch_size_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        cls = inventory.store_class()
        progress = inventory.Progress(self.stderr)
        outcomes = rekeying.rekey(
            cls(),
            inventory.records(cls, options["batch_size"]),
            now=epoch_now(),
            progress=progress,
        )
        progress.done()
        total = sum(outcomes.values())
        self.stdout.write(f"{total} records in {cls.__module__}")
        for outcome in rekeying.OUTCOMES:
            if outcomes[outcome] or outcome in ("rekeyed", "current"):
                self.stdout.write(f"  {_LABELS[outcome]}: {outcomes[outcome]}")
        if outcomes["conflicts"]:
            raise CommandError(
                f"{outcomes['conflicts']} record(s) kept changing; run rekey again.", returncode=1
            )
