from __future__ import annotations

from django.apps import AppConfig


class PickleSessionsConfig(AppConfig):
    """Register the system checks; the engines need nothing else at startup."""

    name = "django_picklesessions"
    verbose_name = "Pickle sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported for its side effect: @register on each check function.
        from django_picklesessions import checks  # noqa: F401
