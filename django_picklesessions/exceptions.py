"""Exceptions raised by the record codec and the store base."""

from __future__ import annotations


class RecordError(Exception):
    """A stored record failed a check; ``reason`` is a short code for the security log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ValueRejected(Exception):
    """One stored value could not be unpickled (class not allowed, gone, or bad bytes)."""


class SessionTooLarge(ValueError):
    """The session does not fit in ``PICKLESESSIONS_MAX_RECORD_SIZE``."""
