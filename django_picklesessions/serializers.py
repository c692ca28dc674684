"""A ``SESSION_SERIALIZER`` for Django's stock engines: Django 4.2's pickle bytes, restricted.

``SESSION_SERIALIZER = "django_picklesessions.serializers.PickleSerializer"`` keeps a site on
the stock ``db``, ``file``, ``cached_db`` or ``signed_cookies`` engine reading and writing
exactly what Django 4.2's ``PickleSerializer`` did (a protocol-5 pickle of the whole session
dict), on Django 4.2 to 6.x, so sessions survive the Django upgrade and a rollback is a
settings revert. What differs:

- reads go through the allow-list, the never-allow list and strict mode (when on); a value
  the allow-list refuses drops its key alone (the login survives), with a warning on
  ``django_picklesessions.legacy``; a gadget empties the session and is logged on
  ``django.security.SuspiciousSession``;
- writes refuse, with a TypeError naming the key and the class, what reads would refuse;
- JSON sessions (``JSONSerializer``'s bytes) are read too, so a JSON site can switch to it
  without logging anyone out.

It is a bridge, not this package's format: Django's signing (``SECRET_KEY``, no binding of
the record to its key, unsigned expiry columns), raw session keys in storage, the whole
dict unpickled on every request, and Django's own inflation of compressed data, which has
no size limit before this serializer sees the bytes. The stock ``cache`` engine never calls
a serializer at all (check W011).
"""

from __future__ import annotations

import logging
from typing import Any

from django_picklesessions import pickler
from django_picklesessions.legacy.signing import LegacyError, decode_payload

security_logger = logging.getLogger("django.security.SuspiciousSession")
_FORMATS = frozenset(("json", "pickle"))


class PickleSerializer:
    """Django's serializer interface: ``dumps(obj) -> bytes``, ``loads(bytes) -> obj``."""

    def dumps(self, obj: Any) -> bytes:
        """Return ``pickle.dumps(obj, 5)``, byte for byte, or raise TypeError naming the key."""
        return pickler.dumps_session(obj)

    def loads(self, data: bytes) -> Any:
        """Decode a stock session payload, pickle or JSON; raise LegacyError if refused.

        Django's ``SessionBase.decode`` turns the exception into an empty session.
        """
        try:
            return decode_payload(data, formats=_FORMATS).data
        except LegacyError as exc:
            if exc.suspicious:
                security_logger.warning(
                    "Session data refused under a valid signature (%s): whoever wrote it "
                    "holds SECRET_KEY",
                    exc,
                )
            else:
                security_logger.warning("Session data refused (%s)", exc)
            raise
