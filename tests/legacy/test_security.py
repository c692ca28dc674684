"""Attacks on the legacy reader: each defence of legacy/signing.py and salvage, built as an attack.

An attacker who can write the legacy store but does not hold SECRET_KEY gets nothing
unpickled; one who also holds the key (a forgery under a valid MAC) still runs no code.
"""

from __future__ import annotations

import base64
import builtins
import functools
import hashlib
import hmac
import os
import pickle
import zlib
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings

from django_picklesessions import unpickler
from django_picklesessions.legacy import signing as legacy
from django_picklesessions.serializers import PickleSerializer
from tests import canary
from tests.cart import Cart

SALT = "django.contrib.sessions.SessionStore"
BOTH = frozenset(("json", "pickle"))
LOGIN = {
    "_auth_user_id": "42",
    "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
    "_auth_user_hash": "f" * 64,
}


def sign(
    payload: bytes, *, salt: str = SALT, secret: str | None = None, stamp: str = "1vPrKi"
) -> str:
    """Sign raw payload bytes as Django's TimestampSigner does (what a key holder can write)."""
    from django.conf import settings

    compressed = zlib.compress(payload)
    if len(compressed) < len(payload) - 1:
        encoded = "." + base64.urlsafe_b64encode(compressed).rstrip(b"=").decode()
    else:
        encoded = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    value = f"{encoded}:{stamp}"
    key_secret = (secret if secret is not None else settings.SECRET_KEY).encode()
    key = hashlib.sha256((salt + "signer").encode() + key_secret).digest()
    mac = base64.urlsafe_b64encode(hmac.digest(key, value.encode(), "sha256")).rstrip(b"=")
    return f"{value}:{mac.decode()}"


class Gadget:
    """Pickles as a call of ``func(*args)``: what an attacker puts in a session."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (self.func, self.args)


FIRE_SOURCE = "__import__('tests.canary').canary.fire('eval ran')"
#: Where the shell gadget would leave its mark if it ever ran.
MARK = os.path.join(os.path.dirname(__file__), ".gadget-ran")
GADGETS = {
    "os.system": lambda: Gadget(os.system, f"touch {MARK}"),
    "builtins.eval": lambda: Gadget(builtins.eval, FIRE_SOURCE),
    "builtins.exec": lambda: Gadget(builtins.exec, FIRE_SOURCE),
    "builtins.__import__": lambda: Gadget(builtins.__import__, "os"),
    "functools.partial": lambda: functools.partial(canary.fire, "partial ran"),
    "subprocess": lambda: Gadget(__import__("subprocess").check_output, ["touch", MARK]),
}


@pytest.fixture(autouse=True)
def _canary() -> Iterator[None]:
    """Every test ends with the canary silent and no shell gadget's mark on disk."""
    canary.reset()
    yield
    assert canary.FIRED == []
    assert not os.path.exists(MARK)


@pytest.fixture(params=[False, True], ids=["default", "strict"])
def strict(request: pytest.FixtureRequest) -> Iterator[bool]:
    with override_settings(PICKLESESSIONS_STRICT_UNPICKLING=request.param):
        yield request.param


class SalvageSpy:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, data: bytes) -> Any:
        self.calls += 1
        return _real_salvage(data)


_real_salvage = unpickler.salvage_loads


@pytest.fixture
def salvage_spy(monkeypatch: pytest.MonkeyPatch) -> SalvageSpy:
    spy = SalvageSpy()
    monkeypatch.setattr(unpickler, "salvage_loads", spy)
    return spy


def refused(text: str | bytes, formats: frozenset[str] = BOTH, **kwargs: Any) -> legacy.LegacyError:
    with pytest.raises(legacy.LegacyError) as caught:
        legacy.loads(text, salt=SALT, formats=formats, **kwargs)
    return caught.value


# --- A forgery under a valid MAC runs nothing -------------------------------------------


@pytest.mark.parametrize("name", sorted(GADGETS))
def test_gadget_under_a_valid_mac_never_runs(name: str, strict: bool) -> None:
    payload = pickle.dumps({**LOGIN, "cart": GADGETS[name]()}, 5)
    error = refused(sign(payload))
    assert error.reason == "refused"
    assert error.suspicious  # the key leaked: the whole forged session is refused


def test_gadget_through_the_bridge_is_logged_as_a_forgery(security_log: Any) -> None:
    payload = pickle.dumps({**LOGIN, "x": Gadget(builtins.eval, FIRE_SOURCE)}, 5)
    with pytest.raises(legacy.LegacyError):
        PickleSerializer().loads(payload)
    (line,) = security_log()
    assert "SECRET_KEY" in line.getMessage() and "builtins.eval" in line.getMessage()


