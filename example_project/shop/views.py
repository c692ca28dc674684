"""The shop's pages. Every action is a plain form post; the add button also answers fetch().

The cart, the coupon codes and the "recently viewed" list are kept in ``request.session`` as
the objects they are. Changing them in place is enough: the engine notices and saves them.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.views import LoginView
from django.db import transaction
from django.forms import Form
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.timesince import timeuntil
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from shop import recent, session_info
from shop.cart import SESSION_KEY as CART_KEY
from shop.cart import QuantityError, get_cart, get_or_create_cart
from shop.forms import AddToCartForm, CheckoutForm, CouponForm, LineForm, UpdateLineForm
from shop.models import Order, OrderLine, Product
from shop.pricing import COUPONS_KEY, applied_coupons, price

#: Session key of the references of the orders placed in this session, newest first.
ORDERS_KEY = "orders"
MAX_ORDERS = 10


def _wants_json(request: HttpRequest) -> bool:
    # fetch() from shop.js asks for JSON only; a browser's form post also accepts HTML.
    return request.accepts("application/json") and not request.accepts("text/html")


def _next_url(request: HttpRequest, default: str) -> str:
    url = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(url, {request.get_host()}, request.is_secure()):
        return url
    return default


def _form_errors(form: Form) -> list[str]:
    return [str(error) for errors in form.errors.values() for error in errors]


# --- Catalog -----------------------------------------------------------------------------


def product_list(request: HttpRequest, add_form: AddToCartForm | None = None) -> HttpResponse:
    return render(
        request,
        "shop/product_list.html",
        {
            "products": Product.objects.filter(active=True),
            "recent": recent.products(request.session),
            "add_errors": _form_errors(add_form) if add_form else [],
        },
    )


def product_detail(
    request: HttpRequest, slug: str, add_form: AddToCartForm | None = None
) -> HttpResponse:
    product = get_object_or_404(Product, slug=slug, active=True)
    context = {
        "product": product,
        "form": add_form,
        "recent": recent.products(request.session, exclude=product.pk),
    }
    if add_form is None:  # a failed add re-renders this page: that is not a new view
        recent.remember(request.session, product.pk)
    return render(request, "shop/product_detail.html", context)


@require_POST
def add_to_cart(request: HttpRequest) -> HttpResponse:
    form = AddToCartForm(request.POST)
    if form.is_valid():
        product: Product = form.cleaned_data["product"]
        quantity: int = form.cleaned_data["quantity"]
        cart = get_or_create_cart(request.session)
        try:
            cart.add(product.pk, product.name, product.price, quantity, timezone.now())
        except QuantityError as exc:
            form.add_error("quantity", str(exc))
        else:
            message = f"Added {quantity} × {product.name} to your cart."
            if _wants_json(request):
                return JsonResponse({"count": cart.count, "message": message})
            messages.success(request, message)
            return redirect(_next_url(request, default="shop:cart"))
    if _wants_json(request):
        return JsonResponse({"errors": _form_errors(form)}, status=400)
    chosen: Product | None = form.cleaned_data.get("product")
    if chosen is None:
        return product_list(request, add_form=form)
    return product_detail(request, chosen.slug, add_form=form)


# --- Cart --------------------------------------------------------------------------------


def _render_cart(
    request: HttpRequest,
    *,
    coupon_form: CouponForm | None = None,
    line_errors: dict[int, list[str]] | None = None,
    errors: list[str] | None = None,
) -> HttpResponse:
    cart = get_cart(request.session)
    lines = cart.lines if cart else []
    coupons = applied_coupons(request.session)
    return render(
        request,
        "shop/cart.html",
        {
            "cart": cart,
            "lines": [(line, (line_errors or {}).get(line.product_id, [])) for line in lines],
            "totals": price(cart, coupons),
            "coupon_form": coupon_form or CouponForm(),
            "errors": errors or [],
        },
    )


def cart_detail(request: HttpRequest) -> HttpResponse:
    return _render_cart(request)


@require_POST
def cart_update(request: HttpRequest) -> HttpResponse:
    form = UpdateLineForm(request.POST)
    valid = form.is_valid()
    cart = get_cart(request.session)
    product_id: int | None = form.cleaned_data.get("product")
    if cart is None or product_id is None or cart.find(product_id) is None:
        return _render_cart(request, errors=["This product is not in your cart."])
    if not valid:
        return _render_cart(request, line_errors={product_id: _form_errors(form)})
    # In place: the cart need not be put back into the session.
    cart.set_quantity(product_id, form.cleaned_data["quantity"])
    messages.success(request, "Cart updated.")
    return redirect("shop:cart")


@require_POST
def cart_remove(request: HttpRequest) -> HttpResponse:
    form = LineForm(request.POST)
    cart = get_cart(request.session)
    line = cart.remove(form.cleaned_data["product"]) if form.is_valid() and cart else None
    if line is None:
        return _render_cart(request, errors=["This product is not in your cart."])
    messages.success(request, f"Removed {line.name} from your cart.")
    return redirect("shop:cart")


@require_POST
def coupon_apply(request: HttpRequest) -> HttpResponse:
    applied = request.session.get(COUPONS_KEY)
    form = CouponForm(request.POST, applied=applied if isinstance(applied, set) else None)
    if not form.is_valid():
        return _render_cart(request, coupon_form=form)
    codes = request.session.get(COUPONS_KEY)
    if not isinstance(codes, set):
        codes = request.session[COUPONS_KEY] = set()
    codes.add(form.cleaned_data["code"])
    messages.success(request, f"Coupon {form.cleaned_data['code']} applied.")
    return redirect("shop:cart")


@require_POST
def coupon_remove(request: HttpRequest) -> HttpResponse:
    codes = request.session.get(COUPONS_KEY)
    code = request.POST.get("code", "")
    if isinstance(codes, set) and code in codes:
        codes.discard(code)
        messages.success(request, f"Coupon {code} removed.")
    return redirect("shop:cart")


# --- Checkout and orders -----------------------------------------------------------------


def checkout(request: HttpRequest) -> HttpResponse:
    cart = get_cart(request.session)
    if cart is None or not cart.lines:
        messages.info(request, "Your cart is empty.")
        return redirect("shop:cart")
    coupons = applied_coupons(request.session)
    totals = price(cart, coupons)
    user = request.user if request.user.is_authenticated else None
    initial = (
        {"name": user.get_full_name() or user.get_username(), "email": user.email} if user else {}
    )
    form = CheckoutForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        products = Product.objects.in_bulk([line.product_id for line in cart.lines])
        with transaction.atomic():
            order = Order.objects.create(
                user=user,
                name=form.cleaned_data["name"],
                email=form.cleaned_data["email"],
                # In the order the total applied them: the order page lists them like checkout.
                coupons=",".join(c.coupon.code for c in totals.coupons),
                subtotal=totals.subtotal,
                discount=totals.discount,
                total=totals.total,
            )
            OrderLine.objects.bulk_create(
                OrderLine(
                    order=order,
                    product=products.get(line.product_id),
                    name=line.name,
                    unit_price=line.unit_price,
                    quantity=line.quantity,
                )
                for line in cart.lines
            )
        del request.session[CART_KEY]
        request.session.pop(COUPONS_KEY, None)
        orders = request.session.get(ORDERS_KEY)
        orders = orders if isinstance(orders, list) else []
        request.session[ORDERS_KEY] = [order.reference, *orders][:MAX_ORDERS]
        messages.success(request, "Thank you! Your order is placed.")
        return redirect(order)
    return render(request, "shop/checkout.html", {"cart": cart, "totals": totals, "form": form})


def order_detail(request: HttpRequest, reference: uuid.UUID) -> HttpResponse:
    order = get_object_or_404(Order.objects.prefetch_related("lines"), reference=reference)
    placed_here = order.reference in (request.session.get(ORDERS_KEY) or [])
    owned = request.user.is_authenticated and order.user_id == request.user.pk
    if not (placed_here or owned):
        raise Http404("No such order.")
    return render(request, "shop/order_detail.html", {"order": order})


# --- The session itself ------------------------------------------------------------------


def session_detail(request: HttpRequest) -> HttpResponse:
    session = request.session
    # What any page of the shop needs first: the navigation asks who is signed in, which
    # unpickles the _auth_ keys only. Everything else is still bytes until the table below.
    request.user.is_authenticated  # noqa: B018
    decoded = session_info.decoded_keys(session)
    now = timezone.now()
    return render(
        request,
        "shop/session.html",
        {
            "entries": session_info.entries(session, decoded),
            "decoded": sorted(decoded),
            "record_size": session_info.record_size(session),
            "stored": session_info.stored_record(session),
            "address": session_info.address(session),
            "expiry": timeuntil(now + timedelta(seconds=session.get_expiry_age()), now),
        },
    )


@require_POST
def session_flush(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return redirect("shop:session")


# --- Accounts ----------------------------------------------------------------------------


class ShopLoginView(LoginView):
    """Django's login; the message says what happened to the session."""

    template_name = "registration/login.html"

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        messages.success(
            self.request,
            f"Signed in as {form.get_user().get_username()}. Your session has a new key; "
            "your cart came along.",
        )
        return response


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    # logout() flushes the session: the cart goes with it.
    logout(request)
    messages.info(request, "Signed out. The session, and the cart in it, are gone.")
    return redirect("shop:product_list")


