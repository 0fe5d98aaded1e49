"""A module-global `Database` connected by a module-scoped fixture in pytest-asyncio's module
loop, used by tests in that module loop and by tests in function-scoped loops, interleaved.

Runs once per URL, with `force_rollback=True` and without. Without force_rollback every loop
has its own pool and sees every committed row. With force_rollback every loop works in the
database's one session (one connection in one transaction, on the library's session loop),
which lasts from the module loop's `connect()` to its `disconnect()`: every loop, including
function loops that ended, sees every loop's rows, counts accumulate across loops, and a
function loop that connects and disconnects meanwhile ends nothing (the module loop is still
connected), so its rows stay. Function loops that only query hold no state. The fixture
disconnects at the end, in the module loop; separate connections then check what was
committed (nothing, with force_rollback) and that no connection still holds a lock.

On SQLite every loop writes too: with force_rollback they all write through the session's
one connection, which holds the file's write lock until the session ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from databases import Database
from tests.loops import committed_rows, make_table
from tests.loops.support import (
    SMALL_POOL,
    Case,
    ConnectedInWideLoop,
    Ledger,
    assert_unlocked,
    case_fixture,
    drop_at_module_end_fixture,
    make_databases,
    seen,
)

items = make_table("loops_mod_items")

# Created at import time, outside any event loop, as applications do.
DATABASES = make_databases(**SMALL_POOL)


@dataclasses.dataclass
class ModuleLoop(ConnectedInWideLoop):
    url: str
    force_rollback: bool
    database: Database
    module_loop: asyncio.AbstractEventLoop
    ledger: Ledger

    table = items

    @property
    def wide_loop(self) -> asyncio.AbstractEventLoop:
        return self.module_loop


drop_items_at_module_end = drop_at_module_end_fixture("drop_items_at_module_end", items)
case = case_fixture((items,))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def connected(case: Case) -> AsyncIterator[ModuleLoop]:
    url, force_rollback = case
    database = DATABASES[case]
    assert not database.is_connected
    await database.connect()
    assert database.is_connected
    # No query here: what the tests see is up to them.
    info = ModuleLoop(
        url, force_rollback, database, asyncio.get_running_loop(), Ledger(force_rollback)
    )

    yield info

    assert asyncio.get_running_loop() is info.module_loop
    assert database.is_connected
    # Still connected: with force_rollback the session still holds every loop's rows.
    assert await seen(database, items) == info.ledger.visible()
    assert set(info.ledger.visible()) == ALL_TAGS
    await database.disconnect()
    assert not database.is_connected
    assert database.loop_states() == []
    # The last disconnect: with force_rollback the session was rolled back.
    info.ledger.session_ended()
    assert await asyncio.to_thread(committed_rows, url, items) == info.ledger.committed()
    await asyncio.to_thread(assert_unlocked, url, items)


@pytest.mark.asyncio
@pytest.mark.parametrize("round_", range(2))
async def test_function_loop_before_module_loop_queries(connected: ModuleLoop, round_: int) -> None:
    loop = asyncio.get_running_loop()
    assert loop is not connected.module_loop
    assert connected.database.is_connected
    connected.check_states()
    # Every earlier function loop's rows are visible: committed, or with force_rollback in
    # the session. Without force_rollback this loop's state opens on first use.
    await connected.write_and_check(f"function-{round_}")
    assert set(connected.ledger.visible()) == {f"function-{n}" for n in range(round_ + 1)}
    connected.check_states(loop)


@pytest.mark.asyncio(loop_scope="module")
async def test_module_loop_writes(connected: ModuleLoop) -> None:
    assert asyncio.get_running_loop() is connected.module_loop
    connected.check_states()
    # The ended function loops' rows are still visible here (with force_rollback too).
    assert set(connected.ledger.visible()) == {"function-0", "function-1"}
    await connected.write_and_check("module-0", 40)
    connected.check_states()


@pytest.mark.asyncio
async def test_function_loop_after_module_loop_wrote(connected: ModuleLoop) -> None:
    loop = asyncio.get_running_loop()
    assert loop is not connected.module_loop
    # The module loop's rows are visible here, and this loop writes too (on SQLite as well).
    assert "module-0" in connected.ledger.visible()
    await connected.write_and_check("function-2")
    connected.check_states(loop)


@pytest.mark.asyncio(loop_scope="module")
async def test_module_loop_keeps_its_rows(connected: ModuleLoop) -> None:
    assert asyncio.get_running_loop() is connected.module_loop
    # Every loop's rows so far, its own from the earlier module-loop test included.
    assert set(connected.ledger.visible()) == {"function-0", "function-1", "module-0", "function-2"}
    await connected.write_and_check("module-1")
    connected.check_states()


@pytest.mark.asyncio
async def test_connect_and_disconnect_in_function_loop(connected: ModuleLoop) -> None:
    database = connected.database
    loop = asyncio.get_running_loop()
    async with database:
        [state] = [state for state in database.loop_states() if state["loop"] is loop]
        assert state["connected_explicitly"]
        # With force_rollback this loop joined the module loop's session: no connection of
        # its own.
        assert state["open"] is not connected.force_rollback
        assert {id(state["loop"]) for state in database.loop_states()} == {
            id(loop),
            id(connected.module_loop),
        }
        await connected.write_and_check("function-block")
    # The module loop connected and has not disconnected: still connected. This loop's
    # state was closed; with force_rollback the session goes on, with this loop's rows.
    assert database.is_connected
    connected.check_states()
    assert "function-block" in connected.ledger.visible()

    # Without force_rollback the next query opens a fresh state for this loop.
    await connected.write_and_check("function-after-block")
    connected.check_states(loop)


# Every tag the tests above write.
ALL_TAGS = {
    "function-0",
    "function-1",
    "module-0",
    "function-2",
    "module-1",
    "function-block",
    "function-after-block",
}


def test_nothing_committed_with_force_rollback(connected: ModuleLoop) -> None:
    assert connected.database.is_connected
    assert not connected.module_loop.is_closed()
    # The session is still open and holds every loop's rows: a separate connection sees
    # none of them with force_rollback, all of them without.
    assert set(connected.ledger.visible()) == ALL_TAGS
    assert committed_rows(connected.url, items) == connected.ledger.committed()
    if not connected.force_rollback:
        assert len(connected.ledger.committed()) == 30 * 6 + 40
