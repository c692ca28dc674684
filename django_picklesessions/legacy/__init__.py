"""Reading (and, during a dual-write period, writing) the records of Django's stock engines.

``engines`` tells which stock engine a ``PICKLESESSIONS_LEGACY_ENGINE`` is derived from;
``signing`` parses and writes Django's signed session strings, verifying them under
``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS`` before anything is decoded.
"""
