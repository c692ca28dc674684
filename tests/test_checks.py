"""One test per system check id, plus a clean run on the test settings."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

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


def deploy_ids() -> list[str]:
    """The ids ``check --deploy`` reports: ours and Django's own."""
    return [m.id or "" for m in run_checks(include_deployment_checks=True)]


def deploy_messages(check_id: str) -> list[str]:
    return [m.msg for m in run_checks(include_deployment_checks=True) if m.id == check_id]


STRONG = "k3y-" + "0123456789abcdefghijklmnopqrstuvwxyz" * 2


@override_settings(SECRET_KEY="django-insecure-" + "x1y2z3" * 10, DEBUG=False)
def test_a_weak_secret_key_is_djangos_to_report_and_only_on_deploy() -> None:
    # migrate, clearsessions, runserver: silent, as Django is (its W009 is a deploy check).
    assert ids() == []
    call_command("check")
    found = deploy_ids()
    assert "security.W009" in found
    assert not [i for i in found if i.startswith("django_picklesessions.")]  # no repeat


@override_settings(PICKLESESSIONS_KEYS=["django-insecure-" + "x1y2z3" * 10], DEBUG=False)
def test_e001_weak_key_on_deploy() -> None:
    assert ids() == []  # not outside --deploy
    found = [i for i in deploy_ids() if i.startswith("django_picklesessions.")]
    assert found == ["django_picklesessions.E001"]
    assert "django-insecure-" in deploy_messages(found[0])[0]


@override_settings(PICKLESESSIONS_KEYS=["short-but-varied-key"], DEBUG=False)
def test_e001_short_key() -> None:
    [message] = deploy_messages("django_picklesessions.E001")
    assert "20 characters long" in message


@override_settings(PICKLESESSIONS_KEYS=["a" * 60], DEBUG=True)
def test_w001_weak_key_on_deploy_while_debugging() -> None:
    assert "django_picklesessions.W001" in deploy_ids()
    [message] = deploy_messages("django_picklesessions.W001")
    assert "fewer than 5 distinct" in message


@override_settings(PICKLESESSIONS_KEYS=[STRONG, "old-and-short"], DEBUG=False)
def test_e001_weak_fallback_key() -> None:
    [message] = deploy_messages("django_picklesessions.E001")
    assert "Fallback key #1" in message


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


# --- E006: the file engine's directory ----------------------------------------------------

FILE_ENGINE = "django_picklesessions.backends.file"


@pytest.fixture
def outside_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory the check does not see as temp (pytest's own tmp_path is inside /tmp)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system-temp"))
    return tmp_path


def file_engine(path: object, engine: str = FILE_ENGINE) -> override_settings:
    return override_settings(SESSION_ENGINE=engine, PICKLESESSIONS_FILE_PATH=path)


def test_e006_good_directory_passes(outside_temp: Path) -> None:
    good = outside_temp / "sessions"
    with file_engine(str(good)):
        assert ids() == []  # missing: created with mode 0700 on first use
    good.mkdir(mode=0o700)
    with file_engine(good):
        assert ids() == []


@pytest.mark.parametrize("engine", [FILE_ENGINE, "tests.file_engine_subclass"])
def test_e006_path_not_set(engine: str) -> None:
    with file_engine(None, engine):
        assert ids() == ["django_picklesessions.E006"]
        assert "is not set" in messages("django_picklesessions.E006")[0]


def test_e006_path_not_a_path() -> None:
    with file_engine(42):
        assert "must be a path" in messages("django_picklesessions.E006")[0]


def test_e006_relative_path() -> None:
    with file_engine("var/sessions"):
        assert "is relative" in messages("django_picklesessions.E006")[0]


def test_e006_the_temp_directory_itself() -> None:
    with file_engine(tempfile.gettempdir()):
        assert ids() == ["django_picklesessions.E006"]
        assert "shared temp directory" in messages("django_picklesessions.E006")[0]


def test_e006_a_path_still_to_be_created_in_the_temp_directory() -> None:
    # Another local user could create it first: what matters is who can write the parent.
    with file_engine(os.path.join(tempfile.gettempdir(), "myapp-sessions-e006")):
        assert ids() == ["django_picklesessions.E006"]
        assert "writable by other users" in messages("django_picklesessions.E006")[0]


def test_e006_our_0700_directory_below_the_temp_directory_passes(tmp_path: Path) -> None:
    # pytest's tmp_path is under /tmp: a project checked out there is not refused for it.
    assert os.path.realpath(tmp_path).startswith(os.path.realpath(tempfile.gettempdir()))
    sessions = tmp_path / "sessions"
    with file_engine(str(sessions)):
        assert ids() == []  # its parent is ours and closed: created 0700 on first use
    sessions.mkdir(mode=0o700)
    with file_engine(str(sessions)):
        assert ids() == []


def test_e006_a_path_to_be_created_under_a_world_writable_parent(outside_temp: Path) -> None:
    shared = outside_temp / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with file_engine(str(shared / "a" / "sessions")):
        assert ids() == ["django_picklesessions.E006"]
        assert f"{str(shared)!r}" in messages("django_picklesessions.E006")[0]


def test_e006_path_is_a_file(outside_temp: Path) -> None:
    path = outside_temp / "sessions"
    path.write_text("")
    with file_engine(str(path)):
        assert ids() == ["django_picklesessions.E006"]
        assert "not a directory" in messages("django_picklesessions.E006")[0]


@contextlib.contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """Make a directory unwritable even for root (CI runs as root): mode 0500 plus immutable."""
    path.chmod(0o500)
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(path)], check=False).returncode:
        pytest.skip("running as root and chattr +i is not available here")
    try:
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o700)


