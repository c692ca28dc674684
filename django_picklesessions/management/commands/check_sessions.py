"""``manage.py check_sessions``: what the current settings would do to the stored sessions.

Run it before a deploy, with the new code and settings, against the production store (or a
copy): it lists every value that would no longer load, and ``--fail-on-loss`` fails CI when a
logged-in session would lose one. It only reads.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_picklesessions import inspection, inventory
from django_picklesessions.backends.base import epoch_now


class Command(BaseCommand):
    help = (
        "Verify every stored session with the current keys and load every value with the "
        "current allow-list; report what would be dropped. Writes nothing."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
        parser.add_argument(
            "--fail-on-loss",
            action="store_true",
            help="Exit with status 1 if a value of a logged-in session would be dropped.",
        )
        inventory.add_batch_size_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        cls = inventory.store_class()
        progress = inventory.Progress(self.stderr)
        report = inspection.inspect(
            inventory.records(cls, options["batch_size"]), now=epoch_now(), progress=progress
        )
        progress.done()
        if options["json"]:
            data = {"engine": cls.__module__, **report.as_dict()}
            self.stdout.write(json.dumps(data, indent=2))
        else:
            self.stdout.write(render(cls.__module__, report))
        if options["fail_on_loss"] and report.logged_in_losing:
            raise CommandError(
                f"{report.logged_in_losing} logged-in session(s) would lose a value.",
                returncode=1,
            )


def render(engine: str, report: inspection.Report) -> str:
    """The report as text for a terminal or a CI log."""
    lines = [
        f"{report.records} records in {engine}",
        f"  signed with the current key:  {report.current}",
        f"  signed with a fallback key:   {report.fallback}"
        + ("  (manage.py rekey re-signs them)" if report.fallback else ""),
        f"  signed with an unknown key:   {report.unknown}"
        + ("  (they load as empty sessions)" if report.unknown else ""),
        f"  invalid:                      {sum(report.invalid.values())}"
        + "".join(f"  {reason} {n}" for reason, n in sorted(report.invalid.items())),
        f"  expired, not yet cleaned:     {report.expired}"
        + ("  (manage.py clearsessions removes them)" if report.expired else ""),
    ]
    for key_id, count in sorted(report.by_key_id.items()):
        lines.append(f"  key id {key_id}: {count} ({report.key_roles.get(key_id, 'unknown')})")
    if report.soft_limit is not None:
        examples = ", ".join(report.over_soft_limit_examples)
        lines.append(
            f"  over PICKLESESSIONS_SOFT_RECORD_SIZE ({report.soft_limit} bytes): "
            f"{report.over_soft_limit}" + (f"  e.g. {examples}" if examples else "")
        )
    losses = report.sorted_losses()
    if not losses:
        lines.append("Every value of every live session loads with the current settings.")
        return "\n".join(lines)
    lines.append(
        f"Values the current settings would drop: {report.sessions_losing} session(s), "
        f"{report.logged_in_losing} of them logged in"
    )
    for loss in losses:
        what = inspection.KINDS.get(loss.kind, loss.kind)
        name = f" {loss.name}" if loss.name else ""
        lines.append(
            f"  {loss.key!r}:{name} ({what}): {loss.sessions} session(s), "
            f"{loss.logged_in} logged in; e.g. {', '.join(loss.examples)}"
        )
        if not loss.name:
            lines.append(f"      {loss.message}")
    return "\n".join(lines)
