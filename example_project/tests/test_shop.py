"""The shop through Django's test client, once with each engine (db on SQLite, and file)."""

from __future__ import annotations

import logging
from datetime import timezone as dt_timezone
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from shop.cart import Cart, LineItem
from shop.models import Coupon, Order, Product

from tests import storage
from tests.conftest import session_address


def product(slug: str) -> Product:
    return Product.objects.get(slug=slug)


def add(client: Client, slug: str, quantity: Any = 1, **extra: Any) -> Any:
    return client.post("/cart/add/", {"product": product(slug).pk, "quantity": quantity}, **extra)


def cart_of(client: Client) -> Cart | None:
    cart = client.session.get("cart")
    assert cart is None or isinstance(cart, Cart)
    return cart


def badge(client: Client) -> str:
    """The cart badge's count, as the header of any page shows it."""
    html = client.get("/").content.decode()
    return html.split("data-cart-count>", 1)[1].split("<", 1)[0]


# --- Catalog -------------------------------------------------------------------------------


def test_catalog_lists_the_seeded_products(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.content.count(b'class="product"') == 12
    assert b"Sencha" in response.content and b"\xe2\x82\xac8.50" in response.content


def test_browsing_the_catalog_sets_no_session(client: Client) -> None:
    client.get("/")
    client.get("/cart/")
    assert "sessionid" not in client.cookies


def test_product_page_and_unknown_product(client: Client) -> None:
    response = client.get("/products/matcha/")
    assert response.status_code == 200
    assert b"Ceremonial matcha" in response.content
    assert client.get("/products/no-such-tea/").status_code == 404


def test_recently_viewed_newest_first(client: Client) -> None:
    for slug in ["sencha", "assam", "earl-grey", "sencha"]:
        client.get(f"/products/{slug}/")
    ids = client.session["recently_viewed"]
    assert ids == [product(s).pk for s in ["sencha", "earl-grey", "assam"]]
    listed = client.get("/").context["recent"]
    assert [p.slug for p in listed] == ["sencha", "earl-grey", "assam"]
    # The product being viewed is not offered as "recently viewed" on its own page.
    assert [p.slug for p in client.get("/products/sencha/").context["recent"]] == [
        "earl-grey",
        "assam",
    ]


# --- Cart ----------------------------------------------------------------------------------


def test_add_keeps_real_objects_in_the_session(client: Client) -> None:
    response = add(client, "sencha", 2)
    assert response.status_code == 302 and response["Location"] == "/cart/"
    add(client, "matcha")
    cart = cart_of(client)
    assert cart is not None
    assert [type(line) for line in cart.lines] == [LineItem, LineItem]
    first = cart.lines[0]
    assert (first.name, first.unit_price, first.quantity) == ("Sencha", Decimal("8.50"), 2)
    assert first.added_at.tzinfo is dt_timezone.utc
    assert cart.subtotal == Decimal("41.00")
    assert badge(client) == "3"


def test_add_goes_back_to_next_if_it_is_local(client: Client) -> None:
    pk = product("sencha").pk
    response = client.post("/cart/add/", {"product": pk, "quantity": 1, "next": "/?page=2"})
    assert response["Location"] == "/?page=2"
    response = client.post("/cart/add/", {"product": pk, "quantity": 1, "next": "https://evil/"})
    assert response["Location"] == "/cart/"


def test_adding_a_product_again_adds_to_its_line(client: Client) -> None:
    add(client, "sencha", 2)
    add(client, "sencha", 3)
    cart = cart_of(client)
    assert cart is not None and [(ln.name, ln.quantity) for ln in cart.lines] == [("Sencha", 5)]


def test_add_answers_json_to_fetch(client: Client) -> None:
    response = add(client, "sencha", 2, HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response.json() == {"count": 2, "message": "Added 2 × Sencha to your cart."}
    response = add(client, "sencha", 0, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert response.json() == {"errors": ["Ensure this value is greater than or equal to 1."]}


@pytest.mark.parametrize("quantity", ["0", "-1", "abc", "", "1.5", "100", "1e9"])
def test_bad_quantity_is_a_form_error(client: Client, quantity: str) -> None:
    add(client, "sencha", 1)
    response = add(client, "genmaicha", quantity)
    assert response.status_code == 200
    assert response.templates[0].name == "shop/product_detail.html"
    assert response.context["form"].errors["quantity"]
    assert b'class="error"' in response.content
    cart = cart_of(client)
    assert cart is not None and [ln.name for ln in cart.lines] == ["Sencha"]


def test_more_than_the_limit_of_one_product_is_a_form_error(client: Client) -> None:
    add(client, "sencha", 60)
    response = add(client, "sencha", 40)
    assert response.status_code == 200
    assert b"A cart holds at most 99 of one product." in response.content
    cart = cart_of(client)
    assert cart is not None and cart.lines[0].quantity == 60


@pytest.mark.parametrize("value", ["999999", "abc", "", "-3"])
def test_unknown_product_is_a_form_error(client: Client, value: str) -> None:
    response = client.post("/cart/add/", {"product": value, "quantity": "1"})
    assert response.status_code == 200
    assert response.templates[0].name == "shop/product_list.html"
    assert response.context["add_errors"]
    assert cart_of(client) is None or not cart_of(client).lines  # type: ignore[union-attr]


def test_an_inactive_product_cannot_be_added(client: Client) -> None:
    Product.objects.filter(slug="sencha").update(active=False)
    response = add(client, "sencha")
    assert b"This product is not in the catalog." in response.content
    assert client.get("/products/sencha/").status_code == 404


def test_change_quantity_in_place(client: Client) -> None:
    add(client, "sencha", 1)
    add(client, "assam", 1)
    response = client.post("/cart/update/", {"product": product("assam").pk, "quantity": "4"})
    assert response.status_code == 302
    cart = cart_of(client)
    assert cart is not None and [ln.quantity for ln in cart.lines] == [1, 4]
    assert badge(client) == "5"


def test_quantity_zero_removes_the_line(client: Client) -> None:
    add(client, "sencha", 1)
    client.post("/cart/update/", {"product": product("sencha").pk, "quantity": "0"})
    cart = cart_of(client)
    assert cart is not None and cart.lines == []
    assert b"Your cart is empty." in client.get("/cart/").content


@pytest.mark.parametrize(
    ("which", "quantity", "message"),
    [
        ("assam", "-1", b"greater than or equal to 0"),
        ("assam", "x", b"Enter a whole number."),
        ("assam", "500", b"less than or equal to 99"),
        ("sencha", "2", b"This product is not in your cart."),
        ("junk", "2", b"This product is not in your cart."),
    ],
)
def test_bad_update_is_a_form_error(
    client: Client, which: str, quantity: str, message: bytes
) -> None:
    add(client, "assam", 3)
    pk = "x" if which == "junk" else product(which).pk
    response = client.post("/cart/update/", {"product": pk, "quantity": quantity})
    assert response.status_code == 200
    assert message in response.content
    cart = cart_of(client)
    assert cart is not None and cart.lines[0].quantity == 3


def test_remove_a_line(client: Client) -> None:
    add(client, "sencha", 1)
    add(client, "assam", 2)
    response = client.post("/cart/remove/", {"product": product("sencha").pk})
    assert response.status_code == 302
    cart = cart_of(client)
    assert cart is not None and [ln.name for ln in cart.lines] == ["Assam breakfast"]
    response = client.post("/cart/remove/", {"product": product("sencha").pk})
    assert response.status_code == 200
    assert b"This product is not in your cart." in response.content


def test_actions_need_post(client: Client) -> None:
    for url in ["/cart/add/", "/cart/update/", "/cart/remove/", "/cart/coupons/"]:
        assert client.get(url).status_code == 405


# --- Coupons and totals --------------------------------------------------------------------


def test_coupons_are_a_set_and_totals_are_decimal(client: Client) -> None:
    add(client, "genmaicha", 3)  # 23.70
    assert client.post("/cart/coupons/", {"code": " welcome10 "}).status_code == 302
    assert client.session["coupons"] == {"WELCOME10"}
    client.post("/cart/coupons/", {"code": "TAKE5"})
    assert client.session["coupons"] == {"WELCOME10", "TAKE5"}
    totals = client.get("/cart/").context["totals"]
    # 10 % of 23.70 is 2.37; then 5.00 off.
    assert [(a.coupon.code, a.amount) for a in totals.coupons] == [
        ("WELCOME10", Decimal("2.37")),
        ("TAKE5", Decimal("5.00")),
    ]
    assert (totals.subtotal, totals.discount, totals.total) == (
        Decimal("23.70"),
        Decimal("7.37"),
        Decimal("16.33"),
    )
    html = client.get("/cart/").content
    assert b'id="total">\xe2\x82\xac16.33<' in html

    client.post("/cart/coupons/remove/", {"code": "TAKE5"})
    assert client.session["coupons"] == {"WELCOME10"}


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("NOPE", b"Unknown coupon code."),
        ("", b"This field is required."),
        ("WELCOME10", b"This coupon is already applied."),
        ("x" * 40, b"at most 32 characters"),
    ],
)
def test_bad_coupon_is_a_form_error(client: Client, code: str, message: bytes) -> None:
    add(client, "sencha")
    client.post("/cart/coupons/", {"code": "WELCOME10"})
    response = client.post("/cart/coupons/", {"code": code})
    assert response.status_code == 200
    assert message in response.content
    assert client.session["coupons"] == {"WELCOME10"}


def test_a_withdrawn_coupon_is_forgotten(client: Client) -> None:
    add(client, "sencha")
    client.post("/cart/coupons/", {"code": "TAKE5"})
    Coupon.objects.filter(code="TAKE5").update(active=False)
    assert client.get("/cart/").context["totals"].total == Decimal("8.50")
    assert client.session["coupons"] == set()


def test_a_discount_never_makes_the_total_negative(client: Client) -> None:
    add(client, "chamomile")  # 5.40
    client.post("/cart/coupons/", {"code": "TEATIME25"})
    client.post("/cart/coupons/", {"code": "TAKE5"})
    totals = client.get("/cart/").context["totals"]
    assert (totals.discount, totals.total) == (Decimal("5.40"), Decimal("0.00"))


# --- Checkout ------------------------------------------------------------------------------


def test_checkout_turns_the_cart_into_an_order(client: Client) -> None:
    add(client, "sencha", 2)
    add(client, "glass-teapot", 1)
    client.post("/cart/coupons/", {"code": "WELCOME10"})
    assert client.get("/checkout/").status_code == 200
    response = client.post("/checkout/", {"name": "Ada", "email": "ada@example.com"})
    order = Order.objects.get()
    assert response.status_code == 302 and response["Location"] == order.get_absolute_url()
    assert (order.subtotal, order.discount, order.total) == (
        Decimal("46.90"),
        Decimal("4.69"),
        Decimal("42.21"),
    )
    assert order.coupons == "WELCOME10" and order.user is None
    lines = [(ln.product.slug, ln.unit_price, ln.quantity) for ln in order.lines.all()]  # type: ignore[union-attr]
    assert lines == [("sencha", Decimal("8.50"), 2), ("glass-teapot", Decimal("29.90"), 1)]
    assert "cart" not in client.session and "coupons" not in client.session
    assert client.session["orders"] == [order.reference]
    page = client.get(response["Location"])
    assert page.status_code == 200 and b"\xe2\x82\xac42.21" in page.content
    assert badge(client) == "0"
    # The order's page is for the session that placed it.
    assert Client().get(response["Location"]).status_code == 404


def test_checkout_with_an_empty_cart(client: Client) -> None:
    response = client.get("/checkout/")
    assert response.status_code == 302 and response["Location"] == "/cart/"
    assert client.post("/checkout/", {"name": "A", "email": "a@example.com"}).status_code == 302
    assert not Order.objects.exists()


def test_checkout_form_errors(client: Client) -> None:
    add(client, "sencha")
    response = client.post("/checkout/", {"name": "", "email": "not-an-email"})
    assert response.status_code == 200
    assert b"This field is required." in response.content
    assert b"Enter a valid email address." in response.content
    assert not Order.objects.exists()
    assert cart_of(client) is not None


# --- Accounts ------------------------------------------------------------------------------


def login(client: Client) -> Any:
    return client.post("/accounts/login/", {"username": "demo", "password": "demo"})


def test_login_keeps_the_cart_under_a_new_key(client: Client) -> None:
    add(client, "sencha", 2)
    client.post("/cart/coupons/", {"code": "TAKE5"})
    before = client.cookies["sessionid"].value
    response = login(client)
    assert response.status_code == 302
    after = client.cookies["sessionid"].value
    assert after != before
    cart = cart_of(client)
    assert cart is not None and [(ln.name, ln.quantity) for ln in cart.lines] == [("Sencha", 2)]
    assert client.session["coupons"] == {"TAKE5"}
    assert client.session["_auth_user_id"]
    # The old key is gone: nobody who saw it can use it.
    stale = Client()
    stale.cookies["sessionid"] = before
    assert b"data-cart-count>0<" in stale.get("/").content


def test_orders_of_a_user_are_theirs(client: Client) -> None:
    login(client)
    add(client, "sencha")
    page = client.get("/checkout/")
    assert page.context["form"].initial == {"name": "Demo", "email": "demo@example.com"}
    client.post("/checkout/", {"name": "Demo", "email": "demo@example.com"})
    order = Order.objects.get()
    assert order.user is not None and order.user.username == "demo"
    other = Client()
    login(other)  # another session of the same user
    assert other.get(order.get_absolute_url()).status_code == 200


def test_logout_clears_the_cart(client: Client) -> None:
    login(client)
    add(client, "sencha", 2)
    assert client.get("/accounts/logout/").status_code == 405
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert cart_of(client) is None
    assert "_auth_user_id" not in client.session
    assert badge(client) == "0"


def test_wrong_password_is_a_form_error(client: Client) -> None:
    add(client, "sencha")
    response = client.post("/accounts/login/", {"username": "demo", "password": "nope"})
    assert response.status_code == 200
    assert b"enter a correct username and password" in response.content
    assert cart_of(client) is not None


# --- Tampering -----------------------------------------------------------------------------


@pytest.fixture
def security_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="django.security.SuspiciousSession")
    return caplog


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "django.security.SuspiciousSession"]


