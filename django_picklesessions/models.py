"""The table the ``db`` engine keeps records in, and the abstract model to build your own."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class AbstractSession(models.Model):
    """One stored session: its address, its signed record, its expiry and its version.

    Subclass it to keep sessions in a table of your own, and point a ``SessionStore``
    subclass's ``get_model_class()`` at your model (as with Django's ``AbstractBaseSession``).
    """

    # The hex SHA-256 of the session key: a leaked table hijacks nobody.
    address = models.CharField(_("address"), max_length=64, primary_key=True)
    record = models.BinaryField(_("record"))
    # Unix time in seconds, equal to the record's signed expires-at. Only a cleanup hint:
    # the signed value decides whether a record loads.
    expires_at = models.BigIntegerField(_("expires at"), db_index=True)
    version = models.BigIntegerField(_("version"), default=1)
    # The logged-in user's id (``_auth_user_id``) with PICKLESESSIONS_USER_LINK on, for
    # logout_user(); NULL when nobody is logged in or the link is off.
    user_id = models.CharField(_("user id"), max_length=255, null=True, blank=True, db_index=True)

    class Meta:
        abstract = True
        verbose_name = _("session")
        verbose_name_plural = _("sessions")

    def __str__(self) -> str:
        return self.address[:12]


class Session(AbstractSession):
    """The default session table, ``django_picklesessions_session``."""

    class Meta(AbstractSession.Meta):
        db_table = "django_picklesessions_session"


class SessionLock(models.Model):
    """A held ``session.locked()`` block of the ``db`` engine: one row per locked session."""

    address = models.CharField(_("address"), max_length=64, primary_key=True)
    token = models.CharField(_("token"), max_length=32)
    # Unix time (seconds): after it the lock counts as abandoned and the next request takes it.
    expires_at = models.FloatField(_("lease ends at"))

    class Meta:
        db_table = "django_picklesessions_lock"
        verbose_name = _("session lock")
        verbose_name_plural = _("session locks")
