"""SQLite specifics: pooled connection reuse, memory databases, driver options, threads."""

from __future__ import annotations

import asyncio
import datetime
import sqlite3
import threading
import typing
import warnings
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect

from databases import Database
from databases.backends._sqlite_worker import THREAD_NAME
from databases.backends.sqlite import SQLiteBackend, SQLitePool
from tests.loops import run_in_bare_loop

metadata = sa.MetaData()
items = sa.Table(
    "pool_items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50)),
)


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if THREAD_NAME in t.name]


def new_workers(before: set[threading.Thread]) -> int:
    """Worker threads alive now that were not in `before`: an earlier test's thread that
    ends meanwhile does not count."""
    return len(set(worker_threads()) - before)


@pytest.fixture
def file_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'items.sqlite'}"


async def create_items(database: Database) -> None:
    await database.execute(sa.schema.CreateTable(items, if_not_exists=True))


@pytest.mark.asyncio
async def test_connections_are_reused(file_url: str) -> None:
    """Queries reuse connections: no new connection (and thread) per query. One-statement
    calls share the loop's statement connection, a task's own connection comes from the pool."""
    before = set(worker_threads())  # the threads themselves: idents are reused
    async with Database(file_url) as database:
        await create_items(database)
        raw_connections = set()
        for number in range(20):
            await database.execute(items.insert(), {"name": f"n{number}"})
            async with database.connection() as connection:
                raw_connections.add(id(connection.raw_connection))
        assert len(raw_connections) == 1
        assert new_workers(before) == 2
        assert await database.fetch_val(sa.select(sa.func.count()).select_from(items)) == 20


@pytest.mark.asyncio
async def test_pool_is_bounded_per_loop(file_url: str) -> None:
    """gather() of many tasks, each holding a connection, opens at most `max_size` pooled
    connections in the loop (plus the statement connection, which `create_items` opened)."""
    before = set(worker_threads())  # the threads themselves: idents are reused
    async with Database(file_url, max_size=3) as database:
        await create_items(database)
        peak = 0

        async def query(number: int) -> int:
            nonlocal peak
            async with database.connection() as connection:
                peak = max(peak, new_workers(before))
                await connection.execute(items.insert(), {"name": f"g{number}"})
                count = sa.select(sa.func.count()).select_from(items)
                return int(await connection.fetch_val(count))

        counts = await asyncio.gather(*(query(n) for n in range(40)))
        assert max(counts) == 40
        assert new_workers(before) == 1 + 3
        assert peak <= 1 + 3


@pytest.mark.asyncio
async def test_one_statement_calls_share_one_connection(file_url: str) -> None:
    """Concurrent `Database` calls of tasks holding no connection queue on one statement
    connection (one worker thread), as tasks sharing one aiosqlite connection did."""
    before = set(worker_threads())  # the threads themselves: idents are reused
    async with Database(file_url, max_size=5) as database:
        await create_items(database)
        await asyncio.gather(
            *(database.execute(items.insert(), {"name": f"n{n}"}) for n in range(30))
        )
        names = await asyncio.gather(
            *(
                database.fetch_val(sa.select(items.c.name).where(items.c.id == n))
                for n in range(1, 31)
            )
        )
        assert sorted(names) == sorted(f"n{n}" for n in range(30))
        assert new_workers(before) == 1


@pytest.mark.asyncio
async def test_raw_begin_on_the_statement_connection_leaves_no_transaction(file_url: str) -> None:
    """A one-statement call that opens a transaction (raw BEGIN) has it rolled back at once,
    as releasing a pooled connection does: later calls sharing the statement connection
    autocommit."""
    async with Database(file_url) as database:
        await create_items(database)
        await database.execute("BEGIN")
        await database.execute(items.insert(), {"name": "kept"})
        with pytest.raises(sqlite3.OperationalError, match="no transaction is active"):
            await database.execute("COMMIT")
    path = file_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as plain:
        assert plain.execute("SELECT name FROM pool_items").fetchall() == [("kept",)]


