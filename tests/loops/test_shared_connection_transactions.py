"""Transactions of sibling tasks on one shared connection.

With `force_rollback=True` every task of a loop uses the loop's one connection; without it,
tasks share a connection when it is handed to them (`async with database.connection()`).
A transaction on a shared connection is held by the task that started it until it ends:
a sibling's `transaction()` waits for its turn (so savepoints never interleave), while the
siblings' plain queries still run, inside it. A child task created inside a transaction
inherits it, so it may nest a transaction of its own in it without waiting (no deadlock).

Modes:

- "rollback": a force-rollback `Database`; tasks use `database.transaction()` and
  `database.<query>()`;
- "connection": a plain `Database`; tasks use one `Connection` shared by all of them;
- "plain" (where it means something): a plain `Database`, each task on its own connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy

from databases import Database
from databases.core import Transaction
from tests import admin
from tests.loops import (
    committed_rows,
    count_tag,
    make_table,
    values_of,
)
from tests.loops.support import database_url_with_table

items = make_table("loops_sharedtx_items")

SHARED_MODES = ["rollback", "connection"]
ALL_MODES = ["plain", *SHARED_MODES]
BASE = 20
# Upper bound for the concurrent part of a test: a deadlock fails fast instead of hanging.
TIMEOUT = 30


class Boom(Exception):
    """Raised on purpose to roll a transaction back."""


@dataclasses.dataclass
class Shared:
    """Where a test's tasks send queries and open transactions."""

    url: str
    mode: str
    database: Database
    # A `Database` or the shared `Connection`.
    target: Any

    @property
    def is_postgres(self) -> bool:
        return self.database.url.dialect == "postgresql"

    def transaction(self) -> Transaction:
        return self.target.transaction()  # type: ignore[no-any-return]

    async def insert(self, tag: str, value: int) -> Any:
        return await self.target.execute(items.insert(), {"tag": tag, "value": value})

    async def values(self, tag: str) -> list[int]:
        return sorted(row[0] for row in await self.target.fetch_all(values_of(items, tag)))

    async def count(self, tag: str) -> int:
        return int(await self.target.fetch_val(count_tag(items, tag)))

    async def rows(self, prefix: str) -> list[tuple[str, int]]:
        """Every `(tag, value)` whose tag starts with `prefix`, sorted; never the base rows."""
        query = sqlalchemy.select(items.c.tag, items.c.value).where(
            items.c.tag.startswith(prefix), items.c.tag != "base"
        )
        return sorted((row[0], row[1]) for row in await self.target.fetch_all(query))

    async def read_base(self) -> None:
        """Reads with exactly known answers: the base rows, committed before."""
        assert await self.count("base") == BASE
        ordered = values_of(items, "base").order_by(items.c.value)
        assert [row[0] async for row in self.target.iterate(ordered)] == list(range(BASE))
        row = await self.target.fetch_one(ordered.where(items.c.value == BASE - 1))
        assert row is not None and row[0] == BASE - 1


async def committed(database_url: str) -> list[tuple[str, int]]:
    """`committed_rows()` from inside a running loop (it runs a loop of its own)."""
    return await asyncio.to_thread(committed_rows, database_url, items)


database_url = database_url_with_table(items)


@pytest_asyncio.fixture
async def shared(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Shared]:
    """A connected database for the mode, base rows committed; afterwards disconnecting
    must not hang, and with force_rollback nothing but the base rows is committed."""
    mode = request.param
    await asyncio.to_thread(admin.clear_tables, database_url, items)
    async with Database(database_url) as setup:
        await setup.execute_many(items.insert(), [{"tag": "base", "value": v} for v in range(BASE)])
    database = Database(database_url, force_rollback=mode == "rollback")
    await database.connect()
    try:
        if mode == "connection":
            async with database.connection() as connection:
                yield Shared(database_url, mode, database, connection)
        else:
            yield Shared(database_url, mode, database, database)
    finally:
        await asyncio.wait_for(database.disconnect(), TIMEOUT)
    assert not database.is_connected
    rows = await committed(database_url)
    assert [row for row in rows if row[0] == "base"] == [("base", v) for v in range(BASE)]
    if mode == "rollback":
        assert len(rows) == BASE
    await asyncio.to_thread(admin.clear_tables, database_url, items)


