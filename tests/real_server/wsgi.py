"""WSGI entry point gunicorn serves: ``tests.real_server.wsgi:application``."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.real_server.settings")
application = get_wsgi_application()