@pytest.mark.asyncio
async def test_reads_do_not_queue_behind_a_write_waiting_for_the_lock(file_url: str) -> None:
    """While a transaction holds SQLite's write lock, a one-statement INSERT of another task
    waits for it; other tasks' reads must not queue behind that INSERT."""
    async with Database(file_url, timeout=5) as database:
        await create_items(database)
        await database.execute(items.insert(), {"name": "first"})
        holding = asyncio.Event()
        release = asyncio.Event()

        async def writer_in_transaction() -> None:
            async with database.transaction():
                await database.execute(items.insert(), {"name": "in transaction"})
                holding.set()
                await release.wait()

        holder = asyncio.create_task(writer_in_transaction())
        await asyncio.wait_for(holding.wait(), 5)
        blocked = asyncio.create_task(database.execute(items.insert(), {"name": "waiting"}))
        await asyncio.sleep(0.1)
        assert not blocked.done()
        count = sa.select(sa.func.count()).select_from(items)
        assert await asyncio.wait_for(database.fetch_val(count), 1.0) == 1
        release.set()
        await asyncio.wait_for(holder, 5)
        await asyncio.wait_for(blocked, 5)
        assert await database.fetch_val(count) == 3


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "url", ["sqlite:///:memory:", "sqlite:///shared_mem_test?mode=memory&cache=shared"]
)
async def test_memory_database_keeps_data_while_connected(url: str) -> None:
    database = Database(url)
    async with database:
        await create_items(database)
        await database.execute(items.insert(), {"name": "kept"})

        async def other_task() -> list[str]:
            rows = await database.fetch_all(sa.select(items.c.name))
            return [row["name"] for row in rows]

        # Other tasks use other pooled connections and still see the same memory database.
        results = await asyncio.gather(*(other_task() for _ in range(5)))
        assert results == [["kept"]] * 5
    # A fresh connect starts a fresh memory database.
    async with database:
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await database.fetch_all(sa.select(items))


def test_memory_database_is_shared_across_loops() -> None:
    """A module-global :memory: database keeps its data from one asyncio.run() to the next."""
    database = Database("sqlite:///:memory:")
    asyncio.run(database.connect())
    try:

        async def write() -> None:
            await create_items(database)
            await database.execute(items.insert(), {"name": "first loop"})

        async def read() -> list[str]:
            return [row["name"] for row in await database.fetch_all(sa.select(items))]

        asyncio.run(write())
        assert asyncio.run(read()) == ["first loop"]
    finally:
        asyncio.run(database.disconnect())
    assert not database.is_connected


@pytest.mark.asyncio
async def test_connection_options_reach_sqlite3(file_url: str) -> None:
    """Keyword options go to sqlite3.connect, `factory=` included; aiosqlite's own
    `iter_chunk_size` is accepted (0.9 passed options to aiosqlite.connect)."""
    created: list[tuple[sqlite3.Connection, dict[str, object]]] = []

    class CountingConnection(sqlite3.Connection):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            created.append((self, kwargs))

        def answer(self) -> int:
            return 42

    options = {"timeout": 2.5, "detect_types": sqlite3.PARSE_DECLTYPES, "cached_statements": 7}
    async with Database(
        file_url, factory=CountingConnection, iter_chunk_size=3, **options
    ) as database:
        await create_items(database)
        async with database.connection() as connection:
            raw = connection.raw_connection
            async with raw.execute("SELECT 1") as cursor:
                assert isinstance(cursor.connection, CountingConnection)
                assert cursor.connection.answer() == 42
            await raw.execute("CREATE TABLE stamps (at TIMESTAMP)")
            await raw.execute("INSERT INTO stamps VALUES ('2024-01-02 03:04:05')")
            # detect_types reached sqlite3: the declared TIMESTAMP comes back converted.
            rows = await raw.execute_fetchall("SELECT at FROM stamps")
            assert rows == [(datetime.datetime(2024, 1, 2, 3, 4, 5),)]
    # The statement connection (create_items) and the pooled connection of `database.connection()`.
    assert len(created) == 2
    for _, kwargs in created:
        assert {key: kwargs[key] for key in options} == options
        assert kwargs["isolation_level"] is None
        assert kwargs["check_same_thread"] is False
        assert "iter_chunk_size" not in kwargs


@pytest.mark.asyncio
async def test_orm_style_pool_rebuild_keeps_factory(file_url: str) -> None:
    """ORMs rebuild `_backend._pool` with an extra `factory=`; every loop must use it."""
    created: list[sqlite3.Connection] = []

    class Tracking(sqlite3.Connection):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            created.append(self)

    database = Database(file_url)
    backend = database._backend
    assert isinstance(backend, SQLiteBackend)
    assert backend._dialect.name == "sqlite"
    backend._pool = backend._pool.__class__(
        backend._database_url, factory=Tracking, **backend._options
    )
    assert isinstance(backend._pool, SQLitePool)
    async with database:
        await create_items(database)
        assert await database.fetch_all(sa.select(items)) == []
    assert len(created) >= 1