def test_a_tampered_record_gives_an_empty_cart(
    client: Client, engine: str, security_log: pytest.LogCaptureFixture
) -> None:
    add(client, "sencha", 2)
    address = session_address(client)
    data = bytearray(storage.read(engine, address))
    data[-40] ^= 0x01  # a payload byte, so only the MAC can tell
    storage.write(engine, address, bytes(data))

    response = client.get("/cart/")
    assert response.status_code == 200
    assert b"Your cart is empty." in response.content
    assert any("corrupted or invalid (bad_mac)" in line for line in refusals(security_log))
    # The shop goes on: the next add starts a new session with a new key.
    add(client, "assam")
    assert session_address(client) != address
    cart = cart_of(client)
    assert cart is not None and [ln.name for ln in cart.lines] == ["Assam breakfast"]


def test_a_record_copied_from_another_session_is_refused(
    client: Client, engine: str, security_log: pytest.LogCaptureFixture
) -> None:
    rich = Client()
    rich.post("/cart/add/", {"product": product("matcha").pk, "quantity": 9})
    add(client, "chamomile")
    storage.write(engine, session_address(client), storage.read(engine, session_address(rich)))

    response = client.get("/cart/")
    assert response.status_code == 200
    assert b"Your cart is empty." in response.content
    assert refusals(security_log)


