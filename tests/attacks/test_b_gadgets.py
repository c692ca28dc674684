"""Group B: gadgets inside validly signed records (A3+A4: the key and storage write)."""
# ruff: noqa: N802  (test names carry the catalogue's case ids, which are upper case)

from __future__ import annotations

import contextlib
import copyreg
import datetime
import decimal
import importlib
import io
import pickle
import struct
import tracemalloc
import uuid
from typing import Any

import pytest

from django_picklesessions import unpickler
from django_picklesessions.exceptions import ValueRejected
from tests import canary
from tests.attacks.audit import AuditGuard
from tests.attacks.kit import (
    APPEND,
    BUILD,
    CANARY_GADGET,
    EMPTY_DICT,
    EMPTY_TUPLE,
    MARK,
    NEWOBJ,
    NONE,
    OS_SYSTEM_GADGET,
    PROTOCOL0_GADGET,
    REDUCE,
    SETITEM,
    TUPLE,
    TUPLE1,
    TUPLE2,
    VICTIM,
    assert_record_rejected,
    assert_value_rejected,
    call,
    global_,
    integer,
    p5,
    plant,
    sign_payload,
    text,
    value_outcome,
    watched,
)

FIRE = "__import__('tests.canary').canary.fire('eval')"


def assert_suspicious(raw: bytes) -> None:
    """The unpickler refuses ``raw`` as something our writer cannot have produced."""
    with pytest.raises(unpickler.SuspiciousValue):
        unpickler.loads(raw)


def assert_refused(raw: bytes) -> None:
    """The unpickler refuses ``raw``; a plain module-level name (``tests.canary.fire``) may
    also be a class a deploy removed, so it is not necessarily flagged as suspicious."""
    with pytest.raises(ValueRejected):
        unpickler.loads(raw)


@pytest.mark.parametrize(
    "raw",
    [
        PROTOCOL0_GADGET,
        b"\x80\x05cos\nsystem\n(S'true'\ntR.",
        OS_SYSTEM_GADGET,
        p5(call(global_("posix", "system"), text("true"))),  # what pickle.dumps(os.system) names
        CANARY_GADGET,
    ],
    ids=["protocol-0", "GLOBAL", "STACK_GLOBAL", "posix", "canary"],
)
def test_B1_os_system_REDUCE(raw: bytes, strict: bool, audit: AuditGuard) -> None:
    assert_value_rejected(audit, raw)
    (assert_refused if raw == CANARY_GADGET else assert_suspicious)(raw)


DANGEROUS_BUILTINS = [
    "eval",
    "exec",
    "compile",
    "__import__",
    "getattr",
    "setattr",
    "open",
    "breakpoint",
    "globals",
    "vars",
    "type",
    "object",
]


@pytest.mark.parametrize("name", DANGEROUS_BUILTINS)
def test_B2_dangerous_builtins(name: str, audit: AuditGuard) -> None:
    raw = p5(call(global_("builtins", name), text(FIRE)))
    assert_value_rejected(audit, raw)
    assert_suspicious(raw)


# A vendored copy of what picklescan and fickling flag, plus the catalogue's own list.
VENDORED_UNSAFE = [
    ("posix", "system"),
    ("nt", "system"),
    ("__builtin__", "eval"),
    ("_posixsubprocess", "fork_exec"),
    ("subprocess", "Popen"),
    ("subprocess", "check_output"),
    ("pty", "spawn"),
    ("runpy", "_run_code"),
    ("runpy", "run_path"),
    ("pkgutil", "resolve_name"),
    ("importlib", "import_module"),
    ("pydoc", "locate"),
    ("profile", "run"),
    ("cProfile", "run"),
    ("timeit", "timeit"),
    ("code", "InteractiveInterpreter"),
    ("uuid", "_get_command_stdout"),
    ("asyncio.unix_events", "_UnixSubprocessTransport"),
    ("pip", "main"),
    ("ctypes", "CDLL"),
    ("pickle", "loads"),
    ("_pickle", "loads"),
    ("marshal", "loads"),
    ("codecs", "decode"),
    ("shutil", "rmtree"),
    ("webbrowser", "open"),
    ("os", "popen"),
    ("os.path", "join"),
    ("sys", "exit"),
    ("socket", "create_connection"),
    ("_osx_support", "_read_output"),
    ("imaplib", "IMAP4_stream"),
]


