"""A RedisCache for the tests whose ``clear()`` deletes only its own keys.

Django's ``RedisCache.clear()`` is ``FLUSHDB``: it would empty the whole database, and with it
the keys of every other test run sharing the server (tox runs two environments at once).
"""

from __future__ import annotations

from django.core.cache.backends.redis import RedisCache


class PrefixClearingRedisCache(RedisCache):
    """Clears the keys under its ``KEY_PREFIX`` (``default_key_func``'s layout), nothing else."""

    def clear(self) -> None:
        client = self._cache.get_client(None, write=True)
        pattern = _glob_escape(self.key_prefix) + ":*"
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) == 1000:
                client.delete(*batch)
                batch = []
        if batch:
            client.delete(*batch)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
