"""A project engine subclassing Django's stock db engine under its own class name.

Django signs its sessions with the salt ``"django.contrib.sessions." + qualname``, so this
store's records carry ``django.contrib.sessions.ShopSessionStore``, not the stock salt.
"""

from __future__ import annotations

from django.contrib.sessions.backends import db


class ShopSessionStore(db.SessionStore):
    """Stores sessions exactly as the stock db engine does."""


SessionStore = ShopSessionStore
