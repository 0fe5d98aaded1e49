"""A module-global `Database` connected once with `asyncio.run(database.connect())` and then
used from new `asyncio.run()` loops: one after another, from eight threads at once, and
mixed with `uvloop.run()` and `anyio.run()` loops.

Every loop but the one that connected opens its own state lazily; the states of loops that
`asyncio.run()` has closed are released without the library awaiting anything on them.
"""

from __future__ import annotations

import asyncio
import threading

import anyio
import pytest
import uvloop

from databases import Database
from tests import admin
from tests.loops import (
    committed_rows,
    count_all,
    count_tag,
    insert_and_select,
    make_table,
    values_of,
    write_probe,
)
from tests.loops.support import database_url_with_table
from tests.settings import DATABASE_URLS

items = make_table("loops_run_items")

PLAIN = {url: Database(url) for url in DATABASE_URLS}
ROLLBACK = {url: Database(url, force_rollback=True) for url in DATABASE_URLS}

THREADS = 8
# Every thread's loop gets a pool of its own: keep them small, so that eight of them stay
# well below a shared server's connection limit (PostgreSQL's default is 100).
SMALL_POOL = {"min_size": 1, "max_size": 4}
THREADED_PLAIN = {url: Database(url, **SMALL_POOL) for url in DATABASE_URLS}
THREADED_ROLLBACK = {url: Database(url, force_rollback=True, **SMALL_POOL) for url in DATABASE_URLS}


database_url = database_url_with_table(items)


def prepared(database_url: str, databases: dict[str, Database]):
    """One of the module-global databases, on an empty table; disconnected afterwards."""
    admin.clear_tables(database_url, items)
    database = databases[database_url]
    assert not database.is_connected
    yield database
    if database.is_connected:
        asyncio.run(database.disconnect())
    admin.clear_tables(database_url, items)


@pytest.fixture
def plain(database_url: str):
    yield from prepared(database_url, PLAIN)


@pytest.fixture
def rollback(database_url: str):
    yield from prepared(database_url, ROLLBACK)


@pytest.fixture
def threaded_plain(database_url: str):
    yield from prepared(database_url, THREADED_PLAIN)


@pytest.fixture
def threaded_rollback(database_url: str):
    yield from prepared(database_url, THREADED_ROLLBACK)


def assert_not_connected_error(database: Database) -> None:
    with pytest.raises(RuntimeError, match=r"connect\(\)"):
        asyncio.run(database.fetch_all(values_of(items, "any")))


def test_connect_once_then_use_from_new_loops(database_url: str, plain: Database) -> None:
    database = plain
    asyncio.run(database.connect())
    assert database.is_connected

    loops: list[asyncio.AbstractEventLoop] = []

    async def job(n: int) -> int:
        loops.append(asyncio.get_running_loop())
        # Committed by the earlier loops, each through its own pool.
        assert await database.fetch_val(count_all(items)) == 10 * n
        for earlier in range(n):
            assert await database.fetch_val(count_tag(items, f"run-{earlier}")) == 10
        assert await insert_and_select(database, items, f"run-{n}", 30) == list(range(30))
        await database.execute(items.delete().where(items.c.value >= 10))
        return await database.fetch_val(count_all(items))

    for n in range(4):
        assert asyncio.run(job(n)) == 10 * (n + 1)
        assert database.is_connected

    assert len({id(loop) for loop in loops}) == 4
    assert all(loop.is_closed() for loop in loops)
    assert committed_rows(database_url, items) == sorted(
        (f"run-{n}", value) for n in range(4) for value in range(10)
    )

    # The loop that connected is closed: disconnecting from yet another loop closes all.
    asyncio.run(database.disconnect())
    assert not database.is_connected
    assert_not_connected_error(database)

    # Connecting again works as the first time.
    asyncio.run(database.connect())
    assert database.is_connected
    assert asyncio.run(database.fetch_val(count_all(items))) == 40
    asyncio.run(database.disconnect())
    assert not database.is_connected
    assert_not_connected_error(database)
    write_probe(database_url, items)


