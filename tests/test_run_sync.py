"""run_sync(): a SQLAlchemy Connection on our own driver connection, in our transactions.

What was committed is read from outside the library (`tests.admin`); that the SQLAlchemy
connection is ours is shown by a temporary table, which only its own session sees.
"""

from __future__ import annotations

import asyncio
import os
import time
import typing

import pytest
import sqlalchemy as sa

from databases import Database
from tests import admin
from tests.tables import documents, notes

pytestmark = pytest.mark.usefixtures("shared_tables")

# Every backend with a SQLAlchemy async dialect; aiopg has its own test (an error).
RUN_SYNC_BACKENDS = ("sqlite", "mysql", "postgresql+asyncpg", "postgresql+psycopg")
TEMP = f"h5_temp_{os.getpid()}"


def insert_note(connection: sa.Connection, text: str) -> None:
    connection.execute(notes.insert().values(text=text, completed=False))


def note_texts(connection: sa.Connection) -> list[str]:
    return list(connection.scalars(sa.select(notes.c.text).order_by(notes.c.id)))


def sleep_statement(url: str, seconds: float) -> typing.Callable[[sa.Connection], None]:
    """A sync function that takes `seconds` on the server (on SQLite, in Python: it runs
    on the connection's own thread)."""
    dialect = admin.dialect_name(url)

    def run(connection: sa.Connection) -> None:
        if dialect == "postgresql":
            connection.execute(sa.text(f"SELECT pg_sleep({seconds})"))
        elif dialect == "mysql":
            connection.execute(sa.text(f"SELECT SLEEP({seconds})"))
        else:
            time.sleep(seconds)

    return run


@pytest.mark.asyncio
@pytest.mark.dialects(*RUN_SYNC_BACKENDS)
async def test_run_sync_passes_a_sqlalchemy_connection_and_arguments(database_url: str) -> None:
    def call(connection: sa.Connection, first: int, *, second: str) -> tuple[object, ...]:
        value = connection.execute(sa.select(sa.literal(first) + 1)).scalar_one()
        return type(connection), value, second

    async with Database(database_url) as database:
        kind, value, second = await database.run_sync(call, 41, second="x")
    assert kind is sa.Connection
    assert (value, second) == (42, "x")


@pytest.mark.asyncio
@pytest.mark.dialects(*RUN_SYNC_BACKENDS)
async def test_run_sync_runs_on_the_connection_it_is_called_on(database_url: str) -> None:
    async with Database(database_url) as database, database.connection() as connection:
        await connection.execute(f"CREATE TEMPORARY TABLE {TEMP} (x INTEGER)")
        try:
            # A temporary table exists in its own session only.
            await connection.run_sync(
                lambda sync: sync.execute(sa.text(f"INSERT INTO {TEMP} (x) VALUES (1)"))
            )
            assert (
                await connection.run_sync(
                    lambda sync: sync.execute(sa.text(f"SELECT count(*) FROM {TEMP}")).scalar()
                )
                == 1
            )
            assert await connection.fetch_val(f"SELECT count(*) FROM {TEMP}") == 1
        finally:
            await connection.execute(f"DROP TABLE {TEMP}")


@pytest.mark.asyncio
@pytest.mark.dialects(*RUN_SYNC_BACKENDS)
async def test_run_sync_commits_each_statement_outside_a_transaction(database_url: str) -> None:
    async with Database(database_url) as database:
        await database.run_sync(insert_note, "outside")
        # Its commit()/rollback() are no-ops: the statement was committed as it ran.
        await database.run_sync(lambda sync: sync.rollback())
        assert admin.committed_notes(database_url) == ["outside"]
        await database.execute(notes.insert(), {"text": "ours", "completed": False})
        assert await database.run_sync(note_texts) == ["outside", "ours"]


@pytest.mark.asyncio
@pytest.mark.dialects(*RUN_SYNC_BACKENDS)
async def test_run_sync_joins_the_callers_transaction(database_url: str) -> None:
    async with Database(database_url) as database:
        transaction = await database.transaction()
        await database.run_sync(insert_note, "rolled back")
        await database.run_sync(lambda sync: sync.commit())  # not ours to end
        assert await database.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 1
        assert admin.committed_notes(database_url) == []
        await transaction.rollback()
        assert await database.run_sync(note_texts) == []

        async with database.transaction():
            await database.run_sync(insert_note, "committed")
            async with database.transaction(force_rollback=True):  # a savepoint
                await database.run_sync(insert_note, "savepoint")
        assert admin.committed_notes(database_url) == ["committed"]


