"""What a save does with a key that a concurrent request changed too.

A save is compare-and-swap: when another request saved the session since this one loaded
it, the store reloads the record and replays only this request's own changes onto it. A key
changed by both follows its policy in ``PICKLESESSIONS_CONFLICT_POLICIES``:

- ``"last-writer-wins"`` (the default): this request's value replaces theirs;
- ``"raise"``: the save raises :class:`~django_picklesessions.exceptions.SessionConflict`;
- a merge function (the function, or its dotted path) called as ``merge(base, ours, theirs)``
  with the value both requests started from, this request's value and the other's, each
  :data:`MISSING` if the key was absent or deleted; it returns the value to store, or
  ``MISSING`` to delete the key. For a cart: sum the quantity changes.

The keys Django itself writes have reviewed defaults (:data:`DEFAULT_POLICIES`); a project's
own entry for such a key replaces the default.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from django.utils.module_loading import import_string

from django_picklesessions.conf import conf, on_change
from django_picklesessions.exceptions import SessionConflict

LAST_WRITER_WINS = "last-writer-wins"
RAISE = "raise"


class _Missing:
    """The value of a key that is absent on one side of a merge."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()

MergeFunction = Callable[[Any, Any, Any], Any]
Policy = str | MergeFunction


def check_policies(policies: object) -> list[str]:
    """Return one message per unusable entry of ``PICKLESESSIONS_CONFLICT_POLICIES``."""
    if not isinstance(policies, dict):
        return ["PICKLESESSIONS_CONFLICT_POLICIES must be a dict of session key -> policy."]
    problems = []
    for key, policy in policies.items():
        if not isinstance(key, str):
            problems.append(f"Key {key!r} is not a str: session keys are strings.")
            continue
        try:
            _resolve(policy)
        except (ImportError, ValueError, TypeError) as exc:
            problems.append(f"Policy for {key!r}: {exc}")
    return problems


def _resolve(policy: object) -> Policy:
    if policy in (LAST_WRITER_WINS, RAISE):
        return policy
    if isinstance(policy, str):
        try:
            policy = import_string(policy)
        except ImportError as exc:
            raise ImportError(
                f"{policy!r} is neither {LAST_WRITER_WINS!r}, {RAISE!r} nor an importable "
                f"merge function ({exc})."
            ) from exc
    if not callable(policy):
        raise TypeError(f"{policy!r} is not callable.")
    return policy


def merge_messages(base: Any, ours: Any, theirs: Any) -> Any:
    """Merge ``django.contrib.messages`` session storage (``_messages``): keep every message.

    The value is a JSON string of a list of encoded messages. The result is the other
    request's list, minus the messages this request displayed (they were in the base and are
    gone from ours), plus the messages this request added. Equal messages count one by one.
    A value that is not such a string falls back to this request's value.
    """
    base_list, our_list, their_list = (_message_list(v) for v in (base, ours, theirs))
    if base_list is None or our_list is None or their_list is None:
        return ours
    shown = _unmatched(base_list, our_list)  # in the base, gone from ours: displayed
    merged = _unmatched(their_list, shown) + _unmatched(our_list, base_list)
    return json.dumps(merged) if merged else MISSING


def _unmatched(messages: list[Any], minus: list[Any]) -> list[Any]:
    """Return ``messages`` without one occurrence of each message of ``minus``, in order."""
    left = Counter(map(_canonical, minus))
    kept = []
    for message in messages:
        if left[_canonical(message)] > 0:
            left[_canonical(message)] -= 1
        else:
            kept.append(message)
    return kept


def _message_list(value: Any) -> list[Any] | None:
    """Return the decoded list of a ``_messages`` value, [] if missing, None if foreign."""
    if value is MISSING:
        return []
    if not isinstance(value, str):
        return None
    try:
        decoded = json.loads(value)
    except ValueError:
        return None
    return decoded if isinstance(decoded, list) else None


def _canonical(message: Any) -> str:
    return json.dumps(message, sort_keys=True)


def keep_rotation(base: Any, ours: Any, theirs: Any) -> Any:
    """Merge the CSRF secret (``_csrftoken`` under ``CSRF_USE_SESSIONS``).

    A deliberate rotation of an existing secret (``rotate_token()``) wins. Two requests that
    each created a first secret keep the one stored first: every request that loaded the
    session since then has rendered forms with it, and only this response's forms carry ours.
    """
    if base is not MISSING and ours is not MISSING and ours != base:
        return ours
    return ours if theirs is MISSING else theirs


#: The keys Django writes, and what a concurrent change of each does (docs/concurrency.md).
DEFAULT_POLICIES: dict[str, Policy] = {
    # django.contrib.messages' SessionStorage: every request's messages are kept.
    "_messages": merge_messages,
    # django.contrib.auth writes the three together (login), and login, logout and a password
    # change rotate or flush the session, so a concurrent request holding the old key gets
    # SessionInterrupted. Never merged: one request's identity replaces the other's whole.
    "_auth_user_id": LAST_WRITER_WINS,
    "_auth_user_backend": LAST_WRITER_WINS,
    "_auth_user_hash": LAST_WRITER_WINS,
    # set_expiry(): the latest explicit choice stands ("remember me" ticked or not).
    "_session_expiry": LAST_WRITER_WINS,
    # CSRF_USE_SESSIONS: a rotation wins, else the first secret stored stays.
    "_csrftoken": keep_rotation,
}


@functools.cache
def _policies() -> dict[str, Policy]:
    configured = {key: _resolve(policy) for key, policy in conf.CONFLICT_POLICIES.items()}
    return {**DEFAULT_POLICIES, **configured}


@on_change("PICKLESESSIONS_CONFLICT_POLICIES")
def _clear() -> None:
    _policies.cache_clear()


def merges(key: str) -> bool:
    """Return True if ``key`` has a merge function (called even for equal changes)."""
    return callable(_policies().get(key))


def resolve(key: str, base: Callable[[], Any], ours: Any, theirs: Callable[[], Any]) -> Any:
    """Return the value to store for ``key``, changed by this request and a concurrent one.

    ``base`` and ``theirs`` are callables so that values are only unpickled when a merge
    function needs them.
    """
    policy = _policies().get(key, LAST_WRITER_WINS)
    if policy == LAST_WRITER_WINS:
        return ours
    if policy == RAISE:
        raise SessionConflict(
            f"Session key {key!r} was changed by a concurrent request; its conflict policy "
            "is 'raise'.",
            key=key,
        )
    assert callable(policy)
    return policy(base(), ours, theirs())
