"""The soft size budget: a save whose record is over ``PICKLESESSIONS_SOFT_RECORD_SIZE`` logs.

The hard limit (``MAX_RECORD_SIZE``) refuses a save; this one only warns, naming the three
largest keys so the code that grows the session can be found. A session that stays large is
saved on every request, so the warning is rate-limited per largest key name in each process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from django_picklesessions.conf import conf

logger = logging.getLogger("django_picklesessions")

#: Seconds between two warnings naming the same largest key, in one process.
WARNING_INTERVAL = 3600.0
#: Key names remembered; past it the oldest are forgotten (a key could then warn again).
MAX_REMEMBERED = 1000

_last_warned: dict[str, float] = {}


def check(record_size: int, entries: Mapping[str, bytes]) -> None:
    """Log one warning if ``record_size`` is over the budget, unless one was logged lately."""
    limit = conf.SOFT_RECORD_SIZE
    if limit is None or record_size <= limit:
        return
    largest = sorted(entries.items(), key=lambda item: len(item[1]), reverse=True)[:3]
    name = largest[0][0] if largest else ""
    now = time.monotonic()
    last = _last_warned.get(name)
    if last is not None and now - last < WARNING_INTERVAL:
        return
    _last_warned.pop(name, None)
    _last_warned[name] = now
    while len(_last_warned) > MAX_REMEMBERED:
        del _last_warned[next(iter(_last_warned))]
    listing = ", ".join(f"{key!r} ({len(value)} bytes)" for key, value in largest)
    logger.warning(
        "A session record of %d bytes is over PICKLESESSIONS_SOFT_RECORD_SIZE (%d). "
        "Largest keys: %s.",
        record_size,
        limit,
        listing,
    )
