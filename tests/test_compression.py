"""Compression thresholds: each engine's default, the setting overriding it, None disabling it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from django_picklesessions import record
from django_picklesessions.backends import db, file, locmem, redis
from django_picklesessions.backends.base import PickleSessionBase

KIB = 1024
# Compressible values on either side of the network engines' threshold.
MEDIUM = "medium " * (20 * KIB // 7)  # about 20 KiB pickled
SMALL = "small " * (8 * KIB // 6)  # about 8 KiB pickled


def stored_flags(store: PickleSessionBase) -> int:
    """Return the flags byte of the record ``store`` saved."""
    raw = store._read(store.address(store.session_key))
    assert raw is not None
    return raw[5]


def compressed(store_class: type[PickleSessionBase], value: str) -> bool:
    store = store_class()
    store["text"] = value
    store.save()
    return bool(stored_flags(store) & record.FLAG_COMPRESSED)


@pytest.fixture
def file_dir(settings: Any, tmp_path: Path) -> Path:
    settings.PICKLESESSIONS_FILE_PATH = str(tmp_path / "sessions")
    return tmp_path


def test_each_engine_has_a_default() -> None:
    assert PickleSessionBase.compress_min_size == 64 * KIB
    assert file.SessionStore.compress_min_size == 64 * KIB
    assert locmem.SessionStore.compress_min_size == 64 * KIB
    assert redis.SessionStore.compress_min_size == 16 * KIB
    assert db.SessionStore.compress_min_size == 64 * KIB  # SQLite, and unknown vendors
    assert db.SessionStore.compress_min_size_by_vendor == {
        "postgresql": 16 * KIB,
        "mysql": 16 * KIB,
    }


def test_local_engines_keep_medium_records_plain(file_dir: Path) -> None:
    assert not compressed(file.SessionStore, MEDIUM)
    assert not compressed(locmem.SessionStore, MEDIUM)
    assert compressed(file.SessionStore, MEDIUM * 4)  # over 64 KiB


@pytest.mark.db
@pytest.mark.django_db
def test_db_default_follows_the_connection_vendor() -> None:
    network = connection.vendor in ("postgresql", "mysql")
    assert compressed(db.SessionStore, MEDIUM) is network
    assert not compressed(db.SessionStore, SMALL)
    assert compressed(db.SessionStore, MEDIUM * 4)


@pytest.mark.redis
def test_redis_compresses_from_16_kib() -> None:
    assert compressed(redis.SessionStore, MEDIUM)
    assert not compressed(redis.SessionStore, SMALL)


@pytest.mark.django_db
def test_the_setting_overrides_every_engine(settings: Any, file_dir: Path) -> None:
    settings.PICKLESESSIONS_COMPRESS_MIN_SIZE = 0
    for store_class in (db.SessionStore, file.SessionStore, locmem.SessionStore):
        assert compressed(store_class, SMALL)
    settings.PICKLESESSIONS_COMPRESS_MIN_SIZE = 10 * KIB
    assert not compressed(db.SessionStore, SMALL)
    assert compressed(file.SessionStore, MEDIUM)


@pytest.mark.django_db
def test_none_never_compresses(settings: Any, file_dir: Path) -> None:
    settings.PICKLESESSIONS_COMPRESS_MIN_SIZE = None
    for store_class in (db.SessionStore, file.SessionStore, locmem.SessionStore):
        assert not compressed(store_class, MEDIUM * 4)


@pytest.mark.django_db
def test_a_subclass_chooses_its_own(file_dir: Path) -> None:
    class Eager(db.SessionStore):
        compress_min_size = 0
        compress_min_size_by_vendor: dict[str, int | None] = {}  # noqa: RUF012

    class Never(file.SessionStore):
        compress_min_size = None

    assert compressed(Eager, "tiny" * 100)
    assert not compressed(Never, MEDIUM * 4)


@pytest.mark.django_db
def test_a_compressed_record_loads_and_an_oversized_one_is_refused(
    settings: Any, security_log: Any
) -> None:
    settings.PICKLESESSIONS_COMPRESS_MIN_SIZE = 0
    store = db.SessionStore()
    store["text"] = MEDIUM
    store.save()
    assert db.SessionStore(store.session_key)["text"] == MEDIUM
    # Inflating past the payload cap is refused after the MAC check, before unpickling.
    settings.PICKLESESSIONS_MAX_PAYLOAD_SIZE = 8 * KIB
    assert dict(db.SessionStore(store.session_key).items()) == {}
    assert any("(size)" in r.getMessage() for r in security_log())