def unsafe_globals() -> list[tuple[str, str]]:
    """The vendored list, plus picklescan's and fickling's when they are installed."""
    found = list(VENDORED_UNSAFE)
    try:
        scanner: Any = importlib.import_module("picklescan.scanner")
        for module, names in scanner._unsafe_globals.items():
            found += [(module, n) for n in (["system"] if names == "*" else sorted(names))]
    except ImportError:
        pass
    try:
        fickle: Any = importlib.import_module("fickling.fickle")
        found += [(module, "system") for module in sorted(fickle.UNSAFE_IMPORTS)]
    except ImportError:
        pass
    return sorted(set(found))


def test_B3_alias_and_indirect_modules(audit: AuditGuard) -> None:
    for module, name in unsafe_globals():
        raw = p5(call(global_(module, name), text("true")))
        assert_value_rejected(audit, raw)
        assert_refused(raw)


def _canary() -> bytes:
    return global_("tests.canary", "fire")


WRAPPERS = {
    "partial": call(call(global_("functools", "partial"), _canary(), text("B4"))),
    "attrgetter": call(
        call(global_("operator", "attrgetter"), text("fire")),
        call(global_("builtins", "__import__"), text("tests.canary")),
    ),
    "methodcaller": call(call(global_("_operator", "methodcaller"), text("fire")), NONE),
    "map": call(global_("builtins", "next"), call(global_("builtins", "map"), _canary(), NONE)),
    "reconstructor": call(
        global_("copyreg", "_reconstructor"),
        global_("tests.canary", "Canary"),
        global_("builtins", "object"),
        NONE,
    ),
    "newobj": call(global_("copyreg", "__newobj__"), global_("tests.canary", "Canary")),
}


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_B4_callable_wrappers(wrapper: str, strict: bool, audit: AuditGuard) -> None:
    raw = p5(WRAPPERS[wrapper])
    assert_value_rejected(audit, raw)
    assert_suspicious(raw)


def _dotted_chain() -> bytes:
    """``fire('B5')`` reached from the ``datetime`` module by dotted names alone."""
    get = global_("datetime", "__builtins__.get")
    module = call(
        call(get, text("__import__")), text("tests.canary"), NONE, NONE, MARK + text("x") + TUPLE
    )
    fire = call(call(get, text("getattr")), module, text("fire"))
    return p5(call(fire, text("B5")))


DOTTED = [
    p5(global_("datetime", "datetime.__base__.__base__.__getattribute__")),
    p5(call(global_("datetime", "sys"), EMPTY_TUPLE)),
    p5(global_("datetime", "datetime.__init__.__globals__")),
    _dotted_chain(),
]


@pytest.mark.parametrize("raw", DOTTED, ids=["getattribute", "sys", "globals", "chain"])
def test_B5_dotted_name_and_module_wide_allow_list(
    raw: bytes, strict: bool, audit: AuditGuard
) -> None:
    assert_value_rejected(audit, raw)
    assert_refused(raw)


