"""The db engine, on whichever database PICKLESESSIONS_TEST_DB selects."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time

import django
import pytest
from asgiref.sync import sync_to_async
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.core.management import call_command
from django.db import IntegrityError, connection, connections, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from django_picklesessions import record
from django_picklesessions.admin import describe
from django_picklesessions.backends import db as db_backend
from django_picklesessions.backends.db import SessionStore
from django_picklesessions.models import Session
from tests.custom_sessions.models import TenantSession
from tests.custom_sessions.store import SessionStore as CustomStore
from tests.helpers import pickled, sign_raw

pytestmark = [pytest.mark.db, pytest.mark.django_db]
needs_async = pytest.mark.skipif(
    django.VERSION < (5, 1), reason="SessionBase has async methods since Django 5.1"
)


def saved(**values: object) -> SessionStore:
    store = SessionStore()
    store.update(values)
    store.save()
    return store


def row(store: SessionStore) -> Session:
    return Session.objects.get(address=store.address(store.session_key))


def test_round_trip_update_and_delete() -> None:
    store = saved(a=1, cart=[1, 2])
    assert SessionStore(store.session_key)["cart"] == [1, 2]
    other = SessionStore(store.session_key)
    other["a"] = 2
    other.save()
    assert SessionStore(store.session_key)["a"] == 2
    other.delete()
    assert not SessionStore().exists(store.session_key)
    assert dict(SessionStore(store.session_key).items()) == {}


def test_row_holds_hash_record_signed_expiry_and_version() -> None:
    store = saved(a=1)
    stored = row(store)
    assert stored.address == hashlib.sha256(store.session_key.encode()).hexdigest()
    data = bytes(stored.record)
    header = record.HEADER.unpack_from(data)
    assert stored.expires_at == header[5]
    assert stored.version == header[6] == 1
    store["a"] = 2
    store.save()
    assert row(store).version == 2
    assert row(store).expires_at == record.HEADER.unpack_from(bytes(row(store).record))[5]


def test_no_raw_session_key_in_any_row() -> None:
    keys = [saved(n=n).session_key for n in range(5)]
    for stored in Session.objects.all():
        for key in keys:
            assert key not in stored.address
            assert key.encode() not in bytes(stored.record)


@pytest.mark.django_db(transaction=True)  # no test transaction: no savepoint queries
def test_load_is_one_query_and_save_is_one_query() -> None:
    store = saved(a=1)
    with CaptureQueriesContext(connection) as load:
        loaded = SessionStore(store.session_key)
        assert loaded["a"] == 1
    assert len(load) == 1
    loaded["a"] = 2
    with CaptureQueriesContext(connection) as save:
        loaded.save()
    assert len(save) == 1
    with CaptureQueriesContext(connection) as create:
        saved(b=1)
    assert len(create) == 1


def test_unchanged_session_is_not_written() -> None:
    store = saved(a=1)
    loaded = SessionStore(store.session_key)
    loaded["a"] = 1
    with CaptureQueriesContext(connection) as queries:
        loaded.save()
    assert len(queries) == 0


def test_create_collision_raises_create_error() -> None:
    store = saved(a=1)
    with pytest.raises(CreateError):
        SessionStore(store.session_key).save(must_create=True)


def test_create_collision_inside_a_transaction_keeps_it_usable() -> None:
    store = saved(a=1)
    with transaction.atomic():
        with pytest.raises(CreateError):
            SessionStore(store.session_key).save(must_create=True)
        assert Session.objects.count() == 1  # the transaction still works


def test_save_after_delete_raises_update_error() -> None:
    store = saved(a=1)
    store["a"] = 2
    SessionStore(store.session_key).delete()
    with pytest.raises(UpdateError):
        store.save()


def test_cycle_key_and_flush() -> None:
    store = saved(_auth_user_id="4")
    old = store.session_key
    store.cycle_key()
    assert not store.exists(old)
    assert SessionStore(store.session_key)["_auth_user_id"] == "4"
    store.flush()
    assert Session.objects.count() == 0


def test_expired_row_does_not_load() -> None:
    store = SessionStore()
    store["a"] = 1
    store.set_expiry(-5)
    store.save()
    assert dict(SessionStore(store.session_key).items()) == {}


def test_tampered_row_gives_empty_session_and_one_log_line(security_log, unpickle_spy) -> None:
    store = saved(_auth_user_id="9")
    stored = row(store)
    data = bytearray(bytes(stored.record))
    data[-40] ^= 1
    Session.objects.filter(pk=stored.pk).update(record=bytes(data))
    assert dict(SessionStore(store.session_key).items()) == {}
    assert len(security_log()) == 1
    assert unpickle_spy.calls == 0


def test_row_copied_to_another_session_is_rejected(security_log, unpickle_spy) -> None:
    victim = saved(_auth_user_id="1")
    attacker = saved(_auth_user_id="666")
    Session.objects.filter(address=attacker.address(attacker.session_key)).update(
        record=row(victim).record
    )
    assert dict(SessionStore(attacker.session_key).items()) == {}
    assert "bad_mac" in security_log()[0].getMessage()
    assert unpickle_spy.calls == 0


def test_extended_expiry_column_does_not_extend_the_session(security_log) -> None:
    now = int(time.time())
    data = sign_raw("e" * 32, pickled(a=1), issued_at=now - 100, expires_at=now - 1)
    Session.objects.create(
        address=SessionStore.address("e" * 32), record=data, expires_at=now + 10**6, version=1
    )
    assert dict(SessionStore("e" * 32).items()) == {}
    assert "expired" in security_log()[0].getMessage()


@pytest.mark.parametrize(
    "key", ["../../etc/passwd", "x" * 10_000, "a\0b" * 11, "ключ-сессии-1234567890", "' OR 1=1 --"]
)
def test_odd_session_keys_never_reach_the_database_as_is(key: str) -> None:
    store = SessionStore(key)
    assert dict(store.items()) == {}
    store["a"] = 1
    store.save()
    assert store.session_key != key  # never adopted: a fresh key was issued
    addresses = list(Session.objects.values_list("address", flat=True))
    assert addresses == [store.address(store.session_key)]
    assert all(len(a) == 64 and set(a) <= set("0123456789abcdef") for a in addresses)


def fill_rows(expiries: list[int]) -> None:
    Session.objects.bulk_create(
        Session(address=f"{n:064x}", record=b"x", expires_at=at, version=1)
        for n, at in enumerate(expiries)
    )


def delete_rowcounts(monkeypatch: pytest.MonkeyPatch, size: int, now: int) -> list[int]:
    """Run clear_expired at ``now`` with batches of ``size``; return each DELETE's rows.

    The clock is fixed: a second ticking between the fill and the cleanup would expire the
    row at ``now + 1`` too (seen once in CI).
    """
    monkeypatch.setattr(db_backend, "epoch_now", lambda: now)
    counts: list[int] = []

    def count(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith("DELETE"):
            counts.append(context["cursor"].rowcount)
        return result

    monkeypatch.setattr(SessionStore, "clear_expired_batch_size", size)
    with connection.execute_wrapper(count):
        SessionStore.clear_expired()
    return counts


@pytest.mark.parametrize(
    ("spread", "size", "generic"),
    [
        ("distinct", 10, False),
        ("tied", 10, False),
        ("mixed", 7, False),
        ("distinct", 1000, False),
        ("tied", 10, True),
        ("mixed", 7, True),
    ],
)
def test_clear_expired_deletes_exactly_the_expired_rows_in_bounded_batches(
    monkeypatch: pytest.MonkeyPatch, spread: str, size: int, generic: bool
) -> None:
    if generic:
        # A database without storage-order slices or a one-statement batch delete: batches
        # by expiry range, and tied rows by address lists.
        statements = db_backend._statements(Session, "default")
        plain = dataclasses.replace(
            statements,
            delete_expired_batch=None,
            delete_expired_slice=None,
            delete_expired_addresses=None,
            delete_expired_addresses_from=None,
        )
        monkeypatch.setattr(db_backend, "_statements", lambda model, alias: plain)
    now = int(time.time())
    expired = {
        "distinct": [now - 1 - n for n in range(25)],
        "tied": [now - 10] * 25,  # one expiry: batches cannot be split by expiry range
        "mixed": [now - 10] * 9 + [now - 5] * 3 + [now - 1 - n for n in range(13)],
    }[spread]
    expired[0] = now  # expires_at == now has expired: a load refuses it
    live = [now + 1, now + 999, now + 999, now + 5]
    fill_rows(expired + live)
    counts = delete_rowcounts(monkeypatch, size, now)
    assert sum(counts) == len(expired)
    assert max(counts) <= size
    if storage_order_column() != "ctid":  # there: one per slice of pages, however full
        assert len(counts) <= 2 * (len(expired) // size + 1)  # no statement per row
    assert sorted(Session.objects.values_list("address", flat=True)) == [
        f"{n:064x}" for n in range(len(expired), len(expired) + len(live))
    ]


def delete_statements(monkeypatch: pytest.MonkeyPatch, size: int, now: int) -> list[str]:
    """Run clear_expired like :func:`delete_rowcounts`; return the SQL of each DELETE."""
    seen: list[str] = []

    def spy(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("DELETE"):
            seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        delete_rowcounts(monkeypatch, size, now)
    return seen


def storage_order_column() -> str | None:
    """Return what clear_expired slices the table by on this database, if anything."""
    if connection.vendor == "sqlite":
        return "rowid"
    if connection.vendor == "postgresql" and connection.pg_version >= 140000:
        return "ctid"
    if connection.vendor == "mysql":
        return "address"  # InnoDB's clustered primary key
    return None


def test_clear_expired_slices_the_table_in_storage_order(monkeypatch: pytest.MonkeyPatch) -> None:
    # Batches of 300: on PostgreSQL a slice is one 8 KB page (it holds at most 291 tuples);
    # these rows are small (~73 to a page), so the cleanup takes many slices, each bounded.
    now = int(time.time())
    expiries = [now - 1 - n % 50 if n % 3 else now + 60 for n in range(1500)]
    fill_rows(expiries)
    column = storage_order_column()
    statements = delete_statements(monkeypatch, 300, now)
    assert Session.objects.count() == 500
    assert not Session.objects.filter(expires_at__lte=now).exists()
    if column is None:
        pytest.skip(f"{connection.vendor} has no storage-order slices: expiry ranges are used")
    assert all(column in sql for sql in statements)
    assert len(statements) >= 4  # several slices, not one DELETE
    Session.objects.all().delete()
    fill_rows(expiries)
    counts = delete_rowcounts(monkeypatch, 300, now)
    assert sum(counts) == 1000 and max(counts) <= 300


def test_clear_expired_on_innodb_deletes_by_address_ranges(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if connection.vendor != "mysql":
        pytest.skip("MySQL and MariaDB only: InnoDB stores rows in primary-key order")
    # Addresses as the store makes them (hex SHA-256): one range per batch of expired rows,
    # each deleted in primary-key order and bounded by LIMIT.
    now = int(time.time())
    Session.objects.bulk_create(
        Session(
            address=hashlib.sha256(str(n).encode()).hexdigest(),
            record=b"x",
            expires_at=now - 1 - n % 40 if n % 3 else now + 60,
            version=1,
        )
        for n in range(1500)
    )
    statements = delete_statements(monkeypatch, 300, now)
    assert Session.objects.count() == 500
    assert not Session.objects.filter(expires_at__lte=now).exists()
    address = connection.ops.quote_name("address")
    assert all(f"{address} >=" in sql and "LIMIT" in sql for sql in statements)
    # ceil(1000 / 300) = 4 ranges, each about 250 rows: once each, and again where a range
    # held more than a batch.
    assert 4 <= len(statements) <= 8
    Session.objects.all().delete()
    fill_rows([now - 10] * 1000 + [now + 60] * 5)  # every address in the first range
    counts = delete_rowcounts(monkeypatch, 300, now)
    assert counts[:4] == [300, 300, 300, 100] and sum(counts) == 1000
    assert Session.objects.count() == 5


def test_address_bounds_split_the_hex_space_evenly() -> None:
    bounds = db_backend._address_bounds(4)
    assert bounds == ["", "40000000", "80000000", "c0000000"]
    assert db_backend._address_bounds(1) == [""]
    # Every hex address falls in exactly one range (the last is open above).
    for address in ("0" * 64, "3" + "f" * 63, "4" + "0" * 63, "f" * 64):
        assert (
            sum(
                low <= address and (high is None or address < high)
                for low, high in zip(bounds, [*bounds[1:], None], strict=True)
            )
            == 1
        )


def test_clear_expired_on_sparse_rowids_uses_expiry_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    # Once the largest rowid is taken SQLite picks random ones: slices would be empty.
    now = int(time.time())
    fill_rows([now - 10, now + 60])
    table = connection.ops.quote_name(Session._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (rowid, address, record, expires_at, version) "
            "VALUES (%s, %s, %s, %s, 1)",
            [2**62, "f" * 64, b"x", now - 5],
        )
    statements = delete_statements(monkeypatch, 1000, now)
    assert statements and not any("rowid" in sql for sql in statements)
    assert list(Session.objects.values_list("expires_at", flat=True)) == [now + 60]


def test_clear_expired_restores_the_connection_settings_it_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # SQLite's page cache grows for the cleanup; PostgreSQL's synchronous_commit is relaxed
    # for it (outside a transaction only, see the next test). Both come back as they were.
    setting = {"sqlite": "PRAGMA cache_size", "postgresql": "SHOW synchronous_commit"}.get(
        connection.vendor
    )
    if setting is None:
        pytest.skip(f"clear_expired changes no setting on {connection.vendor}")

    def current() -> object:
        with connection.cursor() as cursor:
            cursor.execute(setting)
            return cursor.fetchone()[0]

    before = current()
    fill_rows([int(time.time()) - 10] * 400)
    seen: list[object] = []
    real = SessionStore._delete_batch

    def spy(alias: str, statement: str, params: list[int]) -> int:
        seen.append(current())
        return real(alias, statement, params)

    monkeypatch.setattr(SessionStore, "_delete_batch", staticmethod(spy))
    SessionStore.clear_expired()
    assert Session.objects.count() == 0
    assert current() == before
    if connection.vendor == "sqlite":
        assert seen and all(value != before for value in seen)  # the larger cache was on


@pytest.mark.django_db(transaction=True)
def test_clear_expired_outside_a_transaction_relaxes_only_its_own_commits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if storage_order_column() != "ctid":
        pytest.skip("PostgreSQL 14+ only: the slices there commit without waiting for WAL")
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        (before,) = cursor.fetchone()
    now = int(time.time())
    fill_rows([now - 10] * 700 + [now + 60] * 10)
    monkeypatch.setattr(SessionStore, "clear_expired_batch_size", 300)
    with CaptureQueriesContext(connection) as queries:
        SessionStore.clear_expired()
    sql = [query["sql"] for query in queries.captured_queries]
    assert sum("ctid" in statement for statement in sql) >= 1
    assert any("SET synchronous_commit TO OFF" in statement for statement in sql)
    assert not any("SET LOCAL" in statement for statement in sql)  # one SET, not one per slice
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == before
    assert Session.objects.count() == 10


def test_clear_expired_with_one_batch_of_expired_rows_is_one_delete(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Where slices would be used: first a probe of the expiry index, then, with no more
    # expired rows than a batch, the one DELETE Django's engine runs.
    column = storage_order_column()
    if column not in ("ctid", "address"):
        pytest.skip("SQLite's slice of 200,000 rowids is one DELETE too")
    now = int(time.time())
    fill_rows([now - 1 - n for n in range(300)] + [now + 60])
    statements = delete_statements(monkeypatch, 300, now)
    assert len(statements) == 1 and f"{connection.ops.quote_name(column)} >" not in statements[0]
    assert Session.objects.count() == 1


def test_clear_expired_before_postgresql_14_uses_expiry_ranges(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    # No TID range scan there: every slice would read the whole table.
    monkeypatch.setattr(connection, "pg_version", 130000)
    now = int(time.time())
    fill_rows([now - 1 - n for n in range(700)] + [now + 60])
    statements = delete_statements(monkeypatch, 300, now)
    assert statements and not any("ctid" in sql for sql in statements)
    assert Session.objects.count() == 1


def test_clear_expired_with_nothing_expired_deletes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = int(time.time())
    fill_rows([now + 1, now + 60])
    assert delete_rowcounts(monkeypatch, 10, now) == [0]
    assert Session.objects.count() == 2


@needs_async
@pytest.mark.django_db(transaction=True)
def test_aclear_expired_is_bounded_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    now = int(time.time())
    fill_rows([now - 10] * 5 + [now - n for n in range(1, 8)] + [now + 60])

    async def run() -> None:
        await SessionStore.aclear_expired()
        # The worker thread's connection: closed there, or it outlives the test database.
        await sync_to_async(connections.close_all)()

    def clear() -> None:
        asyncio.run(run())

    # The async twin runs the sync code in a worker thread, on that thread's connection.
    seen: list[int] = []
    monkeypatch.setattr(SessionStore, "clear_expired_batch_size", 4)
    original = SessionStore._delete_batch

    def spy(alias: str, statement: str, params: list[int]) -> int:
        removed = original(alias, statement, params)
        seen.append(removed)
        return removed

    monkeypatch.setattr(SessionStore, "_delete_batch", staticmethod(spy))
    clear()
    connections.close_all()
    assert sum(seen) == 12 and max(seen) <= 4
    assert list(Session.objects.values_list("expires_at", flat=True)) == [now + 60]


def test_clearsessions_command(settings) -> None:
    settings.SESSION_ENGINE = "django_picklesessions.backends.db"
    store = SessionStore()
    store["a"] = 1
    store.set_expiry(-5)
    store.save()
    live = saved(b=2)
    call_command("clearsessions")
    assert list(Session.objects.values_list("address", flat=True)) == [
        live.address(live.session_key)
    ]


def test_middleware_round_trip(settings) -> None:
    settings.SESSION_ENGINE = "django_picklesessions.backends.db"
    client = Client()
    client.get("/set/_auth_user_id/21/")
    assert client.get("/auth/").content == b"21"
    assert Session.objects.count() == 1


def test_admin_lists_and_decodes_sessions(admin_client, settings) -> None:
    store = saved(_auth_user_id="3", cart=[1, 2, 3])
    response = admin_client.get("/admin/django_picklesessions/session/")
    assert response.status_code == 200
    assert store.address(store.session_key)[:16].encode() in response.content
    detail = admin_client.get(
        f"/admin/django_picklesessions/session/{store.address(store.session_key)}/change/"
    )
    assert detail.status_code == 200
    assert b"<td>builtins.list</td><td>[1, 2, 3]</td>" in detail.content
    assert b"_auth_user_id" in detail.content


def test_admin_shows_a_tampered_record_as_refused(admin_client, unpickle_spy) -> None:
    store = saved(a=1)
    stored = row(store)
    original = bytes(stored.record)
    tampered = original[:-1] + bytes([original[-1] ^ 1])  # always differs from the MAC
    Session.objects.filter(pk=stored.pk).update(record=tampered)
    detail = admin_client.get(f"/admin/django_picklesessions/session/{stored.pk}/change/")
    assert detail.status_code == 200
    assert b"record refused (bad_mac)" in detail.content
    calls = unpickle_spy.calls  # the admin's own login session was read above
    assert describe(stored.pk, tampered)[0] is None
    assert unpickle_spy.calls == calls


@needs_async
@pytest.mark.django_db(transaction=True)
def test_async_methods() -> None:
    async def scenario() -> str:
        store = SessionStore()
        await store.aset("cart", [1, 2])
        await store.asave()
        key = store.session_key
        other = SessionStore(key)
        assert await other.aget("cart") == [1, 2]
        await other.aset("cart", [3])
        await other.asave()
        assert await SessionStore(key).aget("cart") == [3]
        assert await other.aexists(key)
        with pytest.raises(CreateError):
            await SessionStore(key).asave(must_create=True)
        await other.acycle_key()
        assert not await other.aexists(key)
        doomed = SessionStore()
        await doomed.aset("a", 1)
        await doomed.aset_expiry(-5)
        await doomed.asave()
        await SessionStore.aclear_expired()
        assert not await other.aexists(doomed.session_key)
        gone = SessionStore(other.session_key)
        assert await gone.aget("cart") == [3]  # loaded before the delete
        await other.adelete()
        await gone.aset("x", 1)
        with pytest.raises(UpdateError):
            await gone.asave()
        # The async ORM ran in a worker thread: close its connection, or the test
        # database cannot be dropped.
        await sync_to_async(connections.close_all)()
        return other.session_key

    asyncio.run(scenario())


def test_a_table_of_your_own() -> None:
    store = CustomStore()
    store["cart"] = [1, 2]
    store.save()
    assert Session.objects.count() == 0
    stored = TenantSession.objects.get()
    assert stored.address == store.address(store.session_key)
    assert stored.tenant == "main"
    assert CustomStore(store.session_key)["cart"] == [1, 2]
    assert SessionStore(store.session_key).get("cart") is None  # not in the default table
    CustomStore.clear_expired()
    assert TenantSession.objects.count() == 1


def test_a_constraint_of_your_own_is_not_mistaken_for_a_key_collision() -> None:
    first = CustomStore()
    first["a"] = 1
    first.save()
    second = CustomStore()
    second["a"] = 2
    # CreateError would make create() draw new keys forever; the real error surfaces.
    with pytest.raises(IntegrityError):
        second.save()