async def expect_committed(shared: Shared, prefix: str, rows: list[tuple[str, int]]) -> None:
    """The committed rows of tags starting with `prefix`: `rows`, or none in force-rollback
    mode (checked again after disconnecting by the fixture)."""
    rows_now = await committed(shared.url)
    found = sorted(row for row in rows_now if row[0].startswith(prefix) and row[0] != "base")
    assert found == ([] if shared.mode == "rollback" else sorted(rows))


async def run_all(*coros: Any) -> list[Any]:
    """Gather `coros` (each in a task of its own), with exceptions as results, in time."""
    return await asyncio.wait_for(asyncio.gather(*coros, return_exceptions=True), TIMEOUT)


def check_results(results: list[Any], expected: list[Any]) -> None:
    """Each result is the expected value, or an instance of the expected exception class."""
    assert len(results) == len(expected)
    for result, want in zip(results, expected):
        if isinstance(want, type) and issubclass(want, BaseException):
            assert isinstance(result, want), result
        else:
            assert not isinstance(result, BaseException), repr(result)
            assert result == want


# -- many sibling transactions --------------------------------------------------------------


@dataclasses.dataclass
class Plan:
    """What one worker does: statements in its transaction, an optional nested
    transaction (itself optionally holding one more), and how each level ends."""

    worker: int
    before: int
    nested: str | None  # None, "commit" or "rollback"
    nested_inner: str | None  # None, "commit" or "rollback" (inside the nested one)
    after: int
    fail: bool

    @property
    def tag(self) -> str:
        return f"w{self.worker}"

    def expected(self) -> list[tuple[str, int]]:
        if self.fail:
            return []
        values = list(range(self.before))
        if self.nested == "commit":
            values += [100, 101]
            if self.nested_inner == "commit":
                values += [200]
        values += [300 + k for k in range(self.after)]
        return [(self.tag, v) for v in values]


def make_plans(count: int, seed: int) -> list[Plan]:
    rng = random.Random(seed)
    plans = []
    for worker in range(count):
        nested = rng.choice([None, "commit", "rollback"])
        plans.append(
            Plan(
                worker=worker,
                before=rng.randint(1, 3),
                nested=nested,
                nested_inner=rng.choice([None, "commit", "rollback"]) if nested else None,
                after=rng.randint(0, 2),
                fail=rng.random() < 0.35,
            )
        )
    # Every kind of ending shows up at least once, whatever the seed.
    plans[0].fail, plans[0].nested, plans[0].nested_inner = False, "commit", "rollback"
    plans[1].fail, plans[1].nested, plans[1].nested_inner = True, "commit", "commit"
    plans[2].fail, plans[2].nested, plans[2].nested_inner = False, "rollback", "commit"
    plans[3].fail, plans[3].nested, plans[3].nested_inner = False, "commit", "commit"
    return plans


async def run_plan(shared: Shared, plan: Plan) -> list[int]:
    """Carry out `plan` with yields between all statements; return what the worker saw of
    its own rows just before its transaction ended."""
    tag = plan.tag
    async with shared.transaction():
        for v in range(plan.before):
            await shared.insert(tag, v)
            await asyncio.sleep(0)
        assert await shared.values(tag) == list(range(plan.before))
        if plan.nested is not None:
            try:
                async with shared.transaction():
                    await shared.insert(tag, 100)
                    await asyncio.sleep(0)
                    await shared.insert(tag, 101)
                    if plan.nested_inner is not None:
                        try:
                            async with shared.transaction():
                                await asyncio.sleep(0)
                                await shared.insert(tag, 200)
                                if plan.nested_inner == "rollback":
                                    raise Boom()
                        except Boom:
                            pass
                    await asyncio.sleep(0)
                    if plan.nested == "rollback":
                        raise Boom()
            except Boom:
                pass
        for k in range(plan.after):
            await asyncio.sleep(0)
            await shared.insert(tag, 300 + k)
        seen = await shared.values(tag)
        if plan.fail:
            raise Boom()
    return seen