@pytest.mark.parametrize(
    "cookie",
    ["garbage!", "0" * 32, "a" * 500, "../../etc/passwd", "\u00e9t\u00e9"],
    ids=["junk", "unknown-key", "long", "path", "non-ascii"],
)
def test_a_tampered_cookie_gives_an_empty_cart(client: Client, cookie: str) -> None:
    add(client, "sencha")
    client.cookies["sessionid"] = cookie
    for url in ["/", "/cart/", "/session/", "/checkout/", "/products/sencha/"]:
        assert client.get(url).status_code in (200, 302)
    assert b"Your cart is empty." in client.get("/cart/").content
    add(client, "assam")
    assert client.cookies["sessionid"].value != cookie


# --- The session page ----------------------------------------------------------------------


def test_session_page_shows_keys_types_and_sizes(client: Client, engine: str) -> None:
    assert b"The session is empty" in client.get("/session/").content
    add(client, "sencha", 2)
    client.post("/cart/coupons/", {"code": "TAKE5"})
    client.get("/products/assam/")
    response = client.get("/session/")
    assert response.status_code == 200
    entries = {e.key: e for e in response.context["entries"]}
    assert entries["cart"].type_name == "shop.cart.Cart"
    assert entries["coupons"].type_name == "set"
    assert entries["recently_viewed"].type_name == "list"
    assert all(e.size > 0 for e in entries.values())
    assert entries["cart"].size > entries["coupons"].size
    stored = response.context["stored"]
    assert stored is not None
    assert stored.size == len(storage.read(engine, session_address(client)))
    # Close to what a save now would write (the record's timestamps differ, not its size).
    assert abs(response.context["record_size"] - stored.size) < 64
    expected = client.session.get_expiry_date()
    assert abs((stored.expires_at - expected).total_seconds()) < 5
    assert response.context["address"] == session_address(client)
    assert client.cookies["sessionid"].value.encode() not in response.content


