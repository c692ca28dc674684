"""A drop-in for Django's ``SessionMiddleware`` that checks our sessions for changes once.

Django's middleware asks ``request.session.modified`` and then calls ``save()``. For our
engines each of those re-pickles every value the request read, to see what changed in place.
Around Django's own ``process_response`` this one lets the two share their pickles: no
application code runs between them, so nothing can change in between. With Django's
middleware everything is saved just the same, with the pickling done twice.
"""

from __future__ import annotations

from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.http import HttpRequest, HttpResponse

from django_picklesessions.backends.base import PickleSessionBase


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's ``SessionMiddleware``, with one change check per response for our engines."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        session = getattr(request, "session", None)
        if not isinstance(session, PickleSessionBase):
            return super().process_response(request, response)
        with session.single_pass():
            return super().process_response(request, response)
