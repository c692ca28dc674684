"""Other projects' malicious pickles, through both unpickling modes under the audit guard.

``../shared/corpus/peer-pickles/`` (beside the checkout, as in CI) holds the test material of
pickle security scanners (picklescan, fickling, modelscan, pickle_injector); ``index.json``
says where each file comes from. The files are read from there, never copied into the
repository. Each is loaded as it is, and again with its protocol header rewritten to 5 (our
reader refuses every other protocol at once, so the rewrite takes the stream further in):
it must be refused, or give only values built from builtin types and allowed classes, with
no audited side effect (no import, no process, file or socket activity) and no canary call.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from django_picklesessions import unpickler
from django_picklesessions.allowlist import get_allow_list
from django_picklesessions.exceptions import ValueRejected
from django_picklesessions.pickler import get_writer
from tests.attacks.audit import AuditGuard
from tests.attacks.kit import watched

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus" / "peer-pickles"
INDEX = CORPUS / "index.json"


def _files() -> list[str]:
    if not INDEX.is_file():
        return []
    samples = json.loads(INDEX.read_text())["samples"]
    return sorted(sample["file"] for sample in samples)


FILES = _files()
needs_corpus = pytest.mark.skipif(
    not FILES,
    reason=f"the peer corpus is not beside the checkout ({CORPUS} has no index.json)",
)
_BUILTIN = (
    type(None), bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set,
    frozenset,
)  # fmt: skip


def as_protocol_5(data: bytes) -> bytes:
    """The same opcodes under a protocol-5 header, so that our reader goes past its pin."""
    if data[:1] == b"\x80" and len(data) >= 2:
        return b"\x80\x05" + data[2:]
    return b"\x80\x05" + data


def harmless(value: Any, seen: set[int] | None = None) -> bool:
    """True if ``value`` holds only builtin data and instances of allowed classes."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return True
    seen.add(id(value))
    allowed = get_allow_list().classes
    kind = type(value)
    if isinstance(value, type):
        return value in allowed
    if kind not in _BUILTIN and kind not in allowed:
        return False
    if kind in (list, tuple, set, frozenset):
        return all(harmless(item, seen) for item in value)
    if kind is dict:
        return all(harmless(k, seen) and harmless(v, seen) for k, v in value.items())
    state = getattr(value, "__dict__", None)
    return state is None or harmless(state, seen)


@needs_corpus
@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("header", ["as-is", "protocol-5"])
def test_peer_pickle_is_refused_or_harmless(
    name: str, header: str, strict: bool, audit: AuditGuard
) -> None:
    data = (CORPUS / name).read_bytes()
    if header == "protocol-5":
        data = as_protocol_5(data)
    with watched(audit):
        try:
            value = unpickler.loads(data)
        except ValueRejected:
            return
    assert harmless(value), f"{name}: {type(value).__name__}"
    # Saving what loaded either works or fails the documented way (TypeError, naming it).
    with contextlib.suppress(TypeError):
        get_writer().dumps("peer", value)


def test_the_corpus_is_located_relative_to_the_checkout() -> None:
    assert REPO.parent / "shared" / "corpus" / "peer-pickles" == CORPUS
    if FILES:
        assert len(FILES) >= 200 and all((CORPUS / name).is_file() for name in FILES)
