"""The envelope: every malformed, tampered, foreign or expired record gives an empty session."""

from __future__ import annotations

import pickle
import time
import zlib

import pytest
from django.test import override_settings

from django_picklesessions import record
from django_picklesessions.backends import locmem
from django_picklesessions.backends.locmem import SessionStore
from django_picklesessions.exceptions import RecordError, SessionTooLarge
from django_picklesessions.keys import Keyring, derive, get_keyring
from tests.helpers import pickled, sign_raw

KEY = "k" * 8 + "0123456789abcdefghijklmnopqrstuv"[:24]


def plant(session_key: str, data: bytes) -> None:
    locmem._records[SessionStore.address(session_key)] = (data, int(time.time()) + 3600)


def loaded_items(session_key: str) -> dict[str, object]:
    store = SessionStore(session_key)
    return dict(store.items())


def valid_record(session_key: str = KEY) -> bytes:
    store = SessionStore(session_key)
    return store.encode({"_auth_user_id": "7", "cart": [1, 2, 3], "flag": True})


def test_valid_record_loads() -> None:
    plant(KEY, valid_record())
    assert loaded_items(KEY) == {"_auth_user_id": "7", "cart": [1, 2, 3], "flag": True}


def test_every_byte_flip_is_rejected_without_unpickling(security_log, unpickle_spy) -> None:
    data = valid_record()
    for position in range(len(data)):
        for mask in (0x01, 0x80, 0xFF):
            tampered = bytearray(data)
            tampered[position] ^= mask
            plant(KEY, bytes(tampered))
            before = len(security_log())
            assert loaded_items(KEY) == {}, (position, mask)
            assert len(security_log()) == before + 1, (position, mask)
    assert unpickle_spy.calls == 0


def test_every_truncation_is_rejected_without_unpickling(security_log, unpickle_spy) -> None:
    data = valid_record()
    for length in range(len(data)):
        plant(KEY, data[:length])
        before = len(security_log())
        assert loaded_items(KEY) == {}, length
        assert len(security_log()) == before + 1, length
    assert unpickle_spy.calls == 0


def test_appended_bytes_are_rejected(security_log, unpickle_spy) -> None:
    plant(KEY, valid_record() + b"\x00")
    assert loaded_items(KEY) == {}
    assert len(security_log()) == 1
    assert unpickle_spy.calls == 0


def test_record_of_another_session_is_rejected(security_log, unpickle_spy) -> None:
    victim = "v" * 32
    plant(KEY, valid_record(victim))
    assert loaded_items(KEY) == {}
    assert len(security_log()) == 1
    assert "bad_mac" in security_log()[0].getMessage()
    assert unpickle_spy.calls == 0


def test_record_signed_with_unknown_key_is_rejected(security_log, unpickle_spy) -> None:
    stranger = derive("a completely different secret that nobody configured here, 123456")
    keyring = Keyring(current=stranger, by_id={stranger.key_id: stranger})
    plant(KEY, sign_raw(KEY, pickled(_auth_user_id="1"), keyring=keyring))
    assert loaded_items(KEY) == {}
    prefix = SessionStore.address(KEY)[:8]
    assert [r.getMessage() for r in security_log()] == [
        f"Session data corrupted or invalid (unknown_key) for session {prefix}…"
    ]
    assert unpickle_spy.calls == 0


def test_record_with_forged_key_id_but_wrong_key_is_rejected(security_log, unpickle_spy) -> None:
    real = get_keyring().current
    forger = derive("attacker-chosen secret that is long enough to look real 1234567890")
    keyring = Keyring(current=type(real)(real.key_id, forger.mac_key, 0), by_id={})
    plant(KEY, sign_raw(KEY, pickled(_auth_user_id="1"), keyring=keyring))
    assert loaded_items(KEY) == {}
    assert "bad_mac" in security_log()[0].getMessage()
    assert unpickle_spy.calls == 0


def test_expired_record_is_rejected(security_log, unpickle_spy) -> None:
    now = int(time.time())
    plant(KEY, sign_raw(KEY, pickled(a=1), issued_at=now - 100, expires_at=now - 1))
    assert loaded_items(KEY) == {}
    assert "expired" in security_log()[0].getMessage()
    assert unpickle_spy.calls == 0


def test_record_from_the_future_is_rejected(security_log, unpickle_spy) -> None:
    now = int(time.time())
    plant(KEY, sign_raw(KEY, pickled(a=1), issued_at=now + 3600, expires_at=now + 7200))
    assert loaded_items(KEY) == {}
    assert "future" in security_log()[0].getMessage()
    assert unpickle_spy.calls == 0


def test_clock_skew_within_a_minute_is_accepted() -> None:
    now = int(time.time())
    plant(KEY, sign_raw(KEY, pickled(a=1), issued_at=now + 30, expires_at=now + 7200))
    assert loaded_items(KEY) == {"a": 1}


def test_failed_load_never_adopts_the_key(security_log) -> None:
    plant(KEY, b"garbage")
    store = SessionStore(KEY)
    assert store.load() == {}
    assert store.session_key is None


def test_text_instead_of_bytes_is_rejected(security_log) -> None:
    assert SessionStore(KEY).decode("flaskdj:alkdjf:alkdjf") == {}
    assert len(security_log()) == 1


@override_settings(PICKLESESSIONS_MAX_RECORD_SIZE=2048)
def test_oversized_record_is_rejected_before_mac(security_log, monkeypatch) -> None:
    big = sign_raw(KEY, pickled(blob="x" * 4096))
    macs = []
    monkeypatch.setattr(record.hmac, "digest", lambda *a: macs.append(a) or b"")
    plant(KEY, big)
    assert loaded_items(KEY) == {}
    assert "(size)" in security_log()[0].getMessage()
    assert macs == []


