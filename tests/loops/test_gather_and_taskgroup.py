"""Many queries at once from one event loop: `asyncio.gather()` and `asyncio.TaskGroup`.

Every test runs in three modes:

- "plain": a `Database` without force_rollback, so every task gets its own connection from
  the loop's pool;
- "rollback": `force_rollback=True`, so every task shares the loop's one connection;
- "connection": no force_rollback, but one `Connection` (`async with database.connection()`)
  passed to all the tasks, which then share it.

The queries are a mix of inserts, `fetch_all`, `fetch_one`, `fetch_val` and `iterate`, over
rows inserted beforehand (whose results are known exactly) and over the rows being inserted
at the same time (checked for consistency while they run, exactly afterwards). What each
insert returned is matched with the row it made, so an answer delivered to the wrong caller
shows up.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy

from databases import Database, DatabaseURL
from tests.loops import (
    committed_rows,
    count_all,
    count_tag,
    make_table,
    values_of,
)
from tests.loops.support import database_url_with_table, empty_table_fixture

items = make_table("loops_gather_items")

MODES = ["plain", "rollback", "connection"]
# The rows every test inserts first: tag "base", values 0 .. BASE - 1.
BASE = 40
# Upper bound for one test's body, so a deadlock fails the test instead of hanging it.
BODY_TIMEOUT = 60

needs_taskgroup = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="asyncio.TaskGroup needs Python 3.11"
)


class Boom(Exception):
    """Raised on purpose by one task of a group."""


database_url = database_url_with_table(items)


empty_table = empty_table_fixture(items)
pytestmark = pytest.mark.usefixtures("empty_table")


@pytest_asyncio.fixture
async def target(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """What the test sends its queries to, per mode, with the base rows in place.

    A `Database` (modes "plain" and "rollback") or a shared `Connection` ("connection").
    Afterwards, disconnecting must not hang, and with force_rollback nothing may be
    committed (otherwise at least the base rows are).
    """
    mode = request.param
    database = Database(database_url, force_rollback=mode == "rollback")
    await database.connect()
    try:
        if mode == "connection":
            async with database.connection() as connection:
                await insert_base(connection)
                yield connection
        else:
            await insert_base(database)
            yield database
    finally:
        await asyncio.wait_for(database.disconnect(), 30)
    assert not database.is_connected
    rows = await committed(database_url)
    if mode == "rollback":
        assert rows == []
    else:
        assert [row for row in rows if row[0] == "base"] == base_rows()


async def committed(database_url: str) -> list[tuple[str, int]]:
    """`committed_rows()`, from inside a running loop (it runs a loop of its own)."""
    return await asyncio.to_thread(committed_rows, database_url, items)


async def expect_committed(database_url: str, mode: str, rows: list[tuple[str, int]]) -> None:
    """After disconnecting: force-rollback mode committed nothing, the others `rows`."""
    expected = [] if mode == "rollback" else sorted(rows)
    assert await committed(database_url) == expected


def is_mysql(database_url: str) -> bool:
    return DatabaseURL(database_url).dialect == "mysql"


def base_rows() -> list[tuple[str, int]]:
    return [("base", value) for value in range(BASE)]


async def insert_base(target: Any) -> None:
    await target.execute_many(items.insert(), [{"tag": "base", "value": v} for v in range(BASE)])


def base_value(value: int) -> Any:
    """`value * 10 + 3` of the base row of that value: checks arithmetic on the right row."""
    return sqlalchemy.select(items.c.value * 10 + 3).where(
        items.c.tag == "base", items.c.value == value
    )


def base_row(value: int) -> Any:
    return sqlalchemy.select(items.c.tag, items.c.value).where(
        items.c.tag == "base", items.c.value == value
    )


def base_range(low: int, high: int) -> Any:
    """Base values in `[low, high)`, in order."""
    return (
        sqlalchemy.select(items.c.value)
        .where(items.c.tag == "base", items.c.value >= low, items.c.value < high)
        .order_by(items.c.value)
    )


def ids_and_values(tag: str) -> Any:
    return sqlalchemy.select(items.c.id, items.c.value).where(items.c.tag == tag)


async def collect(target: Any, query: Any) -> list[int]:
    """The first column of every row `iterate()` yields."""
    return [row[0] async for row in target.iterate(query)]


async def check_inserted(target: Any, tag: str, ids_by_value: dict[int, int]) -> None:
    """The rows of `tag` are exactly the inserted ones, each under the id its insert
    returned."""
    assert all(isinstance(key, int) and key > 0 for key in ids_by_value.values())
    assert len(set(ids_by_value.values())) == len(ids_by_value)
    rows = await target.fetch_all(ids_and_values(tag))
    assert {row[1]: row[0] for row in rows} == ids_by_value
    assert len(rows) == len(ids_by_value)


def mixed_queries(target: Any, rounds: int) -> list[tuple[str, int, Any]]:
    """`6 * rounds` queries: per round an insert of tag "new" and five reads.

    Each is `(kind, round, coroutine)`; `check_mixed()` knows what each must return.
    """
    queries: list[tuple[str, int, Any]] = []
    for i in range(rounds):
        queries += [
            ("insert", i, target.execute(items.insert(), {"tag": "new", "value": i})),
            ("fetch_val", i, target.fetch_val(base_value(i % BASE))),
            ("fetch_one", i, target.fetch_one(base_row(BASE - 1 - i % BASE))),
            ("iterate", i, collect(target, base_range(i % BASE, i % BASE + 5))),
            ("fetch_all", i, target.fetch_all(values_of(items, "new"))),
            ("count", i, target.fetch_val(count_tag(items, "base"))),
        ]
    return queries


def check_mixed(kinds: list[tuple[str, int]], results: list[Any], rounds: int) -> dict[int, int]:
    """Check every read's result exactly (or, for the rows being inserted meanwhile, for
    consistency); return the id each insert returned, by value."""
    assert len(results) == len(kinds)
    ids_by_value: dict[int, int] = {}
    for (kind, i), result in zip(kinds, results):
        if kind == "insert":
            ids_by_value[i] = result
        elif kind == "fetch_val":
            assert result == (i % BASE) * 10 + 3
        elif kind == "fetch_one":
            assert result is not None
            assert (result["tag"], result["value"]) == ("base", BASE - 1 - i % BASE)
            assert (result[0], result[1]) == ("base", BASE - 1 - i % BASE)
        elif kind == "iterate":
            low = i % BASE
            assert result == list(range(low, min(low + 5, BASE)))
        elif kind == "fetch_all":
            seen = [row["value"] for row in result]
            assert len(seen) == len(set(seen))
            assert set(seen) <= set(range(rounds))
        else:
            assert kind == "count"
            assert result == BASE
    assert sorted(ids_by_value) == list(range(rounds))
    return ids_by_value


# -- gather ---------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("target", MODES, indirect=True)
async def test_gather_mixed_queries(target: Any) -> None:
    """`asyncio.gather()` over 150 mixed queries: every one gets its own right answer."""
    rounds = 25
    queries = mixed_queries(target, rounds)
    kinds = [(kind, i) for kind, i, _ in queries]
    results = await asyncio.wait_for(
        asyncio.gather(*(coro for _, _, coro in queries)), BODY_TIMEOUT
    )
    assert len(results) == 6 * rounds
    ids_by_value = check_mixed(kinds, results, rounds)
    await check_inserted(target, "new", ids_by_value)
    assert await collect(target, base_range(0, BASE)) == list(range(BASE))

    # A second wave on the same connections, reading what the first one wrote.
    by_id = [
        target.fetch_val(sqlalchemy.select(items.c.value).where(items.c.id == key))
        for key in ids_by_value.values()
    ]
    assert await asyncio.wait_for(asyncio.gather(*by_id), BODY_TIMEOUT) == list(range(rounds))


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", MODES)
async def test_gather_commits_in_plain_modes_only(database_url: str, mode: str) -> None:
    """What gathered inserts leave behind once disconnected: everything, or with
    force_rollback nothing."""
    database = Database(database_url, force_rollback=mode == "rollback")
    async with database:
        if mode == "connection":
            async with database.connection() as connection:
                await insert_base(connection)
                results = await asyncio.gather(
                    *(
                        connection.execute(items.insert(), {"tag": "g", "value": v})
                        for v in range(60)
                    ),
                    *(connection.fetch_val(count_tag(items, "base")) for _ in range(60)),
                )
        else:
            await insert_base(database)
            results = await asyncio.gather(
                *(database.execute(items.insert(), {"tag": "g", "value": v}) for v in range(60)),
                *(database.fetch_val(count_tag(items, "base")) for _ in range(60)),
            )
        assert results[60:] == [BASE] * 60
        assert len(set(results[:60])) == 60
        assert await database.fetch_val(count_tag(items, "g")) == 60
    await expect_committed(database_url, mode, base_rows() + [("g", v) for v in range(60)])


@pytest.mark.asyncio
@pytest.mark.parametrize("target", MODES, indirect=True)
async def test_gather_of_gathers(target: Any) -> None:
    """Nested gathers: each inner group inserts its own tag and reads it back at once."""

    async def group(g: int) -> tuple[list[Any], list[int]]:
        tag = f"group-{g}"
        inserted = await asyncio.gather(
            *(target.execute(items.insert(), {"tag": tag, "value": v}) for v in range(12))
        )
        read = await asyncio.gather(
            target.fetch_val(count_tag(items, tag)),
            collect(target, values_of(items, tag).order_by(items.c.value)),
            target.fetch_one(base_row(g)),
        )
        count, iterated, row = read
        assert count == 12
        assert iterated == list(range(12))
        assert row is not None and row["value"] == g
        return inserted, iterated

    results = await asyncio.wait_for(asyncio.gather(*(group(g) for g in range(8))), BODY_TIMEOUT)
    for g, (inserted, _iterated) in enumerate(results):
        await check_inserted(target, f"group-{g}", dict(enumerate(inserted)))
    assert await target.fetch_val(count_all(items)) == BASE + 8 * 12


# -- TaskGroup --------------------------------------------------------------------------------


@needs_taskgroup
@pytest.mark.asyncio
@pytest.mark.parametrize("target", MODES, indirect=True)
async def test_taskgroup_mixed_queries(target: Any) -> None:
    """A TaskGroup of 150 single-query tasks and 30 tasks that each run several queries in
    a row (insert, read the row back by its id, read the base rows)."""
    rounds = 25

    async def job(i: int) -> tuple[int, int]:
        key = await target.execute(items.insert(), {"tag": "job", "value": i})
        row = await target.fetch_one(
            sqlalchemy.select(items.c.tag, items.c.value).where(items.c.id == key)
        )
        assert row is not None and (row["tag"], row["value"]) == ("job", i)
        assert await target.fetch_val(base_value(i % BASE)) == (i % BASE) * 10 + 3
        assert await collect(target, base_range(i, i + 3)) == [i, i + 1, i + 2]
        return i, key

    queries = mixed_queries(target, rounds)
    async with asyncio.timeout(BODY_TIMEOUT), asyncio.TaskGroup() as group:
        query_tasks = [group.create_task(coro) for _, _, coro in queries]
        job_tasks = [group.create_task(job(i)) for i in range(30)]

    ids_by_value = check_mixed(
        [(k, i) for k, i, _ in queries], [task.result() for task in query_tasks], rounds
    )
    await check_inserted(target, "new", ids_by_value)
    await check_inserted(target, "job", dict(task.result() for task in job_tasks))


@needs_taskgroup
@pytest.mark.asyncio
@pytest.mark.parametrize("target", MODES, indirect=True)
async def test_taskgroup_failure_cancels_the_rest(
    database_url: str, target: Any, request: pytest.FixtureRequest
) -> None:
    """One task of a TaskGroup fails while 100 others are queued or running queries: the
    group cancels them, and the connection (shared or pooled) keeps working with exactly
    the rows of the inserts that completed."""
    started = asyncio.Event()
    finished: dict[int, int] = {}

    async def insert(v: int) -> None:
        started.set()
        key = await target.execute(items.insert(), {"tag": "tg", "value": v})
        finished[v] = key
        await target.fetch_val(count_tag(items, "tg"))

    async def fail() -> None:
        # The first insert is on its way; the others are running or waiting their turn.
        await started.wait()
        await asyncio.sleep(0)
        raise Boom()

    with pytest.raises(ExceptionGroup) as caught:  # noqa: F821 (a builtin since 3.11)
        async with asyncio.timeout(BODY_TIMEOUT), asyncio.TaskGroup() as group:
            tasks = [group.create_task(insert(v)) for v in range(100)]
            group.create_task(fail())
    assert [type(error) for error in caught.value.exceptions] == [Boom]
    assert any(task.cancelled() for task in tasks), "the failure came too late to cancel any"

    # Everything the cancelled tasks left behind is consistent: the rows there are those of
    # the inserts that reported their key, plus at most those cut off after the statement.
    rows = await target.fetch_all(ids_and_values("tg"))
    present = {row[1]: row[0] for row in rows}
    assert len(present) == len(rows)
    assert {v: present.get(v) for v in finished} == finished
    assert await target.fetch_val(count_tag(items, "base")) == BASE
    assert await collect(target, base_range(0, BASE)) == list(range(BASE))

    # And it takes a full new load.
    async with asyncio.timeout(BODY_TIMEOUT), asyncio.TaskGroup() as group:
        again = [
            group.create_task(target.execute(items.insert(), {"tag": "again", "value": v}))
            for v in range(50)
        ]
    await check_inserted(target, "again", {v: task.result() for v, task in enumerate(again)})