@pytest.mark.asyncio
@pytest.mark.parametrize("shared", ALL_MODES, indirect=True)
@pytest.mark.parametrize("seed", [1, 2])
async def test_sibling_transactions_with_nesting(
    shared: Shared, seed: int, request: pytest.FixtureRequest
) -> None:
    """20 sibling tasks each run a transaction with yields between statements, some with
    nested transactions two deep, some failing at one level or another, while 6 more tasks
    run plain reads throughout: every task's committed work is there, exactly, rolled-back
    work is not, and nothing fails but the raised `Boom`s (no savepoint errors)."""
    # With this seed, a transaction begins while a reader's iterate() is open.
    plans = make_plans(20, seed)

    async def reader() -> int:
        for _ in range(5):
            await shared.read_base()
            await asyncio.sleep(0)
        return 5

    results = await run_all(
        *(run_plan(shared, plan) for plan in plans), *(reader() for _ in range(6))
    )
    expected_results: list[Any] = []
    for plan in plans:
        values = [v for _, v in Plan(**{**dataclasses.asdict(plan), "fail": False}).expected()]
        expected_results.append(Boom if plan.fail else values)
    check_results(results, expected_results + [5] * 6)

    expected = sorted(row for plan in plans for row in plan.expected())
    assert await shared.rows("w") == expected
    await shared.read_base()
    await expect_committed(shared, "w", expected)


@pytest.mark.asyncio
@pytest.mark.parametrize("shared", ALL_MODES, indirect=True)
async def test_decorator_from_sibling_tasks(shared: Shared) -> None:
    """One `@transaction()`-decorated function called from 12 sibling tasks at once (the one
    `Transaction` object is then open in several tasks), calling a second decorated one
    inside (a savepoint), some calls failing at either level."""

    @shared.transaction()
    async def inner(i: int) -> None:
        await shared.insert(f"d{i}", 10)
        await asyncio.sleep(0)
        if i % 4 == 1:
            raise Boom()

    @shared.transaction()
    async def work(i: int) -> int:
        await shared.insert(f"d{i}", 0)
        await asyncio.sleep(0)
        with contextlib.suppress(Boom):
            await inner(i)
        await shared.insert(f"d{i}", 1)
        await asyncio.sleep(0)
        if i % 3 == 0:
            raise Boom()
        return await shared.count(f"d{i}")

    results = await run_all(*(work(i) for i in range(12)))
    check_results(results, [Boom if i % 3 == 0 else (2 if i % 4 == 1 else 3) for i in range(12)])

    expected = sorted(
        (f"d{i}", v)
        for i in range(12)
        if i % 3 != 0
        for v in ([0, 1] if i % 4 == 1 else [0, 1, 10])
    )
    assert await shared.rows("d") == expected
    await expect_committed(shared, "d", expected)

    # The decorated functions still work one call at a time afterwards.
    assert await work(2) == 6
    with pytest.raises(Boom):
        await work(3)
    assert await shared.values("d2") == [0, 0, 1, 1, 10, 10]
    assert await shared.values("d3") == []


# -- one transaction and its siblings, step by step -------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("shared", SHARED_MODES, indirect=True)
@pytest.mark.parametrize("fail", [False, True], ids=["commit", "rollback"])
async def test_sibling_queries_run_inside_the_open_transaction(shared: Shared, fail: bool) -> None:
    """While task A holds a transaction on the shared connection, sibling B's plain queries
    are not held up until it ends (A waits for B here, so that would deadlock): they run
    inside A's transaction, see its uncommitted rows, and share its fate."""
    a_inside = asyncio.Event()
    b_done = asyncio.Event()

    async def a() -> None:
        async with shared.transaction():
            await shared.insert("a", 1)
            a_inside.set()
            await b_done.wait()
            assert await shared.values("b") == [1]
            if fail:
                raise Boom()

    async def b() -> int:
        await a_inside.wait()
        seen = await shared.count("a")
        await shared.insert("b", 1)
        await shared.read_base()
        b_done.set()
        return seen

    results = await run_all(a(), b())
    check_results(results, [Boom if fail else None, 1])
    expected = [] if fail else [("a", 1), ("b", 1)]
    assert await shared.rows("a") + await shared.rows("b") == expected
    await expect_committed(shared, "a", expected[:1])
    await expect_committed(shared, "b", expected[1:])


