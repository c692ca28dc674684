"""The stored record, format version 1: header, payload of per-key pickles, HMAC-SHA256.

``docs/format.md`` describes it byte for byte. This module never unpickles: it checks a
record in the order the design fixes (size, structure, key id, MAC, signed expiry,
decompression with a cap) and hands back the still-pickled value of each session key.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import itertools
import struct
import zlib
from collections.abc import Mapping
from typing import NamedTuple

from django_picklesessions.exceptions import RecordError, SessionTooLarge
from django_picklesessions.keys import Keyring

MAGIC = b"\x89DPS"
FORMAT_VERSION = 1
FLAG_COMPRESSED = 0x01
KNOWN_FLAGS = FLAG_COMPRESSED

# magic, format version, flags, key id, issued-at, expires-at, version counter, payload length
HEADER = struct.Struct(">4sBB4sQQQI")
MAC_SIZE = 32
MIN_SIZE = HEADER.size + 4 + MAC_SIZE  # an empty payload still holds its entry count
#: A record issued further in the future than this (seconds) is refused.
CLOCK_SKEW = 60

_COUNT = struct.Struct(">I")
_TABLE_ENTRY_SIZE = 6  # key length u16, value length u32
_NO_SESSION = bytes(32)
#: Records up to this size are MACed from a copy of their signed part.
_COPY_TO_MAC = 4096


def session_id(session_key: str | None) -> bytes:
    """Return the 32-byte identity a record is bound to: SHA-256 of the session key.

    It is also the storage address (hex), so it must not depend on a key that rotates.
    A session without a key yet (``encode`` before ``create``) is bound to 32 zero bytes.
    """
    if not session_key:
        return _NO_SESSION
    return hashlib.sha256(session_key.encode("utf-8", "surrogatepass")).digest()


class Record(NamedTuple):
    """A verified record: each session key's pickled value, and the signed metadata.

    A named tuple, not a dataclass: one is built on every load, and a tuple costs less.
    """

    entries: dict[str, bytes]
    issued_at: int
    expires_at: int
    version: int
    #: 0 when signed with the current key; more when verified with a fallback.
    key_position: int


@functools.lru_cache(maxsize=64)
def _table(count: int) -> struct.Struct:
    """Return the struct of a payload's length table for ``count`` keys."""
    return struct.Struct(">" + "HI" * count)


@functools.lru_cache(maxsize=256)
def _key_layout(keys: tuple[str, ...]) -> tuple[bytes, bytes, tuple[int, ...], struct.Struct]:
    """Return the count, the key block, the key lengths and the table struct for ``keys``.

    Cached: a site's sessions share a few key sets, so most saves encode no key at all.
    """
    encoded = [key.encode("utf-8") for key in keys]
    lengths = tuple(map(len, encoded))
    if lengths and max(lengths) > 0xFFFF:
        key = next(key for key in encoded if len(key) > 0xFFFF)
        raise ValueError(f"A session key is longer than 65535 bytes: {key[:40]!r}...")
    return len(keys).to_bytes(4, "big"), b"".join(encoded), lengths, _table(len(keys))


def encode_payload(entries: Mapping[str, bytes]) -> bytes:
    """Serialise ``{key: pickled value}``: count, a table of lengths, the keys, the values."""
    count, block, key_lengths, table = _key_layout(tuple(entries))
    values = entries.values()
    lengths = [0] * (2 * len(key_lengths))
    lengths[0::2] = key_lengths
    lengths[1::2] = map(len, values)
    return b"".join((count, table.pack(*lengths), block, *values))


def _split_keys(block: bytes, lengths: tuple[int, ...]) -> tuple[str, ...] | None:
    """Return the keys packed in ``block`` with these byte lengths, or None if not UTF-8."""
    ends = list(itertools.accumulate(lengths, initial=0))
    if block.isascii():  # nearly always: one decode, then str slices
        text = block.decode("ascii")
        return tuple(text[start:end] for start, end in itertools.pairwise(ends))
    try:
        return tuple(block[start:end].decode("utf-8") for start, end in itertools.pairwise(ends))
    except UnicodeDecodeError:
        return None


#: :func:`_split_keys` for key blocks up to ``_CACHED_KEY_BLOCK`` bytes, cached like
#: :func:`_key_layout`; only verified records get here.
_split_keys_cached = functools.lru_cache(maxsize=256)(_split_keys)
_CACHED_KEY_BLOCK = 2048


def decode_payload(payload: bytes) -> dict[str, bytes]:
    """Split a payload into ``{key: pickled value}``; raise RecordError if malformed."""
    size = len(payload)
    if size < _COUNT.size:
        raise RecordError("payload")
    (count,) = _COUNT.unpack_from(payload, 0)
    keys_at = _COUNT.size + _TABLE_ENTRY_SIZE * count
    if keys_at > size:
        raise RecordError("payload")
    lengths = _table(count).unpack_from(payload, _COUNT.size)
    if keys_at + sum(lengths) != size:
        raise RecordError("payload")
    key_lengths = lengths[0::2]
    at = keys_at + sum(key_lengths)
    block = payload[keys_at:at]
    split = _split_keys_cached if len(block) <= _CACHED_KEY_BLOCK else _split_keys
    keys = split(block, key_lengths)
    if keys is None:
        raise RecordError("payload")
    entries: dict[str, bytes] = {}
    for key, length in zip(keys, lengths[1::2], strict=True):
        entries[key] = payload[at : at + length]
        at += length
    if len(entries) != count:
        raise RecordError("payload")  # a key appeared twice
    return entries


