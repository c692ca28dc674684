"""Read-only admin for the ``db`` engine's table: who holds what, decoded safely.

Search takes a pasted session key (hashed to its address before the query, as the engines
store it), an address or the start of one. With ``PICKLESESSIONS_USER_LINK`` on, the list
shows each session's user id with a filter, and an action logs the selected sessions' users
out everywhere.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import itertools
import re
from collections.abc import Iterator
from importlib import import_module
from typing import Any, NamedTuple

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ImproperlyConfigured
from django.db.models import QuerySet
from django.db.models.functions import Length
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_picklesessions import record, unpickler, users
from django_picklesessions.backends.base import PickleSessionBase, valid_session_key
from django_picklesessions.conf import conf
from django_picklesessions.exceptions import RecordError, ValueRejected
from django_picklesessions.keys import get_keyring
from django_picklesessions.models import Session

_REPR_LIMIT = 200

#: Objects visited, at most, to list the types nested in one value.
TYPE_WALK_LIMIT = 1000

# Types too common to be worth naming among the nested ones.
_PLAIN: frozenset[type] = frozenset(
    (
        str,
        bytes,
        bytearray,
        int,
        float,
        complex,
        bool,
        type(None),
        list,
        tuple,
        dict,
        set,
        frozenset,
    )
)


class KeyRow(NamedTuple):
    """One session key as the admin shows it."""

    key: str
    shown: str  # the bounded repr, or why there is none
    size: int  # bytes of its stored pickle
    types: str = ""  # "tests.cart.Cart → LineItem, Decimal, datetime"


def _children(item: Any) -> Iterator[Any]:
    """The objects ``item`` holds, read through the base types, never the class's own code."""
    if isinstance(item, (str, bytes, bytearray)):
        return iter(())
    if isinstance(item, dict):
        return itertools.chain.from_iterable(dict.items(item))
    base: Any
    for base in (list, tuple, set, frozenset):
        if isinstance(item, base):
            return base.__iter__(item)  # type: ignore[no-any-return]
    found: list[Any] = []
    try:
        state = object.__getattribute__(item, "__dict__")
    except AttributeError:
        state = None
    if type(state) is dict:
        found.extend(state.values())
    for cls in type(item).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            with contextlib.suppress(AttributeError, TypeError):  # an unset slot
                found.append(object.__getattribute__(item, name))
    return iter(found)


def nested_types(value: Any, limit: int = TYPE_WALK_LIMIT) -> str:
    """Name ``value``'s type and the types nested in it: ``mod.Cart → LineItem, Decimal``.

    Breadth first, each object once, at most ``limit`` objects (then "…"): a loaded value
    may share references exponentially or hold millions of items.
    """
    top = type(value)
    nested: dict[str, None] = {}
    queue: collections.deque[Any] = collections.deque([value])
    seen: set[int] = set()
    visited = 0
    cut = False  # objects left unvisited
    while queue:
        item = queue.popleft()
        if id(item) in seen:
            continue
        if visited == limit:
            cut = True
            break
        seen.add(id(item))
        visited += 1
        kind = type(item)
        if item is not value and kind not in _PLAIN and kind is not top:
            nested[kind.__qualname__] = None
        # Never more queued than can still be visited (a list of millions stays unread).
        room = limit - visited - len(queue)
        children = list(itertools.islice(_children(item), max(room, 0) + 1))
        if len(children) > room:
            cut = True
            children = children[: max(room, 0)]
        queue.extend(children)
    names = list(nested)
    if cut:
        names.append("…")
    shown = f"{top.__module__}.{top.__qualname__}"
    return f"{shown} → {', '.join(names)}" if names else shown


def describe(address: str, data: bytes) -> tuple[record.Record | None, list[KeyRow]]:
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
        return None, [KeyRow("", f"record refused ({reason})", len(data))]
    rows = []
    for key, pickled in verified.entries.items():
        types = ""
        try:
            value = unpickler.loads(pickled)
            # A bounded repr: a loaded value may share references exponentially, and a
            # class's own __repr__ may recurse through all of them.
            shown = unpickler.bounded_repr(value)
            types = nested_types(value)
        except ValueRejected as exc:
            shown = f"not loadable ({exc})"
        except Exception as exc:  # a class's own __repr__ that fails: show the rest
            shown = f"not displayable ({type(exc).__name__})"
        if len(shown) > _REPR_LIMIT:
            shown = shown[:_REPR_LIMIT] + "…"
        rows.append(KeyRow(key, shown, len(pickled), types))
    return verified, rows


