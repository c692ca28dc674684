"""Views the legacy tests replay cookies against."""

from __future__ import annotations

from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path


def whoami(request: HttpRequest) -> HttpResponse:
    user = request.user
    return JsonResponse({"user": user.pk if user.is_authenticated else None})


def touch(request: HttpRequest, key: str, value: str) -> HttpResponse:
    request.session[key] = value
    user = request.user
    return JsonResponse({"user": user.pk if user.is_authenticated else None})


def sign_out(request: HttpRequest) -> HttpResponse:
    logout(request)
    return HttpResponse("bye")


urlpatterns = [
    path("whoami/", whoami),
    path("touch/<str:key>/<str:value>/", touch),
    path("logout/", sign_out),
]