def test_e006_path_not_writable(outside_temp: Path) -> None:
    path = outside_temp / "sessions"
    path.mkdir(mode=0o700)
    with unwritable(path), file_engine(str(path)):
        assert ids() == ["django_picklesessions.E006"]
        assert "not writable" in messages("django_picklesessions.E006")[0]


def test_e006_path_is_a_symlink(outside_temp: Path) -> None:
    real = outside_temp / "real"
    real.mkdir(mode=0o700)
    link = outside_temp / "sessions"
    link.symlink_to(real)
    with file_engine(str(link)):
        assert ids() == ["django_picklesessions.E006"]
        assert "symbolic link" in messages("django_picklesessions.E006")[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory away needs root")
def test_e006_path_owned_by_another_user(outside_temp: Path) -> None:
    path = outside_temp / "sessions"
    path.mkdir(mode=0o700)
    os.chown(path, 65534, 65534)  # nobody
    with file_engine(str(path)):
        assert ids() == ["django_picklesessions.E006"]
        assert "belongs to another user" in messages("django_picklesessions.E006")[0]


@pytest.mark.parametrize("mode", [0o750, 0o705, 0o777])
def test_e006_path_open_to_other_users(outside_temp: Path, mode: int) -> None:
    path = outside_temp / "sessions"
    path.mkdir()
    path.chmod(mode)
    with file_engine(str(path)):
        assert ids() == ["django_picklesessions.E006"]
        assert "chmod 700" in messages("django_picklesessions.E006")[0]


@pytest.mark.parametrize(
    "policies,text",
    [
        ({"cart": "tests.merges.nowhere"}, "neither 'last-writer-wins', 'raise' nor"),
        ({"cart": "first-writer-wins"}, "neither"),
        ({"cart": 42}, "not callable"),
        ({1: "raise"}, "not a str"),
        (["cart"], "must be a dict"),
    ],
)
def test_e007_bad_conflict_policy(policies: object, text: str) -> None:
    with override_settings(PICKLESESSIONS_CONFLICT_POLICIES=policies):
        assert ids() == ["django_picklesessions.E007"]
        assert text in messages("django_picklesessions.E007")[0]


def test_e007_good_policies_pass() -> None:
    good = {"cart": "tests.merges.sum_counts", "token": "raise", "theme": "last-writer-wins"}
    with override_settings(PICKLESESSIONS_CONFLICT_POLICIES=good):
        assert ids() == []


def test_w040_file_path_is_djangos_session_file_path(tmp_path: Path) -> None:
    shared = tmp_path / "sessions"
    with override_settings(PICKLESESSIONS_FILE_PATH=shared, SESSION_FILE_PATH=str(shared)):
        assert ids() == ["django_picklesessions.W040"]
        assert "SESSION_FILE_PATH" in messages("django_picklesessions.W040")[0]
    with override_settings(
        PICKLESESSIONS_FILE_PATH=shared, SESSION_FILE_PATH=str(tmp_path / "django")
    ):
        assert ids() == []


class ServerPath(PurePosixPath):
    """A path class of the project's own: pathlib's live in pathlib._local on Python 3.13."""


# --- E020 / W020: allowed classes to question ---------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("django.contrib.auth.models.User", "primary key"),
        ("zoneinfo.ZoneInfo", "UTC"),
        ("logging.Logger", "name"),
    ],
)
def test_e020_allowed_classes_that_cannot_be_stored(settings, entry: str, says: str) -> None:
    settings.PICKLESESSIONS_ALLOWED_CLASSES = [*settings.PICKLESESSIONS_ALLOWED_CLASSES, entry]
    assert ids() == ["django_picklesessions.E020"]
    (message,) = messages("django_picklesessions.E020")
    assert entry in message and "function" in message and says in message