def _address_of(session_key: str) -> str:
    """Hash a session key as the configured engine addresses it (ours all use SHA-256)."""
    try:
        store = import_module(settings.SESSION_ENGINE).SessionStore
    except Exception:
        store = PickleSessionBase
    if not (isinstance(store, type) and issubclass(store, PickleSessionBase)):
        store = PickleSessionBase
    return str(store.address(session_key))


_ADDRESS = re.compile(r"[0-9a-f]{1,64}")


class UserFilter(admin.SimpleListFilter):
    """Logged-in or anonymous sessions, or one user's (``?user=<id>``, linked from the list)."""

    title = _("user")
    parameter_name = "user"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("*", _("logged in")), ("-", _("anonymous"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if value == "*":
            return queryset.filter(user_id__isnull=False)
        if value == "-":
            return queryset.filter(user_id__isnull=True)
        return queryset.filter(user_id=value)


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """List and inspect sessions; delete them. Nothing can be edited."""

    list_display = ("short_address", "expires", "size", "version")
    readonly_fields = ("address", "expires", "size", "version", "contents")
    fields = readonly_fields
    ordering = ("-expires_at",)
    # Shows the search box; get_search_results() decides what a term matches.
    search_fields = ("address",)
    search_help_text = _(
        "A session key (the cookie's value), an address, or the start of an address."
    )
    actions = ("logout_users_everywhere",)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        # Exact look-ups on the primary key: a LIKE '%term%' would scan the whole table.
        term = search_term.strip().strip("\"'")
        if not term:
            return queryset, False
        lowered = term.lower()
        matches = []
        if len(lowered) == 64 and _ADDRESS.fullmatch(lowered):
            matches.append(queryset.filter(address=lowered))
        elif _ADDRESS.fullmatch(lowered):
            matches.append(queryset.filter(address__startswith=lowered))
        if valid_session_key(term):
            matches.append(queryset.filter(address=_address_of(term)))
        if not matches:
            return queryset.none(), False
        found = matches[0]
        for more in matches[1:]:
            found = found | more
        return found, False

    def get_list_display(self, request: HttpRequest) -> Any:
        if conf.USER_LINK:
            return (*self.list_display, "user")
        return self.list_display

    def get_list_filter(self, request: HttpRequest) -> Any:
        return (UserFilter,) if conf.USER_LINK else ()

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if conf.USER_LINK:
            return (*self.readonly_fields[:-1], "user_id", self.readonly_fields[-1])
        return self.readonly_fields

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_readonly_fields(request, obj)

    @admin.display(description=_("user id"), ordering="user_id")
    def user(self, obj: Session) -> SafeString | str:
        if obj.user_id is None:
            return "-"
        return format_html('<a href="?{}">{}</a>', urlencode({"user": obj.user_id}), obj.user_id)

    def has_logout_permission(self, request: HttpRequest) -> bool:
        """The action is offered with the user link on, to those who may delete sessions."""
        return conf.USER_LINK and self.has_delete_permission(request)

    @admin.action(
        description=_("Log the users of the selected sessions out everywhere"),
        permissions=["logout"],
    )
    def logout_users_everywhere(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        ids = sorted(set(queryset.exclude(user_id=None).values_list("user_id", flat=True)))
        if not ids:
            self.message_user(request, _("No selected session is logged in."), messages.WARNING)
            return
        try:
            deleted = sum(users.logout_user(user_id) for user_id in ids)
        except (ImproperlyConfigured, users.UserLinkUnsupported) as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(
            request,
            ngettext(
                "Logged %(users)d user out everywhere: %(sessions)d sessions deleted.",
                "Logged %(users)d users out everywhere: %(sessions)d sessions deleted.",
                len(ids),
            )
            % {"users": len(ids), "sessions": deleted},
            messages.SUCCESS,
        )

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
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{}</table>",
            _("key"),
            _("types"),
            _("value"),
            _("bytes"),
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                ((row.key, row.types, row.shown, row.size) for row in rows),
            ),
        )
