"""A module-global `Database` in tests run by anyio's pytest plugin (`@pytest.mark.anyio`) on
its asyncio backend.

anyio runs a test and its async fixtures in one task of one event loop. The loop is new for
each test, unless an async fixture of a wider scope is active: then the tests share its loop.

1. Every test connects (`async with database:`), each in a loop of its own.
2. A function-scoped async fixture connects and disconnects around each test, in its loop.
3. A module-scoped async fixture connects once, and the tests share its loop; a
   function-scoped fixture wraps some of them in a rolled-back transaction.

Each arrangement has its own databases and table, and runs once per URL with
`force_rollback=True` and without. Queries go out 60 at a time through `asyncio.gather()`
and 60 at a time from an anyio task group. Without force_rollback every loop sees every
committed row. With force_rollback every loop works in the database's one session (one
connection in one transaction, on the library's session loop), from the first `connect()`
to the last `disconnect()`, which rolls it back: in the first two arrangements each test
connects and disconnects, so each test has a session of its own and sees none of the
earlier tests' rows; in the third the tests share the module fixture's session and see each
other's rows. At the end of each arrangement separate connections check what was committed
(nothing, with force_rollback) and that no connection still holds a lock.
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import AsyncIterator

import anyio
import pytest
import sqlalchemy

from databases import Database
from tests.loops import count_tag, insert_and_select, make_table, support, values_of
from tests.loops.support import (
    SMALL_POOL,
    Case,
    Ledger,
    Ledgers,
    NewLoops,
    case_fixture,
    drop_at_module_end_fixture,
    make_databases,
    seen,
)

per_test_items = make_table("loops_anyio_per_test")
fixture_items = make_table("loops_anyio_fixture")
module_items = make_table("loops_anyio_module")
TABLES = (per_test_items, fixture_items, module_items)

# Created at import time, outside any event loop, as applications do.
PER_TEST = make_databases(**SMALL_POOL)
FIXTURE_PER_TEST = make_databases(**SMALL_POOL)
FIXTURE_PER_MODULE = make_databases(**SMALL_POOL)

ledger_for = Ledgers()


async def write_and_check(
    database: typing.Any, table: sqlalchemy.Table, ledger: Ledger, tag: str, count: int = 30
) -> None:
    """Check what this loop sees; write `tag` with `gather()` (2 * `count` inserts and
    selects) and `tag`-tg with a task group (as many again); check again.

    `database` is a `Database` or a `Connection`.
    """
    assert await seen(database, table) == ledger.visible()
    assert await insert_and_select(database, table, tag, count) == list(range(count))
    ledger.wrote(tag, count)

    group_tag = f"{tag}-tg"
    counts: list[int] = []

    async def insert_and_count(value: int) -> None:
        await database.execute(table.insert(), {"tag": group_tag, "value": value})
        counts.append(await database.fetch_val(count_tag(table, group_tag)))

    async with anyio.create_task_group() as group:
        for value in range(count):
            group.start_soon(insert_and_count, value)
    assert len(counts) == count
    assert all(1 <= seen_count <= count for seen_count in counts), counts
    values = [row[0] for row in await database.fetch_all(values_of(table, group_tag))]
    assert sorted(values) == list(range(count))
    ledger.wrote(group_tag, count)

    assert await seen(database, table) == ledger.visible()


# The suffixes of the two tags `write_and_check` writes.
TG = ("", "-tg")


def check_ended(url: str, table: sqlalchemy.Table, ledger: Ledger) -> None:
    """What was committed, checked from another connection (at least 120 rows without
    force_rollback); and nothing holds a lock."""
    support.check_ended(url, table, ledger, at_least=120)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


drop_tables_at_module_end = drop_at_module_end_fixture("drop_tables_at_module_end", *TABLES)
case = case_fixture(TABLES, PER_TEST, FIXTURE_PER_TEST, FIXTURE_PER_MODULE)

# The running loop, checked to be new, with every earlier test's loop closed.
new_loop = NewLoops()


# 1. Every test connects in its own loop.


@pytest.mark.anyio
@pytest.mark.parametrize("round_", range(3))
async def test_connect_per_test(case: Case, round_: int) -> None:
    database = PER_TEST[case]
    loop = new_loop()
    assert not database.is_connected
    assert database.loop_states() == []
    ledger = ledger_for("per-test", case)
    async with database:
        [state] = database.loop_states()
        assert state["loop"] is loop and state["connected_explicitly"]
        # With force_rollback the connection is the session's, on the session loop.
        assert state["open"] is not case[1]
        # With force_rollback this test's connect() began a new session: none of the
        # earlier tests' rows are visible.
        expected = set() if case[1] else {f"r{n}{tg}" for n in range(round_) for tg in TG}
        assert set(ledger.visible()) == expected
        await write_and_check(database, per_test_items, ledger, f"r{round_}")
    assert not database.is_connected
    assert database.loop_states() == []
    # The last (only) disconnect: with force_rollback the session was rolled back.
    ledger.session_ended()


def test_connect_per_test_committed(case: Case) -> None:
    check_ended(case[0], per_test_items, ledger_for("per-test", case))


# 2. A function-scoped async fixture connects around each test.


@pytest.fixture
async def connected_per_test(
    case: Case, anyio_backend: str
) -> AsyncIterator[tuple[Database, asyncio.AbstractEventLoop]]:
    database = FIXTURE_PER_TEST[case]
    assert not database.is_connected
    async with database:
        yield database, asyncio.get_running_loop()
    assert not database.is_connected
    assert database.loop_states() == []
    # The last (only) disconnect: with force_rollback the session was rolled back.
    ledger_for("fixture", case).session_ended()


@pytest.mark.anyio
@pytest.mark.parametrize("round_", range(2))
async def test_function_fixture(
    case: Case, connected_per_test: tuple[Database, asyncio.AbstractEventLoop], round_: int
) -> None:
    database, fixture_loop = connected_per_test
    # The fixture ran in this test's loop, a new one.
    assert new_loop() is fixture_loop
    [state] = database.loop_states()
    assert state["loop"] is fixture_loop and state["connected_explicitly"]
    assert state["open"] is not case[1]
    ledger = ledger_for("fixture", case)
    # With force_rollback the earlier test's session ended with its fixture.
    expected = set() if case[1] else {f"r{n}{tg}" for n in range(round_) for tg in TG}
    assert set(ledger.visible()) == expected
    await write_and_check(database, fixture_items, ledger, f"r{round_}")


def test_function_fixture_committed(case: Case) -> None:
    check_ended(case[0], fixture_items, ledger_for("fixture", case))


# 3. A module-scoped async fixture connects once; the tests share its loop.


class ModuleConnection(typing.NamedTuple):
    case: Case
    database: Database
    loop: asyncio.AbstractEventLoop
    ledger: Ledger


@pytest.fixture(scope="module")
async def connected_per_module(case: Case, anyio_backend: str) -> AsyncIterator[ModuleConnection]:
    database = FIXTURE_PER_MODULE[case]
    assert not database.is_connected
    await database.connect()
    loop = asyncio.get_running_loop()
    ledger = ledger_for("module", case)

    yield ModuleConnection(case, database, loop, ledger)

    assert asyncio.get_running_loop() is loop
    assert await seen(database, module_items) == ledger.visible()
    assert set(ledger.visible()) == {"first", "first-tg", "last", "last-tg"}
    await database.disconnect()
    assert not database.is_connected
    assert database.loop_states() == []
    # The last disconnect: with force_rollback the session was rolled back.
    ledger.session_ended()
    await asyncio.to_thread(check_ended, case[0], module_items, ledger)


@pytest.fixture
async def rolled_back_transaction(
    connected_per_module: ModuleConnection, anyio_backend: str
) -> AsyncIterator[None]:
    """Runs each test inside a transaction that is rolled back: anyio runs the fixture and
    the test in the same task, so the test's queries run inside it."""
    async with connected_per_module.database.transaction(force_rollback=True):
        yield