def test_gadget_in_the_unsigned_cache_value_never_runs(strict: bool) -> None:
    payload = pickle.dumps({**LOGIN, "x": Gadget(os.system, "echo pwned")}, 5)
    with pytest.raises(legacy.LegacyError) as caught:
        legacy.loads_unsigned_pickle(payload, formats=BOTH)
    assert caught.value.suspicious


def test_a_function_that_is_merely_not_allowed_is_dropped_without_running(
    strict: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # tests.canary.fire stands for any project function: never called, only its key dropped.
    payload = pickle.dumps({**LOGIN, "cart": Gadget(canary.fire, "called")}, 5)
    session = legacy.loads(sign(payload), salt=SALT, formats=BOTH)
    assert session.data == LOGIN
    assert session.dropped == (("cart", "tests.canary.fire"),)
    (line,) = [r for r in caplog.records if r.name == "django_picklesessions.legacy"]
    assert "'cart'" in line.getMessage() and "tests.canary.fire" in line.getMessage()


def test_canary_class_is_neither_built_nor_called(strict: bool) -> None:
    payload = pickle.dumps({**LOGIN, "c": Gadget(canary.Canary, "built")}, 5)
    session = legacy.loads(sign(payload), salt=SALT, formats=BOTH)
    assert session.data == LOGIN
    assert session.dropped == (("c", "tests.canary.Canary"),)


# --- Salvage keeps the login and nothing refused ----------------------------------------


def test_refused_value_inside_an_allowed_class_drops_that_key(strict: bool) -> None:
    cart = Cart()
    cart.coupons = {"A"}
    cart.items = [Gadget(canary.fire, "in the cart")]  # type: ignore[list-item]
    session = legacy.loads(
        sign(pickle.dumps({**LOGIN, "cart": cart, "n": 1}, 5)), salt=SALT, formats=BOTH
    )
    assert session.data == {**LOGIN, "n": 1}
    assert session.dropped == (("cart", "tests.canary.fire"),)


def test_a_refused_object_shared_by_two_keys_drops_both(strict: bool) -> None:
    shared = [Gadget(canary.fire, "shared")]
    payload = pickle.dumps({**LOGIN, "a": shared, "b": {"again": shared}}, 5)
    session = legacy.loads(sign(payload), salt=SALT, formats=BOTH)
    assert session.data == LOGIN
    assert {key for key, _ in session.dropped} == {"a", "b"}


def test_an_allowed_constructor_fed_a_placeholder_drops_only_its_key(strict: bool) -> None:
    payload = pickle.dumps({**LOGIN, "price": Gadget(Decimal, Gadget(canary.fire, "x"))}, 5)
    if strict:
        # Strict mode builds a Decimal only from one string, whatever the salvage.
        assert refused(sign(payload)).reason == "refused"
        return
    session = legacy.loads(sign(payload), salt=SALT, formats=BOTH)
    assert session.data == LOGIN
    assert session.dropped == (("price", "tests.canary.fire"),)


def test_calling_an_object_is_refused(strict: bool) -> None:
    # REDUCE of an object (not a class) would run its __call__: salvage never does.
    stream = b"\x80\x05}(\x8c\x01a])Ru."  # {"a": [] called with ()}
    with pytest.raises(unpickler.SuspiciousValue):
        unpickler.salvage_loads(stream)


# --- Nothing is decoded before the MAC verified -----------------------------------------


def tampered() -> Iterator[tuple[str, str]]:
    good = sign(pickle.dumps({**LOGIN, "x": Gadget(canary.fire, "x")}, 5))
    value, stamp, mac = good.split(":")
    yield "mac flipped", f"{value}:{stamp}:{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}"
    yield "payload changed", f"{value[:-2]}xx:{stamp}:{mac}"
    yield "timestamp changed", f"{value}:1vPrKj:{mac}"
    yield "wrong salt", sign(pickle.dumps(LOGIN, 5), salt="django.contrib.sessions.Other")
    yield "unknown key", sign(pickle.dumps(LOGIN, 5), secret="an-attacker-guess-" * 4)


@pytest.mark.parametrize("case,text", list(tampered()), ids=[c for c, _ in tampered()])
def test_bad_mac_unpickles_nothing(case: str, text: str, salvage_spy: SalvageSpy) -> None:
    assert refused(text).reason == "signature"
    assert salvage_spy.calls == 0


def test_a_fallback_key_verifies_and_an_unknown_key_does_not() -> None:
    old = "the-previous-secret-key-of-this-site-0123456789-abcdef"
    text = sign(pickle.dumps(LOGIN, 5), secret=old)
    assert refused(text).reason == "signature"
    with override_settings(SECRET_KEY_FALLBACKS=[old]):
        assert legacy.loads(text, salt=SALT, formats=BOTH).data == LOGIN
    with override_settings(SECRET_KEY_FALLBACKS=["some-other-key-" * 4]):
        assert refused(text).reason == "signature"


def test_oversized_text_is_refused_before_any_mac(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = legacy._signature
    monkeypatch.setattr(legacy, "_signature", lambda *a: calls.append(a[0]) or real(*a))
    with override_settings(PICKLESESSIONS_MAX_RECORD_SIZE=4096):
        text = sign(os.urandom(5000))
        assert len(text) > 4096 * 4 // 3 + 64
        assert refused(text).reason == "format"
    assert calls == []


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "a:b",
        "a:b:c:d",
        "::",
        "eyJhIjoxfQ:1vPrKi:" + "A" * 42,
        "eyJhIjoxfQ:1vPrKi:" + "A" * 44,
        "eyJhIjoxfQ:-1:" + "A" * 43,
        "ey$hIjoxfQ:1vPrKi:" + "A" * 43,
        ".:1vPrKi:" + "A" * 43,
        "\u00e9" * 10,
        b"\xff\xfe:1:" + b"A" * 43,
    ],
)
def test_garbage_is_refused_as_format(text: str | bytes, salvage_spy: SalvageSpy) -> None:
    assert refused(text).reason in ("format", "signature")
    assert salvage_spy.calls == 0


