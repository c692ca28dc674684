from __future__ import annotations

from django.apps import AppConfig


class PickleSessionsConfig(AppConfig):
    """Register the system checks and the (opt-in) log-out-on-password-change receiver."""

    name = "django_picklesessions"
    verbose_name = "Pickle sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.apps import apps
        from django.conf import settings
        from django.db.models.signals import post_save, pre_save

        # checks: imported for its side effect, @register on each check function.
        from django_picklesessions import checks, users  # noqa: F401

        try:
            # At ready() every model is loaded; a project without a user model has no
            # passwords to watch (and a lazy sender would fail check signals.E001).
            user_model = apps.get_model(settings.AUTH_USER_MODEL, require_ready=False)
        except (LookupError, ValueError):
            return
        # Connected always, acting only while PICKLESESSIONS_LOGOUT_ON_PASSWORD_CHANGE is on.
        uid = "django_picklesessions.password_change"
        pre_save.connect(users.password_about_to_change, sender=user_model, dispatch_uid=uid)
        post_save.connect(users.password_changed, sender=user_model, dispatch_uid=uid)
