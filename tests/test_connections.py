"""Connections: per task, global with force_rollback, re-entrancy, raw access, concurrency."""

from __future__ import annotations

import asyncio
import typing

import pytest
import sqlalchemy as sa

from databases import Database, DatabaseURL
from databases.core import Connection
from tests import admin
from tests.tables import notes

pytestmark = pytest.mark.usefixtures("shared_tables")


def count_query() -> sa.Select[typing.Any]:
    return sa.select(sa.func.count()).select_from(notes)


async def connection_of_new_task(database: Database) -> Connection:
    async def get() -> Connection:
        return database.connection()

    return await asyncio.create_task(get())


# -- which connection a task gets ------------------------------------------------------------


@pytest.mark.asyncio
async def test_connection_per_task(database_url: str) -> None:
    async with Database(database_url) as database:
        connection = database.connection()
        assert isinstance(connection, Connection)
        assert database.connection() is connection  # the same within one task

        async with database.connection() as entered:
            assert entered is connection
            await entered.fetch_all(sa.select(notes))
            assert database.connection() is connection

            other = await connection_of_new_task(database)
            assert other is not connection  # another task gets its own

            async def other_task_in_use() -> Connection:
                async with database.connection() as own:
                    assert own is not connection
                    assert own.raw_connection is not connection.raw_connection
                    await own.fetch_all(sa.select(notes))
                    return own

            assert await asyncio.create_task(other_task_in_use()) is not connection


@pytest.mark.asyncio
async def test_force_rollback_uses_one_global_connection(database_url: str) -> None:
    async with Database(database_url, force_rollback=True) as database:
        connection = database.connection()
        assert await connection_of_new_task(database) is connection
        results = await asyncio.gather(*(connection_of_new_task(database) for _ in range(3)))
        assert all(result is connection for result in results)

        async def insert_in_task(text: str) -> None:
            await database.execute(notes.insert(), values={"text": text, "completed": False})

        await asyncio.create_task(insert_in_task("task-1"))
        await asyncio.create_task(insert_in_task("task-2"))
        # every task works in the one transaction
        rows = await database.fetch_all(sa.select(notes.c.text).order_by(notes.c.id))
        assert [row["text"] for row in rows] == ["task-1", "task-2"]
        assert admin.committed_notes(database_url) == []
    assert admin.committed_notes(database_url) == []


@pytest.mark.asyncio
async def test_connection_map(database_url: str) -> None:
    """`database._connection_map`: semi-private API of 0.9, tested on purpose."""
    async with Database(database_url) as database:
        task = asyncio.current_task()
        assert task is not None
        async with database.connection() as connection:
            assert database._connection_map[task] is connection

            async def other() -> Connection:
                async with database.connection() as own:
                    this_task = asyncio.current_task()
                    assert database._connection_map[this_task] is own
                    assert database._connection_map[task] is connection
                    return own

            other_task = asyncio.create_task(other())
            await other_task
            assert other_task not in database._connection_map
            assert database._connection_map[task] is connection
        assert task not in database._connection_map

        # queries acquire and release the task's connection
        await database.fetch_all(sa.select(notes))
        assert task not in database._connection_map
        async with database.transaction():
            assert task in database._connection_map
        assert task not in database._connection_map


# -- re-entrancy and the raw connection ------------------------------------------------------


