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
    shared_tables_left_alone_fixture,
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


empty_tables = shared_tables_left_alone_fixture()
drop_items_at_module_end = drop_at_module_end_fixture("drop_items_at_module_end", items)
case = case_fixture((items,))


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