@pytest.mark.parametrize(
    "entry",
    ["django.utils.safestring.SafeString", "decimal.Context", "tests.test_checks.ServerPath"],
)
def test_w020_allowed_classes_a_forgery_turns_against_you(settings, entry: str) -> None:
    settings.PICKLESESSIONS_ALLOWED_CLASSES = [*settings.PICKLESESSIONS_ALLOWED_CLASSES, entry]
    assert ids() == ["django_picklesessions.W020"]
    assert entry in messages("django_picklesessions.W020")[0]


@pytest.mark.parametrize("soft", [0, -1, "4096", 1.5])
def test_e050_soft_record_size_not_a_positive_int(soft: object) -> None:
    with override_settings(PICKLESESSIONS_SOFT_RECORD_SIZE=soft):
        assert ids() == ["django_picklesessions.E050"]


def test_w050_soft_record_size_not_below_the_hard_limit() -> None:
    with override_settings(PICKLESESSIONS_SOFT_RECORD_SIZE=300_000):
        assert ids() == ["django_picklesessions.W050"]
        assert "MAX_RECORD_SIZE (262144)" in messages("django_picklesessions.W050")[0]
    with override_settings(PICKLESESSIONS_SOFT_RECORD_SIZE=64 * 1024):
        assert ids() == []


@pytest.mark.parametrize("name", ["USER_LINK", "LOGOUT_ON_PASSWORD_CHANGE"])
def test_e060_user_link_settings_not_a_bool(settings, name: str) -> None:
    setattr(settings, f"PICKLESESSIONS_{name}", "yes")
    assert ids() == ["django_picklesessions.E060"]
    assert (
        f"PICKLESESSIONS_{name} must be True or False" in messages("django_picklesessions.E060")[0]
    )


def test_e061_logout_on_password_change_without_the_user_link(settings) -> None:
    settings.PICKLESESSIONS_LOGOUT_ON_PASSWORD_CHANGE = True
    assert ids() == ["django_picklesessions.E061"]
    settings.PICKLESESSIONS_USER_LINK = True
    settings.SESSION_ENGINE = "django_picklesessions.backends.db"
    assert ids() == []


@pytest.mark.parametrize(
    ("engine", "cluster"),
    [
        ("django_picklesessions.backends.file", False),
        ("django_picklesessions.backends.locmem", False),
        ("django.contrib.sessions.backends.db", False),
        ("django_picklesessions.backends.redis", True),
    ],
)
def test_w061_user_link_with_an_engine_that_keeps_none(
    settings, tmp_path: Path, engine: str, cluster: bool
) -> None:
    settings.PICKLESESSIONS_FILE_PATH = str(tmp_path / "sessions")
    settings.PICKLESESSIONS_USER_LINK = True
    settings.SESSION_ENGINE = engine
    settings.PICKLESESSIONS_REDIS_CLUSTER = cluster
    assert ids() == ["django_picklesessions.W061"]
    for supporting in ("db", "cached_db", "redis"):
        settings.SESSION_ENGINE = f"django_picklesessions.backends.{supporting}"
        settings.PICKLESESSIONS_REDIS_CLUSTER = False
        assert ids() == []
