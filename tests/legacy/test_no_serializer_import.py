"""Our engines never import SESSION_SERIALIZER, so a stale setting cannot break requests.

On Django >= 5 a settings file that still names Django's removed PickleSerializer made
``SessionBase.__init__`` raise ImportError on every request, even with our engines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.sessions.backends.base import SessionBase
from django.test import Client, override_settings

from tests.helpers import engines

REMOVED = "django.contrib.sessions.serializers.PickleSerializer"
MISSING = "tests.nowhere.NoSuchSerializer"


@pytest.fixture
def file_path(settings: Any, tmp_path: Path) -> Path:
    path = tmp_path / "sessions"
    settings.PICKLESESSIONS_FILE_PATH = str(path)
    return path


@pytest.mark.db
@pytest.mark.django_db
@pytest.mark.parametrize("name", ["locmem", "db", "file"])
@pytest.mark.parametrize("serializer", [REMOVED, MISSING])
def test_store_works_whatever_session_serializer_names(
    name: str, serializer: str, file_path: Path
) -> None:
    store = engines()[name]
    with override_settings(SESSION_SERIALIZER=serializer):
        session = store()
        session["_auth_user_id"] = "7"
        session.save()
        again = store(session.session_key)
        assert again["_auth_user_id"] == "7"


@override_settings(SESSION_SERIALIZER=MISSING)
def test_request_through_the_middleware_works() -> None:
    client = Client()
    assert client.get("/set/_auth_user_id/7/").status_code == 200
    assert client.get("/auth/").content == b"7"


def test_store_sets_what_session_base_init_sets() -> None:
    # A Django release that adds an attribute to SessionBase.__init__ fails here, so that
    # PickleSessionBase.__init__ learns to set it too.
    for store in engines().values():
        ours = store()
        expected = vars(SessionBase())
        # ``modified`` is a property of ours (it notices in-place changes).
        assert set(expected) - {"modified"} <= set(vars(ours))
        assert ours.session_key is None
        assert ours.accessed is False
        assert ours.modified is False