def test_disconnect_leaves_no_worker_threads(file_url: str) -> None:
    before = {t.ident for t in worker_threads()}
    database = Database(file_url)

    async def use() -> None:
        async with database:
            await create_items(database)
            await asyncio.gather(
                *(database.execute(items.insert(), {"name": str(n)}) for n in range(20))
            )

    asyncio.run(use())
    for _ in range(50):
        if not {t.ident for t in worker_threads()} - before:
            break
        threading.Event().wait(0.02)
    assert not {t.ident for t in worker_threads()} - before


def test_loop_states_of_dead_loops_release_threads(file_url: str) -> None:
    """Loops that end without disconnect() release their connections at loop shutdown."""
    before = {t.ident for t in worker_threads()}
    database = Database(file_url)
    asyncio.run(database.connect())

    async def use(number: int) -> None:
        await create_items(database)
        await database.execute(items.insert(), {"name": str(number)})

    for number in range(10):
        asyncio.run(use(number))
    assert len(database.loop_states()) == 0
    assert len({t.ident for t in worker_threads()} - before) <= 1
    asyncio.run(database.disconnect())


async def create_table(url: str) -> None:
    async with Database(url) as database:
        await create_items(database)


# Keeps SQLite's worker thread busy for a few tenths of a second.
SLOW_COUNT = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) "
    "SELECT count(*) FROM c"
)


def test_next_loop_writes_after_a_closed_loop_left_a_busy_write_transaction(
    file_url: str,
) -> None:
    """A loop closed without `shutdown_asyncgens()` while its statement runs on the
    force-rollback session: the statement still ends, and the next loop reads and writes
    in the same session (before it, each loop's own transaction would have met the closed
    loop's write lock: "database is locked")."""
    run_in_bare_loop(create_table(file_url))
    database = Database(file_url, force_rollback=True)
    run_in_bare_loop(database.connect())
    count = sa.select(sa.func.count()).select_from(items)

    async def write_then_leave_busy() -> None:
        await database.execute(items.insert(), {"name": "first loop"})
        abandoned.append(asyncio.ensure_future(database.fetch_val(SLOW_COUNT)))
        await asyncio.sleep(0.05)  # the slow statement reaches the worker thread

    async def read_then_write() -> tuple[int, int]:
        before = await database.fetch_val(count)
        await database.execute(items.insert(), {"name": "second loop"})
        return before, await database.fetch_val(count)

    abandoned: list[asyncio.Future[typing.Any]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Task was destroyed but it is pending!"
        run_in_bare_loop(write_then_leave_busy())
        abandoned.clear()
    assert run_in_bare_loop(read_then_write()) == (1, 2)
    run_in_bare_loop(database.disconnect())
    with sqlite3.connect(file_url.removeprefix("sqlite:///")) as plain:
        assert plain.execute("SELECT name FROM pool_items").fetchall() == []


def test_a_transaction_of_a_closed_loop_stops_counting_once_swept(file_url: str) -> None:
    """One-statement calls share the statement connection only while no transaction is open
    on the file.
    A transaction that a closed loop's connection took with it must stop counting, or
    every later call in the process takes a pooled connection (and thread) of its own."""
    database = Database(file_url, max_size=5)
    run_in_bare_loop(database.connect())
    run_in_bare_loop(create_items(database))

    async def leave_a_transaction_open() -> None:
        await database.transaction().start()
        await database.execute(items.insert(), {"name": "rolled back"})

    async def concurrent_inserts() -> int:
        await asyncio.gather(
            *(database.execute(items.insert(), {"name": f"n{n}"}) for n in range(30))
        )
        return new_workers(before)

    run_in_bare_loop(leave_a_transaction_open())
    before = set(worker_threads())  # the threads themselves: idents are reused
    assert run_in_bare_loop(concurrent_inserts()) == 1  # the statement connection's worker only
    run_in_bare_loop(database.disconnect())
    with sqlite3.connect(file_url.removeprefix("sqlite:///")) as plain:
        assert plain.execute("SELECT count(*) FROM pool_items").fetchone() == (30,)


def test_threads_writing_one_file_do_not_hit_database_is_locked(file_url: str) -> None:
    """Eight loops in eight threads write concurrently; the statement gate avoids
    SQLite's busy-wait and its "database is locked" after `timeout`."""
    database = Database(file_url, timeout=2)
    asyncio.run(database.connect())
    asyncio.run(create_items(database))
    errors: list[BaseException] = []

    async def job(k: int) -> None:
        await asyncio.gather(
            *(database.execute(items.insert(), {"name": f"{k}-{n}"}) for n in range(30)),
            *(database.fetch_all(sa.select(items).limit(5)) for _ in range(30)),
        )

    def run(k: int) -> None:
        try:
            asyncio.run(job(k))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors

    async def count() -> int:
        return int(await database.fetch_val(sa.select(sa.func.count()).select_from(items)))

    assert asyncio.run(count()) == 240
    asyncio.run(database.disconnect())


@pytest.mark.asyncio
async def test_pool_rolls_back_a_connection_released_inside_a_transaction(
    tmp_path: Path,
) -> None:
    """The pool never hands the next user a connection inside someone else's transaction."""
    path = tmp_path / "pool.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE t (x INTEGER)").connection.close()
    pool = SQLitePool(Database(f"sqlite:///{path}").url, max_size=1)
    connection = await pool.acquire()
    raw = pool.raw_connection(connection)
    await raw.execute("BEGIN")
    await raw.execute("INSERT INTO t VALUES (1)")
    assert connection.in_transaction
    await pool.release(connection)
    again = await pool.acquire()
    assert again is connection
    assert not again.in_transaction
    async with raw.execute("SELECT count(*) FROM t") as cursor:
        assert await cursor.fetchone() == (0,)
    await pool.release(again)
    await pool.close()


