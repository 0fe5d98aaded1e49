"""Helpers shared by the test modules of this package that need pytest or `tests.admin`.

They are kept out of `tests.loops` itself, which the scripts under `scripts/` import in
subprocesses of their own.

- Fixture factories: a module's `database_url` that also creates the module's table, a
  fixture keeping that table empty around each test, and the `case` fixtures (of the
  web-framework modules, and of the modules that use one database from several loops).
- One `Database` per URL and force_rollback setting (`CASES`), used from loops of several
  scopes (the pytest-asyncio and anyio modules): what the loops wrote and so what every
  loop sees (`Ledger`: with force_rollback, all of the current session's writes), what the
  running loop sees (`seen`), what states the database holds (`assert_loop_states`), and
  after the end, from separate connections, what was committed and that no connection
  still holds a lock (`check_ended`, `assert_unlocked`).
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
from databases.core import Connection
from tests import admin
from tests.loops import committed_rows, insert_and_select, is_sqlite
from tests.settings import DATABASE_URL_IDS, DATABASE_URLS

if TYPE_CHECKING:
    from tests.loops import webapp

# -- fixtures ------------------------------------------------------------------------------


def database_url_with_table(table: sqlalchemy.Table) -> Any:
    """The module's `database_url` fixture: the suite's, with `table` created (and emptied)
    on that database first and dropped at the end of the module."""

    @pytest.fixture(scope="module")
    def database_url(database_url: str) -> Iterator[str]:
        admin.create_tables(database_url, table)
        yield database_url
        admin.drop_tables(database_url, table)

    return database_url


def empty_table_fixture(table: sqlalchemy.Table) -> Any:
    """A fixture `empty_table`: `table` is empty at the start of the test and after it."""

    @pytest.fixture
    def empty_table(database_url: str) -> Iterator[None]:
        admin.clear_tables(database_url, table)
        yield
        admin.clear_tables(database_url, table)

    return empty_table


def web_case_fixture(make_app: Callable[[Database], Any], table: sqlalchemy.Table) -> Any:
    """The fixture `case` of the web-framework modules: an app over a module-global
    `Database`, per URL (the module's `database_url` fixture) with force_rollback off and on.

    The databases and apps are created when this is called, at import time, outside any
    event loop, as applications do.
    """
    # Imported here: only the web-framework modules need Starlette, which it imports.
    from tests.loops import webapp

    databases = {
        (url, force_rollback): Database(url, force_rollback=force_rollback)
        for url in DATABASE_URLS
        for force_rollback in (False, True)
    }
    apps = {key: make_app(database) for key, database in databases.items()}

    @pytest.fixture(params=[False, True], ids=["commit", "force_rollback"])
    def case(database_url: str, request: pytest.FixtureRequest) -> Iterator[webapp.Case]:
        key = (database_url, request.param)
        yield webapp.Case(apps[key], databases[key], database_url, table, request.param)
        # Cleanup only (the tests check): connections a failed test left behind are garbage.
        gc.collect()
        admin.clear_tables(database_url, table)

    return case


# -- one database used from loops of several scopes ----------------------------------------

Case = tuple[str, bool]
CASES: list[Case] = [(url, rollback) for url in DATABASE_URLS for rollback in (False, True)]

# Small pools: without force_rollback every loop gets a pool of its own, and the database
# servers are shared.
SMALL_POOL = {"min_size": 1, "max_size": 4}


def case_id(case: Case) -> str:
    """`case`'s test id, as the `case` fixtures give it: `<url id>-plain|rollback`."""
    url, rollback = case
    return f"{DATABASE_URL_IDS[DATABASE_URLS.index(url)]}-{'rollback' if rollback else 'plain'}"


def make_databases(**options: Any) -> dict[Case, Database]:
    """A `Database` for each of `CASES`, created with `options`. Call it at import time,
    outside any event loop, as applications do."""
    return {case: Database(case[0], force_rollback=case[1], **options) for case in CASES}


class Ledger:
    """What the loops wrote to one table, and so what every loop should see.

    Without force_rollback every write is committed: every loop sees all of them, and all
    of them are committed. With force_rollback every loop works in the database's one
    session (one connection in one transaction, whichever loop connected or writes): every
    loop sees every write made since the session began, in any loop, until the session
    ends (`session_ended()`, at the last explicit `disconnect()`), which rolls them all
    back; nothing is ever committed.
    """

    def __init__(self, force_rollback: bool) -> None:
        self.force_rollback = force_rollback
        # (tag, number of rows), in the order written: without force_rollback all of them,
        # with it those of the current session.
        self.writes: list[tuple[str, int]] = []

    def wrote(self, tag: str, count: int) -> None:
        self.writes.append((tag, count))

    def forget_since(self, mark: int) -> None:
        """The writes after the first `mark` were rolled back by a transaction of the test's
        own: no loop sees them, and they were never committed."""
        del self.writes[mark:]

    def session_ended(self) -> None:
        """The database's last explicit `disconnect()` returned: with force_rollback the
        session was rolled back, and its rows are gone (the next session starts empty).
        Without force_rollback the rows were committed and stay."""
        if self.force_rollback:
            self.writes.clear()

    def visible(self) -> dict[str, int]:
        """How many rows of each tag any loop sees now."""
        counts: dict[str, int] = {}
        for tag, count in self.writes:
            counts[tag] = counts.get(tag, 0) + count
        return counts

    def committed(self) -> list[tuple[str, int]]:
        if self.force_rollback:
            return []
        return sorted((tag, value) for tag, count in self.writes for value in range(count))


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
    force_rollback: bool,
    connected_in: asyncio.AbstractEventLoop,
    *loops: asyncio.AbstractEventLoop | None,
) -> None:
    """`database` holds states exactly for `connected_in` (the loop that called `connect()`,
    the only one) and, without force_rollback, `loops` (None among them is passed over): the
    states of loops that ended were closed with them.

    With force_rollback a loop that only queries forwards its statements to the session
    and holds no state, and the connected loop's state opens no connections of its own
    (`open` is False): the session's connection lives on the session loop. `database`'s
    `connection()` is then the session's, the same object in every loop.
    """
    states = database.loop_states()
    assert all(state["alive"] for state in states), states
    assert all(state["open"] is not force_rollback for state in states), states
    # The force-rollback connection is the session's, never a loop's.
    assert not any(state["force_rollback_connection"] for state in states), states
    expected = {id(connected_in)}
    if not force_rollback:
        expected |= {id(loop) for loop in loops if loop is not None}
    assert {id(state["loop"]) for state in states} == expected, states
    assert len(states) == len(expected), states
    explicit = [state["loop"] for state in states if state["connected_explicitly"]]
    assert explicit == [connected_in]


