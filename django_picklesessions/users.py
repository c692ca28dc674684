"""Log a user out everywhere: delete every session linked to them (``PICKLESESSIONS_USER_LINK``).

With the link on, the db and cached_db engines keep the id of the user logged in to each
session in a column, and the redis engine in a set per user, both updated by the same write
as the record. :func:`logout_user` deletes what they name; the file and locmem engines keep no
link and refuse. The optional receiver (``PICKLESESSIONS_LOGOUT_ON_PASSWORD_CHANGE``) calls it
when a user's password changes.
"""

from __future__ import annotations

import logging
from importlib import import_module
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from django_picklesessions.conf import conf

logger = logging.getLogger("django_picklesessions")

#: The engines that keep the user link, for messages.
SUPPORTING_ENGINES = (
    "django_picklesessions.backends.db",
    "django_picklesessions.backends.cached_db",
    "django_picklesessions.backends.redis",
)


class UserLinkUnsupported(NotImplementedError):
    """The configured session engine keeps no user link, so it cannot find a user's sessions."""


def user_id(user: Any) -> str:
    """Return ``user``'s id as sessions store it: Django's ``_auth_user_id`` string.

    ``user`` is a user model instance, or its primary key (an int, a UUID, a string).
    """
    meta = getattr(user, "_meta", None)
    if meta is not None:
        return str(meta.pk.value_to_string(user))
    return str(user)


def _store_class() -> Any:
    if not conf.USER_LINK:
        raise ImproperlyConfigured(
            "logout_user() needs PICKLESESSIONS_USER_LINK = True: without it no session "
            "records its user. Sessions saved before it was set are not linked."
        )
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if getattr(store, "_delete_user_sessions", None) is None:
        raise unsupported(f"SESSION_ENGINE {settings.SESSION_ENGINE!r}")
    return store


def unsupported(what: str) -> UserLinkUnsupported:
    """Return the error saying that ``what`` keeps no user link, and which engines do."""
    return UserLinkUnsupported(
        f"logout_user() is not supported by {what}: only {', '.join(SUPPORTING_ENGINES)} "
        "keep the user link (redis: not on a Redis Cluster)."
    )


def _keep(store: Any, except_session_key: str | None) -> str | None:
    return None if not except_session_key else str(store.address(except_session_key))


def logout_user(user: Any, *, except_session_key: str | None = None) -> int:
    """Delete every stored session of ``user`` but ``except_session_key``; return how many.

    ``user`` is a user instance or its primary key. Only that user's sessions are touched.
    Raises ImproperlyConfigured when the user link is off and UserLinkUnsupported on an
    engine that keeps none (file, locmem).
    """
    store = _store_class()
    return int(store._delete_user_sessions(user_id(user), _keep(store, except_session_key)))


async def alogout_user(user: Any, *, except_session_key: str | None = None) -> int:
    """The async form of :func:`logout_user`."""
    store = _store_class()
    uid = await sync_to_async(user_id)(user)
    return int(await store._adelete_user_sessions(uid, _keep(store, except_session_key)))


# --- Log out everywhere when the password changes -----------------------------------------
#
# Why a pre_save/post_save pair on the user model, and not a wrapper around Django's
# update_session_auth_hash(): every way a password changes ends in the user's save() (the
# password change and reset views, the admin, changepassword, a project's own code), while
# update_session_auth_hash() is only called by some of them, and wrapping it would mean
# patching Django. The cost is one query per save of a user that may touch the password
# (none for saves with update_fields that leave it out, such as login's last_login).
#
# The signal knows no request, so it deletes all the user's sessions, the one that made the
# change too. That session still lives: Django's password change views then call
# update_session_auth_hash(), whose cycle_key() stores the request's session, still in memory,
# under a new key. A change made outside a request (a reset, the admin, a command) logs the
# user out everywhere, as it should.

_CHANGED = "_picklesessions_password_changed"


def password_about_to_change(sender: Any, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    """pre_save: note on the instance whether its password hash differs from the stored one."""
    if not conf.LOGOUT_ON_PASSWORD_CHANGE or raw or instance._state.adding:
        return
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and "password" not in update_fields:
        return
    rows = sender._default_manager.using(kwargs.get("using")).filter(pk=instance.pk)
    stored = rows.values_list("password", flat=True).first()
    setattr(instance, _CHANGED, stored is not None and stored != instance.password)


def password_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    """post_save: log the user out everywhere if pre_save saw a new password hash."""
    if not instance.__dict__.pop(_CHANGED, False):
        return
    try:
        logout_user(instance)
    except (ImproperlyConfigured, UserLinkUnsupported) as exc:
        # Check E061/W061 reported this at startup; a password change must still succeed.
        logger.error(
            "The password of user %s changed; their sessions stay: %s", user_id(instance), exc
        )
