"""The sessions admin: search by session key, the user column, filter and action, decoding.

Through Django's test client against the admin routed in tests/urls.py, on every database.
"""

from __future__ import annotations

import datetime
import pickle
from decimal import Decimal
from typing import Any

import pytest

from django_picklesessions.admin import nested_types
from django_picklesessions.backends.db import SessionStore
from django_picklesessions.models import Session
from tests.cart import Cart, LineItem, NotAllowed
from tests.helpers import new_session, sign_raw

pytestmark = [pytest.mark.db, pytest.mark.django_db]

APP = "django_picklesessions"
LIST = f"/admin/{APP}/session/"


@pytest.fixture(autouse=True)
def _db_engine(settings: Any) -> None:
    """The db engine for every session, the admin's own login too (autouse: set up first)."""
    settings.SESSION_ENGINE = "django_picklesessions.backends.db"


def detail(admin_client: Any, key: str) -> str:
    response = admin_client.get(f"{LIST}{SessionStore.address(key)}/change/")
    assert response.status_code == 200
    return str(response.content.decode())


def listed(admin_client: Any, **query: str) -> str:
    response = admin_client.get(LIST, query)
    assert response.status_code == 200
    return str(response.content.decode())


def shown(key: str) -> str:
    """How the list names a session: the start of its address."""
    return SessionStore.address(key)[:16]


@pytest.fixture
def two_sessions(settings: Any) -> tuple[str, str]:
    return new_session(SessionStore, cart=[1]), new_session(SessionStore, cart=[2])


@pytest.mark.parametrize("how", ["key", "quoted key", "address", "ADDRESS", "address start"])
def test_search_finds_a_session_by_its_key_or_address(
    admin_client: Any, two_sessions: tuple[str, str], how: str
) -> None:
    wanted, other = two_sessions
    address = SessionStore.address(wanted)
    term = {
        "key": wanted,
        "quoted key": f' "{wanted}" ',
        "address": address,
        "ADDRESS": address.upper(),
        "address start": address[:10],
    }[how]
    page = listed(admin_client, q=term)
    assert shown(wanted) in page
    assert shown(other) not in page


def test_search_for_anything_else_finds_nothing(
    admin_client: Any, two_sessions: tuple[str, str]
) -> None:
    page = listed(admin_client, q="cart'; --")
    assert not any(shown(key) in page for key in two_sessions)


def test_search_by_key_is_one_exact_query(admin_client: Any, two_sessions: tuple[str, str]) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        listed(admin_client, q=two_sessions[0])
    sql = " ".join(q["sql"] for q in captured.captured_queries)
    assert SessionStore.address(two_sessions[0]) in sql
    assert "LIKE" not in sql.upper()


def test_nested_types_name_what_a_value_holds() -> None:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    cart = Cart(items=[LineItem(1, "tea", Decimal("3.50"), 2, now)], coupons={"WELCOME"})
    assert nested_types(cart) == "tests.cart.Cart → LineItem, Decimal, datetime"
    assert nested_types([1, "a", {"b": (2,)}]) == "builtins.list"
    assert nested_types({"when": now}) == "builtins.dict → datetime"


def test_nested_types_visit_a_bounded_number_of_objects() -> None:
    shared: tuple[Any, ...] = (Decimal(1),)
    for _ in range(60):
        shared = (shared, shared)  # 2**60 leaves, 61 objects
    assert nested_types(shared) == "builtins.tuple → Decimal"
    many = [Decimal(i) for i in range(5000)] + [datetime.date(2026, 1, 1)]
    assert nested_types(many, limit=100) == "builtins.list → Decimal, …"
    assert nested_types(many, limit=6000) == "builtins.list → Decimal, date"


def test_the_detail_page_shows_types_and_bounded_values(admin_client: Any, settings: Any) -> None:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    cart = Cart(items=[LineItem(1, "tea", Decimal("3.50"), 2, now)] * 300)
    key = new_session(SessionStore, cart=cart, note="x" * 10_000)
    page = detail(admin_client, key)
    assert "tests.cart.Cart → LineItem, Decimal, datetime" in page
    assert "x" * 400 not in page  # the repr is bounded
    assert "&lt;tests.cart.Cart object&gt;" in page  # never the class's own __repr__


