"""Merge functions the concurrency tests register in PICKLESESSIONS_CONFLICT_POLICIES."""

from __future__ import annotations

from typing import Any

from django_picklesessions.merge import MISSING


def sum_counts(base: Any, ours: Any, theirs: Any) -> Any:
    """Merge ``{item: quantity}`` dicts: apply both sides' changes to the base."""
    base = {} if base is MISSING else base
    ours = {} if ours is MISSING else ours
    theirs = {} if theirs is MISSING else theirs
    merged = {}
    for item in {*base, *ours, *theirs}:
        quantity = ours.get(item, 0) + theirs.get(item, 0) - base.get(item, 0)
        if quantity > 0:
            merged[item] = quantity
    return merged
