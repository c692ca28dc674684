"""A project's own engine built on the file engine: system check E006 must cover it too."""

from __future__ import annotations

from django_picklesessions.backends import file


class SessionStore(file.SessionStore):
    """The file engine under another module name."""
