"""Group J: what the second wall bounds in both modes (issue 10, items B6, B8, B9, B12, B13).

An attacker holding the signing key and storage write signs any value; these cases check that
no such value changes anything outside itself (BUILD on a class), that loaded values keep
their types' invariants, that comparing or re-pickling one never raises in a view, and that
forgeries are reported as such.
"""
# ruff: noqa: N802  (test names carry the catalogue's case ids, which are upper case)

from __future__ import annotations

import collections
import datetime
import decimal
import errno
import fractions
import os
import pickle
import struct
import uuid
from typing import Any

import pytest
from django.test import Client

from django_picklesessions import unpickler
from django_picklesessions.exceptions import ValueRejected
from django_picklesessions.pickler import get_writer
from tests.attacks.audit import AuditGuard
from tests.attacks.kit import (
    APPEND,
    BUILD,
    EMPTY_DICT,
    EMPTY_LIST,
    EMPTY_TUPLE,
    MARK,
    MEMOIZE,
    NEWOBJ,
    NONE,
    REDUCE,
    SETITEM,
    TUPLE,
    TUPLE1,
    TUPLE2,
    VICTIM,
    call,
    global_,
    integer,
    p5,
    plant,
    stored,
    text,
    value_outcome,
)
from tests.cart import Cart, LineItem, Money
from tests.helpers import sign_raw


def slot_state(**attributes: bytes) -> bytes:
    """``(None, {name: value...})``: BUILD's state that sets attributes one by one."""
    items = b"".join(text(name) + value + SETITEM for name, value in attributes.items())
    return NONE + EMPTY_DICT + items + TUPLE2


def class_attributes(cls: type) -> dict[str, Any]:
    return dict(vars(cls))


# The 40 bytes: BUILD applied to the class fractions.Fraction itself.
FRACTION_CLASS_BUILD = (
    b"\x80\x05\x8c\tfractions\x8c\x08Fraction\x93N}(\x8c\n_numerator\x8a\x01\x05u\x86b."
)
BUILD_ON_CLASS = {
    "fraction-issue-bytes": (fractions.Fraction, FRACTION_CLASS_BUILD),
    "user-class-slot-state": (
        Cart,
        p5(global_("tests.cart", "Cart") + slot_state(coupons=integer(1)) + BUILD),
    ),
    "user-class-dict-state": (
        LineItem,
        p5(global_("tests.cart", "LineItem") + EMPTY_DICT + text("quantity") + integer(9)
           + SETITEM + BUILD),
    ),
    "class-from-memo": (
        Cart,
        p5(global_("tests.cart", "Cart") + MEMOIZE + b"0" + b"h\x00"
           + slot_state(total=integer(0)) + BUILD),
    ),
    "class-by-protocol-0-GLOBAL": (
        uuid.UUID,
        p5(b"cuuid\nUUID\n" + slot_state(int=integer(5)) + BUILD),
    ),
    "class-through-a-list": (
        Money,
        p5(b"]" + global_("tests.cart", "Money") + b"a" + b"0"
           + global_("tests.cart", "Money") + slot_state(currency=text("x")) + BUILD),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BUILD_ON_CLASS))
def test_J1_build_on_a_class_changes_nothing(case: str, strict: bool, audit: AuditGuard) -> None:
    cls, raw = BUILD_ON_CLASS[case]
    before = class_attributes(cls)
    with pytest.raises(unpickler.SuspiciousValue):
        unpickler.loads(raw)
    assert class_attributes(cls) == before
    values = value_outcome(audit, raw)
    assert "evil" not in values
    assert class_attributes(cls) == before
    # And the class still works for honest values.
    assert unpickler.loads(pickle.dumps(fractions.Fraction(1, 3), 5)) == fractions.Fraction(1, 3)
    assert Cart().coupons == set()


def test_J1_stand_ins_refuse_attribute_changes() -> None:
    loaders = unpickler._unpickler_class(unpickler.get_allow_list()).loaders
    stand_in = loaders["tests.cart", "Cart"]
    assert stand_in is not Cart
    with pytest.raises(pickle.UnpicklingError):
        stand_in.items = 1
    with pytest.raises(pickle.UnpicklingError):
        del stand_in.__qualname__
    # Immutable classes need no stand-in: BUILD cannot change them.
    assert loaders["decimal", "Decimal"] is decimal.Decimal


