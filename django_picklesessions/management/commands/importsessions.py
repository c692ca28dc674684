"""``manage.py importsessions``: move every session of a stock engine into ours, in batches.

Dual-read imports a session on its first request; this imports the rest up front, so that
the legacy store can be dropped. Each record is verified and decoded as dual-read does
(``SECRET_KEY`` and fallbacks, the allow-list with per-key salvage), written insert-only
under the same key with its expiry kept, then deleted from the legacy store. Memory stays
flat: keys are read a batch at a time (keyset pagination, ``scandir``, Redis ``SCAN``). A
killed run is resumed by running it again: what was imported is "already ours" and its
legacy copy is deleted then.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections import Counter
from collections.abc import Callable, Iterator
from importlib import import_module
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import router, transaction

from django_picklesessions.allowlist import never_allowed
from django_picklesessions.conf import conf
from django_picklesessions.legacy import adoption, engines, sources

#: Advice for values the allow-list can never take, by the global their pickle names.
ADVICE = (
    ("django.db.models.base.", "a model instance: store its pk and load the object again"),
    ("django.utils.functional.", "a lazy translation string: store str(value)"),
    ("django.utils.translation.", "a lazy translation string: store str(value)"),
    ("zoneinfo.", "a datetime with a ZoneInfo: store it in UTC (datetime.timezone.utc)"),
)
LOGIN_KEYS = frozenset(("_auth_user_id", "_auth_user_backend", "_auth_user_hash"))
_DOTTED = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")
_BUILTIN_MODULES = frozenset(("builtins",))


def classes_in(value: Any, depth: int = 0) -> Iterator[str]:
    """Yield the dotted name of every non-builtin class a session value holds."""
    cls = type(value)
    if cls.__module__ not in _BUILTIN_MODULES:
        yield f"{cls.__module__}.{cls.__qualname__}"
    if depth > 20:
        return
    if isinstance(value, dict):
        for item in value.values():
            yield from classes_in(item, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from classes_in(item, depth + 1)
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        for item in vars(value).values():
            yield from classes_in(item, depth + 1)


def advice_for(name: str) -> str:
    """What to do about a refused global: an allow-list line, or how to store it instead."""
    for prefix, advice in ADVICE:
        if name.startswith(prefix):
            return advice
    if not _DOTTED.match(name):
        return name
    module, _, qualname = name.rpartition(".")
    if never_allowed(module, qualname):
        return "never allowed (it can run code): store plain data instead"
    return f'add "{name}" to PICKLESESSIONS_ALLOWED_CLASSES'


class Command(BaseCommand):
    help = (
        "Import the sessions of a stock Django session engine into django_picklesessions' "
        "engine (SESSION_ENGINE), in batches; --dry-run lists what would be lost."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--from",
            dest="engine",
            default=None,
            help="The stock engine to read (default: PICKLESESSIONS_LEGACY_ENGINE).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Write nothing; print the inventory and exit 1 if any login would be lost.",
        )
        parser.add_argument("--batch-size", type=int, default=1000)
        parser.add_argument(
            "--keep-source", action="store_true", help="Leave the legacy records in place."
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress line.")

    def handle(self, *args: Any, **options: Any) -> None:
        engine = options["engine"] or conf.LEGACY_ENGINE
        if not engine:
            raise CommandError("Name the stock engine with --from or PICKLESESSIONS_LEGACY_ENGINE.")
        try:
            source = sources.for_engine(engine)
        except engines.LegacyEngineProblem as exc:
            raise CommandError(f"--from: {exc}.") from None
        if not source.enumerable:
            raise CommandError(
                f"The {source.kind} engine's sessions cannot be listed (signed cookies live in "
                "browsers; only a RedisCache can be scanned): they are imported on their first "
                "request while PICKLESESSIONS_LEGACY_ENGINE is set."
            )
        from django_picklesessions.backends.base import PickleSessionBase

        store_class = import_module(settings.SESSION_ENGINE).SessionStore
        if not issubclass(store_class, PickleSessionBase):
            raise CommandError(
                f"SESSION_ENGINE ({settings.SESSION_ENGINE!r}) must be one of "
                "django_picklesessions' engines, the store to import into."
            )
        size = options["batch_size"]
        if size < 1:
            raise CommandError("--batch-size must be at least 1.")
        self.source = source
        self.store_class: type[PickleSessionBase] = store_class
        self.dry_run: bool = options["dry_run"]
        self.delete_source = not (options["keep_source"] or conf.LEGACY_WRITE or self.dry_run)
        self.progress = not options["no_progress"] and self.stdout.isatty()
        self.counts: Counter[str] = Counter()
        self.classes: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        for batch in self.batches(size):
            self.run_batch(batch)
            self.batch_done()
        if self.progress:
            self.stdout.write("")
        self.report()

    def batches(self, size: int) -> Iterator[list[tuple[str, Callable[[], Any]]]]:
        """The legacy records, ``size`` at a time as (key, reader), never all in memory."""
        source = self.source
        if isinstance(source, sources.DbSource):
            last: str | None = None
            while True:
                page = source.page_after(last, size)
                if not page:
                    return
                # The page holds the rows: no query per session.
                yield [(k, functools.partial(source.found_in_row, t, e)) for k, t, e in page]
                last = page[-1][0]
        batch: list[tuple[str, Callable[[], Any]]] = []
        for key in source.session_keys():
            batch.append((key, functools.partial(source.read, key)))
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    def transaction(self) -> Any:
        model = getattr(self.store_class, "get_model_class", None)
        if self.dry_run or model is None:
            return contextlib.nullcontext()
        # One transaction per batch: fewer commits, and a kill loses at most one batch.
        return transaction.atomic(using=router.db_for_write(model()))

    def ours_among(self, keys: list[str]) -> set[str]:
        """The keys our store already holds (one query per batch on the db engine)."""
        store = self.store_class
        address = {store.address(key): key for key in keys}
        get_model = getattr(store, "get_model_class", None)
        if get_model is None:
            return {key for a, key in address.items() if store()._contains(a)}
        model = get_model()
        rows = model._default_manager.using(router.db_for_read(model))
        found = rows.filter(address__in=list(address)).values_list("address", flat=True)
        return {address[a] for a in found}

    def run_batch(self, batch: list[tuple[str, Callable[[], Any]]]) -> None:
        from django_picklesessions.legacy.signing import LegacyError

        done: list[str] = []
        with self.transaction():
            ours = self.ours_among([key for key, _ in batch])
            for key, read in batch:
                self.counts["read"] += 1
                if key in ours:
                    self.counts["already ours"] += 1
                    done.append(key)
                    continue
                try:
                    found = read()
                except LegacyError as exc:
                    self.counts["bad signature" if exc.reason == "signature" else "refused"] += 1
                    if exc.reason != "signature":
                        self.counts["logins lost"] += 1  # refused whole: any login goes too
                    continue
                if found is None:
                    self.counts["expired"] += 1
                    continue
                self.take_stock(found)
                if self.dry_run:
                    self.counts["would import"] += 1
                    continue
                if adoption.store_found(self.store_class(key), found):
                    self.counts["imported"] += 1
                else:
                    self.counts["already ours"] += 1
                done.append(key)
            if self.delete_source and done:
                self.source.delete_many(done)
        if self.progress:
            self.stdout.write(self.summary(), ending="\r")
            self.stdout.flush()

    def batch_done(self) -> None:
        """Called after each committed batch (tests interrupt a run here)."""

    def take_stock(self, found: sources.Found) -> None:
        self.counts["sessions"] += 1
        if "_auth_user_id" in found.data:
            self.counts["logged in"] += 1
        dropped_keys = {key for key, _ in found.dropped}
        self.counts["keys dropped"] += len(dropped_keys)
        if dropped_keys & LOGIN_KEYS:
            self.counts["logins lost"] += 1
        self.classes.update({name for value in found.data.values() for name in classes_in(value)})
        for _, name in found.dropped:
            self.refused[name] += 1

    def summary(self) -> str:
        c = self.counts
        verb = "would import" if self.dry_run else "imported"
        return (
            f"{c['read']} read: {c[verb]} {verb}, {c['already ours']} already ours, "
            f"{c['expired']} expired, {c['bad signature']} bad signature, "
            f"{c['refused']} refused, {c['keys dropped']} keys dropped"
        )

    def report(self) -> None:
        c = self.counts
        self.stdout.write(self.summary())
        if not self.dry_run:
            return
        self.stdout.write(
            f"Sessions: {c['sessions']} readable, {c['logged in']} logged in; "
            f"logins that would be lost: {c['logins lost']}."
        )
        if self.classes:
            self.stdout.write("Classes found in the sessions:")
            for name, count in sorted(self.classes.items()):
                self.stdout.write(f"  {name}: {count} sessions")
        if self.refused:
            self.stdout.write("Values the allow-list refuses (the key is dropped, the login kept):")
            for name, count in sorted(self.refused.items()):
                self.stdout.write(f"  {name} ({count}): {advice_for(name)}")
            lines = sorted(
                {n for n in self.refused if advice_for(n).startswith("add ")},
            )
            if lines:
                self.stdout.write("PICKLESESSIONS_ALLOWED_CLASSES lines they would need:")
                for name in lines:
                    self.stdout.write(f'    "{name}",')
        if c["logins lost"]:
            raise CommandError(
                f"{c['logins lost']} logged-in sessions would be logged out (refused whole, "
                "or their login keys refused); see the lines above.",
                returncode=1,
            )
