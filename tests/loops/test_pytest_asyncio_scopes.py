"""A module-global `Database` in pytest-asyncio's function-scoped loops, connected in three ways,
and in module-loop tests mixed with function-loop tests in the same module.

1. Every test connects in its own function loop (`async with database:`, or `connect()` in
   one test and `disconnect()` in a later one).
2. A synchronous fixture connects with `asyncio.run(database.connect())` and disconnects with
   `asyncio.run(database.disconnect())`, per test and per class; the tests query in their
   own function loops without connecting.
3. Tests with `loop_scope="module"` and function-scoped tests take turns with one database:
   a module-loop test connects, function-loop tests use it, connect and disconnect in their
   own loops, a later module-loop test disconnects, and then tests connect per test again.

Each arrangement has its own databases and table, and runs once per URL with
`force_rollback=True` and without. Without force_rollback every loop has its own pool and
sees every committed row. With force_rollback every loop works in the database's one session
(one connection in one transaction, on the library's session loop): it begins at the first
`connect()` and ends, rolled back, only at the last `disconnect()`, when no other live loop
is connected. So every loop sees every row written since the session began, in any loop,
also after the loop that wrote them or the loop that connected has ended (a loop that ends
without disconnecting ends nothing), and a new session starts empty. Loops that only query
hold no state. At the end of each arrangement separate connections check what was committed
(nothing, with force_rollback) and that no connection still holds a lock.

On SQLite every loop writes too: with force_rollback they all write through the session's
one connection, which holds the file's write lock until the session ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import sqlalchemy

from databases import Database
from tests.loops import committed_rows, make_table, support
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
    write_and_check,
)

per_test_items = make_table("loops_scp_per_test")
sync_items = make_table("loops_scp_sync")
sync_class_items = make_table("loops_scp_sync_cls")
mixed_items = make_table("loops_scp_mixed")
TABLES = (per_test_items, sync_items, sync_class_items, mixed_items)

# Created at import time, outside any event loop, as applications do.
PER_TEST = make_databases(**SMALL_POOL)
SYNC_PER_TEST = make_databases(**SMALL_POOL)
SYNC_PER_CLASS = make_databases(**SMALL_POOL)
MIXED = make_databases(**SMALL_POOL)

ledger_for = Ledgers()


def state_of(database: Database, loop: asyncio.AbstractEventLoop) -> dict[str, object]:
    [state] = [state for state in database.loop_states() if state["loop"] is loop]
    return state


def states_of(database: Database, loop: asyncio.AbstractEventLoop) -> list[dict[str, object]]:
    return [state for state in database.loop_states() if state["loop"] is loop]


def check_queried_without_connecting(
    database: Database, force_rollback: bool, loop: asyncio.AbstractEventLoop
) -> None:
    """`loop` queried without connecting: without force_rollback its state opened on first
    use; with force_rollback it only forwarded its statements to the session (no state)."""
    states = states_of(database, loop)
    if force_rollback:
        assert states == []
    else:
        [state] = states
        assert state["open"] and not state["connected_explicitly"]


def check_ended(case: Case, table: sqlalchemy.Table, ledger: Ledger) -> None:
    """What was committed, checked from another connection (at least 60 rows without
    force_rollback); and nothing holds a lock."""
    support.check_ended(case[0], table, ledger, at_least=60)


drop_tables_at_module_end = drop_at_module_end_fixture("drop_tables_at_module_end", *TABLES)
case = case_fixture(TABLES, PER_TEST, SYNC_PER_TEST, SYNC_PER_CLASS, MIXED)


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
        assert state["loop"] is loop and state["connected_explicitly"]
        # With force_rollback the connection is the session's, not this loop's.
        assert state["open"] is not case[1]
        # With force_rollback each test's connect() began a new session: none of the
        # earlier tests' rows are visible.
        ledger = ledger_for("per-test", case)
        assert set(ledger.visible()) == (set() if case[1] else {f"r{n}" for n in range(round_)})
        await write_and_check(database, per_test_items, ledger, f"r{round_}")
    assert not database.is_connected
    assert database.loop_states() == []
    # The last (only) disconnect: with force_rollback the session was rolled back.
    ledger.session_ended()
    assert await asyncio.to_thread(committed_rows, case[0], per_test_items) == (ledger.committed())


@pytest.mark.asyncio
async def test_connect_without_disconnecting(case: Case) -> None:
    database = PER_TEST[case]
    loop = new_function_loop()
    assert not database.is_connected
    await database.connect()
    assert state_of(database, loop)["connected_explicitly"]
    await write_and_check(database, per_test_items, ledger_for("per-test", case), "kept")
    # No disconnect(): the loop closes this loop's state when it ends, and with
    # force_rollback the session, with these rows, outlives it.


@pytest.mark.asyncio
async def test_use_and_disconnect_in_a_later_test(case: Case) -> None:
    database = PER_TEST[case]
    loop = new_function_loop()
    ledger = ledger_for("per-test", case)
    # Connected by the previous test, whose loop closed its own state when it ended: with
    # force_rollback the session it began goes on, with its rows.
    assert database.is_connected
    assert database.loop_states() == []
    assert "kept" in ledger.visible()
    await write_and_check(database, per_test_items, ledger, "later")
    check_queried_without_connecting(database, case[1], loop)
    # No live loop is connected (the one that connected ended): this disconnect is the last,
    # and with force_rollback rolls the session back.
    await database.disconnect()
    assert not database.is_connected
    assert database.loop_states() == []
    ledger.session_ended()


def test_connect_per_test_committed(case: Case) -> None:
    assert not PER_TEST[case].is_connected
    ledger = ledger_for("per-test", case)
    assert set(ledger.visible()) == (set() if case[1] else {"r0", "r1", "kept", "later"})
    check_ended(case, per_test_items, ledger)


# 2. A synchronous fixture connects with asyncio.run().


def connected_with_asyncio_run(
    database: Database, table: sqlalchemy.Table, ledger: Ledger
) -> Iterator[Database]:
    """Connect `database` with `asyncio.run()`, yield it, then disconnect it the same way
    and check what `ledger` says was committed."""
    assert not database.is_connected
    asyncio.run(database.connect())
    assert database.is_connected
    # asyncio.run() closed its loop, and that loop's state with it; with force_rollback the
    # session it began goes on.
    assert database.loop_states() == []
    yield database
    asyncio.run(database.disconnect())
    assert not database.is_connected
    assert database.loop_states() == []
    # The last disconnect: with force_rollback the session was rolled back.
    ledger.session_ended()
    support.check_ended(str(database.url), table, ledger, at_least=0)


@pytest.fixture
def sync_connected(case: Case) -> Iterator[Database]:
    yield from connected_with_asyncio_run(SYNC_PER_TEST[case], sync_items, ledger_for("sync", case))


@pytest.fixture(scope="class")
def sync_connected_for_class(case: Case) -> Iterator[Database]:
    yield from connected_with_asyncio_run(
        SYNC_PER_CLASS[case], sync_class_items, ledger_for("sync-class", case)
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("round_", range(2))
async def test_sync_fixture_per_test(case: Case, sync_connected: Database, round_: int) -> None:
    database = sync_connected
    loop = asyncio.get_running_loop()
    assert database.is_connected
    assert database.loop_states() == []
    ledger = ledger_for("sync", case)
    # With force_rollback the fixture's disconnect ended the earlier test's session.
    assert set(ledger.visible()) == (set() if case[1] else {f"r{n}" for n in range(round_)})
    await write_and_check(database, sync_items, ledger, f"r{round_}")
    check_queried_without_connecting(database, case[1], loop)
    assert len(database.loop_states()) == (0 if case[1] else 1)


def test_sync_fixture_per_test_committed(case: Case) -> None:
    assert not SYNC_PER_TEST[case].is_connected
    ledger = ledger_for("sync", case)
    assert set(ledger.visible()) == (set() if case[1] else {"r0", "r1"})
    check_ended(case, sync_items, ledger)


class TestSyncFixturePerClass:
    """The fixture connects once for the tests of this class, and disconnects (with
    force_rollback, ending the session) when they are done: before the next arrangement,
    which on SQLite could not write while this session holds the file's write lock."""

    @pytest.mark.asyncio
    @pytest.mark.parametrize("round_", range(3))
    async def test_sync_fixture_per_class(
        self, case: Case, sync_connected_for_class: Database, round_: int
    ) -> None:
        database = sync_connected_for_class
        loop = asyncio.get_running_loop()
        assert database.is_connected
        # The states of the earlier tests' loops were closed when those loops ended.
        assert database.loop_states() == []
        ledger = ledger_for("sync-class", case)
        # One session for the class: every earlier test's rows, with force_rollback too.
        assert set(ledger.visible()) == {f"r{n}" for n in range(round_)}
        await write_and_check(database, sync_class_items, ledger, f"r{round_}")
        check_queried_without_connecting(database, case[1], loop)
        assert len(database.loop_states()) == (0 if case[1] else 1)

    def test_sync_fixture_per_class_committed(
        self, case: Case, sync_connected_for_class: Database
    ) -> None:
        # Still connected: the function loops' states were closed all the same.
        assert sync_connected_for_class.is_connected
        assert sync_connected_for_class.loop_states() == []
        ledger = ledger_for("sync-class", case)
        assert set(ledger.visible()) == {"r0", "r1", "r2"}
        if case[1]:
            # The session still holds every test's rows, uncommitted (and on SQLite the
            # file's write lock): the fixture's disconnect rolls them back, then checks
            # that nothing was committed and nothing is locked.
            assert committed_rows(case[0], sync_class_items) == []
        else:
            check_ended(case, sync_class_items, ledger)


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
    assert state["open"] is not case[1]
    assert await seen(database, mixed_items) == {}


