"""The minimal Django project ``bench.http`` serves with gunicorn: log in, add to a cart.

Configured from the environment ``bench.http`` sets for each server: ``BENCH_ENGINE`` (one
of :data:`ENGINES`), ``BENCH_WORKDIR`` (the run's temporary directory, holding the session
file directories) and, for the db engines, ``BENCH_DB`` and ``BENCH_PG_NAME``. Our engines
keep the cart as real objects (``payloads.Cart`` of ``LineItem``); the stock engines keep
the JSON-safe dicts an application on Django's JSON serializer has to keep.
"""

from __future__ import annotations

import os
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings

from bench import djsetup, payloads

ENGINES = {
    "ours-db": "django_picklesessions.backends.db",
    "stock-db": "django.contrib.sessions.backends.db",
    "ours-file": djsetup.OUR_FILE_ENGINE,
    "stock-file": "django.contrib.sessions.backends.file",
}
#: Distinct products a client cycles through: a cart never holds more lines than this.
PRODUCTS = 20

LABEL = os.environ.get("BENCH_ENGINE", "ours-db")
OURS = LABEL.startswith("ours")

if not settings.configured:
    djsetup.configure(
        kind=os.environ.get("BENCH_DB") or None,
        workdir=Path(os.environ.get("BENCH_WORKDIR", ".")),
        pg_name=os.environ.get("BENCH_PG_NAME"),
        # Workers keep their database connection, as any production deployment does; a new
        # PostgreSQL connection per request would cost more than the session itself.
        conn_max_age=600,
        SESSION_ENGINE=ENGINES[LABEL],
        ROOT_URLCONF=__name__,
        # Ours finishes with our middleware (one change check per request); for a stock
        # engine it is Django's own.
        MIDDLEWARE=["django_picklesessions.middleware.SessionMiddleware"],
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        DEBUG=False,
    )

from django.http import HttpRequest, HttpResponse  # noqa: E402  (after settings)
from django.urls import path  # noqa: E402
from django.utils import timezone  # noqa: E402


def health(request: HttpRequest) -> HttpResponse:
    """Answer without touching the session: the load generator waits for this."""
    return HttpResponse(f"ok {LABEL}\n", content_type="text/plain")


def login(request: HttpRequest) -> HttpResponse:
    """Store what ``django.contrib.auth`` and a few app flags keep for a logged-in user."""
    request.session.update(payloads.login_payload())
    return HttpResponse("logged in\n", content_type="text/plain")


def _price(product_id: int) -> Decimal:
    return Decimal(f"{(product_id * 173) % 9000 / 100 + 1:.2f}")


def _add_ours(session: Any, product_id: int, now: datetime) -> tuple[int, Decimal]:
    """Add to a cart of real objects; the store notices the in-place change by itself."""
    cart = session.get("cart")
    if cart is None:
        cart = session["cart"] = payloads.Cart()
    for item in cart.items:
        if item.product_id == product_id:
            item.quantity += 1
            break
    else:
        cart.items.append(
            payloads.LineItem(product_id, f"Product {product_id}", _price(product_id), 1, now)
        )
    session["updated_at"] = now
    return len(cart.items), sum((i.unit_price * i.quantity for i in cart.items), Decimal(0))


def _add_stock(session: Any, product_id: int, now: datetime) -> tuple[int, Decimal]:
    """Add to a cart of JSON-safe dicts (prices as strings, times as ISO 8601)."""
    cart = session.get("cart") or {"items": []}
    for item in cart["items"]:
        if item["product_id"] == product_id:
            item["quantity"] += 1
            break
    else:
        cart["items"].append(
            {
                "product_id": product_id,
                "name": f"Product {product_id}",
                "unit_price": str(_price(product_id)),
                "quantity": 1,
                "added_at": now.isoformat(),
            }
        )
    session["cart"] = cart
    session["updated_at"] = now.isoformat()
    total = sum((Decimal(i["unit_price"]) * i["quantity"] for i in cart["items"]), Decimal(0))
    return len(cart["items"]), total


def cart_add(request: HttpRequest, product: int) -> HttpResponse:
    """Add one of ``product`` to the session's cart and answer with the cart's total."""
    user = request.session.get("_auth_user_id")  # what the auth middleware would read
    add = _add_ours if OURS else _add_stock
    lines, total = add(request.session, 100_000 + product % PRODUCTS, timezone.now())
    return HttpResponse(f"user {user}: {lines} lines, {total}\n", content_type="text/plain")


urlpatterns = [
    path("health/", health),
    path("login/", login),
    path("cart/add/<int:product>/", cart_add),
]

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