# --- Stale pages -------------------------------------------------------------------------


@require_GET
@never_cache
def csrf_token(request: HttpRequest) -> JsonResponse:
    """Return the current CSRF token, for a page whose forms hold an older one (shop.js)."""
    return JsonResponse({"token": get_token(request)})


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Explain a refused form (``CSRF_FAILURE_VIEW``) and offer the same add again.

    The usual cause in a shop is a tab opened before signing in or out: the login rotated
    the token that tab's forms carry. Only an add to the cart is offered again, with its
    product and quantity shown, because it is harmless and visible; any other action sends
    the shopper back to the page.
    """
    if _wants_json(request):
        message = "This page was out of date; it has been refreshed."
        return JsonResponse({"csrf": True, "errors": [message]}, status=403)
    retry = None
    if request.method == "POST" and request.path == reverse("shop:add"):
        form = AddToCartForm(request.POST)
        if form.is_valid():
            retry = {
                "product": form.cleaned_data["product"],
                "quantity": form.cleaned_data["quantity"],
                "next": _next_url(request, default=reverse("shop:cart")),
            }
    back = request.META.get("HTTP_REFERER", "")
    if not url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
        back = reverse("shop:product_list")
    context = {"retry": retry, "back": back, "debug_reason": reason if settings.DEBUG else ""}
    return render(request, "shop/csrf_failure.html", context, status=403)
