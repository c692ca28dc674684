"""A tiny Django project that ``tests/test_real_server.py`` serves with gunicorn.

One view adds a product to a cart kept in the session, so that concurrent requests of one
user can be raced against each other through real worker processes.
"""

#: What the engine logs for each save that lost a race (``engines.py``); the test counts it.
CONFLICT = "picklesessions-version-conflict"
