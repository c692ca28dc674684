"""``manage.py sessionstats``: how many sessions, how large, which keys, when they expire."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from django_picklesessions import inventory, stats
from django_picklesessions.backends.base import epoch_now
from django_picklesessions.keys import get_keyring


class Command(BaseCommand):
    help = "Count the stored sessions: sizes, largest keys, signing keys, expiries. Read-only."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
        parser.add_argument("--top", type=int, default=10, help="Largest keys listed.")
        inventory.add_batch_size_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        cls = inventory.store_class()
        progress = inventory.Progress(self.stderr)
        result = stats.collect(
            inventory.records(cls, options["batch_size"]), now=epoch_now(), progress=progress
        )
        progress.done()
        data = result.as_dict(options["top"])
        if options["json"]:
            self.stdout.write(json.dumps({"engine": cls.__module__, **data}, indent=2))
            return
        roles = {
            key.key_id.hex(): "current" if key.position == 0 else "fallback"
            for key in get_keyring().by_id.values()
        }
        size = data["size"]
        lines = [
            f"{data['records']} records in {cls.__module__} ({data['invalid']} invalid)",
            f"Record size: p50 {size['p50']} B, p95 {size['p95']} B, max {size['max']} B, "
            f"total {size['total']} B",
            "Largest keys by total bytes:",
            *(
                f"  {item['key']!r}: {item['bytes']} B in {item['sessions']} session(s)"
                for item in data["largest_keys"]
            ),
            "Records by key id:",
            *(
                f"  {key_id} ({roles.get(key_id, 'unknown')}): {count}"
                for key_id, count in data["by_key_id"].items()
            ),
            "Expiry:",
            *(f"  {label}: {count}" for label, count in data["expiry"].items()),
        ]
        self.stdout.write("\n".join(lines))
