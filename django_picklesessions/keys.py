"""Signing keys: derived for this purpose only, selected by key id, rotated newest first.

Each configured secret yields a MAC key ``HMAC-SHA256(secret, MAC_LABEL)`` that no other part
of Django computes, so nothing Django signs with ``SECRET_KEY`` verifies here and nothing we
sign verifies there. A 4-byte key id (``HMAC-SHA256(mac_key, ID_LABEL)[:4]``) sits in each
record's header, so the verifier picks one key directly instead of trying them all.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.views.decorators.debug import sensitive_variables

from django_picklesessions.conf import conf, on_change

MAC_LABEL = b"django_picklesessions/v1/record-mac"
ID_LABEL = b"django_picklesessions/v1/key-id"
KEY_ID_SIZE = 4


try:
    # The C object behind hmac.HMAC: its copy(), update() and digest() skip the Python
    # wrapper's calls (half a microsecond per MAC). The same OpenSSL HMAC either way.
    from _hashlib import hmac_new as _c_hmac_new
except ImportError:  # pragma: no cover - a CPython built without OpenSSL
    _c_hmac_new = None  # type: ignore[assignment]


class MacState(Protocol):
    """What :class:`SigningKey` needs of a keyed HMAC: hmac.HMAC and its C object both."""

    def copy(self) -> MacState: ...
    def update(self, data: bytes | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...


def keyed_sha256(key: bytes) -> MacState:
    """Return HMAC-SHA256 keyed with ``key`` and nothing hashed yet; copy() it per MAC."""
    if _c_hmac_new is not None:
        return _c_hmac_new(key, digestmod="sha256")
    return hmac.new(key, digestmod=hashlib.sha256)


@dataclass(frozen=True)
class SigningKey:
    """One derived MAC key and its id; ``repr`` never shows key material."""

    key_id: bytes
    mac_key: bytes = field(repr=False)
    #: Position in the configured list: 0 is the current key, the rest are fallbacks.
    position: int
    #: HMAC-SHA256 keyed with ``mac_key`` and nothing hashed yet: each MAC starts from a copy,
    #: which skips keying the hash again (a third of a small record's MAC).
    _keyed: MacState = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_keyed", keyed_sha256(self.mac_key))

    def mac(self, *parts: bytes | memoryview) -> bytes:
        """Return HMAC-SHA256 under this key of ``parts`` joined, without joining them."""
        state = self._keyed.copy()
        for part in parts:
            state.update(part)
        return state.digest()


@dataclass(frozen=True)
class Keyring:
    """The current signing key and every key that may verify, by key id."""

    current: SigningKey
    by_id: dict[bytes, SigningKey] = field(repr=False)


@sensitive_variables()
def derive(secret: str | bytes, position: int = 0) -> SigningKey:
    """Derive the MAC key and key id of one configured secret."""
    raw = secret.encode() if isinstance(secret, str) else bytes(secret)
    mac_key = hmac.digest(raw, MAC_LABEL, "sha256")
    key_id = hmac.digest(mac_key, ID_LABEL, "sha256")[:KEY_ID_SIZE]
    return SigningKey(key_id=key_id, mac_key=mac_key, position=position)


@sensitive_variables()
def configured_secrets() -> list[str | bytes]:
    """Return the secrets in use, newest first: ``PICKLESESSIONS_KEYS`` or Django's keys."""
    keys = conf.KEYS
    if keys is not None:
        if isinstance(keys, (str, bytes)) or not isinstance(keys, (list, tuple)):
            raise ImproperlyConfigured(
                "PICKLESESSIONS_KEYS must be a list of secrets, newest first."
            )
        return list(keys)
    return [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]


@functools.cache
@sensitive_variables()
def get_keyring() -> Keyring:
    """Derive every configured key once; settings changes drop the cache."""
    secrets = configured_secrets()
    if not secrets or not all(isinstance(s, (str, bytes)) and s for s in secrets):
        raise ImproperlyConfigured(
            "Session signing needs a non-empty SECRET_KEY (or PICKLESESSIONS_KEYS entries)."
        )
    derived = [derive(secret, position) for position, secret in enumerate(secrets)]
    by_id: dict[bytes, SigningKey] = {}
    for key in derived:
        # On a (1 in 2**32) id collision the newer key wins; check E004 reports it.
        by_id.setdefault(key.key_id, key)
    return Keyring(current=derived[0], by_id=by_id)


def weakness(secret: object) -> str | None:
    """Say why a secret is too weak to sign sessions, or return None.

    The rules are Django's own for ``SECRET_KEY`` (check ``security.W009``): at least 50
    characters, at least 5 distinct ones, and not the ``django-insecure-`` development key.
    Bytes secrets need 32 bytes (256 bits) and 5 distinct values.
    """
    if isinstance(secret, bytes):
        if len(secret) < 32:
            return f"it is {len(secret)} bytes long; use at least 32 random bytes"
        if len(set(secret)) < 5:
            return "it has fewer than 5 distinct bytes"
        return None
    if not isinstance(secret, str) or not secret:
        return "it is empty or not a string"
    if secret.startswith("django-insecure-"):
        return "it is Django's generated development key (prefix 'django-insecure-')"
    if len(secret) < 50:
        return f"it is {len(secret)} characters long; use at least 50 random characters"
    if len(set(secret)) < 5:
        return "it has fewer than 5 distinct characters"
    return None


@on_change("SECRET_KEY", "SECRET_KEY_FALLBACKS", "PICKLESESSIONS_KEYS")
def _clear() -> None:
    get_keyring.cache_clear()