@pytest.mark.asyncio
async def test_mixed_function_loop_uses_it(case: Case) -> None:
    database = MIXED[case]
    loop = asyncio.get_running_loop()
    assert loop is not MODULE_LOOP[0]
    assert database.is_connected
    await write_and_check(database, mixed_items, ledger_for("mixed", case), "function-0")
    check_queried_without_connecting(database, case[1], loop)
    assert len(database.loop_states()) == (1 if case[1] else 2)


@pytest.mark.asyncio(loop_scope="module")
async def test_mixed_module_loop_writes(case: Case) -> None:
    database = MIXED[case]
    loop = module_loop()
    # Without force_rollback the function loop's state was closed when its loop ended.
    [state] = database.loop_states()
    assert state["loop"] is loop
    # The ended function loop's rows are visible here, with force_rollback too.
    ledger = ledger_for("mixed", case)
    assert set(ledger.visible()) == {"function-0"}
    await write_and_check(database, mixed_items, ledger, "module-0")


@pytest.mark.asyncio
async def test_mixed_function_loop_connects_and_disconnects(case: Case) -> None:
    database = MIXED[case]
    ledger = ledger_for("mixed", case)
    loop = asyncio.get_running_loop()
    async with database:
        assert state_of(database, loop)["connected_explicitly"]
        # With force_rollback this loop joined the module loop's session.
        assert state_of(database, loop)["open"] is not case[1]
        assert set(ledger.visible()) == {"function-0", "module-0"}
        await write_and_check(database, mixed_items, ledger, "function-block")
    # The module loop connected and has not disconnected: still connected. This loop's
    # state was closed; with force_rollback the session goes on, with this loop's rows.
    assert database.is_connected
    assert [state["loop"] for state in database.loop_states()] == [MODULE_LOOP[0]]
    # Without force_rollback the next query opens a fresh state for this loop.
    assert await seen(database, mixed_items) == ledger.visible()
    assert "function-block" in ledger.visible()
    check_queried_without_connecting(database, case[1], loop)
    assert len(database.loop_states()) == (1 if case[1] else 2)