@pytest.mark.anyio
async def test_module_fixture_first(connected_per_module: ModuleConnection) -> None:
    database, loop = connected_per_module.database, connected_per_module.loop
    assert asyncio.get_running_loop() is loop
    assert loop not in new_loop.seen
    [state] = database.loop_states()
    assert state["loop"] is loop and state["connected_explicitly"]
    assert state["open"] is not connected_per_module.case[1]
    await write_and_check(database, module_items, connected_per_module.ledger, "first")


@pytest.mark.anyio
async def test_module_fixture_in_a_transaction(
    connected_per_module: ModuleConnection, rolled_back_transaction: None
) -> None:
    database, ledger = connected_per_module.database, connected_per_module.ledger
    assert asyncio.get_running_loop() is connected_per_module.loop
    # The queries of this task run on its connection, inside the fixture's transaction;
    # tasks that share the connection see it too (sibling tasks would not). With
    # force_rollback the connection is the session's, and the fixture's transaction a
    # savepoint nested in the session's transaction.
    connection = database.connection()
    assert connection.in_transaction()
    assert connection.in_nested_transaction() is connected_per_module.case[1]
    written_before = len(ledger.writes)
    await write_and_check(connection, module_items, ledger, "in-transaction")
    # Rolled back at the end of the test: forget these rows.
    ledger.forget_since(written_before)


@pytest.mark.anyio
async def test_module_fixture_keeps_its_rows(connected_per_module: ModuleConnection) -> None:
    database, ledger = connected_per_module.database, connected_per_module.ledger
    assert asyncio.get_running_loop() is connected_per_module.loop
    # The earlier test's transaction was rolled back; the module fixture's connection (with
    # force_rollback its session) lasted from test to test.
    assert set(ledger.visible()) == {"first", "first-tg"}
    await write_and_check(database, module_items, ledger, "last")
    [state] = database.loop_states()
    assert state["loop"] is connected_per_module.loop
