"""The session engine of the real-server project: one of our engines, as configured.

Each lost compare-and-swap race is logged, so that the test can count the ``CONFLICT`` lines
in the server log and show that the requests really overlapped (a run without a single
conflict would prove nothing about concurrency).
"""

from __future__ import annotations

import logging

from django.conf import settings

from django_picklesessions.backends import cached_db, db, file, redis
from django_picklesessions.backends.base import PickleSessionBase, UserLink
from django_picklesessions.exceptions import VersionConflict
from tests.real_server import CONFLICT

logger = logging.getLogger("tests.real_server")

_ENGINES: dict[str, type[PickleSessionBase]] = {
    "db": db.SessionStore,
    "file": file.SessionStore,
    "redis": redis.SessionStore,
    "cached_db": cached_db.SessionStore,
}
_Engine = _ENGINES[getattr(settings, "REALSERVER_ENGINE", "db")]


class SessionStore(_Engine):  # type: ignore[valid-type]
    """Our engine, unchanged but for a log line per lost race."""

    def _write(
        self,
        address: str,
        data: bytes,
        expires_at: int,
        must_create: bool,
        expected: int | None,
        user: UserLink = False,
    ) -> None:
        try:
            super()._write(address, data, expires_at, must_create, expected, user)
        except VersionConflict:
            logger.info("%s expected=%s", CONFLICT, expected)
            raise