@pytest.mark.asyncio(loop_scope="module")
async def test_mixed_module_loop_disconnects(case: Case) -> None:
    database = MIXED[case]
    ledger = ledger_for("mixed", case)
    module_loop()
    # Every loop's rows so far (with force_rollback, all in the session).
    visible = ledger.visible()
    assert set(visible) == {"function-0", "module-0", "function-block"}
    assert await seen(database, mixed_items) == visible
    # The last loop connected: this ends the session, rolled back with force_rollback.
    await database.disconnect()
    assert not database.is_connected
    assert database.loop_states() == []
    ledger.session_ended()
    assert await asyncio.to_thread(committed_rows, case[0], mixed_items) == ledger.committed()


@pytest.mark.asyncio
async def test_mixed_function_loop_connects_again(case: Case) -> None:
    database = MIXED[case]
    ledger = ledger_for("mixed", case)
    assert not database.is_connected
    async with database:
        # With force_rollback a new session: the earlier one's rows are gone.
        assert set(ledger.visible()) == (
            set() if case[1] else {"function-0", "module-0", "function-block"}
        )
        await write_and_check(database, mixed_items, ledger, "function-1")
    assert not database.is_connected
    assert database.loop_states() == []
    ledger.session_ended()


@pytest.mark.asyncio(loop_scope="module")
async def test_mixed_module_loop_connects_again(case: Case) -> None:
    database = MIXED[case]
    loop = module_loop()
    ledger = ledger_for("mixed", case)
    assert not database.is_connected
    async with database:
        [state] = database.loop_states()
        assert state["loop"] is loop and state["connected_explicitly"]
        # A fresh state in the same loop, and with force_rollback a new session: the rows
        # of the earlier ones were rolled back.
        assert set(ledger.visible()) == (
            set() if case[1] else {"function-0", "module-0", "function-block", "function-1"}
        )
        await write_and_check(database, mixed_items, ledger, "module-1")
    assert not database.is_connected
    assert database.loop_states() == []
    ledger.session_ended()


def test_mixed_committed(case: Case) -> None:
    assert not MIXED[case].is_connected
    check_ended(case, mixed_items, ledger_for("mixed", case))