def encode(
    entries: Mapping[str, bytes],
    *,
    sid: bytes,
    issued_at: int,
    expires_at: int,
    version: int,
    keyring: Keyring,
    max_record_size: int,
    max_payload_size: int,
    compress_min_size: int | None,
) -> bytes:
    """Build a record signed with the keyring's current key (never a fallback)."""
    payload = encode_payload(entries)
    if len(payload) > max_payload_size:
        raise SessionTooLarge(_too_large("payload", len(payload), max_payload_size, entries))
    flags = 0
    if compress_min_size is not None and len(payload) >= compress_min_size:
        compressed = zlib.compress(payload, 1)
        if len(compressed) < len(payload):
            payload, flags = compressed, FLAG_COMPRESSED
    key = keyring.current
    header = HEADER.pack(
        MAGIC, FORMAT_VERSION, flags, key.key_id, issued_at, expires_at, version, len(payload)
    )
    record = b"".join((header, payload, key.mac(sid, header, payload)))
    if len(record) > max_record_size:
        raise SessionTooLarge(_too_large("record", len(record), max_record_size, entries))
    return record


def decode(
    data: bytes | bytearray | memoryview,
    *,
    sid: bytes,
    now: int,
    keyring: Keyring,
    max_record_size: int,
    max_payload_size: int,
    check_expiry: bool = True,
) -> Record:
    """Verify a record and return its entries, or raise RecordError with a reason code.

    ``check_expiry=False`` is for inspecting stored records (the admin), never for loading.
    """
    # 1. Size, before any other work.
    if len(data) > max_record_size:
        raise RecordError("size")
    if len(data) < MIN_SIZE:
        raise RecordError("format")
    if not isinstance(data, bytes):
        data = bytes(data)  # memoryview from PostgreSQL, bytearray from files
    # 2. Structure of the header.
    magic, fmt, flags, key_id, issued_at, expires_at, version, length = HEADER.unpack_from(data)
    if magic != MAGIC or fmt != FORMAT_VERSION:
        raise RecordError("format")
    if flags & ~KNOWN_FLAGS or HEADER.size + length + MAC_SIZE != len(data):
        raise RecordError("format")
    # 3. The key named by the id, then the MAC over session identity + everything before it.
    key = keyring.by_id.get(key_id)
    if key is None:
        raise RecordError("unknown_key")
    # A small record is cheaper copied than wrapped in a memoryview; a large one is not.
    signed = memoryview(data)[:-MAC_SIZE] if len(data) > _COPY_TO_MAC else data[:-MAC_SIZE]
    expected = key.mac(sid, signed)
    if not hmac.compare_digest(expected, data[-MAC_SIZE:]):
        raise RecordError("bad_mac")
    # 4. Signed expiry: the storage's own expiry column or mtime is only a cleanup hint.
    if check_expiry and expires_at <= now:
        raise RecordError("expired")
    if check_expiry and issued_at > now + CLOCK_SKEW:
        raise RecordError("future")
    payload = data[HEADER.size : -MAC_SIZE]
    # 5. Decompression, capped so a small record cannot expand without bound.
    if flags & FLAG_COMPRESSED:
        payload = _decompress(payload, max_payload_size)
    elif len(payload) > max_payload_size:
        raise RecordError("size")
    # Positional: a named tuple's keyword constructor costs a microsecond more.
    return Record(decode_payload(payload), issued_at, expires_at, version, key.position)


def peek_expiry(data: bytes) -> int | None:
    """Return the header's expires-at without verifying anything, or None if no header.

    Only for deciding that a record is *probably* expired (cleanup); never for trusting one.
    """
    if len(data) < HEADER.size or data[:4] != MAGIC or data[4] != FORMAT_VERSION:
        return None
    expires_at: int = HEADER.unpack_from(data)[5]
    return expires_at


def version_of(data: bytes) -> int:
    """Return the version counter of a record this process just built (not verified)."""
    version: int = HEADER.unpack_from(data)[6]
    return version


def _decompress(payload: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(payload, limit + 1)
    except zlib.error:
        raise RecordError("compression") from None
    if len(out) > limit:
        raise RecordError("size")
    if not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
        raise RecordError("compression")
    return out


def _too_large(what: str, size: int, limit: int, entries: Mapping[str, bytes]) -> str:
    largest = sorted(entries.items(), key=lambda item: len(item[1]), reverse=True)[:3]
    listing = ", ".join(f"{key!r} ({len(value)} bytes)" for key, value in largest)
    setting = "MAX_RECORD_SIZE" if what == "record" else "MAX_PAYLOAD_SIZE"
    return (
        f"The session's {what} is {size} bytes, over PICKLESESSIONS_{setting} ({limit}). "
        f"Largest keys: {listing}."
    )
