"""`force_rollback_savepoints`: under force_rollback, each statement of a caller inside
none of its transactions runs under a savepoint of its own, so a failing one rolls back
alone and the test goes on (on PostgreSQL it would abort the session's transaction).

On every URL, from the connecting loop and from loops of other threads (the session
loop's hop; SQLite's direct path). Committed rows are read through separate connections.
"""

from __future__ import annotations

import asyncio
import os
import threading
import typing

import pytest
import sqlalchemy

from databases import Database, DatabaseURL
from databases.errors import InvalidOptionError
from tests.loops import committed_rows
from tests.loops.support import database_url_with_table, empty_table_fixture

rows = sqlalchemy.Table(
    f"savepoint_rows_{os.getpid()}",
    sqlalchemy.MetaData(),
    sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True, autoincrement=False),
    sqlalchemy.Column("tag", sqlalchemy.String(length=64), nullable=False),
    sqlalchemy.Column("value", sqlalchemy.Integer, nullable=False),
)
database_url = database_url_with_table(rows)
empty_table = empty_table_fixture(rows)

# Seconds any one step may take.
STEP = 10.0
ALL = sqlalchemy.select(rows.c.id, rows.c.tag).order_by(rows.c.id)


def savepoint_database(url: str) -> Database:
    return Database(url, force_rollback=True, force_rollback_savepoints=True)


def row(number: int, tag: str = "kept") -> dict[str, typing.Any]:
    return {"id": number, "tag": tag, "value": number}


def is_constraint_error(error: BaseException) -> bool:
    """The driver's error for a duplicate key or a NULL in a NOT NULL column."""
    name = type(error).__name__
    return any(word in name for word in ("Integrity", "Unique", "NotNull"))


async def ids(database: Database) -> list[int]:
    return [record[0] for record in await database.fetch_all(ALL)]


@pytest.mark.asyncio
async def test_a_failing_statement_rolls_back_alone_and_the_session_goes_on(
    database_url: str, empty_table: None
) -> None:
    database = savepoint_database(database_url)
    async with database:
        await database.execute(rows.insert(), row(1))
        with pytest.raises(Exception) as raised:
            await database.execute(rows.insert(), row(1, "duplicate"))
        assert is_constraint_error(raised.value), repr(raised.value)
        await database.execute(rows.insert(), row(2))
        assert await ids(database) == [1, 2]
        assert await database.fetch_val(sqlalchemy.select(rows.c.tag).where(rows.c.id == 1)) == (
            "kept"
        )
    assert await asyncio.to_thread(committed_rows, database_url, rows) == []


@pytest.mark.asyncio
async def test_a_failing_execute_many_rolls_back_entirely(
    database_url: str, empty_table: None
) -> None:
    """Its first row applied, its second refused: neither stays (MySQL and SQLite would
    keep the first; PostgreSQL would abort the session's transaction)."""
    database = savepoint_database(database_url)
    update = f"UPDATE {rows.name} SET tag = :tag WHERE id = :id"
    async with database:
        await database.execute_many(rows.insert(), [row(1), row(2)])
        with pytest.raises(Exception) as raised:
            await database.execute_many(
                update, [{"id": 1, "tag": "changed"}, {"id": 2, "tag": None}]
            )
        assert is_constraint_error(raised.value), repr(raised.value)
        assert [(record[0], record[1]) for record in await database.fetch_all(ALL)] == [
            (1, "kept"),
            (2, "kept"),
        ]
    assert await asyncio.to_thread(committed_rows, database_url, rows) == []


@pytest.mark.asyncio
async def test_other_loops_fail_and_go_on_under_savepoints(
    database_url: str, empty_table: None
) -> None:
    """Loops in other threads, at the same time, each alternating a failing and a good
    insert: every good row stays, every failing one rolls back alone."""
    database = savepoint_database(database_url)
    per_loop = 20

    async def alternate(first: int) -> None:
        for number in range(first, first + per_loop):
            await database.execute(rows.insert(), row(number))
            with pytest.raises(Exception) as raised:
                await database.execute(rows.insert(), row(number, "duplicate"))
            assert is_constraint_error(raised.value), repr(raised.value)

    failures: list[BaseException] = []

    def in_own_loop(first: int) -> None:
        try:
            asyncio.run(alternate(first))
        except BaseException as error:  # reported by the test's own loop
            failures.append(error)

    async with database:
        threads = [threading.Thread(target=in_own_loop, args=(first,)) for first in (100, 200, 300)]
        for thread in threads:
            thread.start()
        await alternate(1)
        for thread in threads:
            await asyncio.to_thread(thread.join, 3 * STEP)
            assert not thread.is_alive()
        assert failures == []
        expected = [n for first in (1, 100, 200, 300) for n in range(first, first + per_loop)]
        assert await ids(database) == expected
    assert await asyncio.to_thread(committed_rows, database_url, rows) == []


