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


class VersionConflict(Exception):
    """Raised by an engine's write: the stored record is not the version the save expected."""


class SessionConflict(Exception):
    """A concurrent request changed the same key and its policy is ``"raise"``, or the save
    kept losing the race. The session on storage is left as the other request saved it."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class SessionLockTimeout(Exception):
    """``session.locked()`` waited its whole timeout for another request's lock."""


class StoreUnavailable(Exception):
    """The session storage server could not be reached; the request fails, nothing is lost.

    Raised instead of treating the session as empty, which would log every user out while
    the server is down (and hand out new sessions that vanish when it comes back).
    """