@pytest.mark.parametrize("damage", ["truncated", "bad MAC", "class not allowed", "not hex"])
def test_a_malformed_row_never_breaks_the_admin(
    admin_client: Any, settings: Any, security_log: Any, damage: str
) -> None:
    key = new_session(SessionStore, cart=[1], n=2)
    rows = Session.objects.filter(address=SessionStore.address(key))
    data = bytes(rows.get().record)
    if damage == "truncated":
        rows.update(record=data[:40])
    elif damage == "bad MAC":
        rows.update(record=data[:-1] + bytes([data[-1] ^ 1]))
    elif damage == "class not allowed":
        entries = {"ok": pickle.dumps(3, 5), "bad": pickle.dumps(NotAllowed(), 5)}
        rows.update(record=sign_raw(key, entries))
    else:
        Session.objects.create(address="zz" * 32, record=data, expires_at=2**40)
        page = admin_client.get(f"{LIST}{'zz' * 32}/change/")
        assert page.status_code == 200
        assert "record refused (format)" in page.content.decode()
        return
    assert shown(key) in listed(admin_client)
    page = detail(admin_client, key)
    if damage == "class not allowed":
        assert "not loadable" in page and "tests.cart.NotAllowed" in page
        assert "<td>builtins.int</td><td>3</td>" in page
    else:
        reason = "format" if damage == "truncated" else "bad_mac"
        assert f"record refused ({reason})" in page


# --- With the user link --------------------------------------------------------------------


@pytest.fixture
def linked(settings: Any) -> dict[str, list[str]]:
    # User ids no user of the test will get: the admin's own login is linked to its user too.
    settings.PICKLESESSIONS_USER_LINK = True
    return {
        "90007": [
            new_session(SessionStore, _auth_user_id="90007"),
            new_session(SessionStore, _auth_user_id="90007"),
        ],
        "90008": [new_session(SessionStore, _auth_user_id="90008")],
        "": [new_session(SessionStore, cart=[1])],
    }


def test_the_user_column_and_filter(admin_client: Any, linked: dict[str, list[str]]) -> None:
    page = listed(admin_client)
    assert '<a href="?user=90007">90007</a>' in page
    assert 'href="?user=-"' in page and 'href="?user=%2A"' in page  # the filter's choices
    mine = listed(admin_client, user="90007")
    assert all(shown(key) in mine for key in linked["90007"])
    assert not any(shown(key) in mine for key in linked["90008"] + linked[""])
    anonymous = listed(admin_client, user="-")
    assert shown(linked[""][0]) in anonymous and shown(linked["90008"][0]) not in anonymous
    logged_in = listed(admin_client, user="*")
    assert shown(linked[""][0]) not in logged_in and shown(linked["90008"][0]) in logged_in


def test_without_the_link_there_is_no_user_column(
    admin_client: Any, two_sessions: tuple[str, str]
) -> None:
    page = listed(admin_client)
    assert "?user=" not in page
    assert "logout_users_everywhere" not in page


def test_the_action_needs_the_permission_to_delete_sessions(
    client: Any, linked: dict[str, list[str]]
) -> None:
    from django.contrib.auth.models import Permission, User

    staff = User.objects.create_user("viewer", password="pw", is_staff=True)
    staff.user_permissions.add(
        Permission.objects.get(codename="view_session", content_type__app_label=APP)
    )
    client.force_login(staff)
    assert "logout_users_everywhere" not in listed(client)
    target = SessionStore.address(linked["90007"][0])
    client.post(LIST, {"action": "logout_users_everywhere", "_selected_action": [target]})
    assert Session.objects.filter(user_id="90007").count() == len(linked["90007"])
    staff.user_permissions.add(
        Permission.objects.get(codename="delete_session", content_type__app_label=APP)
    )
    assert "logout_users_everywhere" in listed(client)


def test_the_action_logs_the_selected_users_out_everywhere(
    admin_client: Any, linked: dict[str, list[str]]
) -> None:
    one_of_alices = SessionStore.address(linked["90007"][0])
    anonymous = SessionStore.address(linked[""][0])
    response = admin_client.post(
        LIST,
        {"action": "logout_users_everywhere", "_selected_action": [one_of_alices, anonymous]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Logged 1 user out everywhere: 2 sessions deleted." in response.content.decode()
    assert not Session.objects.filter(user_id="90007").exists()
    assert Session.objects.filter(user_id="90008").count() == 1
    assert Session.objects.filter(address=anonymous).exists()
