"""A module-global `Database` connected by a session-scoped fixture in pytest-asyncio's session
loop, then used by tests in the session loop, in this module's module loop and in
function-scoped loops.

Runs once per URL, with `force_rollback=True` and without. With force_rollback every loop has
its own connection and rollback transaction, so a loop sees only what it wrote itself: the
session loop keeps its rows from test to test, and so does the module loop, while a function
loop's rows vanish with its loop. Without force_rollback every loop sees every committed row.
At the end a test in the session loop disconnects, which closes every loop's state (the module
loop's too, while that loop is idle but alive), and separate connections check what was
committed (nothing, with force_rollback) and that no connection still holds a lock.

Scope: `session_database` is session-scoped and runs in the session loop, but it is defined
here, so only this module sees it. Its teardown would run only at the end of the session
(pytest keeps the last parameter's instance), so the last test of each parameter disconnects
and the module-scoped `session` fixture, in the session loop as well, makes sure of it: nothing
of this module stays connected while other modules run.

SQLite allows one writer at a time, and with force_rollback a loop's transaction stays open
(holding the file's write lock once it wrote) until its state closes. So in that case the
module loop only reads, and the function loops only read once the session loop has written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import time
import typing
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

items = make_table("loops_sess_items")

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


def application_name(case: Case) -> str:
    """Names this module's PostgreSQL connections of `case` in `pg_stat_activity`."""
    return f"loops_sess_{os.getpid()}_{case_id(case)}"


def server_connections(case: Case) -> int:
    """How many PostgreSQL connections of `case`'s database the server still has, after
    giving those just closed up to two seconds to go."""
    query = (
        f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{application_name(case)}'"
    )
    deadline = time.monotonic() + 2
    while True:
        [(count,)] = admin.raw_fetch_all(case[0], query)
        if count == 0 or time.monotonic() > deadline:
            return int(count)
        time.sleep(0.05)


def make_database(case: Case) -> Database:
    options: dict[str, typing.Any] = dict(SMALL_POOL)
    if DatabaseURL(case[0]).dialect == "postgresql":
        options["server_settings"] = {"application_name": application_name(case)}
    return Database(case[0], force_rollback=case[1], **options)


# Created at import time, outside any event loop, as applications do.
DATABASES = {case: make_database(case) for case in CASES}


@dataclasses.dataclass
class Session:
    case: Case
    url: str
    force_rollback: bool
    database: Database
    session_loop: asyncio.AbstractEventLoop
    ledger: Ledger
    module_loop: asyncio.AbstractEventLoop | None = None

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

    def check_states(self, *loops: asyncio.AbstractEventLoop | None) -> None:
        """The database holds states exactly for the session loop and `loops`: the states of
        function loops that ended were closed with them."""
        states = self.database.loop_states()
        assert all(state["alive"] and state["open"] for state in states), states
        expected = {id(self.session_loop)} | {id(loop) for loop in loops if loop is not None}
        assert {id(state["loop"]) for state in states} == expected, states
        assert len(states) == len(expected), states
        explicit = [state["loop"] for state in states if state["connected_explicitly"]]
        assert explicit == [self.session_loop]


@pytest.fixture(autouse=True)
def empty_tables() -> Iterator[None]:
    """Replaces the suite's autouse fixture of this name: this module leaves the shared tables
    alone, and on SQLite the session loop's open rollback transaction would keep that
    fixture's cleanup from committing until the module is done."""
    yield


@pytest.fixture(scope="module", autouse=True)
def drop_items_at_module_end() -> Iterator[None]:
    """Set up before the module loop, so torn down after it closed (which also closes what a
    failed test left open in it)."""
    yield
    for url in DATABASE_URLS:
        drop_tables(url, items)


@pytest.fixture(scope="session", params=CASES, ids=case_id)
def session_case(request: pytest.FixtureRequest) -> Case:
    case: Case = request.param
    create_table(case[0], items)  # created if need be, and emptied
    return case


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def session_database(
    session_case: Case,
) -> AsyncIterator[tuple[Database, asyncio.AbstractEventLoop]]:
    database = DATABASES[session_case]
    assert not database.is_connected
    await database.connect()
    assert database.is_connected
    yield database, asyncio.get_running_loop()
    # Disconnected already by the last test and by `session`, unless something failed.
    if database.is_connected:
        await database.disconnect()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def session(
    session_case: Case, session_database: tuple[Database, asyncio.AbstractEventLoop]
) -> AsyncIterator[Session]:
    url, force_rollback = session_case
    database, session_loop = session_database
    assert asyncio.get_running_loop() is session_loop
    yield Session(session_case, url, force_rollback, database, session_loop, Ledger(force_rollback))
    # At the end of this module or parameter, not of the session.
    if database.is_connected:
        await database.disconnect()


