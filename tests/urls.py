from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from tests.cart import Cart


def read_auth(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(request.session.get("_auth_user_id")))


def set_value(request: HttpRequest, key: str, value: str) -> HttpResponse:
    request.session[key] = value
    return HttpResponse("ok")


def cart_count(request: HttpRequest) -> HttpResponse:
    cart = request.session.get("cart")
    return HttpResponse(str(len(cart.items)) if isinstance(cart, Cart) else "none")


def bump_lines(request: HttpRequest) -> HttpResponse:
    """Change the first cart line in place, as shop views do, without assigning the key."""
    request.session["lines"][0].quantity += 1
    return HttpResponse("ok")


def check_then_bump(request: HttpRequest) -> HttpResponse:
    """Ask ``modified`` first (nothing changed yet), then change a line in place."""
    before = request.session.modified
    request.session["lines"][0].quantity += 1
    return HttpResponse(str(before))


urlpatterns = [
    path("auth/", read_auth),
    path("set/<str:key>/<str:value>/", set_value),
    path("cart/", cart_count),
    path("lines/bump/", bump_lines),
    path("lines/check-then-bump/", check_then_bump),
]

from django.contrib import admin  # noqa: E402

urlpatterns.append(path("admin/", admin.site.urls))