CLASS_VALUES = {
    "top-level": Cart,
    "in-a-list": [Cart, LineItem],
    "after-an-instance": (Cart(), Cart),
    "dict-key": {Cart: 1, "k": fractions.Fraction},
    "in-a-set": {uuid.UUID},
    "in-an-attribute": Money(decimal.Decimal(1), Cart),
    "immutable-class": [decimal.Decimal, datetime.date],
}


@pytest.mark.parametrize("case", sorted(CLASS_VALUES))
def test_J1_allowed_class_objects_still_round_trip(case: str, strict: bool) -> None:
    value = CLASS_VALUES[case]
    loaded = unpickler.loads(get_writer().dumps("k", value))
    assert loaded == value
    assert "unpickler" not in repr(loaded)  # no stand-in escapes to the application


def test_J1_the_cost_for_values_without_class_objects_is_one_refcount_per_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    walks: list[object] = []
    real = unpickler._with_classes
    monkeypatch.setattr(unpickler, "_with_classes", lambda *a: walks.append(a) or real(*a))
    when = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    cart = Cart(items=[LineItem(n, "x", decimal.Decimal(1), 1, when) for n in range(5)])
    for _ in range(3):
        assert unpickler.loads(get_writer().dumps("cart", cart)) == cart
    assert walks == []
    unpickler.loads(get_writer().dumps("k", [Cart]))
    assert walks  # a value holding a class object is walked, to give the class back


# --- B8: invalid date, time and datetime states -------------------------------------------------


def _datetime_state(cls: str, state: bytes) -> bytes:
    return p5(global_("datetime", cls) + b"C" + bytes([len(state)]) + state + TUPLE1 + REDUCE)


INVALID_STATES = {
    "date-year-0": _datetime_state("date", b"\x00\x00\x01\x01"),
    "date-day-32": _datetime_state("date", b"\x07\xe9\x01\x20"),
    "date-feb-30": _datetime_state("date", b"\x07\xe9\x02\x1e"),
    "datetime-year-0": _datetime_state("datetime", b"\x00\x00\x01\x01\x00\x00\x00\x00\x00\x00"),
    "datetime-hour-200": _datetime_state("datetime", b"\x07\xe9\x01\x01\xc8\x00\x00\x00\x00\x00"),
    "datetime-minute-60": _datetime_state("datetime", b"\x07\xe9\x01\x01\x00\x3c\x00\x00\x00\x00"),
    "datetime-microsecond-1e6": _datetime_state(
        "datetime", b"\x07\xe9\x01\x01\x00\x00\x00\x0f\x42\x40"
    ),
    "time-minute-200": _datetime_state("time", b"\x01\xc8\x00\x00\x00\x00"),
    "time-second-60": _datetime_state("time", b"\x01\x00\x3c\x00\x00\x00"),
}


@pytest.mark.parametrize("case", sorted(INVALID_STATES))
def test_J2_invalid_datetime_states_are_refused(case: str, strict: bool, audit: AuditGuard) -> None:
    raw = INVALID_STATES[case]
    with pytest.raises(unpickler.SuspiciousValue, match="invalid datetime"):
        unpickler.loads(raw)
    assert "evil" not in value_outcome(audit, raw)


@pytest.mark.parametrize(
    "value",
    [
        datetime.date(1, 1, 1),
        datetime.date(9999, 12, 31),
        datetime.datetime(2024, 2, 29, 23, 59, 59, 999999),
        datetime.datetime(2025, 10, 26, 2, 30, fold=1, tzinfo=datetime.timezone.utc),
        datetime.time(23, 59, 59, 999999, fold=1),
    ],
    ids=repr,
)
def test_J2_valid_extremes_still_load(value: Any, strict: bool) -> None:
    loaded = unpickler.loads(pickle.dumps(value, 5))
    assert (loaded, type(loaded), getattr(loaded, "fold", 0)) == (
        value,
        type(value),
        getattr(value, "fold", 0),
    )


