"""Cancelling tasks in the middle of their queries, and what the loop can do afterwards.

A slow statement (PostgreSQL `pg_sleep(0.5)`, MySQL `SLEEP(0.5)`, SQLite a recursive CTE
counting to a few million) is cancelled while it runs, through `task.cancel()` or
`asyncio.wait_for()`; also tasks that are only waiting: for the connection's query lock
(behind another task's slow statement), for their turn to start a transaction, or for a
connection from a full pool. After each, the next queries of that loop (in the same task,
on the same connection, in other tasks, inside and outside transactions) must work and
return the right results (never the leftovers of the cancelled statement), earlier
force-rollback work must still be visible, and disconnecting must not hang.

How long a cancelled slow statement takes to hand back control depends on the connection:
a task's own connection may be cancelled the driver's way, while on a shared connection the
statement may have to finish first. The tests only bound it (no hang); the measured times are
attached to each test as the `cancel_seconds` user property (in junit XML).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy

from databases import Database, DatabaseURL
from tests.loops import (
    committed_rows,
    count_tag,
    make_table,
    values_of,
)
from tests.loops.support import database_url_with_table, empty_table_fixture

items = make_table("loops_cancel_items")

# The rows every test inserts first: tag "before", values 0 .. BEFORE - 1.
BEFORE = 5
# How long the slow statements run if nobody cancels them (SQLite's is about that long).
SLOW_SECONDS = 0.5
# When a running statement is cancelled: well after it started, well before it ends.
CANCEL_AFTER = 0.1
# The most a cancellation may take to hand back control: the statement's own duration
# (it may have to finish) plus a generous margin. More than that is a hang.
CANCEL_LIMIT = SLOW_SECONDS + 4.0
# Upper bound for anything else that waits.
TIMEOUT = 20
SQLITE_SLOW_COUNT = 2_500_000

FORCE_ROLLBACK = pytest.mark.parametrize("force_rollback", [False, True], ids=["plain", "rollback"])


def slow_query(database_url: str) -> tuple[str, int]:
    """A statement that runs for about SLOW_SECONDS, and the value it returns."""
    dialect = DatabaseURL(database_url).dialect
    if dialect == "postgresql":
        return "SELECT 42 FROM pg_sleep(0.5)", 42
    if dialect == "mysql":
        return "SELECT SLEEP(0.5) + 42", 42
    assert dialect == "sqlite", dialect
    return (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
        f"WHERE x < {SQLITE_SLOW_COUNT}) SELECT max(x) FROM c",
        SQLITE_SLOW_COUNT,
    )


database_url = database_url_with_table(items)


empty_table = empty_table_fixture(items)
pytestmark = pytest.mark.usefixtures("empty_table")


async def committed(database_url: str) -> list[tuple[str, int]]:
    """`committed_rows()` from inside a running loop (it runs a loop of its own)."""
    return await asyncio.to_thread(committed_rows, database_url, items)


@pytest_asyncio.fixture
async def database(database_url: str, force_rollback: bool) -> AsyncIterator[Database]:
    """A connected database (force_rollback per the test's parameter) with the "before"
    rows inserted through it; afterwards disconnecting must not hang, and with force_rollback
    nothing may be committed."""
    database = Database(database_url, force_rollback=force_rollback)
    await database.connect()
    try:
        await database.execute_many(
            items.insert(), [{"tag": "before", "value": v} for v in range(BEFORE)]
        )
        yield database
    finally:
        started = time.perf_counter()
        await asyncio.wait_for(database.disconnect(), TIMEOUT)
        assert time.perf_counter() - started < CANCEL_LIMIT
    assert not database.is_connected
    rows = await committed(database_url)
    if force_rollback:
        assert rows == []
    else:
        assert [row for row in rows if row[0] == "before"] == [("before", v) for v in range(BEFORE)]


def record(request: pytest.FixtureRequest, seconds: float) -> None:
    request.node.user_properties.append(("cancel_seconds", round(seconds, 3)))


async def values(target: Any, tag: str) -> list[int]:
    return sorted(row[0] for row in await target.fetch_all(values_of(items, tag)))


async def check_usable(database: Database, target: Any = None, tag: str = "after") -> None:
    """The loop works normally, with the right answers: queries in this task (on `target`,
    the task's connection by default), in other tasks at once, in a committed and in a
    rolled-back transaction, and through `iterate()`. Adds rows `(tag, 1)`, `(tag, 2)`."""
    target = database if target is None else target

    async def check() -> None:
        assert await target.fetch_val(sqlalchemy.select(sqlalchemy.literal(7))) == 7
        assert await values(target, "before") == list(range(BEFORE))
        row = await target.fetch_one(values_of(items, "before").where(items.c.value == 3))
        assert row is not None and row[0] == 3

        # Other tasks, all at once: each gets its own answer.
        answers = await asyncio.gather(
            *(database.fetch_val(sqlalchemy.select(sqlalchemy.literal(n))) for n in range(10)),
            *(database.fetch_val(count_tag(items, "before")) for _ in range(3)),
        )
        assert answers == list(range(10)) + [BEFORE] * 3

        async with target.transaction():
            await target.execute(items.insert(), {"tag": tag, "value": 1})
            assert await values(target, tag) == [1]
        with contextlib.suppress(LookupError):
            async with target.transaction():
                await target.execute(items.insert(), {"tag": tag, "value": 99})
                raise LookupError()
        await target.execute(items.insert(), {"tag": tag, "value": 2})
        assert await values(target, tag) == [1, 2]
        ordered = values_of(items, "before").order_by(items.c.value)
        assert [row[0] async for row in target.iterate(ordered)] == list(range(BEFORE))

    await asyncio.wait_for(check(), TIMEOUT)


# -- a running statement ----------------------------------------------------------------------


@pytest.mark.asyncio
@FORCE_ROLLBACK
@pytest.mark.parametrize("how", ["cancel", "wait_for"])
async def test_cancel_a_running_query(
    database: Database, force_rollback: bool, how: str, request: pytest.FixtureRequest
) -> None:
    """A query is cancelled while the server runs it; the loop then works as before."""
    slow, _ = slow_query(str(database.url))
    if how == "cancel":
        task = asyncio.create_task(database.fetch_val(slow))
        await asyncio.sleep(CANCEL_AFTER)
        assert not task.done()
        started = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, CANCEL_LIMIT * 2)
        elapsed = time.perf_counter() - started
        assert task.cancelled()
    else:
        started = time.perf_counter()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(database.fetch_val(slow), CANCEL_AFTER)
        elapsed = time.perf_counter() - started - CANCEL_AFTER
    record(request, elapsed)
    assert elapsed < CANCEL_LIMIT

    await check_usable(database)
    assert await values(database, "after") == [1, 2]
    if not force_rollback:
        assert [row for row in await committed(str(database.url)) if row[0] == "after"] == [
            ("after", 1),
            ("after", 2),
        ]


@pytest.mark.asyncio
@FORCE_ROLLBACK
async def test_cancel_on_the_tasks_own_connection(
    database: Database, force_rollback: bool, request: pytest.FixtureRequest
) -> None:
    """`wait_for()` times out a query on the connection this task holds; the same
    connection then answers this task's next queries correctly, and so does the database
    once the connection is released."""
    slow, _ = slow_query(str(database.url))
    async with database.connection() as connection:
        assert database.connection() is connection
        started = time.perf_counter()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(connection.fetch_val(slow), CANCEL_AFTER)
        elapsed = time.perf_counter() - started - CANCEL_AFTER
        record(request, elapsed)
        assert elapsed < CANCEL_LIMIT
        await check_usable(database, connection)
        # Through the database, this task still uses the same connection.
        assert await values(database, "after") == [1, 2]
    await check_usable(database, tag="later")


@pytest.mark.asyncio
@FORCE_ROLLBACK
@pytest.mark.parametrize("point", ["query", "sleep"])
async def test_cancel_inside_a_transaction(
    database: Database, force_rollback: bool, point: str, request: pytest.FixtureRequest
) -> None:
    """A task is cancelled inside its transaction, during a query or between two: it ends
    cancelled (not with some other error), its transaction is rolled back, and a sibling
    waiting for a transaction of its own then gets it."""
    slow, _ = slow_query(str(database.url))
    inside = asyncio.Event()

    async def doomed() -> None:
        async with database.transaction():
            await database.execute(items.insert(), {"tag": "doomed", "value": 1})
            inside.set()
            if point == "query":
                await database.fetch_val(slow)
            else:
                await asyncio.sleep(TIMEOUT)
            await database.execute(items.insert(), {"tag": "doomed", "value": 2})

    async def sibling() -> list[int]:
        await inside.wait()
        async with database.transaction():
            await database.execute(items.insert(), {"tag": "sibling", "value": 1})
            return await values(database, "doomed")

    task = asyncio.create_task(doomed())
    await asyncio.wait_for(inside.wait(), TIMEOUT)
    other = asyncio.create_task(sibling())
    await asyncio.sleep(CANCEL_AFTER)
    assert not task.done()
    started = time.perf_counter()
    task.cancel()
    outcome = await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), CANCEL_LIMIT * 2)
    elapsed = time.perf_counter() - started
    record(request, elapsed)
    assert isinstance(outcome[0], asyncio.CancelledError), repr(outcome[0])
    assert elapsed < CANCEL_LIMIT

    assert await asyncio.wait_for(other, TIMEOUT) == []
    assert await values(database, "doomed") == []
    assert await values(database, "sibling") == [1]
    await check_usable(database)
    if not force_rollback:
        rows = await committed(str(database.url))
        assert [row for row in rows if row[0] in ("doomed", "sibling")] == [("sibling", 1)]


@pytest.mark.asyncio
@FORCE_ROLLBACK
async def test_cancel_during_iterate(database: Database, force_rollback: bool) -> None:
    """A task is cancelled in the middle of an `iterate()` loop (its iterator open on the
    connection, with rows left to read): the connection is usable at once and later."""
    await database.execute_many(items.insert(), [{"tag": "many", "value": v} for v in range(1500)])
    reading = asyncio.Event()

    async def reader() -> None:
        ordered = values_of(items, "many").order_by(items.c.value)
        async for _row in database.iterate(ordered):
            reading.set()
            await asyncio.sleep(TIMEOUT)

    task = asyncio.create_task(reader())
    await asyncio.wait_for(reading.wait(), TIMEOUT)
    # Another task's query while the iterator is open.
    assert await asyncio.create_task(database.fetch_val(count_tag(items, "many"))) == 1500
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, TIMEOUT)
    await check_usable(database)
    iterated = [row[0] async for row in database.iterate(values_of(items, "many"))]
    assert sorted(iterated) == list(range(1500))


# -- waiting, not running ---------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["rollback", "connection"])
async def test_cancel_a_query_waiting_for_the_query_lock(
    database_url: str, mode: str, request: pytest.FixtureRequest
) -> None:
    """On a shared connection, task B waits for the query lock behind A's slow statement
    and is cancelled: B ends at once, A gets its full answer, and the lock is free after."""
    slow, slow_value = slow_query(database_url)
    database = Database(database_url, force_rollback=mode == "rollback")
    async with database, database.connection() as connection:
        await connection.execute_many(
            items.insert(), [{"tag": "before", "value": v} for v in range(BEFORE)]
        )
        a = asyncio.create_task(connection.fetch_val(slow))
        await asyncio.sleep(CANCEL_AFTER / 2)
        b = asyncio.create_task(connection.fetch_val(count_tag(items, "before")))
        waiting = asyncio.create_task(connection.fetch_all(values_of(items, "before")))
        await asyncio.sleep(CANCEL_AFTER / 2)
        assert not b.done()
        started = time.perf_counter()
        b.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(b, CANCEL_LIMIT * 2)
        elapsed = time.perf_counter() - started
        record(request, elapsed)
        assert not a.done(), "B's cancellation waited for A's statement"

        assert await asyncio.wait_for(a, TIMEOUT) == slow_value
        # The query queued behind B still gets its turn and its own answer.
        rows = await asyncio.wait_for(waiting, TIMEOUT)
        assert sorted(row[0] for row in rows) == list(range(BEFORE))
        await check_usable(database, connection)
    assert not database.is_connected
    rows = await committed(database_url)
    assert rows == (
        []
        if mode == "rollback"
        else sorted([("after", 1), ("after", 2)] + [("before", v) for v in range(BEFORE)])
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["rollback", "connection"])
async def test_cancel_a_task_waiting_for_its_transaction_turn(database_url: str, mode: str) -> None:
    """On a shared connection, B waits to start a transaction while A's is open, and is
    cancelled: A's transaction is unaffected, and C's later transaction begins normally."""
    database = Database(database_url, force_rollback=mode == "rollback")
    async with database, database.connection() as connection:
        a_inside = asyncio.Event()
        release_a = asyncio.Event()
        b_inside = asyncio.Event()

        async def a() -> None:
            async with connection.transaction():
                await connection.execute(items.insert(), {"tag": "a", "value": 1})
                a_inside.set()
                await release_a.wait()
                await connection.execute(items.insert(), {"tag": "a", "value": 2})

        async def b() -> None:
            async with connection.transaction():
                b_inside.set()
                await connection.execute(items.insert(), {"tag": "b", "value": 1})

        task_a = asyncio.create_task(a())
        await asyncio.wait_for(a_inside.wait(), TIMEOUT)
        task_b = asyncio.create_task(b())
        for _ in range(10):
            await asyncio.sleep(0)
        assert not b_inside.is_set()
        task_b.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task_b, TIMEOUT)
        assert not task_a.done()
        release_a.set()
        await asyncio.wait_for(task_a, TIMEOUT)

        async def c() -> list[int]:
            async with connection.transaction():
                await connection.execute(items.insert(), {"tag": "c", "value": 1})
                return await values(connection, "a")

        assert await asyncio.wait_for(asyncio.create_task(c()), TIMEOUT) == [1, 2]
        assert await values(connection, "b") == []
        assert await values(connection, "c") == [1]
        # Only the force-rollback connection's own transaction is left open.
        assert connection.in_transaction() is (mode == "rollback")
        assert not connection.in_nested_transaction()
    rows = await committed(database_url)
    assert rows == ([] if mode == "rollback" else [("a", 1), ("a", 2), ("c", 1)])


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["cancel", "wait_for"])
async def test_cancel_a_task_waiting_for_a_pool_connection(
    database_url: str, how: str, request: pytest.FixtureRequest
) -> None:
    """With a pool of one connection held by A (inside a transaction, so SQLite's
    one-statement calls cannot share a connection either), B waits for a connection and is
    cancelled (or times out): B ends at once, and the pool still has its one working
    connection."""
    database = Database(database_url, min_size=1, max_size=1)
    async with database:
        await database.execute_many(
            items.insert(), [{"tag": "before", "value": v} for v in range(BEFORE)]
        )
        holding = asyncio.Event()
        release = asyncio.Event()

        async def a() -> int:
            async with database.connection() as connection, connection.transaction():
                value = await connection.fetch_val(count_tag(items, "before"))
                holding.set()
                await release.wait()
                return int(await connection.fetch_val(count_tag(items, "before"))) + value

        task_a = asyncio.create_task(a())
        await asyncio.wait_for(holding.wait(), TIMEOUT)
        query = database.fetch_val(count_tag(items, "before"))
        started = time.perf_counter()
        if how == "cancel":
            task_b = asyncio.create_task(query)
            await asyncio.sleep(CANCEL_AFTER)
            assert not task_b.done()
            started = time.perf_counter()
            task_b.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task_b, TIMEOUT)
            elapsed = time.perf_counter() - started
        else:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(query, CANCEL_AFTER)
            elapsed = time.perf_counter() - started - CANCEL_AFTER
        record(request, elapsed)
        assert elapsed < 1.0
        assert not task_a.done()

        release.set()
        assert await asyncio.wait_for(task_a, TIMEOUT) == 2 * BEFORE
        # One connection, passed from task to task: a leaked slot would hang here.
        for n in range(5):
            one = database.fetch_val(sqlalchemy.select(sqlalchemy.literal(n)))
            assert await asyncio.wait_for(asyncio.create_task(one), TIMEOUT) == n
        answers = await asyncio.wait_for(
            asyncio.gather(
                *(database.fetch_val(sqlalchemy.select(sqlalchemy.literal(n))) for n in range(20))
            ),
            TIMEOUT,
        )
        assert answers == list(range(20))
        await check_usable(database)
    assert not database.is_connected
