"""The catalog, the coupons and the orders: what lives in the database, not in the session."""

from __future__ import annotations

import uuid
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

CENT = Decimal("0.01")


class Product(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField()
    price = models.DecimalField(max_digits=8, decimal_places=2)
    # Colour of the product's swatch (CSS hue, 0-359): the example ships no images.
    hue = models.PositiveSmallIntegerField(default=200)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("shop:product", args=[self.slug])


class Coupon(models.Model):
    class Kind(models.TextChoices):
        PERCENT = "percent", "percent off"
        FIXED = "fixed", "amount off"

    code = models.CharField(max_length=32, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    value = models.DecimalField(max_digits=8, decimal_places=2)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code

    @property
    def label(self) -> str:
        if self.kind == self.Kind.PERCENT:
            return f"{self.value.normalize():f} % off"
        return f"€{self.value} off"

    def discount_on(self, amount: Decimal) -> Decimal:
        """Return what this coupon takes off ``amount``, never more than ``amount``."""
        if self.kind == self.Kind.PERCENT:
            off = (amount * self.value / 100).quantize(CENT, rounding=ROUND_HALF_UP)
        else:
            off = self.value
        return min(off, amount)


class Order(models.Model):
    # Unguessable, so that an order's page can be linked without exposing the others.
    reference = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="shop_orders",
    )
    name = models.CharField(max_length=100)
    email = models.EmailField()
    coupons = models.CharField(max_length=200, blank=True, help_text="Codes, comma-separated.")
    subtotal = models.DecimalField(max_digits=10, decimal_places=2)
    discount = models.DecimalField(max_digits=10, decimal_places=2)
    total = models.DecimalField(max_digits=10, decimal_places=2)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Order {str(self.reference)[:8]}"

    def get_absolute_url(self) -> str:
        return reverse("shop:order", args=[self.reference])

    @property
    def coupon_list(self) -> list[str]:
        """The codes in the order they were applied to the total, as checkout showed them."""
        return [code for code in self.coupons.split(",") if code]


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    # Name and price are copied: the order keeps what was bought even if the catalog changes.
    product = models.ForeignKey(Product, null=True, on_delete=models.SET_NULL)
    name = models.CharField(max_length=100)
    unit_price = models.DecimalField(max_digits=8, decimal_places=2)
    quantity = models.PositiveIntegerField()

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.name}"

    @property
    def subtotal(self) -> Decimal:
        return self.unit_price * self.quantity