SHAPES = {
    "fraction-from-exponent-text": p5(call(global_("fractions", "Fraction"), text("1e100000000"))),
    "fraction-from-float": p5(
        call(global_("fractions", "Fraction"), b"G" + struct.pack(">d", 0.5))
    ),
    "fraction-zero-denominator": p5(call(global_("fractions", "Fraction"), integer(1), integer(0))),
    "ordered-dict-from-pairs": p5(
        call(global_("collections", "OrderedDict"), b"]" + MARK + integer(1) + integer(2)
             + TUPLE + b"a")
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(SHAPES))
def test_J3_only_the_argument_shapes_our_writer_emits(case: str, strict: bool) -> None:
    with pytest.raises(unpickler.SuspiciousValue):
        unpickler.loads(SHAPES[case])


@pytest.mark.parametrize(
    "value",
    [fractions.Fraction(-7, 3), fractions.Fraction(10**40, 3), collections.OrderedDict(a=1, b=2)],
    ids=repr,
)
def test_J3_the_shapes_our_writer_emits_load(value: Any, strict: bool) -> None:
    assert unpickler.loads(pickle.dumps(value, 5)) == value
    assert unpickler.loads(get_writer().dumps("k", value)) == value


def test_J3_fraction_text_form_of_older_pythons_loads(strict: bool) -> None:
    raw = p5(call(global_("fractions", "Fraction"), text("-22/7")))
    assert unpickler.loads(raw) == fractions.Fraction(-22, 7)


# --- B9: nothing from comparing or re-pickling a loaded value reaches the view -------------------


def _unframed_snan(in_list: bool = False) -> bytes:
    # Decimal('sNaN') the way no writer of ours emits it (unframed, no memo). In a list, its
    # re-pickle differs, so change detection compares the lists with ==, which raises for a
    # signalling NaN. Alone, a Decimal cannot change in place and is not pickled again.
    snan = call(global_("decimal", "Decimal"), text("sNaN"))
    return p5(EMPTY_LIST + snan + APPEND) if in_list else p5(snan)


@pytest.mark.parametrize("view", ["/auth/", "/cart/"])
def test_J4_a_signalling_nan_never_raises_in_a_view(
    view: str, settings: Any, security_log: Any
) -> None:
    plant(
        "locmem",
        VICTIM,
        sign_raw(VICTIM, {"_auth_user_id": b"\x80\x05K\x01.", "cart": _unframed_snan()}),
    )
    client = Client(raise_request_exception=True)
    client.cookies[settings.SESSION_COOKIE_NAME] = VICTIM
    response = client.get(view)
    assert response.status_code == 200
    # Reading it again (its canonical bytes are stored now) raises nothing either.
    assert client.get(view).status_code == 200


def test_J4_comparing_a_loaded_value_that_raises_counts_as_a_change() -> None:
    from django_picklesessions.backends.locmem import SessionStore

    plant("locmem", VICTIM, sign_raw(VICTIM, {"n": _unframed_snan(in_list=True)}))
    store = SessionStore(VICTIM)
    assert store["n"][0].is_snan()
    assert store.modified  # == raised inside the check; it reports a change, never raises
    store.save()
    assert SessionStore(VICTIM)["n"][0].is_snan()


def test_J4_a_lone_signalling_nan_read_is_left_as_stored() -> None:
    from django_picklesessions.backends.locmem import SessionStore

    forged = _unframed_snan()
    plant("locmem", VICTIM, sign_raw(VICTIM, {"n": forged, "visits": pickle.dumps(1, 5)}))
    store = SessionStore(VICTIM)
    assert store["n"].is_snan()
    assert not store.modified  # never compared, so nothing raises and nothing is written
    store["visits"] = 2
    store.save()
    assert SessionStore(VICTIM).decode_record(stored("locmem", VICTIM))._base["n"] == forged


def test_J4_re_pickling_failure_of_a_forged_value_never_reaches_the_view(
    settings: Any, security_log: Any
) -> None:
    # A Cart whose items nest deeper than pickling can recurse: it loads in default mode,
    # and re-pickling it for change detection fails. The view answers; the forgery is
    # logged once and dropped from the record.
    deep = b"]" * 5000 + b"a" * 4999
    forged = p5(global_("tests.cart", "Cart") + EMPTY_TUPLE + NEWOBJ + EMPTY_DICT
                + text("items") + deep + SETITEM + BUILD)  # fmt: skip
    plant("locmem", VICTIM, sign_raw(VICTIM, {"_auth_user_id": b"\x80\x05K\x01.", "cart": forged}))
    client = Client(raise_request_exception=True)
    client.cookies[settings.SESSION_COOKIE_NAME] = VICTIM
    assert client.get("/cart/").status_code == 200
    assert len(security_log()) == 1
    assert client.get("/cart/").content == b"none"
    assert len(security_log()) == 1
    assert client.get("/auth/").content == b"1"


# --- B13: forgeries under a valid MAC are security events ---------------------------------------


FORGERIES = {
    "EXT1": p5(b"\x82\x01"),
    "EXT2": p5(b"\x83\x01\x00"),
    "EXT4": p5(b"\x84\x01\x00\x00\x00"),
    "PROTO-6": b"\x80\x06N.",
    "second-PROTO-6": p5(b"\x80\x06N"),
    "non-UTF-8-module": p5(b"\x8c\x02\xff\xfe" + text("Cart") + b"\x93"),
    "non-UTF-8-name": p5(text("tests.cart") + b"\x8c\x02\xc3\x28" + b"\x93"),
    "function-import_string": p5(
        call(global_("django.utils.module_loading", "import_string"), text("os.system"))
    ),
    "function-lower-case-name": p5(call(global_("tests.canary", "fire"), text("x"))),
    "dunder-name": p5(global_("tests.cart", "__builtins__")),
    "nested-name": p5(global_("tests.cart", "Cart.total")),
    "BUILD-on-class": FRACTION_CLASS_BUILD,
    "invalid-date": INVALID_STATES["date-year-0"],
}


@pytest.mark.parametrize("case", sorted(FORGERIES))
def test_J5_forgeries_are_logged_as_suspicious(
    case: str, strict: bool, audit: AuditGuard, caplog: Any, security_log: Any
) -> None:
    caplog.set_level("WARNING", logger="django_picklesessions")
    assert "evil" not in value_outcome(audit, FORGERIES[case])
    assert [r.name for r in security_log()] == ["django.security.SuspiciousSession"]
    assert [r for r in caplog.records if r.name == "django_picklesessions"] == []


def test_J5_a_class_a_deploy_removed_is_not_a_forgery(
    settings: Any, caplog: Any, security_log: Any, audit: AuditGuard
) -> None:
    caplog.set_level("WARNING", logger="django_picklesessions")
    raw = get_writer().dumps("cart", Cart())
    settings.PICKLESESSIONS_ALLOWED_CLASSES = []
    assert "evil" not in value_outcome(audit, raw)
    assert security_log() == []
    assert [r.name for r in caplog.records] == ["django_picklesessions"]


def test_J5_refusal_kinds() -> None:
    with pytest.raises(ValueRejected) as removed:
        unpickler.loads(p5(global_("shop.gone", "Cart") + EMPTY_TUPLE + NEWOBJ))
    assert not getattr(removed.value, "suspicious", False)


def test_J1_each_thread_has_its_own_stand_ins() -> None:
    import threading

    found: dict[str, Any] = {}

    def load() -> None:
        loaders = unpickler._unpickler_class(unpickler.get_allow_list()).loaders
        found["stand-in"] = loaders["tests.cart", "Cart"]
        found["value"] = unpickler.loads(get_writer().dumps("k", [Cart]))

    thread = threading.Thread(target=load)
    thread.start()
    thread.join()
    here = unpickler._unpickler_class(unpickler.get_allow_list()).loaders["tests.cart", "Cart"]
    assert found["stand-in"] is not here  # a load in one thread never counts in another's
    assert found["value"] == [Cart]


# --- B10: unsigned db columns that disagree with the signed record -------------------------------


@pytest.mark.db
@pytest.mark.django_db
@pytest.mark.parametrize("column", [0, 7, 2**62])
def test_J8_a_tampered_version_column_is_logged_and_saved_over(
    column: int, security_log: Any
) -> None:
    from django_picklesessions.backends.db import SessionStore
    from django_picklesessions.models import Session

    store = SessionStore()
    store["n"] = 1
    store.save()
    key = store.session_key
    Session.objects.filter(address=store.address(key)).update(version=column)
    session = SessionStore(key)
    session["n"] = 2
    session.save()  # one attempt, not 50 ending in SessionConflict
    assert SessionStore(key)["n"] == 2
    assert len(security_log()) == 1
    assert "version column" in security_log()[0].getMessage()
    row = Session.objects.get(address=store.address(key))
    assert row.version == 2  # the column mirrors the signed header again


@pytest.mark.db
@pytest.mark.django_db
def test_J8_a_real_concurrent_save_is_still_a_conflict_not_tampering(security_log: Any) -> None:
    from django_picklesessions.backends.db import SessionStore

    first = SessionStore()
    first["n"] = 1
    first.save()
    key = first.session_key
    mine, theirs = SessionStore(key), SessionStore(key)
    mine["a"], theirs["b"] = 1, 2
    theirs.save()
    mine.save()  # replayed onto theirs
    assert dict(SessionStore(key).items()) == {"n": 1, "a": 1, "b": 2}
    assert security_log() == []


@pytest.mark.db
@pytest.mark.django_db
def test_J8_the_admin_survives_unsigned_columns_and_huge_values(admin_client: Any) -> None:
    from django_picklesessions.backends.db import SessionStore
    from django_picklesessions.models import Session

    shared: tuple[Any, ...] = (1,)
    for _ in range(60):
        shared = (shared, shared)  # 2**60 leaves: any unbounded repr never returns
    key = "j" * 32
    entries = {"dag": pickle.dumps(shared, 5), "cart": pickle.dumps(Cart(), 5)}
    plant("db", key, sign_raw(key, entries))
    address = SessionStore.address(key)
    Session.objects.filter(address=address).update(expires_at=2**62)
    listing = admin_client.get("/admin/django_picklesessions/session/")
    assert listing.status_code == 200
    assert b"out of range" in listing.content
    detail = admin_client.get(f"/admin/django_picklesessions/session/{address}/change/")
    assert detail.status_code == 200
    assert b"builtins.tuple" in detail.content


# --- B11: the file engine's root and fan-out directories, checked at run time --------------------

#: What open() with O_DIRECTORY | O_NOFOLLOW says of a symlink (Linux ENOTDIR, others ELOOP).
NOT_A_DIRECTORY = (errno.ENOTDIR, errno.ELOOP, errno.EMLINK)


@pytest.mark.parametrize("where", ["root", "fan-out"])
@pytest.mark.parametrize("how", ["open-mode", "symlink"])
def test_J9_a_planted_or_opened_directory_is_refused_at_run_time(
    where: str, how: str, settings: Any, tmp_path: Any, security_log: Any, audit: AuditGuard
) -> None:
    from django_picklesessions.backends.file import SessionStore, UnsafeDirectory

    root = tmp_path / "sessions"
    settings.PICKLESESSIONS_FILE_PATH = str(root)
    store = SessionStore()
    store["n"] = 1
    store.save()
    key = store.session_key
    target = root if where == "root" else root / SessionStore.address(key)[:2]
    if how == "open-mode":
        target.chmod(0o777)  # as another user's planted directory would be
    else:
        moved = tmp_path / "elsewhere"
        target.rename(moved)
        target.symlink_to(moved)
    session = SessionStore(key)
    assert session.get("n") is None  # nothing read through it
    assert ["(directory)" in r.getMessage() for r in security_log()] == [True]
    session["n"] = 2
    if where == "root":
        with pytest.raises(OSError) as raised:
            session.save()  # nothing is written through it either
        assert isinstance(raised.value, UnsafeDirectory) or raised.value.errno in NOT_A_DIRECTORY
        return
    before = sorted(os.listdir(target))
    # The key was not adopted: the new one's record goes elsewhere. (Draw it outside the
    # planted directory: 1 key in 256 would land in it, and be refused there too.)
    fresh = SessionStore._get_new_session_key
    while True:
        new_key = fresh(session)
        if SessionStore.address(new_key)[:2] != SessionStore.address(key)[:2]:
            break
    session._get_new_session_key = lambda: new_key
    session.save()
    assert session.session_key != key
    assert sorted(os.listdir(target)) == before
    with pytest.raises(OSError) as raised:
        SessionStore._open_subdir(SessionStore.address(key), create=True)
    assert isinstance(raised.value, UnsafeDirectory) or raised.value.errno in NOT_A_DIRECTORY
