from __future__ import annotations

from django.db import models

from django_picklesessions.models import AbstractSession


class TenantSession(AbstractSession):
    """A session table with a column of the project's own."""

    # Unique, so that a second session violates a constraint of the project's own.
    tenant = models.CharField(max_length=20, default="main", unique=True)

    class Meta(AbstractSession.Meta):
        app_label = "custom_sessions"
        db_table = "custom_tenant_session"
