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
import sqlite3
from collections.abc import Iterator

import pytest
import sqlalchemy

from databases import Database, DatabaseURL
from tests import admin
from tests.loops import (
    committed_rows,
    create_table,
    insert_and_select,
    is_sqlite,
    make_table,
    url_id,
)
from tests.settings import DATABASE_URLS

per_test_items = make_table("loops_scp_per_test")
sync_items = make_table("loops_scp_sync")
sync_module_items = make_table("loops_scp_sync_mod")
mixed_items = make_table("loops_scp_mixed")
TABLES = (per_test_items, sync_items, sync_module_items, mixed_items)

Case = tuple[str, bool]
CASES: list[Case] = [(url, rollback) for url in DATABASE_URLS for rollback in (False, True)]

# Small pools: every loop gets a pool of its own, and the database servers are shared.
SMALL_POOL = {"min_size": 1, "max_size": 4}


def case_id(case: Case) -> str:
    url, rollback = case
    return f"{url_id(url)}-{'rollback' if rollback else 'plain'}"


class Ledger:
    """What each loop wrote, and so what a loop should see: with force_rollback only the rows
    written in the same loop (and still in its open transaction), otherwise all of them."""

    def __init__(self, force_rollback: bool) -> None:
        self.force_rollback = force_rollback
        # (loop, tag, number of rows); the loops are kept alive on purpose, so that a new
        # loop can never be mistaken for an old one.
        self.writes: list[tuple[asyncio.AbstractEventLoop, str, int]] = []

    def wrote(self, tag: str, count: int) -> None:
        self.writes.append((asyncio.get_running_loop(), tag, count))

    def rolled_back(self, loop: asyncio.AbstractEventLoop) -> None:
        """`loop`'s state was closed: with force_rollback, what it wrote is gone."""
        if self.force_rollback:
            self.writes = [write for write in self.writes if write[0] is not loop]

    def visible(self) -> dict[str, int]:
        loop = asyncio.get_running_loop()
        return {
            tag: count
            for written_in, tag, count in self.writes
            if not self.force_rollback or written_in is loop
        }

    def committed(self) -> list[tuple[str, int]]:
        if self.force_rollback:
            return []
        return sorted((tag, value) for _, tag, count in self.writes for value in range(count))


async def seen(database: Database, table: sqlalchemy.Table) -> dict[str, int]:
    """How many rows of each tag the running loop sees."""
    query = sqlalchemy.select(table.c.tag, sqlalchemy.func.count()).group_by(table.c.tag)
    return {row[0]: row[1] for row in await database.fetch_all(query)}


LOCK_WAIT = 3  # seconds


