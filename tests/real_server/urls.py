"""Views of the real-server project: start a session, add a product, read the cart."""

from __future__ import annotations

import os
import time

from django.contrib import messages
from django.contrib.messages import get_messages
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.http import require_GET, require_POST

#: Longest pause a request may ask for between loading the session and changing it.
MAX_PAUSE_MS = 100


@require_GET
def start(request: HttpRequest) -> JsonResponse:
    """Create the session the clients then share."""
    request.session["started"] = True
    return JsonResponse({"pid": os.getpid()})


@require_POST
def add(request: HttpRequest, client: int, product: int) -> JsonResponse:
    """Add one ``product`` to the cart, and remember it under this client's own key.

    ``?pause=MS`` waits between loading the session and changing it, so that concurrent
    requests load the same version and race to save it (the middleware saves after the
    view).
    """
    cart: dict[int, int] = request.session.get("cart", {})
    time.sleep(min(int(request.GET.get("pause", "0")), MAX_PAUSE_MS) / 1000)
    cart[product] = cart.get(product, 0) + 1
    request.session["cart"] = cart
    seen_key = f"seen_{client}"
    request.session[seen_key] = [*request.session.get(seen_key, []), product]
    messages.success(request, f"Added {product} for client {client}.")
    return JsonResponse({"pid": os.getpid()})


@require_GET
def contents(request: HttpRequest) -> JsonResponse:
    """Return the cart, every client's ``seen_`` list (JSON keys are strings) and the messages.

    Reading the messages consumes them, as a page that shows them would.
    """
    session = request.session
    return JsonResponse(
        {
            "cart": {str(product): n for product, n in session.get("cart", {}).items()},
            "seen": {key: value for key, value in session.items() if key.startswith("seen_")},
            "messages": [str(message) for message in get_messages(request)],
            "pid": os.getpid(),
        }
    )


urlpatterns = [
    path("start/", start),
    path("add/<int:client>/<int:product>/", add),
    path("contents/", contents),
]