@pytest.mark.parametrize(
    "column_type",
    [
        sa.DateTime(),
        sa.DateTime(timezone=True),
        sa.TIMESTAMP(),
        sqlite_dialect.DATETIME(),
        sqlite_dialect.DATETIME(storage_format="%(year)04d/%(month)02d/%(day)02d"),
        sqlite_dialect.DATETIME(truncate_microseconds=True),
    ],
    ids=["DateTime", "DateTime-tz", "TIMESTAMP", "DATETIME", "custom-format", "truncated"],
)
def test_datetime_values_are_bound_as_sqlalchemy_binds_them(
    column_type: sa.types.TypeEngine,
) -> None:
    """The backend's faster DATETIME binding writes the same text as SQLAlchemy's, and
    custom storage formats keep SQLAlchemy's own processing."""
    ours = Database("sqlite:///unused.sqlite").dialect
    reference = sqlite_dialect.dialect()
    bind = column_type.dialect_impl(ours).bind_processor(ours)
    expected = column_type.dialect_impl(reference).bind_processor(reference)
    assert bind is not None and expected is not None
    values = [
        datetime.datetime(2024, 1, 2, 3, 4, 5),
        datetime.datetime(2024, 1, 2, 3, 4, 5, 6),
        datetime.datetime(999, 12, 31, 23, 59, 59, 999999),
        datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        datetime.date(2024, 5, 6),
        None,
    ]
    assert [bind(value) for value in values] == [expected(value) for value in values]
    # execute_many converts whole columns: naive datetimes only (the C-level path), and
    # mixed values (value by value).
    bind_column = getattr(bind, "bind_column", None)
    if bind_column is not None:
        naive = tuple(values[:3])
        assert bind_column(naive) == tuple(map(expected, naive))
        assert bind_column(tuple(values)) == tuple(map(expected, values))


@pytest.mark.parametrize(
    "column_type",
    [sa.Boolean(), sa.Boolean(create_constraint=True, name="flag_check"), sa.BOOLEAN()],
    ids=["Boolean", "Boolean-constraint", "BOOLEAN"],
)
def test_boolean_values_are_bound_as_sqlalchemy_binds_them(
    column_type: sa.types.TypeEngine,
) -> None:
    """The backend's faster Boolean binding gives the same values, and refuses what
    SQLAlchemy refuses."""
    ours = Database("sqlite:///unused.sqlite").dialect
    reference = sqlite_dialect.dialect()
    bind = column_type.dialect_impl(ours).bind_processor(ours)
    expected = column_type.dialect_impl(reference).bind_processor(reference)
    assert bind is not None and expected is not None
    values = [True, False, None, 1, 0]
    assert [bind(value) for value in values] == [expected(value) for value in values]
    bind_column = getattr(bind, "bind_column", None)
    if bind_column is not None:
        assert bind_column((True, False, True)) == (1, 0, 1)
        assert bind_column(tuple(values)) == tuple(map(expected, values))
        with pytest.raises((TypeError, ValueError)):
            bind_column((True, "yes"))
    for wrong in ["yes", 2, 0.5]:
        with pytest.raises((TypeError, ValueError)) as refused:
            expected(wrong)
        with pytest.raises(refused.type):
            bind(wrong)
