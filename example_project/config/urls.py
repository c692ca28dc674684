from django.contrib import admin
from django.urls import include, path
from shop.views import ShopLoginView, logout_view

urlpatterns = [
    path("", include("shop.urls")),
    path("accounts/login/", ShopLoginView.as_view(), name="login"),
    path("accounts/logout/", logout_view, name="logout"),
    path("admin/", admin.site.urls),
]