@pytest.mark.asyncio
async def test_inside_a_transaction_a_failure_is_the_transaction_s(
    database_url: str, empty_table: None
) -> None:
    """A caller's own transaction keeps the server's rules: no savepoint per statement (on
    PostgreSQL the next statement in it fails, as in production); rolling it back leaves
    the session as it was."""
    database = savepoint_database(database_url)
    async with database:
        await database.execute(rows.insert(), row(1))
        with pytest.raises(Exception) as raised:
            async with database.transaction():
                await database.execute(rows.insert(), row(2))
                with pytest.raises(Exception) as failed:
                    await database.execute(rows.insert(), row(1, "duplicate"))
                assert is_constraint_error(failed.value), repr(failed.value)
                await database.execute(rows.insert(), row(3))
                raise LookupError("end the block")
        postgres = DatabaseURL(database_url).dialect == "postgresql"
        assert isinstance(raised.value, Exception if postgres else LookupError)
        if postgres:
            assert "aborted" in str(raised.value), raised.value
        assert await ids(database) == [1]
    assert await asyncio.to_thread(committed_rows, database_url, rows) == []


@pytest.mark.asyncio
async def test_url_option(database_url: str, empty_table: None) -> None:
    url = DatabaseURL(database_url)
    query = "&".join(
        [
            *(f"{key}={value}" for key, value in url.options.items()),
            "force_rollback_savepoints=true",
        ]
    )
    database = Database(str(url.replace(query=query)), force_rollback=True)
    async with database:
        await database.execute(rows.insert(), row(1))
        with pytest.raises(Exception) as raised:
            await database.execute(rows.insert(), row(1, "duplicate"))
        assert is_constraint_error(raised.value), repr(raised.value)
        assert await ids(database) == [1]
    assert await asyncio.to_thread(committed_rows, database_url, rows) == []


@pytest.mark.asyncio
@pytest.mark.dialects("postgresql")
async def test_off_by_default_a_failure_aborts_the_session_on_postgresql(
    database_url: str, empty_table: None
) -> None:
    async with Database(database_url, force_rollback=True) as database:
        await database.execute(rows.insert(), row(1))
        with pytest.raises(Exception) as raised:
            await database.execute(rows.insert(), row(1, "duplicate"))
        assert is_constraint_error(raised.value), repr(raised.value)
        with pytest.raises(Exception, match="aborted"):
            await database.fetch_all(ALL)
    assert await asyncio.to_thread(committed_rows, database_url, rows) == []


@pytest.mark.asyncio
@pytest.mark.dialects("mysql")
async def test_mysql_statements_that_commit_implicitly(
    database_url: str, empty_table: None
) -> None:
    """MySQL commits DDL (here TRUNCATE) implicitly, ending the session's transaction and
    its savepoints: such a statement runs, and the ones after it too, with no savepoint
    left to release (they autocommit then, as without the option: docs/loops.md)."""
    database = savepoint_database(database_url)
    async with database:
        await database.execute(rows.insert(), row(1))
        await database.execute(f"TRUNCATE TABLE {rows.name}")
        await database.execute(rows.insert(), row(2))
        with pytest.raises(Exception) as raised:
            await database.execute(rows.insert(), row(2, "duplicate"))
        assert is_constraint_error(raised.value), repr(raised.value)
        assert await ids(database) == [2]


def test_option_from_the_url_or_keyword() -> None:
    """The URL's option is read by `Database` and kept from the backend; a keyword
    overrides it; a bad value names the option."""
    database = Database("postgresql://localhost/app?force_rollback_savepoints=TRUE&max_size=3")
    assert database._force_rollback_savepoints is True
    backend_url = database._backend_url
    assert backend_url.options == {"max_size": "3"}
    assert str(database.url).endswith("force_rollback_savepoints=TRUE&max_size=3")
    sqlite = Database("sqlite:///app.db?force_rollback_savepoints=true")
    assert str(sqlite._backend_url) == "sqlite:///app.db"
    off = Database(
        "sqlite:///app.db?force_rollback_savepoints=true", force_rollback_savepoints=False
    )
    assert off._force_rollback_savepoints is False
    assert Database("sqlite:///app.db")._force_rollback_savepoints is False
    with pytest.raises(InvalidOptionError, match="'force_rollback_savepoints' option: expected"):
        Database("sqlite:///app.db?force_rollback_savepoints=maybe")
    with pytest.raises(InvalidOptionError, match="force_rollback_savepoints"):
        Database("sqlite:///app.db", force_rollback_savepoints="yes")  # type: ignore[arg-type]