@pytest.mark.asyncio
@pytest.mark.parametrize("shared", SHARED_MODES, indirect=True)
async def test_sibling_transaction_waits_for_its_turn(shared: Shared) -> None:
    """B asks for a transaction while A's is open on the shared connection: B's begins only
    once A's has ended, so B's rollback cannot take A's work with it, and vice versa."""
    a_inside = asyncio.Event()
    release_a = asyncio.Event()
    b_asking = asyncio.Event()
    b_inside = asyncio.Event()

    async def a() -> None:
        async with shared.transaction():
            await shared.insert("a", 1)
            a_inside.set()
            await release_a.wait()
            await shared.insert("a", 2)

    async def b() -> list[int]:
        await a_inside.wait()
        b_asking.set()
        try:
            async with shared.transaction():
                b_inside.set()
                await shared.insert("b", 1)
                seen = await shared.values("a")
                raise Boom()
        except Boom:
            return seen

    async def c() -> list[int]:
        # Another sibling that asks while B waits: it gets its turn after B.
        await b_asking.wait()
        async with shared.transaction():
            await shared.insert("c", 1)
            return await shared.values("b")

    tasks = [asyncio.create_task(coro) for coro in (a(), b(), c())]
    await asyncio.wait_for(b_asking.wait(), TIMEOUT)
    for _ in range(20):
        await asyncio.sleep(0)
    # A's plain-query siblings are not blocked, only their transactions.
    await shared.read_base()
    await asyncio.sleep(0.05)
    assert not b_inside.is_set(), "B's transaction began inside A's"
    release_a.set()
    results = await run_all(*tasks)
    check_results(results, [None, [1, 2], []])
    assert await shared.rows("a") == [("a", 1), ("a", 2)]
    assert await shared.rows("b") == []
    assert await shared.rows("c") == [("c", 1)]
    await expect_committed(shared, "a", [("a", 1), ("a", 2)])
    await expect_committed(shared, "c", [("c", 1)])


# -- child tasks ------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("shared", SHARED_MODES, indirect=True)
async def test_child_task_nests_a_transaction_without_deadlock(shared: Shared) -> None:
    """A task inside a transaction starts children (and a grandchild) that open nested
    transactions on the shared connection and awaits them: they nest in the parent's
    transaction at once, take turns among themselves, and each ends on its own."""

    async def grandchild(tag: str, fail: bool) -> None:
        async with shared.transaction():
            await shared.insert(tag, 20)
            await asyncio.sleep(0)
            if fail:
                raise Boom()

    async def child(n: int, fail: bool) -> list[int]:
        tag = f"c{n}"
        async with shared.transaction():
            await shared.insert(tag, 0)
            await asyncio.sleep(0)
            # The parent's row is visible: this runs inside the parent's transaction.
            assert await shared.count("p") == 1
            results = await asyncio.gather(
                grandchild(tag, fail=False), grandchild(tag, fail=True), return_exceptions=True
            )
            assert results[0] is None and isinstance(results[1], Boom)
            await shared.insert(tag, 1)
            seen = await shared.values(tag)
            if fail:
                raise Boom()
        return seen

    async def parent() -> list[Any]:
        async with shared.transaction():
            await shared.insert("p", 0)
            first = asyncio.create_task(child(1, fail=False))
            second = asyncio.create_task(child(2, fail=True))
            third = asyncio.create_task(child(3, fail=False))
            # The parent's own plain queries go on while the children work.
            await shared.read_base()
            results = await asyncio.gather(first, second, third, return_exceptions=True)
            await shared.insert("p", 1)
            # Nested again after the children: the connection's stack is back to just ours.
            async with shared.transaction():
                await shared.insert("p", 2)
        return results

    (results,) = await run_all(parent())
    assert not isinstance(results, BaseException), repr(results)
    check_results(results, [[0, 1, 20], Boom, [0, 1, 20]])
    expected = [("c1", 0), ("c1", 1), ("c1", 20), ("c3", 0), ("c3", 1), ("c3", 20)]
    assert await shared.rows("c") == expected
    assert await shared.rows("p") == [("p", 0), ("p", 1), ("p", 2)]
    await expect_committed(shared, "c", expected)
    await expect_committed(shared, "p", [("p", 0), ("p", 1), ("p", 2)])


