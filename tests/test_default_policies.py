"""The keys Django itself writes merge by default: messages, auth, expiry, CSRF secret.

Each test loads two stores from one record (two concurrent requests of one user), changes
them the way Django's own code does, and saves them in turn.
"""

from __future__ import annotations

import json

from django.contrib import auth
from django.contrib.messages import constants, get_messages
from django.contrib.messages.storage.session import SessionStorage
from django.http import HttpResponse
from django.middleware import csrf
from django.test import RequestFactory, override_settings

from django_picklesessions import merge
from django_picklesessions.backends.locmem import SessionStore
from django_picklesessions.merge import MISSING
from tests.helpers import new_session


def add_messages(session: SessionStore, *texts: str) -> None:
    """Add messages through Django's session message storage, as a view would."""
    storage = SessionStorage(_request(session))
    for text in texts:
        storage.add(constants.SUCCESS, text)
    storage.update(HttpResponse())


def show_messages(session: SessionStore) -> list[str]:
    """Display (and so consume) the session's messages, as a template would."""
    request = _request(session)
    request._messages = storage = SessionStorage(request)
    shown = [str(message) for message in get_messages(request)]
    storage.update(HttpResponse())
    return shown


def _request(session: SessionStore):
    request = RequestFactory().get("/")
    request.session = session
    return request


def two_requests(**values: object) -> tuple[str, SessionStore, SessionStore]:
    key = new_session(SessionStore, **values)
    return key, SessionStore(key), SessionStore(key)


def test_the_key_names_are_djangos() -> None:
    assert SessionStorage.session_key in merge.DEFAULT_POLICIES
    assert csrf.CSRF_SESSION_KEY in merge.DEFAULT_POLICIES
    for name in (auth.SESSION_KEY, auth.BACKEND_SESSION_KEY, auth.HASH_SESSION_KEY):
        assert merge.DEFAULT_POLICIES[name] == merge.LAST_WRITER_WINS
    assert merge.DEFAULT_POLICIES["_session_expiry"] == merge.LAST_WRITER_WINS


def test_messages_added_by_both_requests_are_all_kept() -> None:
    key, a, b = two_requests(started=True)
    add_messages(a, "Added tea.")
    add_messages(b, "Added cups.", "Added tea.")
    a.save()
    b.save()
    assert sorted(show_messages(SessionStore(key))) == ["Added cups.", "Added tea.", "Added tea."]


def test_messages_shown_by_one_request_are_not_shown_again() -> None:
    key = new_session(SessionStore)
    add_messages(first := SessionStore(key), "Old news.")
    first.save()
    a, b = SessionStore(key), SessionStore(key)
    assert show_messages(a) == ["Old news."]  # a page displayed it
    add_messages(b, "Added tea.")  # a concurrent add, which loaded it too
    b.save()
    a.save()
    assert show_messages(SessionStore(key)) == ["Added tea."]


def test_messages_all_shown_on_both_sides_leave_none() -> None:
    key = new_session(SessionStore)
    add_messages(first := SessionStore(key), "Old news.")
    first.save()
    a, b = SessionStore(key), SessionStore(key)
    show_messages(a)
    show_messages(b)
    b.save()
    a.save()
    assert "_messages" not in SessionStore(key)


def test_a_foreign_messages_value_falls_back_to_last_writer_wins() -> None:
    assert merge.merge_messages(MISSING, [1, 2], "[]") == [1, 2]
    assert merge.merge_messages(MISSING, "not json", "[]") == "not json"
    merged = merge.merge_messages('[["__json_message", 0, 25, "a"]]', MISSING, MISSING)
    assert merged is MISSING


def test_auth_keys_follow_the_last_login_as_a_whole() -> None:
    key, a, b = two_requests()
    login_a = {"_auth_user_id": "1", "_auth_user_backend": "x.A", "_auth_user_hash": "ha"}
    login_b = {"_auth_user_id": "2", "_auth_user_backend": "x.B", "_auth_user_hash": "hb"}
    a.update(login_a)
    b.update(login_b)
    a.save()
    b.save()
    stored = dict(SessionStore(key).items())
    assert {name: stored[name] for name in login_b} == login_b


def test_session_expiry_follows_the_last_choice() -> None:
    key, a, b = two_requests(started=True)
    a.set_expiry(0)  # "remember me" unticked in one tab
    b.set_expiry(3600)
    a.save()
    b.save()
    assert SessionStore(key).get("_session_expiry") == 3600


def test_two_first_csrf_secrets_keep_the_one_stored_first() -> None:
    key, a, b = two_requests(started=True)
    a[csrf.CSRF_SESSION_KEY] = "first-stored"
    b[csrf.CSRF_SESSION_KEY] = "created-later"
    a.save()
    b.save()
    assert SessionStore(key)[csrf.CSRF_SESSION_KEY] == "first-stored"


def test_a_csrf_rotation_wins() -> None:
    key, a, b = two_requests(**{csrf.CSRF_SESSION_KEY: "old"})
    a[csrf.CSRF_SESSION_KEY] = "their-rotation"
    b[csrf.CSRF_SESSION_KEY] = "our-rotation"
    a.save()
    b.save()
    assert SessionStore(key)[csrf.CSRF_SESSION_KEY] == "our-rotation"


def test_a_project_policy_replaces_the_default() -> None:
    with override_settings(PICKLESESSIONS_CONFLICT_POLICIES={"_messages": "last-writer-wins"}):
        assert not merge.merges("_messages")
        assert merge.merges("_csrftoken")  # the other defaults stay
        key, a, b = two_requests(started=True)
        add_messages(a, "Added tea.")
        add_messages(b, "Added cups.")
        a.save()
        b.save()
        assert show_messages(SessionStore(key)) == ["Added cups."]


def test_merged_messages_are_what_django_stores() -> None:
    ours = json.dumps([["__json_message", 0, 25, "b"]])
    theirs = json.dumps([["__json_message", 0, 25, "a", "tag"]])
    merged = merge.merge_messages(MISSING, ours, theirs)
    decoded = SessionStorage(_request(SessionStore())).deserialize_messages(merged)
    assert [(m.message, m.extra_tags) for m in decoded] == [("a", "tag"), ("b", None)]