def assert_unlocked(url: str, table: sqlalchemy.Table) -> None:
    """Lock `table` exclusively through a connection of its own, waiting at most `LOCK_WAIT`
    seconds: this fails while any other connection still has a transaction that used it."""
    if is_sqlite(url):
        conn = sqlite3.connect(DatabaseURL(url).database, timeout=LOCK_WAIT, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return

    async def lock() -> None:
        async with Database(url) as database, database.connection() as connection:
            if DatabaseURL(url).dialect == "postgresql":
                async with connection.transaction(force_rollback=True):
                    await connection.execute(f"SET LOCAL lock_timeout = '{LOCK_WAIT}s'")
                    await connection.execute(f"LOCK TABLE {table.name} IN ACCESS EXCLUSIVE MODE")
            else:
                await connection.execute(f"SET SESSION lock_wait_timeout = {LOCK_WAIT}")
                await connection.execute(f"LOCK TABLES {table.name} WRITE")
                await connection.execute("UNLOCK TABLES")

    asyncio.run(lock())


def drop_tables(url: str, *tables: sqlalchemy.Table) -> None:
    """Drop tables through `tests.admin` (which waits at most 20 s for a lock). On PostgreSQL,
    first end any server connection still holding a lock on them: one a failed test left
    behind must not keep them (their names are unique to the module and process)."""
    for table in tables:
        if DatabaseURL(url).dialect == "postgresql":
            admin.raw_fetch_all(
                url,
                "SELECT pg_terminate_backend(l.pid) FROM pg_locks l "
                "JOIN pg_class c ON c.oid = l.relation "
                f"WHERE c.relname = '{table.name}' AND l.pid <> pg_backend_pid()",
            )
        admin.raw_execute(url, f"DROP TABLE IF EXISTS {table.name}")


def make_databases() -> dict[Case, Database]:
    # Created at import time, outside any event loop, as applications do.
    return {case: Database(case[0], force_rollback=case[1], **SMALL_POOL) for case in CASES}


PER_TEST = make_databases()
SYNC_PER_TEST = make_databases()
SYNC_PER_MODULE = make_databases()
MIXED = make_databases()

LEDGERS: dict[tuple[str, Case], Ledger] = {}


def ledger_for(arrangement: str, case: Case) -> Ledger:
    return LEDGERS.setdefault((arrangement, case), Ledger(case[1]))


def single_writer(case: Case) -> bool:
    """SQLite with force_rollback: see the module docstring."""
    return case[1] and is_sqlite(case[0])


async def write_and_check(
    database: Database, table: sqlalchemy.Table, ledger: Ledger, tag: str, count: int = 30
) -> None:
    """Check what this loop sees, `gather()` 2 * `count` inserts and selects, check again."""
    assert await seen(database, table) == ledger.visible()
    assert await insert_and_select(database, table, tag, count) == list(range(count))
    ledger.wrote(tag, count)
    assert await seen(database, table) == ledger.visible()


def state_of(database: Database, loop: asyncio.AbstractEventLoop) -> dict[str, object]:
    [state] = [state for state in database.loop_states() if state["loop"] is loop]
    return state


def check_ended(case: Case, table: sqlalchemy.Table, ledger: Ledger) -> None:
    """What was committed, checked from another connection; and nothing holds a lock."""
    assert committed_rows(case[0], table) == ledger.committed()
    if not case[1]:
        assert len(ledger.committed()) >= 60
    assert_unlocked(case[0], table)


@pytest.fixture(autouse=True)
def empty_tables() -> Iterator[None]:
    """Replaces the suite's autouse fixture of this name: this module leaves the shared tables
    alone, and on SQLite the module loop's open rollback transaction would keep that
    fixture's cleanup from committing while it lasts."""
    yield


@pytest.fixture(scope="module", autouse=True)
def drop_tables_at_module_end() -> Iterator[None]:
    """Set up before the module loop, so torn down after it closed (which also closes what a
    failed test left open in it)."""
    yield
    for url in DATABASE_URLS:
        drop_tables(url, *TABLES)


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    case: Case = request.param
    for table in TABLES:
        create_table(case[0], table)  # created if need be, and emptied
    yield case
    # Only after a failure is any of them still connected.
    for databases in (PER_TEST, SYNC_PER_TEST, SYNC_PER_MODULE, MIXED):
        if databases[case].is_connected:
            asyncio.run(databases[case].disconnect())


# 1. Every test connects in its own function loop.

SEEN_LOOPS: list[asyncio.AbstractEventLoop] = []


def new_function_loop() -> asyncio.AbstractEventLoop:
    """The running loop, checked to be new, with every earlier test's loop closed."""
    loop = asyncio.get_running_loop()
    assert all(loop is not seen_loop for seen_loop in SEEN_LOOPS)
    assert all(seen_loop.is_closed() for seen_loop in SEEN_LOOPS)
    SEEN_LOOPS.append(loop)
    return loop


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


@pytest.fixture
def sync_connected(case: Case) -> Iterator[Database]:
    database = SYNC_PER_TEST[case]
    assert not database.is_connected
    asyncio.run(database.connect())
    assert database.is_connected
    # asyncio.run() closed its loop, and that loop's state with it.
    assert database.loop_states() == []
    yield database
    asyncio.run(database.disconnect())
    assert not database.is_connected
    assert database.loop_states() == []


@pytest.fixture(scope="module")
def sync_connected_for_module(case: Case) -> Iterator[Database]:
    database = SYNC_PER_MODULE[case]
    assert not database.is_connected
    asyncio.run(database.connect())
    assert database.is_connected
    assert database.loop_states() == []
    yield database
    asyncio.run(database.disconnect())
    assert not database.is_connected
    assert database.loop_states() == []


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
