"""WSGI entry point: ``gunicorn example_project.config.wsgi`` from the repository root.

The example's own directory (for ``config`` and ``shop``) and the repository root (for the
package, when it is not installed) go on ``sys.path``, as ``manage.py`` does.
"""

import os
import sys
from pathlib import Path

from django.core.wsgi import get_wsgi_application

_EXAMPLE = Path(__file__).resolve().parent.parent
for _path in (str(_EXAMPLE.parent), str(_EXAMPLE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
