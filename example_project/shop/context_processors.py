"""Template context for every page: the cart badge and which engine stores the session."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest

from shop.cart import get_cart


def shop(request: HttpRequest) -> dict[str, object]:
    cart = get_cart(request.session)
    engine = settings.SESSION_ENGINE.rpartition(".")[2]
    if engine == "db":
        storage = f"a {connection.display_name} table"
    elif engine == "file":
        storage = "one file per session"
    else:
        storage = "this process's memory"
    return {
        "cart_count": cart.count if cart else 0,
        "session_engine": engine,
        "session_storage": storage,
    }
