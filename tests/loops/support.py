"""Helpers shared by the test modules of this package that need pytest or `tests.admin`.

They are kept out of `tests.loops` itself, which the scripts under `scripts/` import in
subprocesses of their own.

- Fixture factories: a module-scoped `url` fixture per test table, and the `case` fixture of
  the web-framework modules.
- One `Database` per URL and force_rollback setting (`CASES`), used from loops of several
  scopes (the pytest-asyncio and anyio modules): what each loop wrote (`Ledger`), what the
  running loop sees (`seen`), and after the end, from separate connections, what was
  committed and that no connection still holds a lock (`check_ended`, `assert_unlocked`).
- `LoopThread`: an event loop running in a background thread.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pytest
import sqlalchemy

from databases import Database, DatabaseURL
from tests import admin
from tests.loops import (
    clear_table,
    committed_rows,
    create_table,
    drop_table,
    insert_and_select,
    is_sqlite,
    url_id,
)
from tests.settings import DATABASE_URLS

if TYPE_CHECKING:
    from tests.loops import webapp

# -- fixtures ------------------------------------------------------------------------------


def url_fixture(table: sqlalchemy.Table) -> Any:
    """A module-scoped fixture `url`, once per URL: `table` is created (and emptied) on that
    database first and dropped at the end."""

    @pytest.fixture(scope="module", params=DATABASE_URLS, ids=url_id)
    def url(request: pytest.FixtureRequest) -> Iterator[str]:
        create_table(request.param, table)
        yield request.param
        drop_table(request.param, table)

    return url


def web_case_fixture(make_app: Callable[[Database], Any], table: sqlalchemy.Table) -> Any:
    """The fixture `case` of the web-framework modules: an app over a module-global
    `Database`, per URL (the module's `url` fixture) with force_rollback off and on.

    The databases and apps are created when this is called, at import time, outside any
    event loop, as applications do.
    """
    # Imported here, after the calling module registered it for assertion rewriting.
    from tests.loops import webapp

    databases = {
        (url, force_rollback): Database(url, force_rollback=force_rollback)
        for url in DATABASE_URLS
        for force_rollback in (False, True)
    }
    apps = {key: make_app(database) for key, database in databases.items()}

    @pytest.fixture(params=[False, True], ids=["commit", "force_rollback"])
    def case(url: str, request: pytest.FixtureRequest) -> Iterator[webapp.Case]:
        key = (url, request.param)
        yield webapp.Case(apps[key], databases[key], url, table, request.param)
        # Cleanup only (the tests check): connections a failed test left behind are garbage.
        gc.collect()
        clear_table(url, table)

    return case


# -- one database used from loops of several scopes ----------------------------------------

Case = tuple[str, bool]
CASES: list[Case] = [(url, rollback) for url in DATABASE_URLS for rollback in (False, True)]

# Small pools: every loop gets a pool of its own, and the database servers are shared.
SMALL_POOL = {"min_size": 1, "max_size": 4}


def case_id(case: Case) -> str:
    url, rollback = case
    return f"{url_id(url)}-{'rollback' if rollback else 'plain'}"


def make_databases(**options: Any) -> dict[Case, Database]:
    """A `Database` for each of `CASES`, created with `options`. Call it at import time,
    outside any event loop, as applications do."""
    return {case: Database(case[0], force_rollback=case[1], **options) for case in CASES}


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


class Ledgers:
    """A module's `Ledger`s, one per arrangement and case: `ledgers(arrangement, case)`."""

    def __init__(self) -> None:
        self._ledgers: dict[tuple[str, Case], Ledger] = {}

    def __call__(self, arrangement: str, case: Case) -> Ledger:
        return self._ledgers.setdefault((arrangement, case), Ledger(case[1]))


async def seen(database: Any, table: sqlalchemy.Table) -> dict[str, int]:
    """How many rows of each tag the running loop sees (`database`: or a `Connection`)."""
    query = sqlalchemy.select(table.c.tag, sqlalchemy.func.count()).group_by(table.c.tag)
    return {row[0]: row[1] for row in await database.fetch_all(query)}


async def write_and_check(
    database: Any, table: sqlalchemy.Table, ledger: Ledger, tag: str, count: int = 30
) -> None:
    """Check what this loop sees, `gather()` 2 * `count` inserts and selects, check again."""
    assert await seen(database, table) == ledger.visible()
    assert await insert_and_select(database, table, tag, count) == list(range(count))
    ledger.wrote(tag, count)
    assert await seen(database, table) == ledger.visible()


def assert_loop_states(
    database: Database,
    connected_in: asyncio.AbstractEventLoop,
    *loops: asyncio.AbstractEventLoop | None,
) -> None:
    """`database` holds states exactly for `connected_in` (the loop that called `connect()`,
    the only one) and `loops` (None among them is passed over): the states of loops that
    ended were closed with them."""
    states = database.loop_states()
    assert all(state["alive"] and state["open"] for state in states), states
    expected = {id(connected_in)} | {id(loop) for loop in loops if loop is not None}
    assert {id(state["loop"]) for state in states} == expected, states
    assert len(states) == len(expected), states
    explicit = [state["loop"] for state in states if state["connected_explicitly"]]
    assert explicit == [connected_in]


class ConnectedInWideLoop:
    """Base of a fixture's value: `database`, connected in `wide_loop` (pytest-asyncio's
    module or session loop, wider than a test's), and the `ledger` of what loops wrote to
    `table`. The subclasses are dataclasses with these fields."""

    url: str
    force_rollback: bool
    database: Database
    ledger: Ledger
    table: ClassVar[sqlalchemy.Table]

    @property
    def wide_loop(self) -> asyncio.AbstractEventLoop:
        raise NotImplementedError

    @property
    def single_writer(self) -> bool:
        """SQLite with force_rollback: see the module docstring."""
        return self.force_rollback and is_sqlite(self.url)

    async def write_and_check(self, tag: str, count: int = 30) -> None:
        """Check what this loop sees, `gather()` 2 * `count` inserts and selects, check again."""
        await write_and_check(self.database, self.table, self.ledger, tag, count)

    def check_states(self, *loops: asyncio.AbstractEventLoop | None) -> None:
        """The database holds states exactly for the wide loop and `loops`: the states of
        function loops that ended were closed with them."""
        assert_loop_states(self.database, self.wide_loop, *loops)


class NewLoops:
    """`new_loop()`: the running loop, checked to be new, with every earlier one it returned
    closed. `new_loop.seen` lists them all."""

    def __init__(self) -> None:
        self.seen: list[asyncio.AbstractEventLoop] = []

    def __call__(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        assert all(loop is not seen_loop for seen_loop in self.seen)
        assert all(seen_loop.is_closed() for seen_loop in self.seen)
        self.seen.append(loop)
        return loop


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


def check_ended(url: str, table: sqlalchemy.Table, ledger: Ledger, at_least: int) -> None:
    """What was committed, checked from another connection (without force_rollback, at least
    `at_least` rows); and nothing holds a lock."""
    assert committed_rows(url, table) == ledger.committed()
    if not ledger.force_rollback:
        assert len(ledger.committed()) >= at_least
    assert_unlocked(url, table)


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


def shared_tables_left_alone_fixture() -> Any:
    """An autouse fixture `empty_tables` that replaces the suite's autouse fixture of this
    name and does nothing: the module leaves the shared tables alone, and on SQLite an open
    rollback transaction of a loop wider than a test's (a module or session loop, or that of
    a module-scoped async fixture) would keep that fixture's cleanup from committing while
    it lasts."""

    @pytest.fixture(autouse=True)
    def empty_tables() -> Iterator[None]:
        yield

    return empty_tables


def drop_at_module_end_fixture(name: str, *tables: sqlalchemy.Table) -> Any:
    """A module-scoped autouse fixture `name` that drops `tables` on every database at the
    end of the module. Set up before the module loop, so torn down after it closed (which
    also closes what a failed test left open in it)."""

    @pytest.fixture(scope="module", autouse=True, name=name)
    def drop_at_module_end() -> Iterator[None]:
        yield
        for url in DATABASE_URLS:
            drop_tables(url, *tables)

    return drop_at_module_end


def case_fixture(
    tables: tuple[sqlalchemy.Table, ...],
    *databases: dict[Case, Database],
    scope: Literal["module", "session"] = "module",
    name: str = "case",
) -> Any:
    """A fixture `name` of `scope`, once per item of `CASES`: `tables` are created (and
    emptied) first; afterwards the case's database of each of `databases` is disconnected
    (only after a failure is any of them still connected)."""

    @pytest.fixture(scope=scope, params=CASES, ids=case_id, name=name)
    def case(request: pytest.FixtureRequest) -> Iterator[Case]:
        case: Case = request.param
        for table in tables:
            create_table(case[0], table)  # created if need be, and emptied
        yield case
        for by_case in databases:
            if by_case[case].is_connected:
                asyncio.run(by_case[case].disconnect())

    return case


# -- loops in threads ----------------------------------------------------------------------


class LoopThread:
    """An event loop running forever in a thread of its own, until `close()`."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self._graceful = True
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            if self._graceful:
                # What asyncio.run() does at the end; the library may close its state here.
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run `coro` in this loop from a thread that is not running a loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(self.timeout)

    async def run_async(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run `coro` in this loop from another running loop, without blocking that one."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def close(self, graceful: bool = True) -> None:
        """Stop the loop and close it, without disconnecting anything; waits at most the
        timeout for the thread to end, and does not check that it did.

        `graceful=False` closes it without `shutdown_asyncgens()`, as a bare `loop.close()`
        does: nothing more can run on it, so the library must release its state without it.
        """
        self._graceful = graceful
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(self.timeout)
