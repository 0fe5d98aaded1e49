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
and 60 at a time from an anyio task group. With force_rollback a loop sees only what it wrote
itself, and only until its state closes; without it every loop sees every committed row. At
the end of each arrangement separate connections check what was committed (nothing, with
force_rollback) and that no connection still holds a lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
import typing
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
import sqlalchemy

from databases import Database, DatabaseURL
from tests import admin
from tests.loops import (
    committed_rows,
    count_tag,
    create_table,
    insert_and_select,
    is_sqlite,
    make_table,
    url_id,
    values_of,
)
from tests.settings import DATABASE_URLS

per_test_items = make_table("loops_anyio_per_test")
fixture_items = make_table("loops_anyio_fixture")
module_items = make_table("loops_anyio_module")
TABLES = (per_test_items, fixture_items, module_items)

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


async def seen(database: typing.Any, table: sqlalchemy.Table) -> dict[str, int]:
    """How many rows of each tag the running loop sees (`database`: or a `Connection`)."""
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
FIXTURE_PER_TEST = make_databases()
FIXTURE_PER_MODULE = make_databases()

LEDGERS: dict[tuple[str, Case], Ledger] = {}


def ledger_for(arrangement: str, case: Case) -> Ledger:
    return LEDGERS.setdefault((arrangement, case), Ledger(case[1]))


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


def check_ended(url: str, table: sqlalchemy.Table, ledger: Ledger) -> None:
    """What was committed, checked from another connection; and nothing holds a lock."""
    assert committed_rows(url, table) == ledger.committed()
    if not ledger.force_rollback:
        assert len(ledger.committed()) >= 120
    assert_unlocked(url, table)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def empty_tables() -> Iterator[None]:
    """Replaces the suite's autouse fixture of this name: this module leaves the shared tables
    alone, and on SQLite the module fixture's open rollback transaction would keep that
    fixture's cleanup from committing while it lasts."""
    yield


@pytest.fixture(scope="module", autouse=True)
def drop_tables_at_module_end() -> Iterator[None]:
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
    for databases in (PER_TEST, FIXTURE_PER_TEST, FIXTURE_PER_MODULE):
        if databases[case].is_connected:
            asyncio.run(databases[case].disconnect())


SEEN_LOOPS: list[asyncio.AbstractEventLoop] = []


def new_loop() -> asyncio.AbstractEventLoop:
    """The running loop, checked to be new, with every earlier test's loop closed."""
    loop = asyncio.get_running_loop()
    assert all(loop is not seen_loop for seen_loop in SEEN_LOOPS)
    assert all(seen_loop.is_closed() for seen_loop in SEEN_LOOPS)
    SEEN_LOOPS.append(loop)
    return loop


# 1. Every test connects in its own loop.


@pytest.mark.anyio
@pytest.mark.parametrize("round_", range(3))
async def test_connect_per_test(case: Case, round_: int) -> None:
    database = PER_TEST[case]
    loop = new_loop()
    assert not database.is_connected
    assert database.loop_states() == []
    async with database:
        [state] = database.loop_states()
        assert state["loop"] is loop and state["connected_explicitly"]
        # With force_rollback none of the earlier tests' rows are visible.
        await write_and_check(database, per_test_items, ledger_for("per-test", case), f"r{round_}")
    assert not database.is_connected
    assert database.loop_states() == []


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
    await write_and_check(database, fixture_items, ledger_for("fixture", case), f"r{round_}")


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
    await database.disconnect()
    assert not database.is_connected
    assert database.loop_states() == []
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
    assert loop not in SEEN_LOOPS
    [state] = database.loop_states()
    assert state["loop"] is loop and state["connected_explicitly"]
    await write_and_check(database, module_items, connected_per_module.ledger, "first")


@pytest.mark.anyio
async def test_module_fixture_in_a_transaction(
    connected_per_module: ModuleConnection, rolled_back_transaction: None
) -> None:
    database, ledger = connected_per_module.database, connected_per_module.ledger
    assert asyncio.get_running_loop() is connected_per_module.loop
    # The queries of this task run on its connection, inside the fixture's transaction;
    # tasks that share the connection see it too (sibling tasks would not).
    connection = database.connection()
    assert connection._transaction_stack
    written_before = len(ledger.writes)
    await write_and_check(connection, module_items, ledger, "in-transaction")
    # Rolled back at the end of the test: forget these rows.
    del ledger.writes[written_before:]


@pytest.mark.anyio
async def test_module_fixture_keeps_its_rows(connected_per_module: ModuleConnection) -> None:
    database, ledger = connected_per_module.database, connected_per_module.ledger
    assert asyncio.get_running_loop() is connected_per_module.loop
    # The earlier test's transaction was rolled back; the loop's state, with force_rollback
    # its connection and transaction, lasted from test to test.
    assert set(ledger.visible()) == {"first", "first-tg"}
    await write_and_check(database, module_items, ledger, "last")
    [state] = database.loop_states()
    assert state["loop"] is connected_per_module.loop