def test_force_rollback_session_spans_asyncio_run_loops(
    database_url: str, rollback: Database
) -> None:
    """One force-rollback session for every `asyncio.run()`: each loop sees what the earlier
    ones wrote, nothing is committed, and the last disconnect rolls it all back."""
    database = rollback
    asyncio.run(database.connect())
    assert database.is_connected

    async def job(n: int) -> None:
        assert await database.fetch_val(count_all(items)) == 30 * n
        assert await insert_and_select(database, items, f"rollback-{n}", 30) == list(range(30))
        assert await database.fetch_val(count_all(items)) == 30 * (n + 1)
        # A separate connection sees none of it.
        async with Database(database_url) as other:
            assert await other.fetch_val(count_all(items)) == 0

    for n in range(4):
        asyncio.run(job(n))
        assert database.is_connected
        assert committed_rows(database_url, items) == []

    asyncio.run(database.disconnect())
    assert not database.is_connected
    assert_not_connected_error(database)
    assert committed_rows(database_url, items) == []
    write_probe(database_url, items)


def run_in_threads(job) -> list:
    """Run `asyncio.run(job(k))` in THREADS threads started together; return the results
    in order, failing with the threads' errors if there are any."""
    barrier = threading.Barrier(THREADS, timeout=30)
    results: dict[int, object] = {}
    errors: list[tuple[int, BaseException]] = []

    def worker(k: int) -> None:
        try:
            barrier.wait()
            results[k] = asyncio.run(job(k))
        except BaseException as exc:
            errors.append((k, exc))

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not any(thread.is_alive() for thread in threads), "a thread is still running"
    if errors:
        raise AssertionError(f"{len(errors)} thread(s) failed: {errors!r}") from errors[0][1]
    return [results[k] for k in range(THREADS)]


def test_asyncio_run_in_threads(database_url: str, threaded_plain: Database) -> None:
    database = threaded_plain
    asyncio.run(database.connect())
    assert database.is_connected

    async def job(k: int):
        tag = f"thread-{k}"
        values = await insert_and_select(database, items, tag, 25)
        counts = await asyncio.gather(
            *(database.fetch_val(count_tag(items, tag)) for _ in range(25))
        )
        return asyncio.get_running_loop(), values, counts

    results = run_in_threads(job)

    loops = [loop for loop, _values, _counts in results]
    assert len({id(loop) for loop in loops}) == THREADS
    for _loop, values, counts in results:
        assert values == list(range(25))
        assert counts == [25] * 25
    assert database.is_connected
    assert committed_rows(database_url, items) == sorted(
        (f"thread-{k}", value) for k in range(THREADS) for value in range(25)
    )

    asyncio.run(database.disconnect())
    assert not database.is_connected
    assert_not_connected_error(database)
    write_probe(database_url, items)


def test_force_rollback_asyncio_run_in_threads(
    database_url: str, threaded_rollback: Database
) -> None:
    """Threads each running `asyncio.run()` at the same time share the one session: every
    loop writes (SQLite too: one connection), each sees the others' rows as they land, and
    transactions of loops running at once nest in each other and end in order."""
    database = threaded_rollback
    asyncio.run(database.connect())

    async def job(k: int):
        tag = f"thread-{k}"
        values = await insert_and_select(database, items, tag, 25)
        counts = await asyncio.gather(*(database.fetch_val(count_all(items)) for _ in range(25)))
        async with database.transaction():
            await database.execute(items.insert(), {"tag": f"{tag}-tx", "value": k})
            await asyncio.sleep(0.01)  # other loops' transactions begin meanwhile
        async with database.transaction(force_rollback=True):
            await database.execute(items.insert(), {"tag": f"{tag}-gone", "value": k})
        return values, counts

    for values, counts in run_in_threads(job):
        assert values == list(range(25))
        assert all(25 <= count <= 26 * THREADS for count in counts)
    assert database.is_connected
    # Every loop's rows, from yet another loop: the session, uncommitted.
    assert asyncio.run(database.fetch_val(count_all(items))) == 26 * THREADS
    assert committed_rows(database_url, items) == []

    asyncio.run(database.disconnect())
    assert not database.is_connected
    assert committed_rows(database_url, items) == []


def test_asyncio_uvloop_and_anyio_loops(database_url: str, plain: Database) -> None:
    database = plain
    uvloop.run(database.connect())
    assert database.is_connected

    async def job(n: int) -> int:
        assert await insert_and_select(database, items, f"mixed-{n}", 25) == list(range(25))
        return await database.fetch_val(count_all(items))

    assert asyncio.run(job(0)) == 25
    assert uvloop.run(job(1)) == 50
    assert asyncio.run(job(2)) == 75

    outcome: list[object] = []

    def in_thread() -> None:
        try:
            outcome.append(uvloop.run(job(3)))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=in_thread, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert outcome == [100]
    assert anyio.run(job, 4) == 125
    assert len(committed_rows(database_url, items)) == 125

    asyncio.run(database.disconnect())
    assert not database.is_connected
    assert_not_connected_error(database)
