"""The restricted unpickler: allowed types round-trip, gadgets signed with the real key fail."""

from __future__ import annotations

import builtins
import collections
import copyreg
import datetime
import decimal
import fractions
import os
import pickle
import time
import uuid
from pathlib import Path

import pytest
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from django_picklesessions import unpickler
from django_picklesessions.backends import locmem
from django_picklesessions.backends.locmem import SessionStore
from django_picklesessions.exceptions import ValueRejected
from tests.cart import Cart, LineItem, Money
from tests.helpers import sign_raw

KEY = "u" * 32
UTC = datetime.timezone.utc

DEFAULT_TYPE_VALUES = [
    datetime.date(2026, 11, 27),
    datetime.time(12, 30, 15, 250, tzinfo=UTC),
    datetime.datetime(2026, 11, 27, 12, 30, tzinfo=UTC),
    datetime.datetime(2026, 11, 27, 12, 30),
    datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=-5), "EST")),
    datetime.timedelta(days=3, seconds=5, microseconds=7),
    datetime.timezone.utc,
    decimal.Decimal("19.99"),
    decimal.Decimal("-0.000001"),
    decimal.Decimal("NaN"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    fractions.Fraction(1, 3),
    collections.OrderedDict([("b", 1), ("a", 2)]),
]
BUILTIN_VALUES = [
    None,
    True,
    0,
    -(2**100),
    1.5,
    "text ✓",
    b"\x00bytes",
    bytearray(b"ba"),
    [1, [2, [3]]],
    (1, "two"),
    {"nested": {"dict": [1]}},
    {1, 2},
    frozenset({"a"}),
]


def round_trip(value: object) -> object:
    store = SessionStore()
    store["value"] = value
    store.save()
    return SessionStore(store.session_key)["value"]


@pytest.mark.parametrize("value", DEFAULT_TYPE_VALUES + BUILTIN_VALUES, ids=repr)
def test_round_trip(value: object) -> None:
    result = round_trip(value)
    if isinstance(value, decimal.Decimal) and value.is_nan():
        assert isinstance(result, decimal.Decimal) and result.is_nan()
    else:
        assert result == value
        assert type(result) is type(value)


def test_round_trip_of_project_dataclass() -> None:
    cart = Cart(
        items=[
            LineItem(1, "Tea", decimal.Decimal("4.50"), 2, datetime.datetime.now(UTC)),
            LineItem(2, "Cup", decimal.Decimal("12.00"), 1, datetime.datetime.now(UTC)),
        ],
        coupons={"WELCOME10"},
    )
    result = round_trip(cart)
    assert result == cart
    assert result.total() == decimal.Decimal("21.00")


def test_round_trip_of_class_with_custom_reduce() -> None:
    assert round_trip(Money(decimal.Decimal("3.10"), "EUR")) == Money(
        decimal.Decimal("3.10"), "EUR"
    )


def test_shared_references_survive() -> None:
    shared = [1, 2]
    result = round_trip({"a": shared, "b": shared})
    assert result["a"] is result["b"]


class _Gadget:
    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


def plant_value(raw: bytes) -> SessionStore:
    data = sign_raw(KEY, {"_auth_user_id": pickle.dumps("1", 5), "evil": raw})
    locmem._records[SessionStore.address(KEY)] = (data, int(time.time()) + 3600)
    return SessionStore(KEY)


def test_os_system_gadget_signed_with_real_key_is_rejected(tmp_path: Path, caplog) -> None:
    canary = tmp_path / "canary"
    raw = pickle.dumps(_Gadget(os.system, f"touch {canary}"), 5)
    assert b"system" in raw
    store = plant_value(raw)
    assert store.get("evil") is None
    assert store["_auth_user_id"] == "1"  # the rest of the session survives
    assert not canary.exists()
    assert "global 'posix.system' is not allowed" in caplog.text


def test_builtins_eval_gadget_signed_with_real_key_is_rejected(caplog) -> None:
    builtins._picklesessions_canary = False
    raw = pickle.dumps(
        _Gadget(eval, "setattr(__import__('builtins'), '_picklesessions_canary', True)"), 5
    )
    store = plant_value(raw)
    assert "evil" not in store
    assert builtins._picklesessions_canary is False
    assert "global 'builtins.eval' is not allowed" in caplog.text
    del builtins._picklesessions_canary


@pytest.mark.parametrize(
    "module,name",
    [
        ("builtins", "getattr"),
        ("builtins", "__import__"),
        ("functools", "partial"),
        ("operator", "attrgetter"),
        ("copyreg", "_reconstructor"),
        ("subprocess", "Popen"),
        ("uuid", "_get_command_stdout"),
        # Dotted-name traversal: the default find_class would walk these attributes.
        ("datetime", "datetime.__init__.__globals__"),
        ("decimal", "Decimal.__class__"),
        ("tests.cart", "Cart.__init__"),
    ],
)
def test_any_global_outside_the_allow_list_is_rejected(module: str, name: str) -> None:
    raw = (
        b"\x80\x05"
        + b"\x8c"
        + bytes([len(module)])
        + module.encode()
        + b"\x8c"
        + bytes([len(name)])
        + name.encode()
        + b"\x93."
    )
    with pytest.raises(ValueRejected, match="is not allowed"):
        unpickler.loads(raw)


def test_python2_names_are_not_remapped() -> None:
    # The stock unpickler maps __builtin__ to builtins; ours takes names as written.
    with pytest.raises(ValueRejected, match="'__builtin__.set' is not allowed"):
        unpickler.loads(b"\x80\x05\x8c\x0b__builtin__\x8c\x03set\x93.")


