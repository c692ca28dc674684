"""A cache backend that is not one of Django's own, whose stored bytes we do not know."""

from __future__ import annotations

from django.core.cache.backends.locmem import LocMemCache


class FancyCache(LocMemCache):
    """Stands for any third-party backend (django-redis, a memcached client...)."""
