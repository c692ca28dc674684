"""Seed the catalog, the coupons and a demo account, so that ``migrate`` gives a working shop.

Idempotent: rows are matched by slug, code and username, and an existing one is left as it
is (an edit made in the admin survives). The data is written here rather than imported from
the app, so that this migration does the same thing whatever the app's code becomes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth.hashers import make_password
from django.db import migrations

# slug, name, price, hue of the swatch, description
PRODUCTS = [
    ("sencha", "Sencha", "8.50", 95, "Steamed green tea from Shizuoka, grassy and bright. 100 g."),
    ("genmaicha", "Genmaicha", "7.90", 45, "Green tea with toasted rice: nutty, mellow. 100 g."),
    ("matcha", "Ceremonial matcha", "24.00", 110, "Stone-ground tencha for whisking. 30 g."),
    ("jasmine-pearls", "Jasmine pearls", "16.50", 60, "Green tea rolled by hand, scented. 50 g."),
    ("darjeeling", "Darjeeling first flush", "14.00", 35, "Floral, light, muscatel. 100 g."),
    ("assam", "Assam breakfast", "6.50", 15, "Malty black tea that takes milk well. 250 g."),
    ("earl-grey", "Earl Grey", "7.20", 200, "Black tea with bergamot oil. 100 g."),
    ("tieguanyin", "Tieguanyin oolong", "12.90", 150, "Rolled oolong, orchid notes. 100 g."),
    ("rooibos", "Rooibos vanilla", "6.80", 5, "Caffeine-free red bush with vanilla. 100 g."),
    ("chamomile", "Chamomile blossoms", "5.40", 50, "Whole flowers for the evening. 50 g."),
    ("stoneware-cup", "Stoneware cup", "12.00", 25, "Hand-thrown, 200 ml, dishwasher-safe."),
    ("glass-teapot", "Glass teapot", "29.90", 190, "Borosilicate, 800 ml, steel infuser."),
]
# code, kind, value
COUPONS = [
    ("WELCOME10", "percent", "10"),
    ("TAKE5", "fixed", "5.00"),
    ("TEATIME25", "percent", "25"),
]
# Example only: an account to try the login with, shown on the login page.
DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo"


def seed(apps: Any, schema_editor: Any) -> None:
    """Create whatever part of the seed data is missing."""
    product_model = apps.get_model("shop", "Product")
    coupon_model = apps.get_model("shop", "Coupon")
    existing = set(product_model.objects.values_list("slug", flat=True))
    product_model.objects.bulk_create(
        product_model(slug=slug, name=name, price=Decimal(price), hue=hue, description=text)
        for slug, name, price, hue, text in PRODUCTS
        if slug not in existing
    )
    existing = set(coupon_model.objects.values_list("code", flat=True))
    coupon_model.objects.bulk_create(
        coupon_model(code=code, kind=kind, value=Decimal(value))
        for code, kind, value in COUPONS
        if code not in existing
    )
    user_model = apps.get_model("auth", "User")
    if not user_model.objects.filter(username=DEMO_USERNAME).exists():
        user_model.objects.create(
            username=DEMO_USERNAME,
            password=make_password(DEMO_PASSWORD),
            first_name="Demo",
            email="demo@example.com",
        )


class Migration(migrations.Migration):
    dependencies = [
        ("shop", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
