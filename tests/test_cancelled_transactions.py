"""A cancelled transaction start or end never leaves a half-done transaction behind.

When a task's rollback waits for the connection (another task's statement holds it, as on
the shared force-rollback connection) and the task is cancelled during that wait, the
rollback must still happen: otherwise its savepoint leaves the stack without a ROLLBACK and
its writes stay in the enclosing transaction, visible to every later query of the test.

What was committed is checked from outside the library with `tests.admin`.
"""

from __future__ import annotations

import asyncio
import random
import typing

import pytest
import sqlalchemy as sa

from databases import Database, DatabaseURL
from databases.core import Connection
from tests import admin
from tests.tables import notes

pytestmark = [pytest.mark.usefixtures("shared_tables"), pytest.mark.timeout(60)]

TIMEOUT = 20


def slow_statement(url: str) -> str:
    """A statement that holds the connection for about 0.3 s."""
    dialect = DatabaseURL(url).dialect
    if dialect == "postgresql":
        return "SELECT 1 FROM pg_sleep(0.3)"
    if dialect == "mysql":
        return "SELECT SLEEP(0.3)"
    return (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1500000) "
        "SELECT max(x) FROM c"
    )


async def insert(runner: Database | Connection, text: str) -> None:
    await runner.execute(notes.insert(), values={"text": text, "completed": False})


async def texts(runner: Database | Connection) -> list[str]:
    rows = await runner.fetch_all(sa.select(notes.c.text).order_by(notes.c.id))
    return [row["text"] for row in rows]


async def hold_connection_then_cancel(
    runner: Database | Connection, url: str, end: typing.Callable[[], typing.Awaitable[None]]
) -> None:
    """Start a slow statement on `runner`, then run `end()` in a task that has to wait for
    it, and cancel that task while it waits."""
    slow = asyncio.create_task(runner.fetch_val(slow_statement(url)))
    await asyncio.sleep(0.05)  # the slow statement holds the connection now
    ending = asyncio.create_task(end())
    await asyncio.sleep(0.05)  # ending waits for the connection
    assert not ending.done()
    ending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(ending, TIMEOUT)
    await asyncio.wait_for(slow, TIMEOUT)


@pytest.mark.asyncio
async def test_cancelled_rollback_on_the_force_rollback_connection(database_url: str) -> None:
    async with Database(database_url, force_rollback=True) as database:
        await insert(database, "kept")
        transaction = await database.transaction()
        await insert(database, "rolled back")
        await hold_connection_then_cancel(database, database_url, transaction.rollback)
        assert await texts(database) == ["kept"]
        # The connection is usable, and the next transaction starts and ends normally.
        async with database.transaction(force_rollback=True):
            await insert(database, "inner")
            assert await texts(database) == ["kept", "inner"]
        assert await texts(database) == ["kept"]
    assert admin.committed_notes(database_url) == []


@pytest.mark.asyncio
async def test_cancelled_exit_of_a_failing_block_rolls_back(database_url: str) -> None:
    async with Database(database_url, force_rollback=True) as database:
        entered = asyncio.Event()

        async def failing_block() -> None:
            async with database.transaction():
                await insert(database, "rolled back")
                entered.set()
                await asyncio.sleep(0.1)  # the slow statement starts meanwhile
                raise LookupError  # __aexit__ rolls back, waiting for the connection

        block = asyncio.create_task(failing_block())
        await entered.wait()
        slow = asyncio.create_task(database.fetch_val(slow_statement(database_url)))
        await asyncio.sleep(0.15)  # the block's rollback waits for the slow statement
        block.cancel()
        with pytest.raises((asyncio.CancelledError, LookupError)):
            await asyncio.wait_for(block, TIMEOUT)
        await asyncio.wait_for(slow, TIMEOUT)
        assert await texts(database) == []


@pytest.mark.asyncio
async def test_cancelled_savepoint_rollback_on_a_shared_connection(database_url: str) -> None:
    """Without force_rollback: tasks share one `Connection`; a savepoint's rollback is
    cancelled while it waits; the outer transaction commits only what it should."""
    database = Database(database_url)
    async with database, database.connection() as connection, connection.transaction():
        await insert(connection, "kept")
        savepoint = await connection.transaction()
        await insert(connection, "rolled back")
        await hold_connection_then_cancel(connection, database_url, savepoint.rollback)
        assert await texts(connection) == ["kept"]
    assert admin.committed_notes(database_url) == ["kept"]


@pytest.mark.asyncio
@pytest.mark.parametrize("force_rollback", [False, True], ids=["plain", "rollback"])
async def test_cancellation_storm(database_url: str, force_rollback: bool) -> None:
    """Many tasks open a transaction, write, and roll back (by error or force_rollback)
    while the loop cancels them at random points, and other tasks keep the connection
    busy. Afterwards not one of their rows is visible inside, nor committed outside."""
    rng = random.Random(20261206)
    tasks_count = 200
    async with Database(database_url, force_rollback=force_rollback) as database:
        async with database.connection() as connection:
            if force_rollback:
                runner: Database | Connection = database
            else:
                runner = connection
                outer = await connection.transaction()
            await insert(runner, "kept")

            async def doomed(number: int) -> None:
                async with runner.transaction(force_rollback=number % 2 == 0):
                    await insert(runner, f"doomed {number}")
                    await asyncio.sleep(rng.random() * 0.002)
                    await insert(runner, f"doomed {number} again")
                    if number % 2:
                        raise LookupError

            async def busy() -> None:
                for _ in range(50):
                    await runner.fetch_val(sa.select(sa.func.count()).select_from(notes))
                    await asyncio.sleep(0)

            background = [asyncio.create_task(busy()) for _ in range(3)]
            storm = [asyncio.create_task(doomed(n)) for n in range(tasks_count)]
            for task in storm:
                if rng.random() < 0.6:
                    await asyncio.sleep(rng.random() * 0.001)
                    task.cancel()
            results = await asyncio.wait_for(
                asyncio.gather(*storm, *background, return_exceptions=True), 60
            )
            unexpected = [
                result
                for result in results
                if isinstance(result, BaseException)
                and not isinstance(result, (asyncio.CancelledError, LookupError))
            ]
            assert unexpected == []
            assert any(isinstance(result, asyncio.CancelledError) for result in results)
            assert await texts(runner) == ["kept"]
            if not force_rollback:
                await outer.commit()
        assert await texts(database) == ["kept"]
    assert admin.committed_notes(database_url) == ([] if force_rollback else ["kept"])