def test_every_truncation_of_a_real_record_is_refused(salvage_spy: SalvageSpy) -> None:
    good = legacy.dumps({**LOGIN, "note": "y" * 300}, salt=SALT, format="pickle")
    for cut in range(len(good)):
        assert refused(good[:cut]).reason in ("format", "signature")
    assert salvage_spy.calls == 0


# --- Bounds under a valid MAC -----------------------------------------------------------


def zip_bomb(inflated: int) -> bytes:
    """A zlib stream of a pickle-looking payload inflating to ``inflated`` bytes."""
    deflater = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    parts = [deflater.compress(b"\x80\x05")]
    parts += [deflater.compress(chunk) for _ in range(inflated >> 20)]
    return b"".join((*parts, deflater.flush()))


def test_zip_bomb_under_a_valid_mac_inflates_no_further_than_the_cap(
    monkeypatch: pytest.MonkeyPatch, salvage_spy: SalvageSpy
) -> None:
    compressed = zip_bomb(64 << 20)  # 64 MiB from about 64 KiB
    encoded = "." + base64.urlsafe_b64encode(compressed).rstrip(b"=").decode()
    value = f"{encoded}:1vPrKi"
    from django.conf import settings

    key = hashlib.sha256((SALT + "signer").encode() + settings.SECRET_KEY.encode()).digest()
    mac = base64.urlsafe_b64encode(hmac.digest(key, value.encode(), "sha256")).rstrip(b"=")
    inflated: list[int] = []
    real = zlib.decompressobj

    class Counting:
        def __init__(self) -> None:
            self.inner = real()

        def decompress(self, data: bytes, max_length: int = 0) -> bytes:
            out = self.inner.decompress(data, max_length)
            inflated.append(len(out))
            return out

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    monkeypatch.setattr(legacy.zlib, "decompressobj", Counting)
    with override_settings(PICKLESESSIONS_MAX_RECORD_SIZE=1 << 20):
        error = refused(f"{value}:{mac.decode()}")
    assert error.reason == "payload"
    assert sum(inflated) <= (1 << 20) + 1  # PICKLESESSIONS_MAX_PAYLOAD_SIZE + 1
    assert salvage_spy.calls == 0


@pytest.mark.parametrize("protocol", [0, 2, 3, 4])
def test_pickles_of_other_protocols_are_refused(protocol: int, salvage_spy: SalvageSpy) -> None:
    error = refused(sign(pickle.dumps(LOGIN, protocol)))
    assert error.reason in ("refused", "payload")
    assert salvage_spy.calls == 0


def test_max_age_is_checked_against_the_signed_timestamp() -> None:
    import time

    now = int(time.time())
    text = sign(pickle.dumps(LOGIN, 5), stamp=legacy._b62_encode(now - 1000))
    # A minute of slack: int() drops up to a second, and a busy machine adds more (1001 was
    # exceeded once in CI).
    assert legacy.loads(text, salt=SALT, formats=BOTH, max_age=1060).signed_at == now - 1000
    assert refused(text, max_age=500).reason == "expired"


def test_json_is_refused_when_only_pickle_is_accepted(salvage_spy: SalvageSpy) -> None:
    text = legacy.dumps(LOGIN, salt=SALT, format="json")
    assert refused(text, formats=frozenset({"pickle"})).reason == "refused"
    assert legacy.loads(text, salt=SALT, formats={"json"}).data == LOGIN