@pytest.mark.asyncio(loop_scope="session")
async def test_connected_in_session_loop(session: Session) -> None:
    assert asyncio.get_running_loop() is session.session_loop
    assert session.database.is_connected
    [state] = session.database.loop_states()
    assert state["loop"] is session.session_loop
    assert state["connected_explicitly"] and state["open"]
    assert state["force_rollback_connection"] is False
    assert await seen(session.database, items) == {}
    # With force_rollback the loop's one connection is open now, with its transaction.
    [state] = session.database.loop_states()
    assert state["force_rollback_connection"] is session.force_rollback


@pytest.mark.asyncio
@pytest.mark.parametrize("round_", range(2))
async def test_function_loop_without_connecting(session: Session, round_: int) -> None:
    loop = asyncio.get_running_loop()
    assert loop is not session.session_loop
    assert session.database.is_connected
    session.check_states()

    # This loop's state opens on first use; it sees none of the earlier function loops'
    # rows with force_rollback, and all of them without.
    await session.write_and_check(f"function-{round_}")
    session.check_states(loop)
    [state] = [s for s in session.database.loop_states() if s["loop"] is loop]
    assert not state["connected_explicitly"]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("round_", range(2))
async def test_module_loop_without_connecting(session: Session, round_: int) -> None:
    loop = asyncio.get_running_loop()
    assert loop is not session.session_loop
    if session.module_loop is None:
        session.module_loop = loop
    assert loop is session.module_loop
    assert session.database.is_connected

    if session.single_writer:
        assert await seen(session.database, items) == session.ledger.visible() == {}
        assert (
            await asyncio.gather(*(seen(session.database, items) for _ in range(30))) == [{}] * 30
        )
    else:
        # The second round sees the first round's rows: the module loop's state (and with
        # force_rollback its transaction) lasts from test to test.
        await session.write_and_check(f"module-{round_}")
    session.check_states(loop)


@pytest.mark.asyncio(loop_scope="session")
async def test_session_loop_writes(session: Session) -> None:
    assert asyncio.get_running_loop() is session.session_loop
    # With force_rollback the rows of the function and module loops are not visible here.
    await session.write_and_check("session-0", 40)
    session.check_states(session.module_loop)


@pytest.mark.asyncio
async def test_function_loop_after_session_loop_wrote(session: Session) -> None:
    loop = asyncio.get_running_loop()
    assert loop is not session.session_loop
    if session.single_writer:
        assert await seen(session.database, items) == session.ledger.visible() == {}
    else:
        await session.write_and_check("function-late")
    session.check_states(session.module_loop, loop)


@pytest.mark.asyncio(loop_scope="session")
async def test_session_loop_keeps_its_rows(session: Session) -> None:
    assert asyncio.get_running_loop() is session.session_loop
    visible = session.ledger.visible()
    assert "session-0" in visible
    if session.force_rollback:
        assert set(visible) == {"session-0"}
    await session.write_and_check("session-1")
    session.check_states(session.module_loop)


def test_nothing_committed_with_force_rollback(session: Session) -> None:
    assert session.database.is_connected
    assert committed_rows(session.url, items) == session.ledger.committed()
    if not session.force_rollback:
        assert len(session.ledger.committed()) >= 30 * 5


@pytest.mark.asyncio(loop_scope="session")
async def test_disconnect_in_session_loop_closes_every_state(
    session: Session, request: pytest.FixtureRequest
) -> None:
    database = session.database
    assert asyncio.get_running_loop() is session.session_loop
    # The session loop's state is still open: with force_rollback its rows are still there.
    assert await seen(database, items) == session.ledger.visible()
    session.check_states(session.module_loop)

    await database.disconnect()
    assert not database.is_connected
    # The module loop's state was closed as well, while the module loop stays alive.
    assert database.loop_states() == []
    assert session.module_loop is not None and not session.module_loop.is_closed()
    assert await asyncio.to_thread(committed_rows, session.url, items) == (
        session.ledger.committed()
    )
    # No connection of any loop is left on the server, none holds a lock on the table.
    if DatabaseURL(session.url).dialect == "postgresql":
        assert await asyncio.to_thread(server_connections, session.case) == 0
    await asyncio.to_thread(assert_unlocked, session.url, items)
