"""Read-only admin for the ``db`` engine's table: who holds what, decoded safely."""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib import admin
from django.db.models.functions import Length
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from django_picklesessions import record, unpickler
from django_picklesessions.conf import conf
from django_picklesessions.exceptions import RecordError, ValueRejected
from django_picklesessions.keys import get_keyring
from django_picklesessions.models import Session

_REPR_LIMIT = 200


def describe(address: str, data: bytes) -> tuple[record.Record | None, list[tuple[str, str, int]]]:
    """Verify a stored record and describe each key: name, value (or why not), stored size.

    Values go through the restricted unpickler only after the record's MAC verified, exactly
    as on a request; nothing here calls pickle's loaders directly.
    """
    try:
        verified = record.decode(
            data,
            sid=bytes.fromhex(address),
            now=0,
            check_expiry=False,  # show expired records too: the admin only looks
            keyring=get_keyring(),
            max_record_size=conf.MAX_RECORD_SIZE,
            max_payload_size=conf.MAX_PAYLOAD_SIZE,
        )
    except (RecordError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, RecordError) else "format"
        return None, [("", f"record refused ({reason})", len(data))]
    rows = []
    for key, pickled in verified.entries.items():
        try:
            value = unpickler.loads(pickled)
            # A bounded repr: a loaded value may share references exponentially, and a
            # class's own __repr__ may recurse through all of them.
            shown = (
                f"{type(value).__module__}.{type(value).__qualname__}: "
                f"{unpickler.bounded_repr(value)}"
            )
        except ValueRejected as exc:
            shown = f"not loadable ({exc})"
        if len(shown) > _REPR_LIMIT:
            shown = shown[:_REPR_LIMIT] + "…"
        rows.append((key, shown, len(pickled)))
    return verified, rows


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """List and inspect sessions; delete them. Nothing can be edited."""

    list_display = ("short_address", "expires", "size", "version")
    readonly_fields = ("address", "expires", "size", "version", "contents")
    fields = readonly_fields
    ordering = ("-expires_at",)
    search_fields = ("address",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> Any:
        # The list page needs sizes, not records: the database measures, no blob is loaded.
        return super().get_queryset(request).annotate(stored_size=Length("record")).defer("record")

    @admin.display(description=_("address"), ordering="address")
    def short_address(self, obj: Session) -> str:
        return obj.address[:16] + "…"

    @admin.display(description=_("expires"), ordering="expires_at")
    def expires(self, obj: Session) -> datetime.datetime | str:
        # The column is unsigned: anyone with storage write can put any integer there.
        try:
            return datetime.datetime.fromtimestamp(obj.expires_at, tz=datetime.timezone.utc)
        except (OverflowError, ValueError, OSError):
            return f"{obj.expires_at} (out of range)"

    @admin.display(description=_("size (bytes)"))
    def size(self, obj: Any) -> int:
        return int(obj.stored_size)

    @admin.display(description=_("contents"))
    def contents(self, obj: Session) -> SafeString:
        _verified, rows = describe(obj.address, bytes(obj.record))
        return format_html(
            "<table><tr><th>{}</th><th>{}</th><th>{}</th></tr>{}</table>",
            _("key"),
            _("value"),
            _("bytes"),
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )
