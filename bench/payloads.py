"""Deterministic session payloads for the benchmarks, and their JSON-safe conversions.

The classes live here, not in ``bench.codec``: run as ``python -m bench.codec`` that module is
``__main__``, and the allow-list needs a stable ``module.qualname`` for each class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

#: Entries to put in ``PICKLESESSIONS_ALLOWED_CLASSES`` for these payloads.
ALLOWED_CLASSES = ["bench.payloads.LineItem", "bench.payloads.Cart"]

_EPOCH = datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=timezone.utc)

_WORDS = (
    "amber",
    "basalt",
    "cedar",
    "dune",
    "ember",
    "fjord",
    "granite",
    "harbor",
    "indigo",
    "juniper",
    "kelp",
    "lagoon",
    "meadow",
    "nectar",
    "onyx",
    "pebble",
    "quartz",
    "ridge",
    "saffron",
    "tundra",
    "umber",
    "vale",
    "willow",
    "xenon",
    "yarrow",
    "zephyr",
)


@dataclass
class LineItem:
    """One product line of a cart, with the value types shops actually keep."""

    product_id: int
    name: str
    unit_price: Decimal
    quantity: int
    added_at: datetime


@dataclass
class Cart:
    """A shopping cart: what the ``cart`` payload stores under one session key."""

    items: list[LineItem] = field(default_factory=list)


def _words(seed: int, count: int) -> str:
    """Return ``count`` words picked deterministically from ``seed``, for readable text."""
    return " ".join(_WORDS[(seed * 7 + i * 13) % len(_WORDS)] for i in range(count))


def login_payload() -> dict[str, Any]:
    """Return what ``django.contrib.auth`` plus a few app flags keep for a logged-in user."""
    return {
        "_auth_user_id": "48213",
        "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
        "_auth_user_hash": "9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c0b2d4f6e8a1c3e5b7d9f0a2c4e6b8d1f",
        "is_staff_view": False,
        "theme": "dark",
        "visits": 17,
        "onboarding_done": True,
    }


def _line_item(index: int) -> LineItem:
    return LineItem(
        product_id=100_000 + index * 37,
        name=_words(index, 4).title(),
        unit_price=Decimal(f"{(index * 173) % 9000 / 100 + 1:.2f}"),
        quantity=1 + index % 4,
        added_at=_EPOCH + timedelta(minutes=index * 3, seconds=index),
    )


def cart_payload() -> dict[str, Any]:
    """Return the login keys plus a 20-line cart, coupons, currency and a timestamp."""
    return {
        **login_payload(),
        "cart": Cart(items=[_line_item(i) for i in range(20)]),
        "coupons": {"SPRING25", "FREESHIP", "WELCOME10"},
        "currency": "EUR",
        "updated_at": _EPOCH + timedelta(hours=1),
    }


def big_payload() -> dict[str, Any]:
    """Return the login keys plus about 50 KB of orders, history and text over several keys."""
    orders = [
        {
            "order_id": 7_000_000 + i,
            "reference": f"ORD-{2025_0000 + i * 11}",
            "title": _words(i, 6),
            "total": Decimal(f"{(i * 911) % 50000 / 100 + 5:.2f}"),
            "placed_at": _EPOCH - timedelta(days=i, minutes=i * 7),
            "lines": 1 + i % 6,
            "status": ("paid", "shipped", "delivered", "returned")[i % 4],
        }
        for i in range(300)
    ]
    return {
        **login_payload(),
        "orders": orders,
        "recently_viewed": [200_000 + (i * 7919) % 100_000 for i in range(300)],
        "recent_searches": [_words(i, 3) for i in range(60)],
        "draft_review": _words(3, 1600),
        "last_order_at": _EPOCH - timedelta(days=2),
    }


# --- What an application on Django's JSON serializer writes by hand ---------------------


def cart_to_json(cart: Cart) -> dict[str, Any]:
    """Turn a Cart into JSON-safe dicts: Decimal as str, datetime as ISO 8601."""
    return {
        "items": [
            {
                "product_id": item.product_id,
                "name": item.name,
                "unit_price": str(item.unit_price),
                "quantity": item.quantity,
                "added_at": item.added_at.isoformat(),
            }
            for item in cart.items
        ]
    }


def cart_from_json(data: dict[str, Any]) -> Cart:
    """Rebuild the Cart that :func:`cart_to_json` flattened."""
    return Cart(
        items=[
            LineItem(
                product_id=item["product_id"],
                name=item["name"],
                unit_price=Decimal(item["unit_price"]),
                quantity=item["quantity"],
                added_at=datetime.fromisoformat(item["added_at"]),
            )
            for item in data["items"]
        ]
    )


def _order_to_json(order: dict[str, Any]) -> dict[str, Any]:
    return {**order, "total": str(order["total"]), "placed_at": order["placed_at"].isoformat()}


def _order_from_json(order: dict[str, Any]) -> dict[str, Any]:
    return {
        **order,
        "total": Decimal(order["total"]),
        "placed_at": datetime.fromisoformat(order["placed_at"]),
    }


def to_json_safe(session: dict[str, Any]) -> dict[str, Any]:
    """Convert a payload for Django's JSON serializer, key by key, as an app has to."""
    out = dict(session)
    if "cart" in out:
        out["cart"] = cart_to_json(out["cart"])
    if "coupons" in out:
        out["coupons"] = sorted(out["coupons"])
    if "orders" in out:
        out["orders"] = [_order_to_json(order) for order in out["orders"]]
    for key in ("updated_at", "last_order_at"):
        if key in out:
            out[key] = out[key].isoformat()
    return out


def from_json_safe(session: dict[str, Any]) -> dict[str, Any]:
    """Rebuild real objects from :func:`to_json_safe`'s output."""
    out = dict(session)
    if "cart" in out:
        out["cart"] = cart_from_json(out["cart"])
    if "coupons" in out:
        out["coupons"] = set(out["coupons"])
    if "orders" in out:
        out["orders"] = [_order_from_json(order) for order in out["orders"]]
    for key in ("updated_at", "last_order_at"):
        if key in out:
            out[key] = datetime.fromisoformat(out[key])
    return out


#: Payload builders by name, in the order the benchmark reports them.
PAYLOADS = {"login": login_payload, "cart": cart_payload, "big": big_payload}
