"""SQLite: a statement blocked by a force-rollback session's lock fails at once, naming it.

The session's transaction keeps its locks on the file until the session ends, so a write
from outside the session (a task outside a `force_rollback()` block, another loop's
pooled connections, a second `Database` on the file) would wait SQLite's whole busy
timeout (5 s) and then fail with a bare "database is locked". It fails after a short
wait instead, with `ForceRollbackLockError`, still an `sqlite3.OperationalError`, whose
message names the session and the way out. Reading is not blocked; nor is anything once
the session has ended. Without a session, SQLite's own error is untouched.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest
import sqlalchemy

from databases import Database, DatabaseURL
from databases.errors import ForceRollbackLockError
from tests.loops import committed_rows, count_tag, make_table, write_probe
from tests.loops.support import database_url_with_table, empty_table_fixture

pytestmark = [pytest.mark.dialects("sqlite"), pytest.mark.usefixtures("empty_table")]

items = make_table("session_lock_items")
database_url = database_url_with_table(items)
empty_table = empty_table_fixture(items)

# Well under SQLite's default busy timeout (5 s), which the bare error came after.
PROMPT = 2.0


async def insert(database: Database, tag: str) -> None:
    await database.execute(items.insert(), {"tag": tag, "value": 1})


async def count(database: Database, tag: str) -> int:
    value: int = await database.fetch_val(count_tag(items, tag))
    return value


async def assert_names_the_session(write: asyncio.Future[None] | object) -> None:
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError) as caught:
        await write  # type: ignore[misc]
    assert time.monotonic() - started < PROMPT
    error = caught.value
    assert isinstance(error, ForceRollbackLockError)
    message = str(error)
    assert message.startswith("database is locked: the force-rollback session of sqlite:")
    assert "databases-session-loop" in message
    assert "force_rollback()" in message and "another database file" in message
    assert isinstance(error.__cause__, sqlite3.OperationalError)
    if hasattr(error.__cause__, "sqlite_errorname"):  # Python 3.11+
        assert error.sqlite_errorname == error.__cause__.sqlite_errorname == "SQLITE_BUSY"


@pytest.mark.asyncio
async def test_task_outside_the_block(database_url: str) -> None:
    database = Database(database_url)
    async with database:
        outside_may_write = asyncio.Event()
        block_wrote = asyncio.Event()

        async def outside() -> None:
            await outside_may_write.wait()
            try:
                await assert_names_the_session(insert(database, "outside"))
                # Reading works; the task goes on.
                assert await count(database, "outside") == 0
            finally:
                block_wrote.set()

        task = asyncio.create_task(outside())
        with database.force_rollback():
            await insert(database, "inside")
            outside_may_write.set()
            await block_wrote.wait()
            await insert(database, "inside")
            assert await count(database, "inside") == 2
        await task
        # After the block the session still holds the file, until the last disconnect().
        await assert_names_the_session(insert(database, "after"))
    write_probe(database_url, items)
    async with database:
        await insert(database, "committed")
    assert committed_rows(database_url, items) == [("committed", 1)]


def test_other_loop_and_other_database(database_url: str) -> None:
    """A session of `force_rollback=True` that wrote, in one loop; in another loop (here
    a job of `asyncio.run()`), a second `Database` on the file: its write fails promptly,
    outside a transaction and inside one, and its reads work."""
    forced = Database(database_url, force_rollback=True)
    other = Database(database_url)
    session_loop = asyncio.new_event_loop()
    try:
        session_loop.run_until_complete(forced.connect())
        session_loop.run_until_complete(insert(forced, "session"))

        async def elsewhere() -> None:
            async with other:
                await assert_names_the_session(insert(other, "other"))
                async with other.transaction():
                    await assert_names_the_session(insert(other, "other"))
                assert await count(other, "session") == 0

        asyncio.run(elsewhere())
        session_loop.run_until_complete(forced.disconnect())
    finally:
        session_loop.close()
    assert committed_rows(database_url, items) == []
    write_probe(database_url, items)


@pytest.mark.asyncio
async def test_memory_database_table_lock() -> None:
    """A shared-cache memory database locks per table (SQLITE_LOCKED, "database table is
    locked"): the same error, at once."""
    database = Database("sqlite://")
    async with database:
        await database.execute(
            "CREATE TABLE memory_items (id INTEGER PRIMARY KEY, tag TEXT NOT NULL)"
        )
        table = sqlalchemy.table("memory_items", sqlalchemy.column("tag"))
        with database.force_rollback():
            await database.execute(table.insert().values(tag="session"))
        with pytest.raises(ForceRollbackLockError, match=r"^database table is locked"):
            await database.execute(table.insert().values(tag="pooled"))


@pytest.mark.asyncio
async def test_without_a_session_sqlite_decides(database_url: str) -> None:
    """Another connection's lock, no session: SQLite's own error after its busy timeout."""
    holder = sqlite3.connect(DatabaseURL(database_url).database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        async with Database(database_url, timeout=0.3) as database:
            started = time.monotonic()
            with pytest.raises(sqlite3.OperationalError) as caught:
                await insert(database, "blocked")
            assert time.monotonic() - started >= 0.3
            assert type(caught.value) is sqlite3.OperationalError
            assert str(caught.value) == "database is locked"
            holder.execute("ROLLBACK")
            await insert(database, "after")
    finally:
        holder.close()
    assert committed_rows(database_url, items) == [("after", 1)]