@pytest.mark.asyncio
@pytest.mark.dialects(*RUN_SYNC_BACKENDS)
async def test_run_sync_under_force_rollback_is_rolled_back(database_url: str) -> None:
    database = Database(database_url, force_rollback=True)
    async with database:
        await database.run_sync(insert_note, "session")
        assert await database.fetch_all(sa.select(notes.c.text)) == [("session",)]
        async with database.connection() as connection:
            assert await connection.run_sync(note_texts) == ["session"]
    assert admin.committed_notes(database_url) == []


@pytest.mark.asyncio
@pytest.mark.dialects(*RUN_SYNC_BACKENDS)
async def test_an_error_in_run_sync_reaches_the_caller(database_url: str) -> None:
    def fail(connection: sa.Connection) -> None:
        insert_note(connection, "before the error")
        connection.execute(sa.text("SELECT * FROM h5_no_such_table"))

    async with Database(database_url) as database:
        with pytest.raises(sa.exc.DBAPIError):
            async with database.transaction():
                await database.run_sync(fail)
        with pytest.raises(ZeroDivisionError):
            await database.run_sync(lambda sync: 1 // 0)
        assert await database.fetch_val("SELECT 1") == 1
    assert admin.committed_notes(database_url) == []


@pytest.mark.asyncio
@pytest.mark.dialects(*RUN_SYNC_BACKENDS)
async def test_a_cancelled_run_sync_leaves_the_connection_usable(database_url: str) -> None:
    async with Database(database_url) as database, database.connection() as connection:
        task = asyncio.create_task(connection.run_sync(sleep_statement(database_url, 0.3)))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with connection.transaction():
            await connection.run_sync(insert_note, "after")
        assert await connection.run_sync(note_texts) == ["after"]
        assert await connection.fetch_val("SELECT 1") == 1
    assert admin.committed_notes(database_url) == ["after"]


@pytest.mark.asyncio
@pytest.mark.dialects(*RUN_SYNC_BACKENDS)
async def test_run_sync_leaves_our_result_types_alone(database_url: str) -> None:
    # On asyncpg SQLAlchemy's own connections get JSON codecs: ours must not.
    async with Database(database_url) as database:
        await database.execute(documents.insert(), {"data": {"a": [1, 2]}})
        assert await database.run_sync(
            lambda sync: sync.execute(sa.select(documents.c.data)).scalar_one()
        ) == {"a": [1, 2]}
        await database.run_sync(lambda sync: sync.execute(documents.insert(), {"data": [3]}))
        rows = await database.fetch_all(sa.select(documents.c.data).order_by(documents.c.id))
    assert [row[0] for row in rows] == [{"a": [1, 2]}, [3]]


@pytest.mark.asyncio
@pytest.mark.dialects(*RUN_SYNC_BACKENDS)
async def test_concurrent_run_sync_calls_each_use_their_own_connection(
    database_url: str,
) -> None:
    async def one(database: Database, text: str) -> list[str]:
        async with database.transaction():
            await database.run_sync(insert_note, text)
            await asyncio.sleep(0.01)
            return await database.run_sync(
                lambda sync: list(sync.scalars(sa.select(notes.c.text).where(notes.c.text == text)))
            )

    async with Database(database_url) as database:
        results = await asyncio.gather(*(one(database, f"task {n}") for n in range(4)))
    assert results == [[f"task {n}"] for n in range(4)]
    assert sorted(admin.committed_notes(database_url)) == [f"task {n}" for n in range(4)]


@pytest.mark.asyncio
@pytest.mark.dialects("postgresql+aiopg")
async def test_run_sync_on_aiopg_says_what_to_use(database_url: str) -> None:
    async with Database(database_url) as database:
        with pytest.raises(NotImplementedError, match=r"postgresql\+psycopg://"):
            await database.run_sync(note_texts)
        with pytest.raises(NotImplementedError, match="aiopg"):
            await database.create_all(sa.MetaData())
        assert await database.fetch_val("SELECT 1") == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("force_rollback", [False, True], ids=["plain", "force_rollback"])
async def test_run_sync_of_a_coroutine_function_says_what_to_do(
    database_url: str, force_rollback: bool
) -> None:
    async def not_sync(connection: sa.Connection) -> None:
        pass

    async with Database(database_url, force_rollback=force_rollback) as database:
        with pytest.raises(TypeError, match="synchronous function"):
            await database.run_sync(not_sync)
        with pytest.raises(TypeError, match="synchronous function"):
            await database.run_sync("not callable")  # type: ignore[arg-type]
        assert await database.fetch_val("SELECT 1") == 1