@pytest.mark.asyncio
@pytest.mark.parametrize("shared", SHARED_MODES, indirect=True)
async def test_child_transaction_rolled_back_with_the_parent(shared: Shared) -> None:
    """A child's committed nested transaction is part of the parent's: when the parent
    rolls back, the child's work goes too; a sibling of the parent waiting for its turn
    then begins on a clean connection, outside the parent's transaction."""

    async def child() -> None:
        async with shared.transaction():
            await shared.insert("k", 1)

    async def parent() -> None:
        async with shared.transaction():
            await shared.insert("k", 0)
            await asyncio.wait_for(asyncio.create_task(child()), TIMEOUT)
            assert await shared.values("k") == [0, 1]
            raise Boom()

    async def sibling() -> list[int]:
        await asyncio.sleep(0)
        async with shared.transaction():
            await shared.insert("s", 1)
            return await shared.values("k")

    results = await run_all(parent(), sibling())
    check_results(results, [Boom, []])
    assert await shared.rows("k") == []
    assert await shared.rows("s") == [("s", 1)]
    await expect_committed(shared, "k", [])
    await expect_committed(shared, "s", [("s", 1)])


# -- transactions while an iterate() is open on the connection ---------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("shared", ALL_MODES, indirect=True)
@pytest.mark.parametrize("end", ["break", "exhaust"])
async def test_transaction_in_the_body_of_an_iterate_loop(
    shared: Shared, end: str, request: pytest.FixtureRequest
) -> None:
    """Transactions committed (or rolled back) in the body of an `iterate()` loop, on the
    connection being iterated: each ends when its block ends, whether the loop then runs to
    the end or is left early (and the iterator closed)."""
    ordered = values_of(items, "base").order_by(items.c.value)
    rows = shared.target.iterate(ordered)
    seen = []
    try:
        async for row in rows:
            value = row[0]
            seen.append(value)
            if value < 4:
                with contextlib.suppress(Boom):
                    async with shared.transaction():
                        await shared.insert("it", value)
                        if value % 2:
                            raise Boom()
            if value == 5 and end == "break":
                break
    finally:
        await rows.aclose()
    assert seen == list(range(6 if end == "break" else BASE))
    assert await shared.rows("it") == [("it", 0), ("it", 2)]
    await expect_committed(shared, "it", [("it", 0), ("it", 2)])
    await shared.read_base()


@pytest.mark.asyncio
@pytest.mark.parametrize("shared", SHARED_MODES, indirect=True)
@pytest.mark.parametrize("fail", [False, True], ids=["commit", "rollback"])
async def test_sibling_transaction_while_an_iterate_is_open(
    shared: Shared, fail: bool, request: pytest.FixtureRequest
) -> None:
    """Task R is in the middle of an `iterate()` on the shared connection when sibling W
    runs a transaction: W's transaction commits or rolls back exactly its own work, and
    R's iteration finishing in between changes nothing about that."""
    r_started = asyncio.Event()
    w_inserted = asyncio.Event()
    r_done = asyncio.Event()

    async def r() -> list[int]:
        values = []
        async for row in shared.target.iterate(values_of(items, "base").order_by(items.c.value)):
            values.append(row[0])
            r_started.set()
            await w_inserted.wait()
        r_done.set()
        return values

    async def w() -> None:
        await r_started.wait()
        async with shared.transaction():
            await shared.insert("w", 1)
            w_inserted.set()
            await r_done.wait()
            await shared.insert("w", 2)
            if fail:
                raise Boom()

    results = await run_all(r(), w())
    check_results(results, [list(range(BASE)), Boom if fail else None])
    expected = [] if fail else [("w", 1), ("w", 2)]
    assert await shared.rows("w") == expected
    await expect_committed(shared, "w", expected)