@pytest.mark.asyncio
async def test_connection_is_reentrant(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with Database(database_url) as database:
        connection = database.connection()
        # `Connection._connection`, the backend connection: semi-private API of 0.9.
        backend_connection = connection._connection
        calls = {"acquire": 0, "release": 0}
        original_acquire = backend_connection.acquire
        original_release = backend_connection.release

        async def counting_acquire() -> None:
            calls["acquire"] += 1
            await original_acquire()

        async def counting_release() -> None:
            calls["release"] += 1
            await original_release()

        monkeypatch.setattr(backend_connection, "acquire", counting_acquire)
        monkeypatch.setattr(backend_connection, "release", counting_release)

        async with connection:
            raw = connection.raw_connection
            assert raw is not None
            async with connection:
                assert connection.raw_connection is raw
                async with connection as innermost:
                    assert innermost is connection
                    assert connection.raw_connection is raw
                    await connection.execute(
                        notes.insert(), values={"text": "a", "completed": False}
                    )
                assert connection.raw_connection is raw
                # queries enter the connection too, without acquiring again
                await connection.fetch_all(sa.select(notes))
                await database.fetch_all(sa.select(notes))
            # still held after the inner exits
            assert connection.raw_connection is raw
            assert database.connection() is connection
            assert await connection.fetch_val(count_query()) == 1
            assert calls == {"acquire": 1, "release": 0}
        assert calls == {"acquire": 1, "release": 1}
        # Released: the task's next connection is a new one.
        assert database.connection() is not connection


@pytest.mark.asyncio
async def test_raw_connection(database_url: str) -> None:
    dialect = DatabaseURL(database_url).dialect
    async with Database(database_url) as database, database.connection() as connection:
        raw = connection.raw_connection
        if dialect == "sqlite":
            from databases.backends.sqlite import SQLiteRawConnection

            assert isinstance(raw, SQLiteRawConnection)
            async with raw.execute("SELECT 40 + 2") as cursor:
                value = (await cursor.fetchone())[0]
        elif admin.backend_name(database_url) == "postgresql+asyncpg":
            value = await raw.fetchval("SELECT 40 + 2")
        elif admin.backend_name(database_url) == "postgresql+psycopg":
            import psycopg

            assert isinstance(raw, psycopg.AsyncConnection)
            async with raw.cursor() as cursor:
                await cursor.execute("SELECT 40 + 2")
                value = (await cursor.fetchone())[0]
        elif dialect == "postgresql":
            import aiopg

            assert isinstance(raw, aiopg.Connection)
            async with raw.cursor() as cursor:
                await cursor.execute("SELECT 40 + 2")
                value = (await cursor.fetchone())[0]
        else:
            import aiomysql

            assert isinstance(raw, aiomysql.Connection)
            async with raw.cursor() as cursor:
                await cursor.execute("SELECT 40 + 2")
                value = (await cursor.fetchone())[0]
        assert value == 42


# -- force_rollback ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_force_rollback_database_rolls_back_at_disconnect(database_url: str) -> None:
    database = Database(database_url, force_rollback=True)
    async with database:
        await database.execute(notes.insert(), values={"text": "one", "completed": False})
        async with database.transaction():
            await database.execute(notes.insert(), values={"text": "two", "completed": True})
        await database.execute_many(notes.insert(), values=[{"text": "three", "completed": False}])
        assert await database.fetch_val(count_query()) == 3
        assert admin.committed_notes(database_url) == []
    assert admin.committed_notes(database_url) == []

    # the next connect starts afresh
    async with database:
        assert await database.fetch_val(count_query()) == 0
        await database.execute(notes.insert(), values={"text": "four", "completed": False})
    assert admin.committed_notes(database_url) == []


@pytest.mark.asyncio
async def test_force_rollback_context_manager(database_url: str) -> None:
    database = Database(database_url)
    with database.force_rollback():
        async with database:
            await database.execute(notes.insert(), values={"text": "rolled", "completed": False})
            assert await database.fetch_val(count_query()) == 1
            assert await connection_of_new_task(database) is database.connection()
    assert admin.committed_notes(database_url) == []

    # the previous setting (off) is restored
    async with database:
        await database.execute(notes.insert(), values={"text": "kept", "completed": False})
        assert await connection_of_new_task(database) is not database.connection()
    assert admin.committed_notes(database_url) == ["kept"]

    # and on a database created with force_rollback=True, it stays on afterwards
    forced = Database(database_url, force_rollback=True)
    with forced.force_rollback():
        pass
    async with forced:
        await forced.execute(notes.insert(), values={"text": "forced", "completed": False})
    assert admin.committed_notes(database_url) == ["kept"]


# -- many concurrent queries -----------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("force_rollback", [False, True])
async def test_gather_many_queries(database_url: str, force_rollback: bool) -> None:
    async with Database(database_url, force_rollback=force_rollback) as database:
        await asyncio.gather(
            *(
                database.execute(
                    notes.insert(), values={"text": f"g{i:02}", "completed": i % 2 == 0}
                )
                for i in range(50)
            )
        )
        counts = await asyncio.gather(*(database.fetch_val(count_query()) for _ in range(50)))
        assert counts == [50] * 50
        rows = await asyncio.gather(
            *(
                database.fetch_one(sa.select(notes.c.text).where(notes.c.text == f"g{i:02}"))
                for i in range(50)
            )
        )
        assert [row["text"] for row in rows if row is not None] == [f"g{i:02}" for i in range(50)]
        iterated = await asyncio.gather(
            *(
                _collect(database.iterate(sa.select(notes.c.text).order_by(notes.c.text)))
                for _ in range(10)
            )
        )
        assert iterated == [[f"g{i:02}" for i in range(50)]] * 10
    expected = [] if force_rollback else [f"g{i:02}" for i in range(50)]
    assert sorted(admin.committed_notes(database_url)) == expected


async def _collect(rows: typing.AsyncIterator[typing.Any]) -> list[str]:
    return [row["text"] async for row in rows]


@pytest.mark.asyncio
async def test_gather_on_one_connection(database_url: str) -> None:
    # queries on one connection never overlap: concurrent calls wait their turn
    async with Database(database_url) as database, database.connection() as connection:
        await asyncio.gather(
            *(
                connection.execute(notes.insert(), values={"text": f"c{i:02}", "completed": False})
                for i in range(50)
            )
        )
        counts = await asyncio.gather(*(connection.fetch_val(count_query()) for _ in range(50)))
        assert counts == [50] * 50
    assert len(admin.committed_notes(database_url)) == 50
