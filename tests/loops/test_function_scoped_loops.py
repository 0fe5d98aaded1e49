"""A module-global force-rollback `Database` used by pytest-asyncio tests that each run in
their own function-scoped event loop: the case that breaks `databases` 0.9.

Two arrangements of the same module-global databases (one per URL), in this order:

1. every test connects in its own loop with `async with database:`;
2. a module-scoped fixture connects once in the module-scoped loop, and the tests, each in
   its own function-scoped loop, query without connecting.

Every test runs 50+ queries at once with `asyncio.gather()`. In the first arrangement each
test's disconnect ends the force-rollback session, so a test sees none of the earlier tests'
rows. In the second the session lasts as long as the module loop's connection: every
function loop works in the same transaction and sees what the earlier ones wrote. Nothing is
ever committed (checked from a separate connection).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import pytest_asyncio

from databases import Database
from tests import admin
from tests.loops import (
    committed_rows,
    count_all,
    insert_and_select,
    make_table,
    values_of,
    write_probe,
)
from tests.settings import DATABASE_URLS

items = make_table("loops_fn_items")


# Created at import time, outside any event loop, as applications do.
DATABASES = {url: Database(url, force_rollback=True) for url in DATABASE_URLS}

# The loops the tests ran in, per URL. Kept alive on purpose: the library must go by whether
# a loop is closed, not by whether it was garbage collected.
SEEN_LOOPS: dict[str, list[asyncio.AbstractEventLoop]] = {url: [] for url in DATABASE_URLS}


@pytest.fixture(scope="module")
def database_url(database_url: str) -> Iterator[str]:
    """The suite's, with the module's table created first, checked and dropped at the end."""
    admin.create_tables(database_url, items)
    yield database_url
    # Runs after the module-loop fixture below has disconnected.
    assert not DATABASES[database_url].is_connected
    assert committed_rows(database_url, items) == []
    write_probe(database_url, items)
    admin.drop_tables(database_url, items)


def remember_loop(database_url: str) -> asyncio.AbstractEventLoop:
    """Record the running loop, checking that no earlier test ran in it."""
    loop = asyncio.get_running_loop()
    assert all(loop is not seen for seen in SEEN_LOOPS[database_url])
    assert all(seen.is_closed() for seen in SEEN_LOOPS[database_url])
    SEEN_LOOPS[database_url].append(loop)
    return loop


# 1. Each test connects and disconnects in its own loop.


@pytest.mark.asyncio
async def test_first_loop_sees_its_inserts(database_url: str) -> None:
    database = DATABASES[database_url]
    remember_loop(database_url)
    assert not database.is_connected
    async with database as entered:
        assert entered is database
        assert database.is_connected
        assert await database.fetch_val(count_all(items)) == 0
        assert await insert_and_select(database, items, "first", 30) == list(range(30))
        assert await database.fetch_val(count_all(items)) == 30
    assert not database.is_connected


@pytest.mark.asyncio
async def test_second_loop_sees_none_of_the_first(database_url: str) -> None:
    database = DATABASES[database_url]
    remember_loop(database_url)
    assert not database.is_connected
    async with database:
        assert await database.fetch_all(values_of(items, "first")) == []
        assert await database.fetch_val(count_all(items)) == 0
        assert await insert_and_select(database, items, "second", 40) == list(range(40))
        assert await database.fetch_val(count_all(items)) == 40
    assert not database.is_connected


@pytest.mark.asyncio
async def test_third_loop_execute_many_and_iterate(database_url: str) -> None:
    database = DATABASES[database_url]
    remember_loop(database_url)
    async with database:
        assert await database.fetch_val(count_all(items)) == 0
        batches = [[{"tag": "third", "value": 10 * b + i} for i in range(10)] for b in range(5)]
        coros = [database.execute_many(items.insert(), batch) for batch in batches]
        coros += [database.fetch_val(count_all(items)) for _ in range(50)]
        results = await asyncio.gather(*coros)
        assert all(0 <= seen <= 50 for seen in results[5:])

        iterated = [row["value"] async for row in database.iterate(values_of(items, "third"))]
        assert sorted(iterated) == list(range(50))
        assert await database.fetch_val(count_all(items)) == 50
    assert not database.is_connected


@pytest.mark.asyncio
async def test_fourth_loop_one_connection_and_nested_transactions(database_url: str) -> None:
    database = DATABASES[database_url]
    remember_loop(database_url)
    async with database:
        assert await database.fetch_val(count_all(items)) == 0

        async def connection_of_task():
            await asyncio.sleep(0)
            return database.connection()

        connections = await asyncio.gather(*(connection_of_task() for _ in range(20)))
        assert all(connection is connections[0] for connection in connections)

        async with database.connection() as connection:
            assert await insert_and_select(connection, items, "fourth", 25) == list(range(25))

        # An inner transaction rolls back to its savepoint, inside the loop's own
        # force-rollback transaction.
        async with database.transaction(force_rollback=True):
            await database.execute(items.insert(), {"tag": "inner", "value": 1})
            assert await database.fetch_val(count_all(items)) == 26
        assert await database.fetch_val(count_all(items)) == 25

        assert await insert_and_select(database, items, "fourth-b", 25) == list(range(25))
        assert await database.fetch_val(count_all(items)) == 50
    assert not database.is_connected


@pytest.mark.asyncio
@pytest.mark.parametrize("round_", range(3))
async def test_more_loops(database_url: str, round_: int) -> None:
    database = DATABASES[database_url]
    remember_loop(database_url)
    async with database:
        assert await database.fetch_val(count_all(items)) == 0
        tag = f"more-{round_}"
        assert await insert_and_select(database, items, tag, 30) == list(range(30))
        assert await database.fetch_val(count_all(items)) == 30
    assert not database.is_connected


def test_nothing_committed_by_the_function_loops(database_url: str) -> None:
    assert not DATABASES[database_url].is_connected
    assert len(SEEN_LOOPS[database_url]) >= 7
    assert committed_rows(database_url, items) == []


# 2. Connected once in the module-scoped loop; the function-loop tests do not connect.


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def module_loop_database(database_url: str):
    database = DATABASES[database_url]
    assert not database.is_connected
    await database.connect()
    assert database.is_connected
    module_loop = asyncio.get_running_loop()
    # No query here: on SQLite a read would hold a shared lock until disconnect, and other
    # connections could not commit in the meantime.

    yield database, module_loop

    assert asyncio.get_running_loop() is module_loop
    assert database.is_connected
    # One session: the module loop sees every function loop's inserts.
    assert await database.fetch_val(count_all(items)) == MODULE_LOOP_ROWS
    await database.disconnect()
    assert not database.is_connected


@pytest.mark.asyncio
@pytest.mark.parametrize("round_", range(4))
async def test_module_loop_database_in_function_loop(
    database_url: str, module_loop_database: tuple[Database, asyncio.AbstractEventLoop], round_: int
) -> None:
    database, module_loop = module_loop_database
    loop = remember_loop(database_url)
    assert loop is not module_loop
    assert database.is_connected

    # The module loop's session: the earlier function loops' inserts are visible.
    assert await database.fetch_val(count_all(items)) == 30 * round_
    tag = f"module-{round_}"
    assert await insert_and_select(database, items, tag, 30) == list(range(30))
    assert await database.fetch_val(count_all(items)) == 30 * (round_ + 1)
    assert database.is_connected


@pytest.mark.asyncio
async def test_connect_and_disconnect_in_function_loop_keeps_module_loop_connected(
    database_url: str, module_loop_database: tuple[Database, asyncio.AbstractEventLoop]
) -> None:
    database, _module_loop = module_loop_database
    remember_loop(database_url)
    assert database.is_connected

    async with database:
        assert await database.fetch_val(count_all(items)) == 120
        assert await insert_and_select(database, items, "explicit", 25) == list(range(25))
        assert await database.fetch_val(count_all(items)) == 145
    # The module loop connected and has not disconnected: still connected, same session.
    assert database.is_connected
    assert await database.fetch_val(count_all(items)) == 145
    assert await insert_and_select(database, items, "after", 25) == list(range(25))
    assert await database.fetch_val(count_all(items)) == MODULE_LOOP_ROWS


MODULE_LOOP_ROWS = 170  # what the function loops above wrote into the module loop's session


def test_closed_function_loops_rows_stay_in_the_session(
    database_url: str, module_loop_database: tuple[Database, asyncio.AbstractEventLoop]
) -> None:
    """The function loops above closed (pytest-asyncio ran `shutdown_asyncgens()` first):
    their rows stay in the session, which yet another loop sees, uncommitted."""
    database, _module_loop = module_loop_database
    assert database.is_connected
    assert asyncio.run(database.fetch_val(count_all(items))) == MODULE_LOOP_ROWS
    assert committed_rows(database_url, items) == []


def test_nothing_committed_while_module_loop_connected(
    database_url: str, module_loop_database: tuple[Database, asyncio.AbstractEventLoop]
) -> None:
    database, module_loop = module_loop_database
    assert not module_loop.is_closed()
    assert database.is_connected
    assert committed_rows(database_url, items) == []
