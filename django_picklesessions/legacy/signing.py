"""Django's signed session strings: our own bounded reader, and a writer of the same bytes.

Django's stock engines store ``signing.dumps(session, salt=..., serializer=..., compress=True)``:

    [.]b64url(zlib?(payload)) ":" b62(unix time) ":" b64url(HMAC-SHA256(K, all before it))
    K = sha256(salt + "signer" + secret), secret = SECRET_KEY or one of SECRET_KEY_FALLBACKS

:func:`loads` reads it in an order that lets nothing reach a decoder before the MAC
verified: size, structure, MAC (constant-time, under each secret), then base64, inflation
with a cap, the signed timestamp, and last the payload, by its first byte: ``{`` JSON,
``\\x80`` a protocol-5 pickle, unpickled through the allow-list with salvage
(:func:`django_picklesessions.unpickler.salvage_loads`). It never uses ``PICKLESESSIONS_KEYS``
nor Django's ``signing.loads``, which inflates without a limit.

Logging: :func:`loads` and :func:`loads_unsigned_pickle` log each dropped key (WARNING on
``django_picklesessions.legacy``, naming the key and the refused global) and nothing else;
every refusal is a :class:`LegacyError`, which the caller logs once (on
``django.security.SuspiciousSession`` when ``suspicious`` is set, or as it sees fit).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import inspect
import json
import logging
import time
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from django_picklesessions import pickler, record, unpickler
from django_picklesessions.conf import conf
from django_picklesessions.exceptions import RecordError, ValueRejected
from django_picklesessions.legacy import engines

logger = logging.getLogger("django_picklesessions.legacy")

#: The salt of Django's signed_cookies engine (and of any subclass: its load() fixes it).
SIGNED_COOKIES_SALT = "django.contrib.sessions.backends.signed_cookies"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_SIGNATURE_LENGTH = 43  # unpadded base64 of 32 bytes
_MAX_TIMESTAMP_LENGTH = 12


class LegacyError(Exception):
    """A legacy record refused; ``reason`` is a short code for the log.

    ``"format"``: not a signed string of Django's (size, structure); ``"signature"``: no
    secret verifies it; ``"expired"``: older than ``max_age``; ``"payload"``: verified, but
    the payload does not decode (bad base64, zlib, JSON, pickle, over the size cap);
    ``"refused"``: verified, but of a format not accepted, or holding a global that can
    only be a gadget. Log every one but ``"expired"`` on ``django.security.SuspiciousSession``,
    as Django logs "Session data corrupted"; ``suspicious`` marks what only a holder of the
    key can have written (a gadget, a malformed payload under a valid MAC): the key leaked.
    """

    def __init__(self, reason: str, detail: str = "", *, suspicious: bool = False) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.suspicious = suspicious


@dataclass(frozen=True)
class LegacySession:
    """A verified, decoded legacy session."""

    #: The values kept (a value the allow-list refuses is dropped with its key).
    data: dict[str, Any]
    #: The Unix timestamp inside the signed string (0 for the unsigned cache format).
    signed_at: int
    #: "pickle" or "json".
    format: str
    #: ``(session key, refused global or reason)`` for each value dropped.
    dropped: tuple[tuple[str, str], ...] = ()


def salt_for(engine: str) -> str:
    """Return the salt Django signed ``engine``'s sessions with.

    ``"django.contrib.sessions." + SessionStore.__qualname__`` (the class name, not the
    module: db, file, cache and cached_db share ``django.contrib.sessions.SessionStore``), a
    ``key_salt`` the project's class overrides, or the signed_cookies engine's own salt.
    Raises :class:`engines.LegacyEngineProblem` for an engine that is not stock-derived.
    """
    kind = engines.stock_kind(engine)
    if kind == "signed_cookies":
        return SIGNED_COOKIES_SALT
    store = engines.store_class(engine)
    from django.contrib.sessions.backends.base import SessionBase

    override = inspect.getattr_static(store, "key_salt")
    if override is inspect.getattr_static(SessionBase, "key_salt"):
        return "django.contrib.sessions." + store.__qualname__
    if isinstance(override, property) and override.fget is not None:
        # Evaluated on a bare instance: SessionBase.__init__ would import SESSION_SERIALIZER.
        return str(override.fget(object.__new__(store)))
    return str(override)


def _secrets() -> list[bytes]:
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ())]
    return [key if isinstance(key, bytes) else str(key).encode("utf-8") for key in keys]


def _signature(value: bytes, salt: str, secret: bytes) -> bytes:
    # Django's salted_hmac(salt + "signer", value, secret, algorithm="sha256"), base64'd.
    key = hashlib.sha256((salt + "signer").encode("utf-8") + secret).digest()
    return base64.urlsafe_b64encode(hmac.digest(key, value, "sha256")).rstrip(b"=")


def _b62_decode(text: str) -> int:
    number = 0
    for digit in text:
        number = number * 62 + _BASE62.index(digit)
    return number


def _b62_encode(number: int) -> str:
    if number == 0:
        return "0"
    digits = ""
    while number:
        number, remainder = divmod(number, 62)
        digits = _BASE62[remainder] + digits
    return digits


def _inflate(data: bytes, limit: int) -> bytes:
    # The same capped inflation as our own records'.
    try:
        return record._decompress(data, limit)
    except RecordError as exc:
        if exc.reason == "size":
            raise LegacyError(
                "payload", f"inflates beyond PICKLESESSIONS_MAX_PAYLOAD_SIZE ({limit})"
            ) from None
        raise LegacyError(
            "payload", "bad, truncated or trailing zlib data", suspicious=True
        ) from None


def loads(
    text: str | bytes,
    *,
    salt: str,
    formats: Collection[str],
    max_age: int | None = None,
) -> LegacySession:
    """Verify and decode one signed legacy session string; raise LegacyError if refused.

    ``salt`` comes from :func:`salt_for`; ``formats`` is a subset of ``{"json", "pickle"}``
    (``conf.LEGACY_FORMATS``); ``max_age`` (seconds) refuses a string signed longer ago
    than that, as Django's signed_cookies engine does with ``SESSION_COOKIE_AGE``.
    """
    # 1. Size, before any work: the base64 text of a record of MAX_RECORD_SIZE bytes.
    limit = conf.MAX_RECORD_SIZE * 4 // 3 + 64
    if len(text) > limit:
        raise LegacyError("format", f"longer than {limit} characters")
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise LegacyError("format", "not ASCII") from None
    # 2. Structure: value ":" timestamp ":" signature, each of its alphabet.
    parts = text.split(":")
    if len(parts) != 3:
        raise LegacyError("format", "not three ':'-separated parts")
    encoded, stamp, signature = parts
    body = encoded[1:] if encoded.startswith(".") else encoded
    if (
        not body
        or not _B64_CHARS.issuperset(body)
        or not stamp
        or len(stamp) > _MAX_TIMESTAMP_LENGTH
        or not set(_BASE62).issuperset(stamp)
        or len(signature) != _SIGNATURE_LENGTH
        or not _B64_CHARS.issuperset(signature)
    ):
        raise LegacyError("format", "not a signed string of Django's")
    # 3. The MAC, under SECRET_KEY, then each fallback.
    signed = f"{encoded}:{stamp}".encode("ascii")
    given = signature.encode("ascii")
    if not any(
        hmac.compare_digest(_signature(signed, salt, secret), given) for secret in _secrets()
    ):
        raise LegacyError("signature")
    # 4. Only now: the signed timestamp, base64, inflation with a cap.
    signed_at = _b62_decode(stamp)
    if max_age is not None and time.time() - signed_at > max_age:
        raise LegacyError("expired", f"signed at {signed_at}, max_age {max_age}")
    try:
        data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise LegacyError("payload", "bad base64", suspicious=True) from None
    cap = conf.MAX_PAYLOAD_SIZE
    if encoded.startswith("."):
        data = _inflate(data, cap)
    elif len(data) > cap:
        raise LegacyError("payload", f"over PICKLESESSIONS_MAX_PAYLOAD_SIZE ({cap})")
    return decode_payload(data, formats=formats, signed_at=signed_at)


def decode_payload(data: bytes, *, formats: Collection[str], signed_at: int = 0) -> LegacySession:
    """Decode a verified payload by its first byte: ``{`` JSON, ``\\x80`` pickle.

    Also the bridge serializer's reader, which Django's signing hands the payload to.
    """
    if len(data) > conf.MAX_PAYLOAD_SIZE:
        raise LegacyError("payload", "over PICKLESESSIONS_MAX_PAYLOAD_SIZE")
    first = data[:1]
    if first == b"{":
        if "json" not in formats:
            raise LegacyError("refused", "a JSON session, and 'json' is not accepted")
        try:
            # As Django's JSONSerializer reads it.
            value = json.loads(data.decode("latin-1"))
        except (ValueError, RecursionError) as exc:
            raise LegacyError("payload", f"bad JSON: {exc}"[:200], suspicious=True) from None
        if type(value) is not dict:
            raise LegacyError("payload", "JSON that is not an object", suspicious=True)
        return LegacySession(data=value, signed_at=signed_at, format="json")
    if first == b"\x80":
        if "pickle" not in formats:
            raise LegacyError("refused", "a pickled session, and 'pickle' is not accepted")
        if data[1:2] != b"\x05":
            raise LegacyError("refused", "a pickle of a protocol other than 5")
        return _salvage(data, signed_at)
    raise LegacyError("payload", "neither JSON nor a pickle", suspicious=True)


def _salvage(data: bytes, signed_at: int) -> LegacySession:
    try:
        kept, dropped = unpickler.salvage_loads(data)
    except unpickler.SuspiciousValue as exc:
        raise LegacyError("refused", str(exc), suspicious=True) from None
    except ValueRejected as exc:  # strict mode's resource bounds
        raise LegacyError("payload", str(exc)) from None
    for key, refused in dropped:
        logger.warning(
            "Dropped legacy session key %r: it holds %s, which PICKLESESSIONS_ALLOWED_CLASSES "
            "does not allow",
            key,
            refused,
        )
    return LegacySession(data=kept, signed_at=signed_at, format="pickle", dropped=tuple(dropped))


def loads_unsigned_pickle(data: bytes, *, formats: Collection[str]) -> LegacySession:
    """Decode the raw value Django's stock cache engine stored: an unsigned pickle of the dict.

    No MAC exists, so it is read only through the allow-list with salvage, never by the
    cache's own unpickling; ``signed_at`` is 0.
    """
    if "pickle" not in formats:
        raise LegacyError("refused", "a pickled session, and 'pickle' is not accepted")
    if len(data) > conf.MAX_PAYLOAD_SIZE:
        raise LegacyError("payload", "over PICKLESESSIONS_MAX_PAYLOAD_SIZE")
    if data[:2] != b"\x80\x05":
        raise LegacyError("refused", "not a protocol-5 pickle")
    return _salvage(data, 0)


def dumps(session: Mapping[str, Any], *, salt: str, format: str) -> str:
    """Return what Django 4.2 stored for ``session``, byte for byte.

    That is ``signing.dumps(dict(session), salt=salt, serializer=PickleSerializer or
    JSONSerializer, compress=True)``, signed with ``SECRET_KEY`` at ``time.time()``. The
    pickle goes through the checking pickler: a value the reader would refuse raises a
    TypeError naming its key; so does a value JSON cannot hold.
    """
    if format == "pickle":
        data = pickler.dumps_session(session)
    elif format == "json":
        data = _json_dumps(session)
    else:
        raise ValueError(f"format must be 'pickle' or 'json', not {format!r}")
    compressed = zlib.compress(data)
    encoded = base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
    if len(compressed) < len(data) - 1:
        encoded = "." + base64.urlsafe_b64encode(compressed).rstrip(b"=").decode("ascii")
    value = f"{encoded}:{_b62_encode(int(time.time()))}"
    secret = _secrets()[0]
    return f"{value}:{_signature(value.encode('ascii'), salt, secret).decode('ascii')}"


def _json_dumps(session: Mapping[str, Any]) -> bytes:
    # As Django's JSONSerializer writes it.
    try:
        return json.dumps(dict(session), separators=(",", ":")).encode("latin-1")
    except (TypeError, ValueError):
        for key, value in session.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"Session key {key!r} cannot be stored as JSON: it holds a "
                    f"{type(value).__module__}.{type(value).__qualname__} ({exc})."
                ) from None
        raise
