"""Keys: derived for this purpose, selected by id, rotated without logging anyone out."""

from __future__ import annotations

import hmac

import pytest
from django.core import signing
from django.test import override_settings

from django_picklesessions import keys, record
from django_picklesessions.backends import locmem
from django_picklesessions.backends.locmem import SessionStore
from django_picklesessions.keys import MAC_LABEL, SigningKey, derive, get_keyring

OLD = "old-secret-key-for-rotation-tests-0123456789-abcdefghijklmnop"
NEW = "new-secret-key-for-rotation-tests-0123456789-qrstuvwxyzABCDEF"
OTHER = "other-secret-key-for-rotation-tests-0123456789-GHIJKLMNOPQRS"


def stored(store: SessionStore) -> bytes:
    return locmem._records[store.address(store.session_key)][0]


def key_id_of(data: bytes) -> bytes:
    return record.HEADER.unpack_from(data)[3]


def make_session() -> str:
    store = SessionStore()
    store["_auth_user_id"] = "5"
    store.save()
    return store.session_key


def test_derived_key_is_domain_separated_from_secret_key() -> None:
    key = derive(NEW)
    assert key.mac_key == hmac.digest(NEW.encode(), MAC_LABEL, "sha256")
    assert key.mac_key not in (NEW.encode(), signing.get_cookie_signer(salt="").key)
    assert NEW not in repr(key) and key.mac_key.hex() not in repr(key)


def test_django_signed_value_never_verifies() -> None:
    # A value Django signs with SECRET_KEY (any salt) is not a record.
    forged = signing.dumps({"_auth_user_id": "1"}, compress=True).encode()
    assert SessionStore("x" * 32).decode(forged) == {}


@override_settings(SECRET_KEY=OLD, SECRET_KEY_FALLBACKS=[])
def test_rotation_accepts_fallback_then_resigns_with_current(security_log) -> None:
    session_key = make_session()
    with override_settings(SECRET_KEY=NEW, SECRET_KEY_FALLBACKS=[OLD]):
        store = SessionStore(session_key)
        assert store["_auth_user_id"] == "5"
        assert key_id_of(stored(store)) == derive(OLD).key_id
        # Verified with a fallback: the session counts as modified so the next response
        # re-signs it even if the view changed nothing.
        assert store.modified
        store.save()
        assert key_id_of(stored(store)) == derive(NEW).key_id
        assert SessionStore(session_key)["_auth_user_id"] == "5"
    assert security_log() == []


@override_settings(SECRET_KEY=OLD, SECRET_KEY_FALLBACKS=[])
def test_removed_key_is_rejected(security_log) -> None:
    session_key = make_session()
    with override_settings(SECRET_KEY=NEW, SECRET_KEY_FALLBACKS=[]):
        assert dict(SessionStore(session_key).items()) == {}
        assert "unknown_key" in security_log()[0].getMessage()


@override_settings(SECRET_KEY=NEW, SECRET_KEY_FALLBACKS=[OLD, OTHER])
def test_nothing_is_ever_signed_with_a_fallback() -> None:
    store = SessionStore()
    for value in range(5):
        store["n"] = value
        store.save()
        assert key_id_of(stored(store)) == derive(NEW).key_id
    store.cycle_key()
    assert key_id_of(stored(store)) == derive(NEW).key_id


@override_settings(PICKLESESSIONS_KEYS=[NEW, OLD], SECRET_KEY=OTHER)
def test_dedicated_keys_replace_secret_key() -> None:
    keyring = get_keyring()
    assert keyring.current.key_id == derive(NEW).key_id
    assert set(keyring.by_id) == {derive(NEW).key_id, derive(OLD).key_id}
    session_key = make_session()
    with override_settings(SECRET_KEY="changing-secret-key-does-not-matter-here-0123456789abc"):
        assert SessionStore(session_key)["_auth_user_id"] == "5"


def test_key_id_selects_the_key_without_trying_others(monkeypatch) -> None:
    session_key = make_session()
    with override_settings(SECRET_KEY_FALLBACKS=[OLD, OTHER]):
        keyring = get_keyring()  # derive the keys first; only MACs are counted below
        calls = []
        real = SigningKey.mac
        monkeypatch.setattr(
            SigningKey, "mac", lambda key, *parts: calls.append(key.mac_key) or real(key, *parts)
        )
        assert SessionStore(session_key)["_auth_user_id"] == "5"
    assert calls == [keyring.current.mac_key]


def test_bytes_keys_are_accepted() -> None:
    with override_settings(PICKLESESSIONS_KEYS=[bytes(range(32))]):
        session_key = make_session()
        assert SessionStore(session_key)["_auth_user_id"] == "5"


@pytest.mark.parametrize("c_hmac", [True, False], ids=["C HMAC", "hmac module"])
def test_a_keys_mac_is_hmac_sha256_of_its_parts_joined(c_hmac: bool, monkeypatch) -> None:
    # Both keyed states, OpenSSL's C object and the hmac module's wrapper around it.
    if not c_hmac:
        monkeypatch.setattr(keys, "_c_hmac_new", None)
    key = derive(NEW)
    assert isinstance(key._keyed, hmac.HMAC) is not c_hmac
    parts = [b"sid" * 11, memoryview(b"header and payload")[3:], b""]
    expected = hmac.digest(key.mac_key, b"".join(parts), "sha256")
    # Every call starts from the keyed state afresh: an earlier MAC leaves nothing behind.
    assert key.mac(*parts) == key.mac(*parts) == expected
    assert key.mac(b"".join(parts)) == expected
    assert key.mac() == hmac.digest(key.mac_key, b"", "sha256")