def test_persistent_id_opcodes_are_rejected() -> None:
    with pytest.raises(ValueRejected):
        unpickler.loads(b"\x80\x05\x8c\x01xQ.")  # BINPERSID
    with pytest.raises(ValueRejected):
        unpickler.loads(b"\x80\x05Px\n.")  # PERSID


def test_out_of_band_buffer_is_rejected() -> None:
    with pytest.raises(ValueRejected):
        unpickler.loads(b"\x80\x05\x97.")  # NEXT_BUFFER


def test_extension_opcode_is_rejected_even_with_a_primed_registry() -> None:
    # Register an extension code and prime the cache with an unrestricted load: that is how
    # EXT opcodes would skip find_class. Any registration switches us to opcode checks.
    copyreg.add_extension("os", "system", 0xF0)
    try:
        pickle.loads(b"\x80\x05\x82\xf0.")
        with pytest.raises(ValueRejected, match="EXT1"):
            unpickler.loads(b"\x80\x05\x82\xf0.")
    finally:
        copyreg.remove_extension("os", "system", 0xF0)
        copyreg.clear_extension_cache()


def test_extension_opcode_without_registry_is_rejected() -> None:
    with pytest.raises(ValueRejected):
        unpickler.loads(b"\x80\x05\x82\xf0.")


@override_settings(PICKLESESSIONS_STRICT_UNPICKLING=True)
def test_strict_mode_refuses_opcodes_our_writer_never_emits() -> None:
    bytearray_pickle = pickle.dumps(bytearray(b"x"), 5)
    readonly = bytearray_pickle[:-1] + b"\x98."  # READONLY_BUFFER
    with pytest.raises(ValueRejected, match="READONLY_BUFFER"):
        unpickler.loads(readonly)
    with pytest.raises(ValueRejected, match="bytes after STOP"):
        unpickler.loads(pickle.dumps([1], 5) + b"N.")
    with pytest.raises(ValueRejected, match="GLOBAL"):
        unpickler.loads(b"\x80\x05cos\nsystem\n.")
    assert unpickler.loads(pickle.dumps({"ok": [decimal.Decimal(1)]}, 5)) == {"ok": [1]}


def test_default_mode_readonly_buffer_only_yields_a_memoryview() -> None:
    # Documented limit of the C-speed mode: no code runs, a bytearray becomes read-only.
    readonly = pickle.dumps(bytearray(b"x"), 5)[:-1] + b"\x98."
    result = unpickler.loads(readonly)
    assert isinstance(result, memoryview) and result.readonly


def test_only_protocol_5_is_read() -> None:
    for protocol in range(5):
        with pytest.raises(ValueRejected, match="protocol-5"):
            unpickler.loads(pickle.dumps([1, "a"], protocol))


@given(st.one_of(st.none(), st.booleans(), st.integers(), st.text(), st.floats(allow_nan=False)))
def test_scalar_fast_path_matches_pickle(value: object) -> None:
    data = pickle.dumps(value, 5)
    assert unpickler.loads(data) == value
    assert type(unpickler.loads(data)) is type(value)


@given(st.text(max_size=300), st.integers(0, 40), st.integers(0, 255))
def test_scalar_fast_path_never_disagrees_with_pickle(text: str, position: int, byte: int) -> None:
    # Whatever a damaged scalar pickle decodes to through the fast path, pickle agrees.
    data = bytearray(pickle.dumps(text, 5))
    data[position % len(data)] = byte
    fast = unpickler.simple(bytes(data))  # never raises
    if fast is not unpickler.NOT_SIMPLE:
        assert fast == pickle.loads(bytes(data))


@pytest.mark.parametrize("text", ["dark", "x" * 300])  # SHORT_BINUNICODE and BINUNICODE
def test_scalar_shape_holding_bad_utf8_is_refused(text: str) -> None:
    # The fast path's shape with bytes that are not UTF-8: declined there, refused by the
    # full reader, never returned as text and never raised as a bare UnicodeDecodeError.
    data = pickle.dumps(text, 5).replace(text[:4].encode(), b"\xff\xfe\xfd\xfc", 1)
    assert unpickler.simple(data) is unpickler.NOT_SIMPLE
    with pytest.raises(ValueRejected):
        unpickler.loads(data)


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 6, 255])
def test_scalar_fast_path_reads_protocol_5_only(protocol: int) -> None:
    # Each shape the fast path knows, with another protocol number: refused, not decoded.
    shapes = [pickle.dumps(value, 5) for value in (None, True, 7, 700, 70000, "dark", "é" * 200)]
    for data in shapes:
        assert unpickler.simple(data) is not unpickler.NOT_SIMPLE  # the fast path's own
        forged = data[:1] + bytes([protocol]) + data[2:]
        assert unpickler.simple(forged) is unpickler.NOT_SIMPLE
        with pytest.raises(ValueRejected):
            unpickler.loads(forged)


def test_constructor_errors_become_rejections() -> None:
    bad_decimal = b"\x80\x05\x8c\x07decimal\x8c\x07Decimal\x93\x8c\x03abc\x85R."
    with pytest.raises(ValueRejected, match="InvalidOperation|ConversionSyntax"):
        unpickler.loads(bad_decimal)


def test_truncated_pickle_is_rejected() -> None:
    data = pickle.dumps([1, 2, 3], 5)
    for length in range(len(data)):
        with pytest.raises(ValueRejected):
            unpickler.loads(data[:length])
