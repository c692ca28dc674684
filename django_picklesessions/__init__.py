"""Signed, allow-listed pickle sessions for Django."""
