"""The bytes Django's built-in cache backends store for a key, read without unpickling.

``cache.get`` unpickles whatever the cache holds with no restriction at all; the legacy
cache source must never call it. These readers return the pickle itself (and the entry's
expiry), for the restricted unpickler to decode. Only Django's own backends are known here;
check E015 refuses any other for ``SESSION_CACHE_ALIAS``.
"""

from __future__ import annotations

import base64
import logging
import os
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

from django.db import connections, router

from django_picklesessions.conf import conf

logger = logging.getLogger("django_picklesessions.legacy")

#: A stored entry: the pickled value and when it expires (Unix time), None for never.
Entry = tuple[bytes, "int | None"]


def read(cache: Any, key: str) -> Entry | None:
    """Return the pickle ``cache`` stores under ``key`` (before KEY_FUNCTION), or None."""
    reader = _READERS.get(type(cache).__name__)
    if reader is None or type(cache).__module__ not in _MODULES:
        logger.warning(
            "Legacy cache session not read: %s.%s is not one of Django's cache backends.",
            type(cache).__module__,
            type(cache).__qualname__,
        )
        return None
    return reader(cache, key)


def _locmem(cache: Any, key: str) -> Entry | None:
    full_key = cache.make_and_validate_key(key)
    with cache._lock:
        data = cache._cache.get(full_key)
        expires = cache._expire_info.get(full_key, -1)
    if data is None or (expires is not None and expires <= time.time()):
        return None
    return bytes(data), None if expires is None else int(expires)


def _split_expiry(content: bytes) -> tuple[float | None, bytes] | None:
    """Split a FileBasedCache file into its expiry pickle's value and the rest.

    The expiry is ``pickle.dumps(float_or_None, 5)``: ``\\x80\\x05N.`` or ``\\x80\\x05``, a
    FRAME of 10 bytes, ``G`` and a big-endian double, ``.``. Parsed by hand: no unpickler
    for eleven known bytes.
    """
    if content[:4] == b"\x80\x05N.":
        return None, content[4:]
    if content[:3] == b"\x80\x05\x95" and content[11:12] == b"G" and content[20:21] == b".":
        (expires,) = struct.unpack(">d", content[12:20])
        return expires, content[21:]
    return None


def _filebased(cache: Any, key: str) -> Entry | None:
    path = cache._key_to_file(key)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            content = f.read(conf.MAX_RECORD_SIZE + 32)
    except OSError:
        return None
    split = _split_expiry(content)
    if split is None or len(content) > conf.MAX_RECORD_SIZE + 21:
        logger.warning("Legacy cache file %s refused: not a FileBasedCache entry.", path)
        return None
    expires, compressed = split
    if expires is not None and expires <= time.time():
        return None
    inflate = zlib.decompressobj()
    try:
        data = inflate.decompress(compressed, conf.MAX_PAYLOAD_SIZE)
    except zlib.error:
        return None
    if inflate.unconsumed_tail:
        logger.warning("Legacy cache file %s refused: larger than MAX_PAYLOAD_SIZE.", path)
        return None
    return data, None if expires is None else int(expires)


def _redis(cache: Any, key: str) -> Entry | None:
    full_key = cache.make_and_validate_key(key)
    client = cache._cache.get_client(full_key)
    data = client.get(full_key)
    if data is None:
        return None
    ttl = client.ttl(full_key)
    return bytes(data), None if ttl is None or ttl < 0 else int(time.time()) + int(ttl)


def _database(cache: Any, key: str) -> Entry | None:
    from django.db import models

    full_key = cache.make_and_validate_key(key)
    alias = router.db_for_read(cache.cache_model_class)
    connection = connections[alias]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote('value')}, {quote('expires')} FROM {quote(cache._table)} "
            f"WHERE {quote('cache_key')} = %s",
            [full_key],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    value, expires = row
    expression = models.Expression(output_field=models.DateTimeField())
    for converter in connection.ops.get_db_converters(expression) + expression.get_db_converters(
        connection
    ):
        expires = converter(expires, expression, connection)
    expires_at = int(expires.timestamp())
    if expires_at <= time.time():
        return None
    text = connection.ops.process_clob(value)
    if len(text) > 2 * conf.MAX_RECORD_SIZE:
        return None
    return base64.b64decode(text.encode()), expires_at


def _dummy(cache: Any, key: str) -> Entry | None:
    return None


_READERS = {
    "LocMemCache": _locmem,
    "FileBasedCache": _filebased,
    "RedisCache": _redis,
    "DatabaseCache": _database,
    "DummyCache": _dummy,
}
_MODULES = frozenset(
    f"django.core.cache.backends.{name}" for name in ("locmem", "filebased", "redis", "db", "dummy")
)


def redis_scan(cache: Any, prefix: str) -> Iterator[str]:
    """Every key of a RedisCache that starts with ``prefix`` (SCAN: no blocking KEYS)."""
    client = cache._cache.get_client(prefix)
    pattern = prefix.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?") + "*"
    for raw in client.scan_iter(match=pattern, count=1000):
        yield raw.decode() if isinstance(raw, bytes) else str(raw)
