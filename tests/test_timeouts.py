"""Bounded waits against real servers, on every backend: the pool's acquire
(`pool_timeout`) and calls given `timeout=` (statements, iterate batches, transaction starts).

A timed-out statement must stop within the bound (cancelled on the server where the driver
can), leave its connection usable and the transaction it ran in intact: rows written before
it stay, later statements work and commit. The slow statements would run for
`SLOW_SECONDS` if nothing stopped them, so a test that waits for one fails its time limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import typing

import pytest
import sqlalchemy as sa

from databases import Database, DatabaseURL
from databases.core import Connection
from databases.errors import PoolTimeoutError, QueryTimeoutError
from tests import admin
from tests.tables import notes

pytestmark = [pytest.mark.usefixtures("shared_tables"), pytest.mark.timeout(60)]

# How long the slow statements would run if nothing stopped them.
SLOW_SECONDS = 5
# The bound the tests set, and the most a timed-out call may take to hand back control
# (the bound, plus the server's answer to the cancel request; far below SLOW_SECONDS).
TIMEOUT = 0.3
LIMIT = TIMEOUT + 1.5
# SQLite's slow statement counts this far (several seconds).
SQLITE_SLOW_COUNT = 40_000_000


def slow_read(url: str) -> str:
    """A statement returning 7 after about SLOW_SECONDS (SQLite: longer)."""
    dialect = DatabaseURL(url).dialect
    if dialect == "postgresql":
        return f"SELECT 7 FROM pg_sleep({SLOW_SECONDS})"
    if dialect == "mysql":
        return f"SELECT SLEEP({SLOW_SECONDS}) + 7"
    return (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
        f"WHERE x < {SQLITE_SLOW_COUNT}) SELECT max(x) * 0 + 7 FROM c"
    )


def slow_insert(url: str) -> str:
    """An INSERT of one note (`:text`) that takes about SLOW_SECONDS."""
    dialect = DatabaseURL(url).dialect
    if dialect == "postgresql":
        return (
            f"INSERT INTO notes (text, completed) SELECT :text, false FROM pg_sleep({SLOW_SECONDS})"
        )
    if dialect == "mysql":
        return f"INSERT INTO notes (text, completed) SELECT :text, SLEEP({SLOW_SECONDS}) = 1"
    return (
        "INSERT INTO notes (text, completed) SELECT :text, 0 FROM (WITH RECURSIVE c(x) AS "
        f"(SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {SQLITE_SLOW_COUNT}) "
        "SELECT max(x) FROM c)"
    )


async def insert(runner: Database | Connection, text: str) -> None:
    await runner.execute(notes.insert(), values={"text": text, "completed": False})


@contextlib.asynccontextmanager
async def takes_at_most(seconds: float) -> typing.AsyncIterator[None]:
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"took {elapsed:.2f} s, more than {seconds} s"


async def prompt_select_1(runner: Database | Connection) -> None:
    """The connection answers at once: nothing of a stopped statement is left running."""
    async with takes_at_most(LIMIT):
        assert await runner.fetch_val("SELECT 1") == 1


# -- the pool's acquire: pool_timeout -------------------------------------------------------


async def hold(database: Database, held: asyncio.Event, release: asyncio.Event) -> None:
    async with database.connection() as connection:
        await connection.fetch_val("SELECT 1")
        held.set()
        await release.wait()


@pytest.mark.asyncio
async def test_pool_exhaustion_raises_within_pool_timeout(database_url: str) -> None:
    """max_size=2 with two connections held: a third caller fails after `pool_timeout`
    (given in the URL) with an error naming the pool size, the loop and the option."""
    url = DatabaseURL(database_url).replace(query=f"pool_timeout={TIMEOUT}")
    async with Database(url, max_size=2) as database:
        release = asyncio.Event()
        helds = [asyncio.Event(), asyncio.Event()]
        holders = [asyncio.create_task(hold(database, held, release)) for held in helds]
        await asyncio.wait_for(asyncio.gather(*(held.wait() for held in helds)), LIMIT)
        started = time.monotonic()
        with pytest.raises(PoolTimeoutError) as raised:
            async with database.connection() as connection:  # SQLite: not the statement one
                await connection.fetch_val("SELECT 1")
        elapsed = time.monotonic() - started
        assert TIMEOUT * 0.9 <= elapsed < LIMIT
        error = raised.value
        assert isinstance(error, TimeoutError) and isinstance(error, asyncio.TimeoutError)
        message = str(error)
        loop_id = f"{id(asyncio.get_running_loop()):#x}"
        assert "max_size=2" in message and f"pool_timeout={TIMEOUT:g}" in message
        assert loop_id in message and threading.current_thread().name in message
        release.set()
        await asyncio.wait_for(asyncio.gather(*holders), LIMIT)
        await prompt_select_1(database)


@pytest.mark.asyncio
async def test_timed_out_acquires_never_leak_a_connection(
    database_url: str, request: pytest.FixtureRequest
) -> None:
    """200 acquires time out while a held connection is released around the moment their
    timer fires; a connection handed over just then goes back to the pool, so it still
    serves max_size connections at once."""
    pool_timeout = 0.02
    async with Database(database_url, max_size=2, pool_timeout=pool_timeout) as database:
        release_first = asyncio.Event()
        first_held = asyncio.Event()
        first = asyncio.create_task(hold(database, first_held, release_first))
        await asyncio.wait_for(first_held.wait(), LIMIT)
        outcomes = {"acquired": 0, "timed out": 0}

        async def acquire_once() -> None:
            try:
                async with database.connection() as connection:
                    await connection.fetch_val("SELECT 1")
            except PoolTimeoutError:
                outcomes["timed out"] += 1
            else:
                outcomes["acquired"] += 1

        for attempt in range(200):
            release = asyncio.Event()
            held = asyncio.Event()
            second = asyncio.create_task(hold(database, held, release))
            await asyncio.wait_for(held.wait(), LIMIT)
            # Released from -4 ms to +4 ms around the third caller's deadline.
            offset = pool_timeout + ((attempt % 9) - 4) / 1000
            asyncio.get_running_loop().call_later(offset, release.set)
            await asyncio.wait_for(acquire_once(), LIMIT)
            await asyncio.wait_for(second, LIMIT)
        request.node.user_properties.append(("outcomes", dict(outcomes)))
        assert sum(outcomes.values()) == 200
        assert outcomes["timed out"] > 0

        release_first.set()
        await asyncio.wait_for(first, LIMIT)
        # Both connections at once, each acquired without waiting for the other.
        both = [asyncio.Event(), asyncio.Event()]
        release = asyncio.Event()
        holders = [asyncio.create_task(hold(database, held, release)) for held in both]
        await asyncio.wait_for(asyncio.gather(*(held.wait() for held in both)), LIMIT)
        release.set()
        await asyncio.wait_for(asyncio.gather(*holders), LIMIT)


# -- calls given timeout= ---------------------------------------------------------------------


async def call_slowly(runner: Database | Connection, method: str, url: str) -> typing.Any:
    """`method` of `runner` on the slow read, with `timeout=TIMEOUT`."""
    sql = slow_read(url)
    if method == "iterate":
        return [row async for row in runner.iterate(sql, timeout=TIMEOUT)]
    return await getattr(runner, method)(sql, timeout=TIMEOUT)


METHODS = pytest.mark.parametrize(
    "method", ["fetch_all", "fetch_one", "fetch_val", "execute", "iterate"]
)


@METHODS
@pytest.mark.asyncio
async def test_timeout_stops_a_slow_statement(database_url: str, method: str) -> None:
    async with Database(database_url) as database:
        async with takes_at_most(LIMIT):
            with pytest.raises(QueryTimeoutError) as raised:
                await call_slowly(database, method, database_url)
        assert isinstance(raised.value, TimeoutError)
        assert f"timeout={TIMEOUT:g}" in str(raised.value)
        await prompt_select_1(database)
        # The same with the task's own connection.
        async with database.connection() as connection:
            async with takes_at_most(LIMIT):
                with pytest.raises(QueryTimeoutError):
                    await call_slowly(connection, method, database_url)
            await prompt_select_1(connection)


@METHODS
@pytest.mark.asyncio
async def test_timeout_inside_a_transaction_keeps_the_transaction(
    database_url: str, method: str
) -> None:
    """The timed-out statement is rolled back alone: the transaction goes on and commits
    what was written before and after it."""
    async with Database(database_url) as database:
        async with database.connection() as connection, connection.transaction():
            await insert(connection, "before")
            async with takes_at_most(LIMIT):
                with pytest.raises(QueryTimeoutError):
                    await call_slowly(connection, method, database_url)
            await prompt_select_1(connection)
            await insert(connection, "after")
        assert admin.committed_notes(database_url) == ["before", "after"]


@pytest.mark.asyncio
async def test_timeout_in_the_force_rollback_session(database_url: str) -> None:
    """A timeout on the connection every task shares leaves its transaction usable: what
    was written before is still there, and later statements work."""
    async with Database(database_url, force_rollback=True) as database:
        await insert(database, "before")
        for method in ("fetch_val", "iterate"):
            async with takes_at_most(LIMIT):
                with pytest.raises(QueryTimeoutError):
                    await call_slowly(database, method, database_url)
        await prompt_select_1(database)
        await insert(database, "after")
        rows = await database.fetch_all(sa.select(notes.c.text).order_by(notes.c.id))
        assert [row["text"] for row in rows] == ["before", "after"]
    assert admin.committed_notes(database_url) == []


@pytest.mark.parametrize("method", ["execute", "execute_many"])
@pytest.mark.asyncio
async def test_timed_out_write_writes_nothing(database_url: str, method: str) -> None:
    async with Database(database_url) as database:
        sql = slow_insert(database_url)
        async with takes_at_most(LIMIT):
            with pytest.raises(QueryTimeoutError):
                if method == "execute":
                    await database.execute(sql, {"text": "slow"}, timeout=TIMEOUT)
                else:
                    await database.execute_many(
                        sql, [{"text": "slow-1"}, {"text": "slow-2"}], timeout=TIMEOUT
                    )
        await prompt_select_1(database)
        await insert(database, "after")
    assert admin.committed_notes(database_url) == ["after"]


@pytest.mark.asyncio
async def test_fast_calls_with_a_timeout_return_their_results(database_url: str) -> None:
    async with Database(database_url) as database:
        await database.execute_many(
            notes.insert(), [{"text": "a", "completed": False}], timeout=LIMIT
        )
        await database.execute(notes.insert(), {"text": "b", "completed": True}, timeout=LIMIT)
        query = sa.select(notes.c.text).order_by(notes.c.id)
        assert [row["text"] for row in await database.fetch_all(query, timeout=LIMIT)] == [
            "a",
            "b",
        ]
        assert (await database.fetch_one(query, timeout=LIMIT))["text"] == "a"  # type: ignore[index]
        assert await database.fetch_val(query, timeout=LIMIT) == "a"
        assert [row["text"] async for row in database.iterate(query, timeout=LIMIT)] == ["a", "b"]
        connection = database.connection()
        async with database.transaction(timeout=LIMIT), connection.transaction(timeout=LIMIT):
            await connection.execute(
                notes.insert(), {"text": "c", "completed": False}, timeout=LIMIT
            )
    assert admin.committed_notes(database_url) == ["a", "b", "c"]


@pytest.mark.asyncio
async def test_transaction_timeout_bounds_its_start(database_url: str) -> None:
    """`transaction(timeout=)` bounds waiting for a connection (here: the only one is
    held) and begins nothing when it expires."""
    async with Database(database_url, max_size=1) as database:
        release, held = asyncio.Event(), asyncio.Event()
        holder = asyncio.create_task(hold(database, held, release))
        await asyncio.wait_for(held.wait(), LIMIT)
        async with takes_at_most(LIMIT):
            with pytest.raises(QueryTimeoutError) as raised:
                async with database.transaction(timeout=TIMEOUT):
                    pytest.fail("the transaction must not start")
        assert "transaction did not start" in str(raised.value)
        release.set()
        await asyncio.wait_for(holder, LIMIT)
        async with database.transaction(timeout=LIMIT):
            await insert(database, "after")
    assert admin.committed_notes(database_url) == ["after"]


@pytest.mark.asyncio
async def test_transaction_timeout_bounds_the_wait_for_its_turn(database_url: str) -> None:
    """On a connection two tasks share, a transaction waits for the other task's to end:
    `timeout=` bounds that wait, and the other transaction is not disturbed."""
    async with Database(database_url) as database, database.connection() as connection:
        outer_open, finish = asyncio.Event(), asyncio.Event()

        async def outer() -> None:
            async with connection.transaction():
                await insert(connection, "outer")
                outer_open.set()
                await finish.wait()

        task = asyncio.create_task(outer())
        await asyncio.wait_for(outer_open.wait(), LIMIT)

        async def inner() -> None:
            async with connection.transaction(timeout=TIMEOUT):
                await insert(connection, "inner")

        async with takes_at_most(LIMIT):
            with pytest.raises(QueryTimeoutError):
                await asyncio.create_task(inner())
        finish.set()
        await asyncio.wait_for(task, LIMIT)
    assert admin.committed_notes(database_url) == ["outer"]


# -- the values the options and timeout= take -----------------------------------------------


@pytest.mark.parametrize("value", [0, -1, "abc", True, float("inf")])
def test_bad_timeout_values_are_refused(database_url: str, value: typing.Any) -> None:
    for option in ("pool_timeout", "connect_timeout"):
        with pytest.raises(ValueError, match=option):
            Database(database_url, **{option: value})
        url = DatabaseURL(database_url).replace(query=f"{option}={value}")
        with pytest.raises(ValueError, match=option):
            Database(url)


@pytest.mark.parametrize("value", [0, -1, "abc"])
@pytest.mark.asyncio
async def test_bad_call_timeouts_are_refused(database_url: str, value: typing.Any) -> None:
    async with Database(database_url) as database:
        with pytest.raises(ValueError, match="timeout="):
            await database.fetch_val("SELECT 1", timeout=value)
        with pytest.raises(ValueError, match="timeout="):
            database.transaction(timeout=value)


def test_none_turns_the_bounds_off(database_url: str) -> None:
    backend = Database(database_url, pool_timeout=None)._backend
    assert (backend._pool_timeout, backend._connect_timeout) == (None, 10.0)  # type: ignore[attr-defined]
    url = DatabaseURL(database_url).replace(query="connect_timeout=none&pool_timeout=2.5")
    backend = Database(url)._backend
    assert (backend._pool_timeout, backend._connect_timeout) == (2.5, None)  # type: ignore[attr-defined]
