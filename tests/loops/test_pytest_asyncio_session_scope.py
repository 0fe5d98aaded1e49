"""A module-global `Database` connected by a session-scoped fixture in pytest-asyncio's session
loop, then used by tests in the session loop, in this module's module loop and in
function-scoped loops.

Runs once per URL, with `force_rollback=True` and without. Without force_rollback every loop
has its own pool and sees every committed row. With force_rollback every loop works in the
database's one session (one connection in one transaction, on the library's session loop),
begun by the session loop's `connect()`: every loop sees every loop's rows, those of function
loops that ended included, and counts accumulate across loops; loops that only query hold no
state. At the end a test in the session loop disconnects, the last loop that connected: that
closes every loop's state (the module loop's too, while that loop is idle but alive) and
with force_rollback rolls the session back. Separate connections then check what was
committed (nothing, with force_rollback) and that no connection still holds a lock.

Scope: `session_database` is session-scoped and runs in the session loop, but it is defined
here, so only this module sees it. Its teardown would run only at the end of the session
(pytest keeps the last parameter's instance), so the last test of each parameter disconnects
and the module-scoped `session` fixture, in the session loop as well, makes sure of it: nothing
of this module stays connected while other modules run.

On SQLite every loop writes too: with force_rollback they all write through the session's
one connection, which holds the file's write lock until the session ends.
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
    assert_session_connection,
    assert_unlocked,
    case_fixture,
    case_id,
    drop_at_module_end_fixture,
    seen,
)
from tests.settings import application_name_options

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
        options.update(application_name_options(case[0], application_name(case)))
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


@pytest.fixture(scope="session")
def database_url(request: pytest.FixtureRequest) -> str:
    """The suite's, session-scoped here: the session-scoped `session_case` builds on it."""
    return str(request.param)


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
    assert state["connected_explicitly"]
    # With force_rollback connect() began the session, on the session loop: this loop
    # opened no connections of its own.
    assert state["open"] is not session.force_rollback
    assert state["force_rollback_connection"] is False
    if session.force_rollback:
        assert_session_connection(session.database, None)
    assert await seen(session.database, items) == {}
    session.check_states()


@pytest.mark.asyncio
@pytest.mark.parametrize("round_", range(2))
async def test_function_loop_without_connecting(session: Session, round_: int) -> None:
    loop = asyncio.get_running_loop()
    assert loop is not session.session_loop
    assert session.database.is_connected
    session.check_states()

    # It sees every earlier function loop's rows: committed, or with force_rollback in the
    # session. Without force_rollback this loop's state opens on first use, with it this
    # loop only forwards its statements to the session and holds no state.
    await session.write_and_check(f"function-{round_}")
    assert set(session.ledger.visible()) == {f"function-{n}" for n in range(round_ + 1)}
    session.check_states(loop)
    states = [s for s in session.database.loop_states() if s["loop"] is loop]
    expected = [] if session.force_rollback else [False]
    assert [s["connected_explicitly"] for s in states] == expected


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("round_", range(2))
async def test_module_loop_without_connecting(session: Session, round_: int) -> None:
    loop = asyncio.get_running_loop()
    assert loop is not session.session_loop
    if session.module_loop is None:
        session.module_loop = loop
    assert loop is session.module_loop
    assert session.database.is_connected

    # It sees the function loops' rows, and the second round the first round's (on SQLite
    # too: every loop writes through the session's connection).
    visible = session.ledger.visible()
    assert await asyncio.gather(*(seen(session.database, items) for _ in range(30))) == (
        [visible] * 30
    )
    await session.write_and_check(f"module-{round_}")
    assert set(session.ledger.visible()) == {"function-0", "function-1"} | {
        f"module-{n}" for n in range(round_ + 1)
    }
    session.check_states(loop)


@pytest.mark.asyncio(loop_scope="session")
async def test_session_loop_writes(session: Session) -> None:
    assert asyncio.get_running_loop() is session.session_loop
    # The rows of the function and module loops are visible here, with force_rollback too.
    assert set(session.ledger.visible()) == {"function-0", "function-1", "module-0", "module-1"}
    await session.write_and_check("session-0", 40)
    session.check_states(session.module_loop)


@pytest.mark.asyncio
async def test_function_loop_after_session_loop_wrote(session: Session) -> None:
    loop = asyncio.get_running_loop()
    assert loop is not session.session_loop
    assert "session-0" in session.ledger.visible()
    await session.write_and_check("function-late")
    session.check_states(session.module_loop, loop)


# Every tag the tests above and `test_session_loop_keeps_its_rows` write.
ALL_TAGS = {"function-0", "function-1", "module-0", "module-1", "session-0", "function-late"}


@pytest.mark.asyncio(loop_scope="session")
async def test_session_loop_keeps_its_rows(session: Session) -> None:
    assert asyncio.get_running_loop() is session.session_loop
    # Its own rows from the earlier session-loop test, and every other loop's.
    assert set(session.ledger.visible()) == ALL_TAGS
    await session.write_and_check("session-1")
    session.check_states(session.module_loop)


def test_nothing_committed_with_force_rollback(session: Session) -> None:
    assert session.database.is_connected
    # The session is still open and holds every loop's rows: a separate connection sees
    # none of them with force_rollback, all of them without.
    assert set(session.ledger.visible()) == ALL_TAGS | {"session-1"}
    assert committed_rows(session.url, items) == session.ledger.committed()
    if not session.force_rollback:
        assert len(session.ledger.committed()) == 30 * 6 + 40


@pytest.mark.asyncio(loop_scope="session")
async def test_disconnect_in_session_loop_closes_every_state(
    session: Session, request: pytest.FixtureRequest
) -> None:
    database = session.database
    assert asyncio.get_running_loop() is session.session_loop
    # Still connected: with force_rollback the session still holds every loop's rows.
    assert await seen(database, items) == session.ledger.visible()
    assert set(session.ledger.visible()) == ALL_TAGS | {"session-1"}
    session.check_states(session.module_loop)

    await database.disconnect()
    assert not database.is_connected
    # The module loop's state (without force_rollback) was closed as well, while the module
    # loop stays alive.
    assert database.loop_states() == []
    assert session.module_loop is not None and not session.module_loop.is_closed()
    # The last disconnect: with force_rollback the session was rolled back.
    session.ledger.session_ended()
    assert await asyncio.to_thread(committed_rows, session.url, items) == (
        session.ledger.committed()
    )
    # No connection of any loop is left on the server, none holds a lock on the table.
    if DatabaseURL(session.url).dialect == "postgresql":
        assert await asyncio.to_thread(server_connections, session.case) == 0
    await asyncio.to_thread(assert_unlocked, session.url, items)