def test_session_page_does_not_show_the_password_derived_hash(client: Client) -> None:
    login(client)
    entries = {e.key: e for e in client.get("/session/").context["entries"]}
    assert entries["_auth_user_id"].preview == repr(client.session["_auth_user_id"])
    assert entries["_auth_user_hash"].preview == "(not shown)"


def test_forget_the_session(client: Client) -> None:
    add(client, "sencha")
    assert client.post("/session/flush/").status_code == 302
    assert cart_of(client) is None
    assert b"The session is empty" in client.get("/session/").content


def test_session_page_shows_the_types_inside_each_value(client: Client) -> None:
    add(client, "sencha")
    client.post("/cart/coupons/", {"code": "TAKE5"})
    entries = {e.key: e for e in client.get("/session/").context["entries"]}
    nested = entries["cart"].nested
    assert "shop.cart.LineItem" in nested and "decimal.Decimal" in nested
    assert "datetime.datetime (aware, UTC)" in nested
    assert entries["coupons"].nested == ("str",)


def test_session_page_shows_which_keys_the_request_had_decoded(client: Client) -> None:
    add(client, "sencha")
    response = client.get("/session/")
    assert response.context["decoded"] == []  # nobody signed in: nothing read yet
    assert not any(e.decoded for e in response.context["entries"])
    login(client)
    response = client.get("/session/")
    # Knowing who is signed in unpickled the _auth_ keys; the cart was still bytes.
    assert "_auth_user_id" in response.context["decoded"]
    decoded = {e.key: e.decoded for e in response.context["entries"]}
    assert decoded["_auth_user_id"] and not decoded["cart"]
    assert b"still bytes" in response.content


