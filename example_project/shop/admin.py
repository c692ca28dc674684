from django.contrib import admin

from shop.models import Coupon, Order, OrderLine, Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "price", "active"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Coupon)
class CouponAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["code", "kind", "value", "active"]


class OrderLineInline(admin.TabularInline):  # type: ignore[type-arg]
    model = OrderLine
    extra = 0


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["reference", "name", "total", "created_at"]
    inlines = [OrderLineInline]