@override_settings(PICKLESESSIONS_MAX_RECORD_SIZE=2048)
def test_writer_refuses_oversized_record() -> None:
    store = SessionStore()
    store["blob"] = "x" * 4096
    with pytest.raises(SessionTooLarge, match="'blob'"):
        store.save()


@override_settings(PICKLESESSIONS_MAX_PAYLOAD_SIZE=4096)
def test_decompression_is_capped(security_log, unpickle_spy) -> None:
    # 100 KB of zeros compresses to a few hundred bytes: a small, validly signed bomb.
    bomb = sign_raw(KEY, {"z": pickle.dumps(b"\0" * 100_000, 5)}, compress=True)
    assert len(bomb) < 2048
    plant(KEY, bomb)
    assert loaded_items(KEY) == {}
    assert "(size)" in security_log()[0].getMessage()
    assert unpickle_spy.calls == 0


@override_settings(PICKLESESSIONS_COMPRESS_MIN_SIZE=1024)
def test_large_payloads_are_compressed_and_round_trip() -> None:
    store = SessionStore()
    store["text"] = "lorem ipsum " * 1000
    store.save()
    stored = locmem._records[store.address(store.session_key)][0]
    assert stored[5] == record.FLAG_COMPRESSED
    assert len(stored) < 2000
    assert SessionStore(store.session_key)["text"] == "lorem ipsum " * 1000


def test_compressed_stream_with_trailing_garbage_is_rejected(security_log) -> None:
    payload = record.encode_payload(pickled(a=1))
    keyring = get_keyring()
    sid = record.session_id(KEY)
    body = zlib.compress(payload) + b"junk"
    header = record.HEADER.pack(
        record.MAGIC, 1, record.FLAG_COMPRESSED, keyring.current.key_id, 0, 2**40, 1, len(body)
    )
    signed = header + body
    data = signed + record.hmac.digest(keyring.current.mac_key, sid + signed, "sha256")
    plant(KEY, data)
    assert loaded_items(KEY) == {}
    assert "(compression)" in security_log()[0].getMessage()


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00\x00\x00\x01",  # one entry announced, none present
        b"\x00\x00\x00\x00extra",  # bytes after the last entry
        b"\x00\x00\x00\x01\x00\x01a\x00\x00\x00\x02xx",  # value is not a protocol-5 pickle
        b"\x00\x00\x00\x01\x00\x01\xff\x00\x00\x00\x05\x80\x05K\x01.",  # key not UTF-8
        b"\x00\x00\x00\x02" + 2 * b"\x00\x01a\x00\x00\x00\x05\x80\x05K\x01.",  # duplicate key
    ],
)
def test_malformed_payload_under_a_valid_mac_is_rejected(payload, security_log) -> None:
    keyring = get_keyring()
    sid = record.session_id(KEY)
    header = record.HEADER.pack(
        record.MAGIC, 1, 0, keyring.current.key_id, 0, 2**40, 1, len(payload)
    )
    signed = header + payload
    plant(KEY, signed + record.hmac.digest(keyring.current.mac_key, sid + signed, "sha256"))
    assert loaded_items(KEY) == {}
    assert len(security_log()) == 1


@pytest.mark.parametrize(
    "entries",
    [
        {},
        {"": b"\x80\x05N."},
        {**pickled(_auth_user_id="7", thème="clair"), "k" * 65535: b""},
        {f"key{i}": pickle.dumps(i, 5) for i in range(200)},  # past the cached length tables
    ],
    ids=["empty", "empty key", "non-ASCII and longest keys", "200 keys"],
)
def test_payload_round_trips(entries: dict[str, bytes]) -> None:
    payload = record.encode_payload(entries)
    assert len(payload) == 4 + 6 * len(entries) + sum(
        len(key.encode()) + len(value) for key, value in entries.items()
    )
    decoded = record.decode_payload(payload)
    assert decoded == entries and list(decoded) == list(entries)


def test_a_key_over_65535_bytes_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="longer than 65535 bytes: b'xxxx"):
        record.encode_payload({"a": b"", "x" * 65536: b""})


def test_record_fields() -> None:
    store = SessionStore()
    store["a"] = 1
    store.save()
    data = locmem._records[store.address(store.session_key)][0]
    magic, fmt, flags, key_id, issued, expires, version, length = record.HEADER.unpack_from(data)
    assert (magic, fmt, flags, version) == (record.MAGIC, 1, 0, 1)
    assert key_id == get_keyring().current.key_id
    assert expires - issued == store.get_expiry_age()
    assert record.peek_expiry(data) == expires
    assert len(data) == record.HEADER.size + length + record.MAC_SIZE
    store["a"] = 2
    store.save()
    assert record.HEADER.unpack_from(locmem._records[store.address(store.session_key)][0])[6] == 2


def test_session_keys_are_never_stored() -> None:
    store = SessionStore()
    store["a"] = 1
    store.save()
    address, (data, _) = next(iter(locmem._records.items()))
    assert store.session_key not in address
    assert store.session_key.encode() not in data
    assert address == record.session_id(store.session_key).hex()


def test_decode_rejects_wrong_size_mac_compare(monkeypatch) -> None:
    with pytest.raises(RecordError):
        record.decode(
            b"\x89DPS" + bytes(100),
            sid=bytes(32),
            now=0,
            keyring=get_keyring(),
            max_record_size=10**6,
            max_payload_size=10**6,
        )
