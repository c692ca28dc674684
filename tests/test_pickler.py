"""The writer refuses at save() what the reader would refuse, naming the key and the class."""

from __future__ import annotations

import datetime
import decimal
import pickle
import zoneinfo

import pytest
from django.utils.translation import gettext_lazy

from django_picklesessions import pickler, unpickler
from django_picklesessions.backends import locmem
from django_picklesessions.backends.locmem import SessionStore
from tests.cart import Cart, LineItem, NotAllowed


class _ByName:
    """An allowed-looking class whose __reduce__ names a global instead of a constructor."""

    def __reduce__(self) -> str:
        return "INSTANCE"


INSTANCE = _ByName()


def save_value(value: object, key: str = "thing") -> SessionStore:
    store = SessionStore()
    store[key] = value
    store.save()
    return store


def test_unlisted_class_fails_naming_key_and_class() -> None:
    with pytest.raises(TypeError) as info:
        save_value(NotAllowed(), key="widget")
    message = str(info.value)
    assert "'widget'" in message
    assert "tests.cart.NotAllowed" in message
    assert "PICKLESESSIONS_ALLOWED_CLASSES" in message
    assert locmem._records == {}


def test_nested_unlisted_class_fails_naming_it() -> None:
    cart = Cart(items=[NotAllowed()])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"'cart'.*tests\.cart\.NotAllowed"):
        save_value(cart, key="cart")


def test_zoneinfo_is_refused_with_a_clear_message() -> None:
    when = datetime.datetime(2026, 1, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    with pytest.raises(TypeError, match=r"'when'.*zoneinfo\.ZoneInfo"):
        save_value(when, key="when")


def test_functions_and_classes_are_refused() -> None:
    with pytest.raises(TypeError, match="builtins.builtin_function_or_method"):
        save_value(len)
    with pytest.raises(TypeError, match="tests.cart.NotAllowed"):
        save_value(NotAllowed)


def test_allowed_class_object_can_be_stored() -> None:
    store = save_value(decimal.Decimal)
    assert SessionStore(store.session_key)["thing"] is decimal.Decimal


def test_lazy_translation_string_is_refused() -> None:
    with pytest.raises(TypeError, match="'greeting'"):
        save_value(gettext_lazy("Hello"), key="greeting")


def test_reduce_to_global_name_is_refused(settings) -> None:
    settings.PICKLESESSIONS_ALLOWED_CLASSES = [
        *settings.PICKLESESSIONS_ALLOWED_CLASSES,
        "tests.test_pickler._ByName",
    ]
    with pytest.raises(TypeError, match="global name"):
        save_value(INSTANCE)


def test_non_string_session_key_is_refused() -> None:
    store = SessionStore()
    store._get_session()[1] = "x"
    store.modified = True
    with pytest.raises(TypeError, match="Session keys must be str"):
        store.encode({1: "x"})  # type: ignore[dict-item]


def test_failed_save_leaves_previous_record() -> None:
    store = save_value(LineItem(1, "a", decimal.Decimal(1), 1, datetime.datetime(2026, 1, 1)))
    before = dict(locmem._records)
    store["bad"] = NotAllowed()
    with pytest.raises(TypeError):
        store.save()
    assert locmem._records == before


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        (lambda: 1, "Functions and methods cannot be stored"),
        (len, "Functions and methods cannot be stored"),
        (memoryview(b"x"), "bytes(value)"),
        (datetime.datetime(2026, 1, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")), "in UTC"),
        (gettext_lazy("Hello"), "str(value)"),
    ],
    ids=["lambda", "builtin", "memoryview", "zoneinfo", "lazy"],
)
def test_hints_say_what_works(value: object, hint: str) -> None:
    with pytest.raises(TypeError) as info:
        save_value(value, key="k")
    message = str(info.value)
    assert hint in message
    # Never a suggestion the allow-list would refuse (E003) or that could not load.
    assert "Add '" not in message


@pytest.mark.django_db
def test_a_model_instance_hint_says_store_the_primary_key() -> None:
    from django.contrib.auth.models import User

    with pytest.raises(TypeError, match=r"primary key"):
        save_value(User(username="a"), key="user")


def test_an_allowed_class_reducing_through_a_function_fails_naming_it(settings) -> None:
    settings.PICKLESESSIONS_ALLOWED_CLASSES = [
        *settings.PICKLESESSIONS_ALLOWED_CLASSES,
        "zoneinfo.ZoneInfo",
    ]
    when = datetime.datetime(2026, 1, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    with pytest.raises(TypeError, match=r"zoneinfo\.ZoneInfo.*through .*_unpickle.*in UTC"):
        save_value(when, key="when")


@pytest.mark.parametrize(
    "tz",
    [
        datetime.timezone.utc,
        datetime.timezone(datetime.timedelta(0), "Z"),  # equal to UTC, but not UTC
        datetime.timezone(datetime.timedelta(hours=-3, minutes=-30)),
    ],
    ids=["utc", "zero offset named Z", "fixed offset"],
)
def test_aware_datetimes_pickle_as_pickle_writes_them(tz: datetime.timezone) -> None:
    # UTC's reduction is taken ready-made; every other timezone goes through its own.
    value = [datetime.datetime(2025, 3, 14, 9, 26, 53, tzinfo=tz), tz]
    data = pickler.get_writer().dumps("when", value)
    assert data == pickle.dumps(value, 5)
    loaded = unpickler.loads(data)
    assert loaded == value
    assert [v.tzname(None) for v in (loaded[0].tzinfo, loaded[1])] == [tz.tzname(None)] * 2
