"""When does a `Database` used from several loops stop being connected?

`disconnect()` closes the calling loop's state. While another live (not closed) loop has
called `connect()` and not yet `disconnect()`, the database stays connected for it;
otherwise everything closes, other loops' states included, and `is_connected` turns false.

The loops here run forever in background threads (`LoopThread`) and are driven with
`asyncio.run_coroutine_threadsafe()`, while the main thread runs loops of its own with
`asyncio.run()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import warnings
from collections.abc import Coroutine
from typing import Any, Callable

import pytest

from databases import Database
from tests import admin
from tests.loops import (
    committed_rows,
    count_all,
    count_tag,
    insert_and_select,
    make_table,
    run_in_bare_loop,
    support,
    values_of,
    write_probe,
)
from tests.loops.support import database_url_with_table, make_databases

items = make_table("loops_disc_items")

DATABASES = make_databases()

TIMEOUT = 60


class LoopThread(support.LoopThread):
    """An event loop running forever in a thread of its own."""

    def close(self, graceful: bool = True) -> None:
        """Stop the loop and close it, without disconnecting anything, and check that it ended.

        `graceful=False` closes it without `shutdown_asyncgens()`, as a bare `loop.close()`
        does: nothing more can run on it, so the library must release its state without it.
        """
        super().close(graceful)
        assert not self.alive
        assert self.loop.is_closed()


database_url = database_url_with_table(items)


@pytest.fixture(params=[False, True], ids=["plain", "force_rollback"])
def force_rollback(request: pytest.FixtureRequest) -> bool:
    return request.param


@pytest.fixture
def loop_threads():
    """A factory of `LoopThread`s, all closed after the test."""
    started: list[LoopThread] = []

    def start() -> LoopThread:
        loop_thread = LoopThread(TIMEOUT)
        started.append(loop_thread)
        return loop_thread

    start.started = started  # type: ignore[attr-defined]
    yield start
    for loop_thread in started:
        loop_thread.close()


@pytest.fixture
def database(database_url: str, force_rollback: bool, loop_threads: Callable[[], LoopThread]):
    admin.clear_tables(database_url, items)
    database = DATABASES[(database_url, force_rollback)]
    assert not database.is_connected
    yield database
    # Leave the module-global database disconnected even when the test failed half-way.
    for loop_thread in loop_threads.started:  # type: ignore[attr-defined]
        if loop_thread.alive and database.is_connected:
            with contextlib.suppress(Exception):
                loop_thread.run(database.disconnect())
    if database.is_connected:
        asyncio.run(database.disconnect())
    admin.clear_tables(database_url, items)


def insert(database: Database, tag: str, value: int = 1) -> Coroutine[Any, Any, Any]:
    return database.execute(items.insert(), {"tag": tag, "value": value})


def assert_not_connected_error_in(database: Database, loop_thread: LoopThread | None) -> None:
    query = database.fetch_all(values_of(items, "any"))
    with pytest.raises(RuntimeError, match=r"connect\(\)"):
        if loop_thread is None:
            asyncio.run(query)
        else:
            loop_thread.run(query)


@pytest.mark.parametrize("b_connects", [True, False], ids=["b_connects", "b_only_queries"])
def test_disconnect_in_other_loop_keeps_connected_loop_working(
    database_url: str,
    database: Database,
    force_rollback: bool,
    loop_threads: Callable[[], LoopThread],
    b_connects: bool,
) -> None:
    a = loop_threads()
    a.run(database.connect())
    assert database.is_connected
    a.run(insert(database, "A"))
    assert a.run(database.fetch_val(count_tag(items, "A"))) == 1

    async def in_b() -> None:
        if b_connects:
            await database.connect()
        assert database.is_connected
        # With force rollback too: B works in the same session, A's row is visible.
        assert await database.fetch_val(count_tag(items, "A")) == 1
        await insert(database, "B")
        # Both loops work at the same time.
        assert await a.run_async(database.fetch_val(count_tag(items, "A"))) == 1

        await database.disconnect()
        # A connected and has not disconnected: still connected.
        assert database.is_connected

    asyncio.run(in_b())
    assert database.is_connected

    # A's state (and the force-rollback transaction) survived B's disconnect.
    assert a.run(database.fetch_val(count_tag(items, "A"))) == 1
    assert a.run(insert_and_select(database, items, "A-more", 25)) == list(range(25))
    assert a.run(database.fetch_val(count_all(items))) == 27
    # Yet another loop can still use it, and sees the same rows.
    assert asyncio.run(database.fetch_val(count_all(items))) == 27

    a.run(database.disconnect())
    assert not database.is_connected
    assert_not_connected_error_in(database, a)
    assert_not_connected_error_in(database, None)

    if force_rollback:
        assert committed_rows(database_url, items) == []
    else:
        assert committed_rows(database_url, items) == sorted(
            [("A", 1), ("B", 1)] + [("A-more", value) for value in range(25)]
        )
    write_probe(database_url, items)


@pytest.mark.parametrize("graceful", [True, False], ids=["shutdown_asyncgens", "bare_close"])
def test_disconnect_after_the_connected_loop_closed(
    database_url: str,
    database: Database,
    force_rollback: bool,
    loop_threads: Callable[[], LoopThread],
    graceful: bool,
) -> None:
    a = loop_threads()
    a.run(database.connect())
    a.run(insert(database, "A"))
    a.close(graceful)  # closed without ever disconnecting
    assert database.is_connected

    async def main() -> None:
        assert database.is_connected
        # With force rollback, the session outlived the loop that connected.
        assert await database.fetch_val(count_tag(items, "A")) == 1
        # The only loop that connected is closed: this closes everything.
        await database.disconnect()
        assert not database.is_connected

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(main())
        gc.collect()
    never_awaited = [w for w in caught if "never awaited" in str(w.message)]
    assert never_awaited == []

    assert not database.is_connected
    assert_not_connected_error_in(database, None)
    assert committed_rows(database_url, items) == ([] if force_rollback else [("A", 1)])
    write_probe(database_url, items)


def test_stays_connected_while_any_live_loop_is_connected(
    database_url: str,
    database: Database,
    force_rollback: bool,
    loop_threads: Callable[[], LoopThread],
) -> None:
    a, c, d = loop_threads(), loop_threads(), loop_threads()
    for loop_thread in (a, c, d):
        loop_thread.run(database.connect())
    assert database.is_connected
    a.run(insert(database, "A"))  # only A writes: SQLite has one writer at a time

    async def in_b() -> None:
        await database.connect()
        await database.fetch_val(count_all(items))
        await database.disconnect()

    asyncio.run(in_b())
    assert database.is_connected  # A, C and D are connected

    assert c.run(database.fetch_val(count_tag(items, "A"))) == 1
    c.run(database.disconnect())
    assert database.is_connected  # A and D are connected

    d.run(database.fetch_val(count_all(items)))
    # Never disconnected, but closed (bare close): it no longer keeps the database connected.
    d.close(graceful=False)
    assert database.is_connected  # A is connected

    assert a.run(database.fetch_val(count_tag(items, "A"))) == 1
    a.run(database.disconnect())
    assert not database.is_connected
    assert_not_connected_error_in(database, a)
    assert_not_connected_error_in(database, c)
    assert_not_connected_error_in(database, None)
    assert committed_rows(database_url, items) == ([] if force_rollback else [("A", 1)])
    write_probe(database_url, items)


def test_disconnect_closes_live_loops_that_never_connected(
    database_url: str,
    database: Database,
    force_rollback: bool,
    loop_threads: Callable[[], LoopThread],
) -> None:
    a = loop_threads()

    async def main() -> None:
        await database.connect()
        # A runs in its thread and uses the database without ever connecting.
        assert await a.run_async(database.fetch_val(count_all(items))) == 0
        await a.run_async(insert(database, "A"))
        assert await a.run_async(database.fetch_val(count_tag(items, "A"))) == 1

        # A never called connect(): this closes everything, A's state included.
        await database.disconnect()
        assert not database.is_connected
        with pytest.raises(RuntimeError, match=r"connect\(\)"):
            await a.run_async(database.fetch_val(count_all(items)))

    asyncio.run(main())
    assert not database.is_connected
    a.run(database.disconnect())  # a no-op
    assert not database.is_connected
    assert_not_connected_error_in(database, a)
    assert committed_rows(database_url, items) == ([] if force_rollback else [("A", 1)])
    write_probe(database_url, items)


def test_connect_twice_and_disconnect_twice_in_one_loop(
    database_url: str, database: Database, force_rollback: bool
) -> None:
    async def main() -> None:
        await database.connect()
        await database.connect()  # a logged no-op
        assert database.is_connected
        await insert(database, "twice")
        assert await database.fetch_val(count_tag(items, "twice")) == 1
        await database.disconnect()
        assert not database.is_connected
        await database.disconnect()  # a logged no-op
        assert not database.is_connected

    asyncio.run(main())
    assert_not_connected_error_in(database, None)
    assert committed_rows(database_url, items) == ([] if force_rollback else [("twice", 1)])


def test_not_connected_error_before_connect(
    database_url: str, database: Database, loop_threads: Callable[[], LoopThread]
) -> None:
    a = loop_threads()
    assert_not_connected_error_in(database, None)
    assert_not_connected_error_in(database, a)
    # Disconnecting what never connected is a no-op, in any loop.
    asyncio.run(database.disconnect())
    a.run(database.disconnect())
    assert not database.is_connected
    assert_not_connected_error_in(database, a)


def test_loops_closed_without_shutdown_asyncgens(
    database_url: str, database: Database, force_rollback: bool
) -> None:
    """Loops closed by a bare `loop.close()`: their states are released without awaiting
    anything on them, when the next loop comes along or at the final disconnect."""
    run_in_bare_loop(database.connect())
    assert database.is_connected

    async def job(n: int) -> int:
        # With force rollback too: the earlier loops' rows are in the session.
        assert await database.fetch_val(count_all(items)) == 20 * n
        assert await insert_and_select(database, items, f"bare-{n}", 20) == list(range(20))
        return await database.fetch_val(count_all(items))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in range(4):
            assert run_in_bare_loop(job(n)) == 20 * (n + 1)
            assert database.is_connected
        run_in_bare_loop(database.disconnect())
        gc.collect()
    never_awaited = [w for w in caught if "never awaited" in str(w.message)]
    assert never_awaited == []

    assert not database.is_connected
    assert_not_connected_error_in(database, None)
    expected = (
        []
        if force_rollback
        else sorted((f"bare-{n}", value) for n in range(4) for value in range(20))
    )
    assert committed_rows(database_url, items) == expected
    write_probe(database_url, items)