class _ModuleWideUnpickler(pickle.Unpickler):
    """The mistake B5 guards against: allowing a whole module and delegating to pickle."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "datetime":
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name}")


def test_B5_meta_the_chain_works_against_a_module_wide_loader() -> None:
    # Proves the payload above is a real gadget: a loader allowing "datetime" runs it.
    _ModuleWideUnpickler(io.BytesIO(_dotted_chain())).load()
    assert canary.FIRED == [("B5",)]
    canary.reset()


EXTENSION_CODES = {"EXT1": (0xF0, b"\x82\xf0"), "EXT2": (0x1234, b"\x83\x34\x12")}
EXTENSION_CODES["EXT4"] = (0x123456, b"\x84" + struct.pack("<i", 0x123456))


@pytest.mark.parametrize("opcode", sorted(EXTENSION_CODES))
def test_B6_EXT_opcode_extension_cache_bypass(opcode: str, audit: AuditGuard) -> None:
    code, ext = EXTENSION_CODES[opcode]
    copyreg.add_extension("tests.canary", "fire", code)
    try:
        # An unrestricted load elsewhere in the process primes copyreg's cache, after which
        # the C unpickler serves this code without asking find_class.
        assert pickle.loads(b"\x80\x02" + ext + b".") is canary.fire
        raw = p5(ext + EMPTY_TUPLE + REDUCE)
        assert_value_rejected(audit, raw)
        with pytest.raises(unpickler.SuspiciousValue, match=opcode):
            unpickler.loads(raw)
    finally:
        copyreg.remove_extension("tests.canary", "fire", code)
        copyreg.clear_extension_cache()


@pytest.mark.parametrize("opcode", sorted(EXTENSION_CODES))
def test_B6_EXT_opcode_without_registry(opcode: str, strict: bool, audit: AuditGuard) -> None:
    raw = p5(EXTENSION_CODES[opcode][1] + EMPTY_TUPLE + REDUCE)
    assert_value_rejected(audit, raw)
    assert_refused(raw)


@pytest.mark.parametrize(
    "raw", [p5(b"Ptests.canary\n"), p5(text("tests.canary") + b"Q")], ids=["PERSID", "BINPERSID"]
)
def test_B7_persistent_id(raw: bytes, strict: bool, audit: AuditGuard) -> None:
    assert_value_rejected(audit, raw)
    assert_suspicious(raw)


@pytest.mark.parametrize(
    "raw",
    [p5(b"\x97"), p5(global_("pickle", "PickleBuffer")), p5(b"\x97\x98")],
    ids=["NEXT_BUFFER", "PickleBuffer", "NEXT_BUFFER+READONLY"],
)
def test_B8_out_of_band_buffers(raw: bytes, strict: bool, audit: AuditGuard) -> None:
    assert_value_rejected(audit, raw)
    assert_suspicious(raw)


def test_B8_readonly_buffer(strict: bool, audit: AuditGuard) -> None:
    raw = pickle.dumps(bytearray(b"data"), 5)[:-1] + b"\x98."
    if strict:
        assert_value_rejected(audit, raw)
        return
    # Documented limit of default mode: a read-only view of the bytearray, and nothing else.
    value = value_outcome(audit, raw)["evil"]
    assert type(value) is memoryview and value.readonly and bytes(value) == b"data"


@pytest.mark.parametrize(
    "raw",
    [
        p5(b"(S'true'\nios\nsystem\n"),
        p5(b"(ctests.canary\nCanary\nS'x'\no"),
        p5(b"ctests.canary\nfire\n(S'B9'\ntR"),
        b"(S'true'\nios\nsystem\n.",
        b"\x80\x01(ctests.canary\nCanary\no.",
    ],
    ids=["INST", "OBJ", "GLOBAL", "INST-protocol-0", "OBJ-protocol-1"],
)
def test_B9_legacy_instantiation_opcodes(raw: bytes, strict: bool, audit: AuditGuard) -> None:
    assert_value_rejected(audit, raw)
    assert_refused(raw)


def _uuid_built(state: bytes) -> bytes:
    return p5(global_("uuid", "UUID") + EMPTY_TUPLE + NEWOBJ + state + BUILD)


def _decimal(value: str) -> bytes:
    return call(global_("decimal", "Decimal"), text(value))


ALLOWED_CLASS_ABUSE = {
    "datetime-wrong-types": p5(global_("datetime", "datetime") + MARK + text("x") + TUPLE + NEWOBJ),
    "uuid-extra-class-key": _uuid_built(
        EMPTY_DICT + text("int") + integer(1) + SETITEM
        + text("__class__") + global_("decimal", "Decimal") + SETITEM
    ),
    "uuid-str-int": _uuid_built(EMPTY_DICT + text("int") + text("x") + SETITEM),
    "slotstate-class-swap": p5(
        global_("tests.cart", "Cart") + EMPTY_TUPLE + NEWOBJ
        + NONE + EMPTY_DICT + text("__class__") + global_("tests.cart", "LineItem") + SETITEM
        + TUPLE2 + BUILD
    ),
    "reduce-on-instance": p5(_decimal("1") + MARK + text("x") + TUPLE + REDUCE),
    "setitem-on-uuid": p5(
        call(global_("uuid", "UUID"), text("12345678123456781234567812345678"))
        + text("k") + text("v") + SETITEM
    ),
    "append-on-tuple": p5(EMPTY_TUPLE + NONE + APPEND),
    "additems-on-frozenset": p5(MARK + b"\x91" + MARK + NONE + b"\x90"),
    "decimal-exponent-1e9": p5(_decimal("1e1000000000")),
}  # fmt: skip
ALLOWED_TYPES = (uuid.UUID, datetime.datetime, decimal.Decimal)


@pytest.mark.parametrize("case", sorted(ALLOWED_CLASS_ABUSE))
def test_B10_allowed_class_abuse(case: str, strict: bool, audit: AuditGuard) -> None:
    from tests.cart import Cart, LineItem

    values = value_outcome(audit, ALLOWED_CLASS_ABUSE[case])
    if "evil" in values:
        # What the allow-list cannot prevent (SECURITY.md): an allowed class given odd state.
        # It is still an instance of an allowed class, and nothing ran.
        assert type(values["evil"]) in (*ALLOWED_TYPES, Cart, LineItem)
        assert case in ("uuid-extra-class-key", "uuid-str-int", "slotstate-class-swap") or (
            case == "decimal-exponent-1e9" and not strict
        )


def _payload(key: bytes, value: bytes) -> bytes:
    return struct.pack(">IHI", 1, len(key), len(value)) + key + value


@pytest.mark.parametrize(
    "key", ["\udcff".encode("utf-8", "surrogatepass"), b"\xff\xfe", b"caf\xc3"], ids=repr
)
def test_B11_session_keys_that_are_not_text(
    key: bytes, audit: AuditGuard, security_log: Any, unpickle_spy: Any
) -> None:
    # The top level is a table of UTF-8 keys by construction: nothing else parses.
    plant("locmem", VICTIM, sign_payload(VICTIM, _payload(key, CANARY_GADGET)))
    assert_record_rejected(audit, "locmem", VICTIM, security_log, "payload", unpickle_spy)


def test_B11_any_value_shape_is_data(audit: AuditGuard) -> None:
    # Per-key values may be any allowed shape; a lone surrogate is text the writer can store.
    for value in ([1, 2], "text", None, "\udcff", {1: "int key"}, (1,)):
        assert value_outcome(audit, pickle.dumps(value, 5))["evil"] == value


BENIGN = [1, "two", 3.0]


@pytest.mark.parametrize("protocol", range(5))
def test_B12_protocol_pin(protocol: int, strict: bool, audit: AuditGuard) -> None:
    raw = pickle.dumps(BENIGN, protocol)
    assert_value_rejected(audit, raw)
    assert_suspicious(raw)


def test_B12_missing_or_repeated_proto(strict: bool, audit: AuditGuard) -> None:
    body = pickle.dumps(BENIGN, 5)
    assert_value_rejected(audit, body[2:])
    doubled = b"\x80\x05" + body
    if strict:
        assert_value_rejected(audit, doubled)
    else:
        # The C unpickler takes a second PROTO 5 as a no-op: the value is the benign one.
        assert value_outcome(audit, doubled)["evil"] == BENIGN


@pytest.mark.parametrize(
    "tail",
    [CANARY_GADGET, OS_SYSTEM_GADGET, b"garbage.", b"."],
    ids=["canary", "system", "garbage", "dot"],
)
def test_B13_trailing_data_and_polyglot(tail: bytes, strict: bool, audit: AuditGuard) -> None:
    raw = pickle.dumps(BENIGN, 5) + tail
    assert_value_rejected(audit, raw)
    assert_suspicious(raw)


def test_B13_tail_hidden_inside_a_frame(strict: bool, audit: AuditGuard) -> None:
    body = b"K\x01." + CANARY_GADGET
    raw = b"\x80\x05\x95" + struct.pack("<Q", len(body)) + body
    if strict:
        assert_value_rejected(audit, raw)
    else:
        # Documented: the C unpickler reads the whole frame and stops at the first STOP; the
        # tail is never interpreted.
        assert value_outcome(audit, raw)["evil"] == 1


def _bad_stack_bodies() -> list[bytes]:
    """Inputs in the spirit of CPython's test_bad_stack, test_bad_mark and friends."""
    lone = [b"", b"0", b"1", b"2", b"(2", b"R", b")R", b"a", b"Na", b"b", b"Nb", b"d", b"e"]
    lone += [b"(e", b"l", b"o", b"(o", b"s", b"Ns", b"NNs", b"t", b"u", b"(u", b"}(Nu"]
    lone += [b"\x81", b")\x81", b"\x85", b"\x86", b"N\x86", b"\x87", b"N\x87", b"NN\x87"]
    lone += [b"\x90", b"(\x90", b"\x91", b"\x92", b")}\x92", b"\x93", b"\x8c\x01a\x93", b"\x94"]
    marks = [b"N(", b"N(2", b"](N", b"(]N(a", b"(](Ne", b"}(N(Nu", b"(\x8f(N\x90", b"N((t"]
    marks += [b"(N\x85", b"((N\x86", b"(\x81", b"((\x81", b"N(\x94", b"(b", b"((b"]
    reduce = [call(NONE, NONE), NONE + EMPTY_TUPLE + REDUCE, global_("decimal", "Decimal") + NONE]
    reduce += [global_("decimal", "Decimal") + NONE + REDUCE, TUPLE1 + REDUCE]
    newobj = [global_("uuid", "UUID") + NONE + NEWOBJ, NONE + EMPTY_TUPLE + NEWOBJ]
    newobj += [global_("datetime", "date") + MARK + integer(99999) + TUPLE + NEWOBJ]
    memo = [b"h\x00", b"j\x00\x00\x00\x00", b"]\x94h\x01", b"]r\xff\xff\xff\xff", b"]q\x00"]
    return lone + marks + reduce + newobj + memo


