"""The "recently viewed" list: a few product ids in the session, newest first."""

from __future__ import annotations

from django.contrib.sessions.backends.base import SessionBase

from shop.models import Product

SESSION_KEY = "recently_viewed"
#: How many products the list remembers.
LIMIT = 5


def remember(session: SessionBase, product_id: int) -> None:
    """Put ``product_id`` first in the list."""
    ids = session.get(SESSION_KEY)
    if not isinstance(ids, list):
        ids = []
    if ids[:1] == [product_id]:
        return  # viewing the same product again changes nothing: no write
    session[SESSION_KEY] = [product_id, *(i for i in ids if i != product_id)][:LIMIT]


def products(session: SessionBase, exclude: int | None = None) -> list[Product]:
    """Return the recently viewed products that are still in the catalog, newest first."""
    ids = session.get(SESSION_KEY)
    if not isinstance(ids, list):
        return []
    found = Product.objects.filter(active=True).in_bulk([i for i in ids if i != exclude])
    return [found[i] for i in ids if i in found]
