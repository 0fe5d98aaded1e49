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
import time
import typing
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from databases import Database, DatabaseURL
from tests import admin
from tests.loops import committed_rows, make_table
from tests.loops.support import (
    CASES,
    SMALL_POOL,
    Case,
    ConnectedInWideLoop,
    Ledger,
    assert_unlocked,
    case_fixture,
    case_id,
    drop_at_module_end_fixture,
    seen,
    shared_tables_left_alone_fixture,
)

items = make_table("loops_sess_items")


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
class Session(ConnectedInWideLoop):
    case: Case
    url: str
    force_rollback: bool
    database: Database
    session_loop: asyncio.AbstractEventLoop
    ledger: Ledger
    module_loop: asyncio.AbstractEventLoop | None = None

    table = items

    @property
    def wide_loop(self) -> asyncio.AbstractEventLoop:
        return self.session_loop


empty_tables = shared_tables_left_alone_fixture()
drop_items_at_module_end = drop_at_module_end_fixture("drop_items_at_module_end", items)
session_case = case_fixture((items,), scope="session", name="session_case")


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
