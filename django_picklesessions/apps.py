from __future__ import annotations

from django.apps import AppConfig


class PickleSessionsConfig(AppConfig):
    """Register the system checks and the (opt-in) log-out-on-password-change receiver."""

    name = "django_picklesessions"
    verbose_name = "Pickle sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings
        from django.db.models.signals import post_save, pre_save

        # checks: imported for its side effect, @register on each check function.
        from django_picklesessions import checks, users  # noqa: F401

        # Connected always, acting only while PICKLESESSIONS_LOGOUT_ON_PASSWORD_CHANGE is on;
        # the sender is a lazy "app_label.Model" reference, resolved once the model loads.
        uid = "django_picklesessions.password_change"
        pre_save.connect(
            users.password_about_to_change, sender=settings.AUTH_USER_MODEL, dispatch_uid=uid
        )
        post_save.connect(users.password_changed, sender=settings.AUTH_USER_MODEL, dispatch_uid=uid)