def test_previews_are_bounded_and_never_cut_inside_a_word() -> None:
    from shop.session_info import PREVIEW_LENGTH, bounded

    words = ", ".join(f"word{n:03d}" for n in range(200))
    preview = bounded(words)
    assert len(preview) <= PREVIEW_LENGTH + 2 and preview.endswith(" …")
    body = preview.removesuffix(" …").rstrip(",")
    assert all(
        part.strip().startswith("word") and len(part.strip()) == 7 for part in body.split(",")
    )
    assert bounded("short") == "short"


def test_the_empty_session_page_links_to_the_catalog(client: Client) -> None:
    assert b'href="/">Add a tea to the cart' in client.get("/session/").content


def test_percentage_coupons_do_not_stack(client: Client) -> None:
    add(client, "sencha")
    client.post("/cart/coupons/", {"code": "WELCOME10"})
    response = client.post("/cart/coupons/", {"code": "TEATIME25"})
    assert b"Only one percentage coupon per order: remove WELCOME10" in response.content
    client.post("/cart/coupons/", {"code": "TAKE5"})  # a fixed amount still combines
    assert client.session["coupons"] == {"WELCOME10", "TAKE5"}


def test_the_order_page_lists_coupons_as_checkout_did(client: Client) -> None:
    add(client, "glass-teapot")
    client.post("/cart/coupons/", {"code": "TAKE5"})
    client.post("/cart/coupons/", {"code": "WELCOME10"})
    checkout = client.get("/checkout/").content.decode()
    assert "Discount (WELCOME10, TAKE5)" in checkout  # the percentage first, as applied
    response = client.post("/checkout/", {"name": "Ada", "email": "ada@example.com"}, follow=True)
    assert "Discount (WELCOME10, TAKE5)" in response.content.decode()


