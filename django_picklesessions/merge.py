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
"""

from __future__ import annotations

import functools
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


@functools.cache
def _policies() -> dict[str, Policy]:
    return {key: _resolve(policy) for key, policy in conf.CONFLICT_POLICIES.items()}


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
