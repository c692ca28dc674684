"""The known-answer vectors of docs/format.md, checked against the code."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from django_picklesessions import record
from django_picklesessions.exceptions import RecordError
from django_picklesessions.keys import Keyring, derive

DOC = Path(__file__).resolve().parent.parent / "docs" / "format.md"


def vectors() -> list[dict[str, str]]:
    blocks = re.findall(r"```text\n(vector:.*?)```", DOC.read_text(), flags=re.S)
    parsed = []
    for block in blocks:
        fields = {}
        for line in block.strip().splitlines():
            name, _, value = line.partition(": ")
            fields[name] = value.strip()
        parsed.append(fields)
    return parsed


VECTORS = vectors()


def test_doc_has_both_vectors() -> None:
    assert [v["vector"] for v in VECTORS] == ["plain", "compressed"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["vector"])
def test_vector(vector: dict[str, str]) -> None:
    key = derive(vector["secret"])
    assert key.mac_key.hex() == vector["mac_key"]
    assert key.key_id.hex() == vector["key_id"]
    sid = record.session_id(vector["session_key"])
    assert sid == hashlib.sha256(vector["session_key"].encode()).digest()
    assert sid.hex() == vector["sid"]
    keyring = Keyring(current=key, by_id={key.key_id: key})
    data = bytes.fromhex(vector["record"])
    issued, expires = int(vector["issued_at"]), int(vector["expires_at"])
    values = {
        name.removeprefix("value "): bytes.fromhex(value)
        for name, value in vector.items()
        if name.startswith("value ")
    }
    limits = {"max_record_size": 1 << 20, "max_payload_size": 1 << 20}
    decoded = record.decode(data, sid=sid, now=issued + 1, keyring=keyring, **limits)
    assert decoded.entries == values
    assert (decoded.issued_at, decoded.expires_at) == (issued, expires)
    assert decoded.version == int(vector["version"])
    with pytest.raises(RecordError, match="expired"):
        record.decode(data, sid=sid, now=expires, keyring=keyring, **limits)
    if vector["vector"] == "plain":
        rebuilt = record.encode(
            values,
            sid=sid,
            issued_at=issued,
            expires_at=expires,
            version=int(vector["version"]),
            keyring=keyring,
            compress_min_size=None,
            **limits,
        )
        assert rebuilt == data