def assert_session_connection(database: Database, seen_before: Connection | None) -> Connection:
    """With force_rollback, `database.connection()` in the running loop is the session's,
    inside its transaction, and is `seen_before` (unless None, one got in another loop or
    task of the same session). Returns it."""
    connection = database.connection()
    assert seen_before is None or connection is seen_before
    # The session's transaction, begun at connect(); tests nest none between their calls.
    assert connection.in_transaction() and not connection.in_nested_transaction()
    return connection


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

    async def write_and_check(self, tag: str, count: int = 30) -> None:
        """Check what this loop sees, `gather()` 2 * `count` inserts and selects, check again."""
        await write_and_check(self.database, self.table, self.ledger, tag, count)

    def check_states(self, *loops: asyncio.AbstractEventLoop | None) -> None:
        """The database holds states exactly for the wide loop and, without force_rollback,
        `loops`: the states of function loops that ended were closed with them. With
        force_rollback every loop's `database.connection()` is the one session connection,
        the same object in every check (the wide loop's connection keeps the session)."""
        assert_loop_states(self.database, self.force_rollback, self.wide_loop, *loops)
        if self.force_rollback:
            seen_before = self.__dict__.get("_session_connection")
            self.__dict__["_session_connection"] = assert_session_connection(
                self.database, seen_before
            )


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


def drop_at_module_end_fixture(name: str, *tables: sqlalchemy.Table) -> Any:
    """A module-scoped autouse fixture `name` that drops `tables` on every database at the
    end of the module. Set up before the module loop, so torn down after it closed (which
    also closes what a failed test left open in it)."""

    @pytest.fixture(scope="module", autouse=True, name=name)
    def drop_at_module_end() -> Iterator[None]:
        yield
        for url in DATABASE_URLS:
            admin.drop_tables(url, *tables)

    return drop_at_module_end


def case_fixture(
    tables: tuple[sqlalchemy.Table, ...],
    *databases: dict[Case, Database],
    scope: Literal["module", "session"] = "module",
    name: str = "case",
) -> Any:
    """A fixture `name` of `scope`, per URL (`database_url`, which must be of `scope` or
    wider) without and with force_rollback: the case `(url, force_rollback)`. `tables` are
    created (and emptied) first; afterwards the case's database of each of `databases` is
    disconnected (only after a failure is any of them still connected)."""

    @pytest.fixture(scope=scope, params=[False, True], ids=["plain", "rollback"], name=name)
    def case(database_url: str, request: pytest.FixtureRequest) -> Iterator[Case]:
        case: Case = (database_url, request.param)
        admin.create_tables(database_url, *tables)  # created if need be, and emptied
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
