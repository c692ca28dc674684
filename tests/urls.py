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


urlpatterns = [
    path("auth/", read_auth),
    path("set/<str:key>/<str:value>/", set_value),
    path("cart/", cart_count),
]

from django.contrib import admin  # noqa: E402

urlpatterns.append(path("admin/", admin.site.urls))
