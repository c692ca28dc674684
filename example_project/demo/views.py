"""A page that shows a session round trip through a pickle engine."""

from __future__ import annotations

from decimal import Decimal

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from demo.basket import Basket, Purchase

ITEMS = {"tea": ("Green tea", Decimal("4.50")), "cup": ("Stoneware cup", Decimal("12.00"))}


def index(request: HttpRequest) -> HttpResponse:
    basket = request.session.get("basket") or Basket()
    record = (
        request.session.encode(dict(request.session.items())) if request.session.keys() else b""
    )
    rows = [
        {"key": key, "type": f"{type(value).__module__}.{type(value).__qualname__}", "value": value}
        for key, value in request.session.items()
    ]
    return render(
        request,
        "demo/index.html",
        {"basket": basket, "items": ITEMS, "rows": rows, "record_size": len(record)},
    )


@require_POST
def add(request: HttpRequest) -> HttpResponse:
    code = request.POST.get("item", "")
    if code in ITEMS:
        name, price = ITEMS[code]
        basket = request.session.setdefault("basket", Basket())
        # Mutating the stored object is enough: the engine notices and saves it.
        basket.purchases.append(Purchase(name, price, timezone.now()))
        basket.tags.add(code)
        request.session.setdefault("first_visit", timezone.now())
    return redirect("index")


@require_POST
def reset(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return redirect("index")