def _truncations() -> list[bytes]:
    value = [decimal.Decimal("1.5"), datetime.datetime(2026, 1, 1), {"a": (1, 2)}, {3}]
    data = pickle.dumps(value, 5)
    return [data[:length] for length in range(2, len(data))]


def test_B14_malformed_stack_corpus(strict: bool, audit: AuditGuard) -> None:
    corpus = [b"\x80\x05" + body + b"." for body in _bad_stack_bodies()]
    corpus += [prefix + b"." for prefix in _truncations()]
    with watched(audit):
        for raw in corpus:
            with contextlib.suppress(ValueRejected):  # any other exception fails the test
                unpickler.loads(raw)
    assert_value_rejected(audit, corpus[0])


@pytest.mark.parametrize(
    "raw",
    [
        b"\x80\x05\x95" + struct.pack("<Q", 2**63 - 1) + b"K\x01.",
        b"\x80\x05\x95" + struct.pack("<Q", 2**33) + b"K\x01.",
        b"\x80\x05\x95" + struct.pack("<Q", 4) + b"K\x01.",
        b"\x80\x05\x95" + struct.pack("<Q", 1) + b"K\x01.",
        b"\x80\x05\x95" + struct.pack("<Q", 12) + b"\x95" + struct.pack("<Q", 2) + b"K\x01.",
    ],
    ids=["2**63", "2**33", "too-long", "ends-mid-opcode", "nested"],
)
def test_B15_frame_lies(raw: bytes, strict: bool, audit: AuditGuard) -> None:
    tracemalloc.start()
    try:
        values = value_outcome(audit, raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    if strict:
        assert "evil" not in values
    else:
        # The C unpickler does not check frame boundaries: at most it reads the benign 1.
        assert values.get("evil", 1) == 1