def test_pickle_is_refused_when_only_json_is_accepted(salvage_spy: SalvageSpy) -> None:
    text = legacy.dumps(LOGIN, salt=SALT, format="pickle")
    assert refused(text, formats=frozenset({"json"})).reason == "refused"
    assert salvage_spy.calls == 0
    with pytest.raises(legacy.LegacyError):
        legacy.loads_unsigned_pickle(pickle.dumps(LOGIN, 5), formats={"json"})
    assert salvage_spy.calls == 0


@pytest.mark.parametrize(
    "payload",
    [b"[1, 2]", b'"text"', b"{not json", b"\x00\x01", b"\x80\x05K\x01.", b"\x80\x05}\x94"],
)
def test_verified_payloads_that_are_not_sessions_are_refused(payload: bytes) -> None:
    assert refused(sign(payload)).reason in ("payload", "refused")


@pytest.mark.parametrize(
    "module,name,gadget",
    [
        ("builtins", "str", False),  # a lazy string's result class
        ("builtins", "getattr", False),  # how a bound method (ZoneInfo._unpickle) pickles
        ("zoneinfo", "ZoneInfo._unpickle", False),
        ("django.db.models.base", "model_unpickle", False),
        ("shop.types", "Cart", False),  # a project module may share a stdlib module's name
        ("posix", "system", True),
        ("os", "system", True),
        ("builtins", "eval", True),
        ("functools", "partial", True),
        ("subprocess", "Popen", True),
        ("uuid", "_get_command_stdout", True),
        ("shop.views", "os.system", True),  # an attribute walk into os
        ("copyreg", "__newobj__", True),
        ("__builtin__", "eval", True),  # Python 2 names are never remapped, and never data
        ("shop", "Cart\nInjected", True),
    ],
)
def test_which_legacy_globals_count_as_a_forgery(module: str, name: str, gadget: bool) -> None:
    assert unpickler._legacy_suspicious(module, name) is gadget


# --- The second wall's guards hold on the salvage path too (issue 10 meets issue 9) -------

#: A dict {"f": <BUILD on the class fractions.Fraction itself>} (issue 10, B6).
BUILD_ON_CLASS = (
    b"\x80\x05}\x8c\x01f\x8c\tfractions\x8c\x08Fraction\x93N}\x8c\n_numerator\x8a\x01\x05s\x86bs."
)
#: A dict {"d": date(0, 1, 1)} from a pickled state the C type does not validate (B8).
YEAR_ZERO = b"\x80\x05}\x8c\x01d\x8c\x08datetime\x8c\x04date\x93C\x04\x00\x00\x01\x01\x85Rs."
#: Makes salvage take its pure-Python path: a class the allow-list does not know.
UNKNOWN = b"\x8c\x01x\x8c\x0btests.cart2\x8c\x04Nope\x93)\x81"


def _with_unknown(stream: bytes) -> bytes:
    # Insert {"x": Nope()} before the final SETITEM's STOP: "}" ... "s." -> "}" x ... "s" "s."
    assert stream.startswith(b"\x80\x05}") and stream.endswith(b"s.")
    return b"\x80\x05}" + UNKNOWN + b"s" + stream[3:]


@pytest.mark.parametrize("slow", [False, True], ids=["C loader", "pure-Python salvage"])
@pytest.mark.parametrize("stream", [BUILD_ON_CLASS, YEAR_ZERO], ids=["BUILD on a class", "year 0"])
def test_salvage_keeps_the_second_walls_guards(strict: bool, stream: bytes, slow: bool) -> None:
    import fractions

    if slow:
        stream = _with_unknown(stream)
    before = dict(vars(fractions.Fraction))
    with pytest.raises(unpickler.ValueRejected):
        unpickler.salvage_loads(stream)
    assert dict(vars(fractions.Fraction)) == before
    assert fractions.Fraction(1, 3) == fractions.Fraction(2, 6)
    # Under a valid legacy MAC the whole record is refused, never half-loaded.
    with pytest.raises(legacy.LegacyError):
        legacy.loads(sign(stream), salt=SALT, formats=BOTH)


class NotAllowed:
    """A class the allow-list does not name: its key is dropped, through the slow path."""


def test_a_class_stored_as_a_value_comes_back_as_the_class() -> None:
    # The stand-ins never leak into a session value, on either salvage path.
    for extra in ({}, {"x": NotAllowed()}):
        kept, dropped = unpickler.salvage_loads(pickle.dumps({"kind": Cart, **LOGIN, **extra}, 5))
        assert kept == {"kind": Cart, **LOGIN}
        assert kept["kind"] is Cart
        assert [key for key, _ in dropped] == list(extra)
