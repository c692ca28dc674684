from django.urls import path

from shop import views

app_name = "shop"
urlpatterns = [
    path("", views.product_list, name="product_list"),
    path("products/<slug:slug>/", views.product_detail, name="product"),
    path("cart/", views.cart_detail, name="cart"),
    path("cart/add/", views.add_to_cart, name="add"),
    path("cart/update/", views.cart_update, name="update"),
    path("cart/remove/", views.cart_remove, name="remove"),
    path("cart/coupons/", views.coupon_apply, name="coupon_apply"),
    path("cart/coupons/remove/", views.coupon_remove, name="coupon_remove"),
    path("checkout/", views.checkout, name="checkout"),
    path("orders/<uuid:reference>/", views.order_detail, name="order"),
    path("session/", views.session_detail, name="session"),
    path("session/flush/", views.session_flush, name="session_flush"),
    path("csrf-token/", views.csrf_token, name="csrf_token"),
]