def test_times_carry_their_instant_for_the_shoppers_zone(client: Client) -> None:
    add(client, "sencha")
    html = client.get("/cart/").content.decode()
    assert '<time datetime="' in html and 'data-local="time"' in html and " UTC</time>" in html


# --- A page opened before signing in ---------------------------------------------------------


@pytest.fixture
def stale_tab(engine: str) -> tuple[Client, str]:
    """A shopper whose open page carries the CSRF token of before signing in."""
    shopper = Client(enforce_csrf_checks=True)
    page = shopper.get("/products/sencha/")
    old_token = page.context["csrf_token"]
    page = shopper.get("/accounts/login/")
    shopper.post(
        "/accounts/login/",
        {"username": "demo", "password": "demo", "csrfmiddlewaretoken": page.context["csrf_token"]},
    )
    return shopper, str(old_token)


def test_a_stale_add_without_javascript_offers_the_same_add_again(
    stale_tab: tuple[Client, str],
) -> None:
    shopper, old_token = stale_tab
    data = {"product": product("sencha").pk, "quantity": 2, "csrfmiddlewaretoken": old_token}
    response = shopper.post("/cart/add/", {**data, "next": "/products/sencha/"})
    assert response.status_code == 403
    html = response.content.decode()
    assert "This page was out of date" in html and "Add 2 × Sencha to your cart" in html
    assert cart_of(shopper) is None  # nothing happened
    retry = response.context["csrf_token"]
    again = shopper.post(
        "/cart/add/", {**data, "next": "/products/sencha/", "csrfmiddlewaretoken": retry}
    )
    assert again.status_code == 302 and again["Location"] == "/products/sencha/"
    cart = cart_of(shopper)
    assert cart is not None and [(ln.name, ln.quantity) for ln in cart.lines] == [("Sencha", 2)]


def test_a_stale_fetch_gets_json_and_a_fresh_token(stale_tab: tuple[Client, str]) -> None:
    shopper, old_token = stale_tab
    data = {"product": product("sencha").pk, "quantity": 1, "csrfmiddlewaretoken": old_token}
    response = shopper.post("/cart/add/", data, HTTP_ACCEPT="application/json")
    assert response.status_code == 403 and response.json()["csrf"] is True
    token = shopper.get("/csrf-token/", HTTP_ACCEPT="application/json").json()["token"]
    response = shopper.post(
        "/cart/add/", {**data, "csrfmiddlewaretoken": token}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 200 and response.json()["count"] == 1


def test_other_stale_forms_only_send_the_shopper_back(stale_tab: tuple[Client, str]) -> None:
    shopper, old_token = stale_tab
    response = shopper.post(
        "/cart/coupons/",
        {"code": "TAKE5", "csrfmiddlewaretoken": old_token},
        HTTP_REFERER="http://testserver/cart/",
    )
    assert response.status_code == 403
    assert (
        b"Back to the page, reloaded" in response.content
        and b'<form method="post" action="/cart/add/"' not in response.content
    )
    assert 'href="http://testserver/cart/"' in response.content.decode()
