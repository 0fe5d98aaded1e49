"""A module-global `Database` connected by a module-scoped fixture in pytest-asyncio's module
loop, used by tests in that module loop and by tests in function-scoped loops, interleaved.

Runs once per URL, with `force_rollback=True` and without. With force_rollback the module
loop's state (its connection and rollback transaction) lasts from one module-loop test to the
next, so those tests see each other's rows, while each function loop gets a state of its own
that is closed, and its rows rolled back, when its loop ends. Without force_rollback every loop
sees every committed row. The fixture disconnects at the end, in the module loop; separate
connections then check what was committed (nothing, with force_rollback) and that no
connection still holds a lock.

SQLite allows one writer at a time, and with force_rollback a loop's transaction keeps the
file's write lock until its state closes. So in that case the function loops write only until
the module loop writes, and only read after that.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
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

items = make_table("loops_mod_items")

Case = tuple[str, bool]
CASES: list[Case] = [(url, rollback) for url in DATABASE_URLS for rollback in (False, True)]

# Created at import time, outside any event loop, as applications do. Small pools: every loop
# gets a pool of its own, and the database servers are shared.
SMALL_POOL = {"min_size": 1, "max_size": 4}
DATABASES = {case: Database(case[0], force_rollback=case[1], **SMALL_POOL) for case in CASES}


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


@dataclasses.dataclass
class ModuleLoop:
    url: str
    force_rollback: bool
    database: Database
    module_loop: asyncio.AbstractEventLoop
    ledger: Ledger

    @property
    def single_writer(self) -> bool:
        """SQLite with force_rollback: see the module docstring."""
        return self.force_rollback and is_sqlite(self.url)

    async def write_and_check(self, tag: str, count: int = 30) -> None:
        """Check what this loop sees, `gather()` 2 * `count` inserts and selects, check again."""
        assert await seen(self.database, items) == self.ledger.visible()
        assert await insert_and_select(self.database, items, tag, count) == list(range(count))
        self.ledger.wrote(tag, count)
        assert await seen(self.database, items) == self.ledger.visible()

    def check_states(self, *loops: asyncio.AbstractEventLoop) -> None:
        """The database holds states exactly for the module loop and `loops`: the states of
        function loops that ended were closed with them."""
        states = self.database.loop_states()
        assert all(state["alive"] and state["open"] for state in states), states
        expected = {id(self.module_loop)} | {id(loop) for loop in loops}
        assert {id(state["loop"]) for state in states} == expected, states
        assert len(states) == len(expected), states
        explicit = [state["loop"] for state in states if state["connected_explicitly"]]
        assert explicit == [self.module_loop]


@pytest.fixture(autouse=True)
def empty_tables() -> Iterator[None]:
    """Replaces the suite's autouse fixture of this name: this module leaves the shared tables
    alone, and on SQLite the module loop's open rollback transaction would keep that
    fixture's cleanup from committing until the module is done."""
    yield


@pytest.fixture(scope="module", autouse=True)
def drop_items_at_module_end() -> Iterator[None]:
    """Set up before the module loop, so torn down after it closed (which also closes what a
    failed test left open in it)."""
    yield
    for url in DATABASE_URLS:
        drop_tables(url, items)


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def case(request: pytest.FixtureRequest) -> Case:
    case: Case = request.param
    create_table(case[0], items)  # created if need be, and emptied
    return case


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def connected(case: Case) -> AsyncIterator[ModuleLoop]:
    url, force_rollback = case
    database = DATABASES[case]
    assert not database.is_connected
    await database.connect()
    assert database.is_connected
    # No query here: what the tests see is up to them (see the module docstring on SQLite).
    info = ModuleLoop(
        url, force_rollback, database, asyncio.get_running_loop(), Ledger(force_rollback)
    )

    yield info

    assert asyncio.get_running_loop() is info.module_loop
    assert database.is_connected
    # The module loop's state is still open: with force_rollback its rows are still there.
    assert await seen(database, items) == info.ledger.visible()
    await database.disconnect()
    assert not database.is_connected
    assert database.loop_states() == []
    assert await asyncio.to_thread(committed_rows, url, items) == info.ledger.committed()
    await asyncio.to_thread(assert_unlocked, url, items)


@pytest.mark.asyncio
@pytest.mark.parametrize("round_", range(2))
async def test_function_loop_before_module_loop_queries(connected: ModuleLoop, round_: int) -> None:
    loop = asyncio.get_running_loop()
    assert loop is not connected.module_loop
    assert connected.database.is_connected
    connected.check_states()
    # This loop's state opens on first use: with force_rollback it sees none of the earlier
    # function loops' rows, without it all of them.
    await connected.write_and_check(f"function-{round_}")
    connected.check_states(loop)


@pytest.mark.asyncio(loop_scope="module")
async def test_module_loop_writes(connected: ModuleLoop) -> None:
    assert asyncio.get_running_loop() is connected.module_loop
    connected.check_states()
    await connected.write_and_check("module-0", 40)
    connected.check_states()


@pytest.mark.asyncio
async def test_function_loop_after_module_loop_wrote(connected: ModuleLoop) -> None:
    loop = asyncio.get_running_loop()
    assert loop is not connected.module_loop
    if connected.single_writer:
        assert await seen(connected.database, items) == connected.ledger.visible() == {}
    else:
        await connected.write_and_check("function-2")
    connected.check_states(loop)


@pytest.mark.asyncio(loop_scope="module")
async def test_module_loop_keeps_its_rows(connected: ModuleLoop) -> None:
    assert asyncio.get_running_loop() is connected.module_loop
    visible = connected.ledger.visible()
    assert "module-0" in visible
    if connected.force_rollback:
        assert set(visible) == {"module-0"}
    await connected.write_and_check("module-1")
    connected.check_states()


@pytest.mark.asyncio
async def test_connect_and_disconnect_in_function_loop(connected: ModuleLoop) -> None:
    database = connected.database
    loop = asyncio.get_running_loop()
    async with database:
        [state] = [state for state in database.loop_states() if state["loop"] is loop]
        assert state["connected_explicitly"]
        if connected.single_writer:
            assert await seen(database, items) == connected.ledger.visible() == {}
        else:
            await connected.write_and_check("function-block")
    # The module loop connected and has not disconnected: still connected. This loop's
    # state was closed, and with force_rollback its rows rolled back.
    assert database.is_connected
    connected.check_states()
    connected.ledger.rolled_back(loop)

    # The next query opens a fresh state for this loop.
    if connected.single_writer:
        assert await seen(database, items) == connected.ledger.visible() == {}
    else:
        await connected.write_and_check("function-after-block")
    connected.check_states(loop)


def test_nothing_committed_with_force_rollback(connected: ModuleLoop) -> None:
    assert connected.database.is_connected
    assert not connected.module_loop.is_closed()
    assert committed_rows(connected.url, items) == connected.ledger.committed()
    if not connected.force_rollback:
        assert len(connected.ledger.committed()) >= 30 * 6
