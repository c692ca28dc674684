"""One test per system check id, plus a clean run on the test settings."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import override_settings

from django_picklesessions.allowlist import get_allow_list


def ids() -> list[str]:
    return [m.id for m in run_checks() if (m.id or "").startswith("django_picklesessions.")]


def messages(check_id: str) -> list[str]:
    return [f"{m.msg} {m.hint}" for m in run_checks() if m.id == check_id]


def test_test_settings_pass() -> None:
    assert ids() == []
    call_command("check")


@override_settings(SECRET_KEY="django-insecure-" + "x1y2z3" * 10, DEBUG=False)
def test_e001_weak_key_in_production() -> None:
    assert ids() == ["django_picklesessions.E001"]
    assert "django-insecure-" in messages("django_picklesessions.E001")[0]


@override_settings(SECRET_KEY="short-but-varied-key", DEBUG=False, SECRET_KEY_FALLBACKS=[])
def test_e001_short_key() -> None:
    assert "20 characters long" in messages("django_picklesessions.E001")[0]


@override_settings(SECRET_KEY="a" * 60, DEBUG=True)
def test_w001_weak_key_while_debugging() -> None:
    assert ids() == ["django_picklesessions.W001"]
    assert "fewer than 5 distinct" in messages("django_picklesessions.W001")[0]


@override_settings(SECRET_KEY_FALLBACKS=["old-and-short"])
def test_e001_weak_fallback_key() -> None:
    assert "Fallback key #1" in messages("django_picklesessions.E001")[0]


@pytest.mark.parametrize(
    "entry,text",
    [
        ("tests.cart", "module-wide"),
        ("tests.*", "module-wide"),
        ("django.utils.timezone", "module-wide"),
        ("tests.cart.Cart.total", "nested attribute"),
        ("tests.cart:Cart.__init__", "nested attribute"),
        ("tests.nowhere.Thing", "cannot be imported"),
        ("tests.cart.Missing", "has no attribute"),
        ("tests.helpers.sign_raw", "not a class"),
        ("django.utils.timezone.timedelta", "list it as 'datetime.timedelta'"),
        (42, "dotted class path"),
    ],
)
def test_e002_unusable_allow_list_entry(entry: object, text: str) -> None:
    with override_settings(PICKLESESSIONS_ALLOWED_CLASSES=[entry]):
        assert ids() == ["django_picklesessions.E002"]
        assert text in messages("django_picklesessions.E002")[0]
        # Servers that never run checks still refuse to start using it.
        with pytest.raises(ImproperlyConfigured):
            get_allow_list()


@pytest.mark.parametrize(
    "entry",
    [
        "builtins.eval",
        "builtins.getattr",
        "functools.partial",
        "operator.attrgetter",
        "os.system",
        "subprocess.Popen",
        "importlib.import_module",
        "copyreg._reconstructor",
        "uuid._get_command_stdout",
        "types.FunctionType",
        "builtins.type",
    ],
)
def test_e003_never_allowed_entry(entry: str) -> None:
    with override_settings(PICKLESESSIONS_ALLOWED_CLASSES=[entry]):
        assert ids() == ["django_picklesessions.E003"]
        assert entry in messages("django_picklesessions.E003")[0]
        with pytest.raises(ImproperlyConfigured, match="never-allow"):
            get_allow_list()


@pytest.mark.parametrize("keys", ["one-string", [], ["ok" * 30, ""], [None]])
def test_e004_malformed_keys_setting(keys: object) -> None:
    with override_settings(PICKLESESSIONS_KEYS=keys):
        assert ids() == ["django_picklesessions.E004"]


def test_e004_duplicate_keys() -> None:
    key = "a-perfectly-good-random-looking-secret-key-0123456789-xyz"
    with override_settings(PICKLESESSIONS_KEYS=[key, key]):
        assert ids() == ["django_picklesessions.E004"]


@pytest.mark.parametrize(
    "name,value",
    [
        ("PICKLESESSIONS_MAX_RECORD_SIZE", 10),
        ("PICKLESESSIONS_MAX_PAYLOAD_SIZE", "1MB"),
        ("PICKLESESSIONS_COMPRESS_MIN_SIZE", -1),
        ("PICKLESESSIONS_STRICT_UNPICKLING", "yes"),
    ],
)
def test_e005_bad_size_or_mode_setting(name: str, value: object) -> None:
    with override_settings(**{name: value}):
        assert ids() == ["django_picklesessions.E005"]
        assert name in messages("django_picklesessions.E005")[0]
