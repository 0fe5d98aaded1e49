"""A module-global `Database` in pytest-asyncio's function-scoped loops, connected in three ways,
and in module-loop tests mixed with function-loop tests in the same module.

1. Every test connects in its own function loop (`async with database:`, or `connect()` in
   one test and `disconnect()` in a later one).
2. A synchronous fixture connects with `asyncio.run(database.connect())` and disconnects with
   `asyncio.run(database.disconnect())`, per test and per module; the tests query in their
   own function loops without connecting.
3. Tests with `loop_scope="module"` and function-scoped tests take turns with one database:
   a module-loop test connects, function-loop tests use it, connect and disconnect in their
   own loops, a later module-loop test disconnects, and then tests connect per test again.

Each arrangement has its own databases and table, and runs once per URL with
`force_rollback=True` and without. With force_rollback a loop sees only what it wrote itself,
and only until its state closes (when its loop ends, or at `disconnect()`); without it every
loop sees every committed row. At the end of each arrangement separate connections check
what was committed (nothing, with force_rollback) and that no connection still holds a lock.

SQLite allows one writer at a time, and with force_rollback a loop's transaction keeps the
file's write lock until its state closes: while the module loop holds it, function loops
only read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import sqlalchemy

from databases import Database
from tests.loops import is_sqlite, make_table, support
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
    shared_tables_left_alone_fixture,
    write_and_check,
)

per_test_items = make_table("loops_scp_per_test")
sync_items = make_table("loops_scp_sync")
sync_module_items = make_table("loops_scp_sync_mod")
mixed_items = make_table("loops_scp_mixed")
TABLES = (per_test_items, sync_items, sync_module_items, mixed_items)

# Created at import time, outside any event loop, as applications do.
PER_TEST = make_databases(**SMALL_POOL)
SYNC_PER_TEST = make_databases(**SMALL_POOL)
SYNC_PER_MODULE = make_databases(**SMALL_POOL)
MIXED = make_databases(**SMALL_POOL)

ledger_for = Ledgers()


def single_writer(case: Case) -> bool:
    """SQLite with force_rollback: see the module docstring."""
    return case[1] and is_sqlite(case[0])


def state_of(database: Database, loop: asyncio.AbstractEventLoop) -> dict[str, object]:
    [state] = [state for state in database.loop_states() if state["loop"] is loop]
    return state


def check_ended(case: Case, table: sqlalchemy.Table, ledger: Ledger) -> None:
    """What was committed, checked from another connection (at least 60 rows without
    force_rollback); and nothing holds a lock."""
    support.check_ended(case[0], table, ledger, at_least=60)


empty_tables = shared_tables_left_alone_fixture()
drop_tables_at_module_end = drop_at_module_end_fixture("drop_tables_at_module_end", *TABLES)
case = case_fixture(TABLES, PER_TEST, SYNC_PER_TEST, SYNC_PER_MODULE, MIXED)


# 1. Every test connects in its own function loop.

# The running loop, checked to be new, with every earlier test's loop closed.
new_function_loop = NewLoops()


@pytest.mark.asyncio
@pytest.mark.parametrize("round_", range(2))
async def test_connect_per_test(case: Case, round_: int) -> None:
    database = PER_TEST[case]
    loop = new_function_loop()
    assert not database.is_connected
    assert database.loop_states() == []
    async with database as entered:
        assert entered is database
        assert database.is_connected
        [state] = database.loop_states()
        assert state["loop"] is loop and state["connected_explicitly"] and state["open"]
        # With force_rollback none of the earlier tests' rows are visible.
        await write_and_check(database, per_test_items, ledger_for("per-test", case), f"r{round_}")
    assert not database.is_connected
    assert database.loop_states() == []


@pytest.mark.asyncio
async def test_connect_without_disconnecting(case: Case) -> None:
    database = PER_TEST[case]
    loop = new_function_loop()
    assert not database.is_connected
    await database.connect()
    assert state_of(database, loop)["connected_explicitly"]
    await write_and_check(database, per_test_items, ledger_for("per-test", case), "kept")
    # No disconnect(): the loop closes this loop's state when it ends.


@pytest.mark.asyncio
async def test_use_and_disconnect_in_a_later_test(case: Case) -> None:
    database = PER_TEST[case]
    loop = new_function_loop()
    # Connected by the previous test, whose loop closed its own state when it ended: with
    # force_rollback its rows are gone.
    assert database.is_connected
    assert database.loop_states() == []
    await write_and_check(database, per_test_items, ledger_for("per-test", case), "later")
    assert not state_of(database, loop)["connected_explicitly"]
    await database.disconnect()
    assert not database.is_connected
    assert database.loop_states() == []


def test_connect_per_test_committed(case: Case) -> None:
    assert not PER_TEST[case].is_connected
    check_ended(case, per_test_items, ledger_for("per-test", case))


# 2. A synchronous fixture connects with asyncio.run().


def connected_with_asyncio_run(database: Database) -> Iterator[Database]:
    """Connect `database` with `asyncio.run()`, yield it, then disconnect it the same way."""
    assert not database.is_connected
    asyncio.run(database.connect())
    assert database.is_connected
    # asyncio.run() closed its loop, and that loop's state with it.
    assert database.loop_states() == []
    yield database
    asyncio.run(database.disconnect())
    assert not database.is_connected
    assert database.loop_states() == []


@pytest.fixture
def sync_connected(case: Case) -> Iterator[Database]:
    yield from connected_with_asyncio_run(SYNC_PER_TEST[case])


@pytest.fixture(scope="module")
def sync_connected_for_module(case: Case) -> Iterator[Database]:
    yield from connected_with_asyncio_run(SYNC_PER_MODULE[case])


@pytest.mark.asyncio
@pytest.mark.parametrize("round_", range(2))
async def test_sync_fixture_per_test(case: Case, sync_connected: Database, round_: int) -> None:
    database = sync_connected
    loop = asyncio.get_running_loop()
    assert database.is_connected
    assert database.loop_states() == []
    await write_and_check(database, sync_items, ledger_for("sync", case), f"r{round_}")
    [state] = database.loop_states()
    assert state["loop"] is loop and not state["connected_explicitly"]


def test_sync_fixture_per_test_committed(case: Case) -> None:
    assert not SYNC_PER_TEST[case].is_connected
    check_ended(case, sync_items, ledger_for("sync", case))


@pytest.mark.asyncio
@pytest.mark.parametrize("round_", range(3))
async def test_sync_fixture_per_module(
    case: Case, sync_connected_for_module: Database, round_: int
) -> None:
    database = sync_connected_for_module
    loop = asyncio.get_running_loop()
    assert database.is_connected
    # The states of the earlier tests' loops were closed when those loops ended.
    assert database.loop_states() == []
    await write_and_check(
        database, sync_module_items, ledger_for("sync-module", case), f"r{round_}"
    )
    [state] = database.loop_states()
    assert state["loop"] is loop and not state["connected_explicitly"]


def test_sync_fixture_per_module_committed(case: Case, sync_connected_for_module: Database) -> None:
    # Still connected: the function loops' states were closed all the same.
    assert sync_connected_for_module.is_connected
    assert sync_connected_for_module.loop_states() == []
    check_ended(case, sync_module_items, ledger_for("sync-module", case))


# 3. Module-loop tests and function-loop tests take turns.

MODULE_LOOP: list[asyncio.AbstractEventLoop] = []


def module_loop() -> asyncio.AbstractEventLoop:
    """The running loop, checked to be the module loop of every module-loop test."""
    loop = asyncio.get_running_loop()
    if not MODULE_LOOP:
        MODULE_LOOP.append(loop)
    assert loop is MODULE_LOOP[0]
    return loop


@pytest.mark.asyncio(loop_scope="module")
async def test_mixed_module_loop_connects(case: Case) -> None:
    database = MIXED[case]
    loop = module_loop()
    assert not database.is_connected
    await database.connect()
    assert database.is_connected
    [state] = database.loop_states()
    assert state["loop"] is loop and state["connected_explicitly"]
    assert await seen(database, mixed_items) == {}


@pytest.mark.asyncio
async def test_mixed_function_loop_uses_it(case: Case) -> None:
    database = MIXED[case]
    loop = asyncio.get_running_loop()
    assert loop is not MODULE_LOOP[0]
    assert database.is_connected
    await write_and_check(database, mixed_items, ledger_for("mixed", case), "function-0")
    assert not state_of(database, loop)["connected_explicitly"]
    assert len(database.loop_states()) == 2


@pytest.mark.asyncio(loop_scope="module")
async def test_mixed_module_loop_writes(case: Case) -> None:
    database = MIXED[case]
    loop = module_loop()
    # The function loop's state was closed when its loop ended.
    [state] = database.loop_states()
    assert state["loop"] is loop
    await write_and_check(database, mixed_items, ledger_for("mixed", case), "module-0")


@pytest.mark.asyncio
async def test_mixed_function_loop_connects_and_disconnects(case: Case) -> None:
    database = MIXED[case]
    ledger = ledger_for("mixed", case)
    loop = asyncio.get_running_loop()
    async with database:
        assert state_of(database, loop)["connected_explicitly"]
        # With force_rollback the module loop's rows are not visible here.
        if single_writer(case):
            assert await seen(database, mixed_items) == ledger.visible() == {}
        else:
            await write_and_check(database, mixed_items, ledger, "function-block")
    # The module loop connected and has not disconnected: still connected. This loop's
    # state was closed, and with force_rollback its rows rolled back.
    assert database.is_connected
    assert [state["loop"] for state in database.loop_states()] == [MODULE_LOOP[0]]
    ledger.rolled_back(loop)
    # The next query opens a fresh state for this loop.
    assert await seen(database, mixed_items) == ledger.visible()
    assert len(database.loop_states()) == 2


@pytest.mark.asyncio(loop_scope="module")
async def test_mixed_module_loop_disconnects(case: Case) -> None:
    database = MIXED[case]
    ledger = ledger_for("mixed", case)
    loop = module_loop()
    # The module loop's state lasted from test to test: with force_rollback it still sees
    # its own rows, and only those.
    visible = ledger.visible()
    assert "module-0" in visible
    if case[1]:
        assert set(visible) == {"module-0"}
    assert await seen(database, mixed_items) == visible
    await database.disconnect()
    assert not database.is_connected
    assert database.loop_states() == []
    ledger.rolled_back(loop)


@pytest.mark.asyncio
async def test_mixed_function_loop_connects_again(case: Case) -> None:
    database = MIXED[case]
    assert not database.is_connected
    async with database:
        await write_and_check(database, mixed_items, ledger_for("mixed", case), "function-1")
    assert not database.is_connected
    assert database.loop_states() == []


@pytest.mark.asyncio(loop_scope="module")
async def test_mixed_module_loop_connects_again(case: Case) -> None:
    database = MIXED[case]
    loop = module_loop()
    assert not database.is_connected
    async with database:
        [state] = database.loop_states()
        assert state["loop"] is loop and state["connected_explicitly"]
        # A fresh state in the same loop: with force_rollback, "module-0" was rolled back.
        await write_and_check(database, mixed_items, ledger_for("mixed", case), "module-1")
    assert not database.is_connected
    assert database.loop_states() == []


def test_mixed_committed(case: Case) -> None:
    assert not MIXED[case].is_connected
    check_ended(case, mixed_items, ledger_for("mixed", case))
