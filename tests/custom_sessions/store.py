from __future__ import annotations

from django_picklesessions.backends.db import SessionStore as BaseStore
from tests.custom_sessions.models import TenantSession


class SessionStore(BaseStore):
    @classmethod
    def get_model_class(cls) -> type[TenantSession]:
        return TenantSession
