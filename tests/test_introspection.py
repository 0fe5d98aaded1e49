"""The public introspection API, on every backend: `Database.dialect`,
`Database.pool_stats()`, `Connection.in_transaction()` / `in_nested_transaction()` and
`Transaction.is_active`."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.schema import CreateTable

from databases import Database
from databases.interfaces import PoolStats
from tests import admin

# The SQLAlchemy driver name of each backend's dialect.
DIALECT_DRIVERS = {
    "sqlite+sqlite3": "pysqlite",
    "postgresql+asyncpg": "asyncpg",
    "postgresql+psycopg": "psycopg",
    "postgresql+aiopg": "psycopg2",
    "mysql+aiomysql": "pymysql",
}
TIMEOUT = 10

things = sa.Table("things", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))


# -- Database.dialect ---------------------------------------------------------------------------


def test_dialect_names_the_database_and_the_driver(database_url: str) -> None:
    database = Database(database_url)
    dialect = database.dialect
    assert isinstance(dialect, sa.engine.Dialect)
    assert dialect.name == admin.dialect_name(database_url)
    assert dialect.driver == DIALECT_DRIVERS[admin.backend_name(database_url)]
    assert "CREATE TABLE things" in str(CreateTable(things).compile(dialect=dialect))
    # The object 0.9's ORMs read (semi-private API, kept on purpose).
    assert dialect is database._backend._dialect  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_dialect_is_the_same_in_every_loop(database_url: str) -> None:
    database = Database(database_url)
    before = database.dialect
    async with database:
        assert database.dialect is before
        in_other_loop = await asyncio.to_thread(asyncio.run, dialect_in_a_loop(database))
        assert in_other_loop is before


async def dialect_in_a_loop(database: Database) -> sa.engine.Dialect:
    await database.fetch_val("SELECT 1")
    return database.dialect


# -- Database.pool_stats() ----------------------------------------------------------------------


def expected_min_size(database_url: str, min_size: int) -> int:
    """SQLite's pool opens connections on demand only: it keeps none open."""
    return 0 if admin.dialect_name(database_url) == "sqlite" else min_size


@pytest.mark.asyncio
async def test_pool_stats_count_connections_in_use(database_url: str) -> None:
    database = Database(database_url, min_size=1, max_size=3)
    assert database.pool_stats() is None  # not connected
    async with database:
        stats = database.pool_stats()
        assert stats is not None
        assert (stats.min_size, stats.max_size) == (expected_min_size(database_url, 1), 3)
        assert stats.in_use == 0

        held = asyncio.Semaphore(0)
        let_go = asyncio.Event()

        async def hold() -> None:
            async with database.connection() as connection:
                await connection.fetch_val("SELECT 1")
                held.release()
                await let_go.wait()

        holders = asyncio.gather(hold(), hold())
        for _ in range(2):
            await asyncio.wait_for(held.acquire(), TIMEOUT)
        stats = database.pool_stats()
        assert stats is not None and stats.in_use == 2
        let_go.set()
        await asyncio.wait_for(holders, TIMEOUT)
        stats = database.pool_stats()
        assert stats is not None
        assert stats.in_use == 0
        assert stats.idle == stats.size >= 2
    assert database.pool_stats() is None  # disconnected


@pytest.mark.asyncio
async def test_pool_stats_are_the_running_loops(database_url: str) -> None:
    """Each event loop has a pool of its own: one loop's connections in use are not
    another's, and a loop has no pool until it first uses the database."""
    async with Database(database_url) as database, database.connection() as connection:
        await connection.fetch_val("SELECT 1")
        stats = database.pool_stats()
        assert stats is not None and stats.in_use == 1

        async def in_other_loop() -> tuple[PoolStats | None, PoolStats | None]:
            before = database.pool_stats()
            async with database.connection() as other:
                await other.fetch_val("SELECT 1")
                return before, database.pool_stats()

        before, during = await asyncio.to_thread(asyncio.run, in_other_loop())
        assert before is None
        # One of its own in use, not the two of a pool shared with this loop.
        assert during is not None and during.in_use == 1
        stats = database.pool_stats()
        assert stats is not None and stats.in_use == 1


@pytest.mark.asyncio
async def test_pool_stats_with_force_rollback(database_url: str) -> None:
    """The force-rollback session's connection is outside every loop's pool."""
    async with Database(database_url, force_rollback=True) as database:
        await database.fetch_val("SELECT 1")
        assert database.pool_stats() is None


def test_pool_stats_size_is_idle_plus_in_use() -> None:
    stats = PoolStats(min_size=1, max_size=5, idle=2, in_use=3)
    assert stats.size == 5
    with pytest.raises(AttributeError):
        stats.idle = 0  # type: ignore[misc]


# -- Connection.in_transaction() and in_nested_transaction() ---------------------------------


@pytest.mark.asyncio
async def test_connection_in_transaction(database_url: str) -> None:
    async with Database(database_url) as database, database.connection() as connection:
        assert not connection.in_transaction()
        async with connection.transaction():
            assert connection.in_transaction()
            assert not connection.in_nested_transaction()
            async with connection.transaction():
                assert connection.in_nested_transaction()

            async def child() -> tuple[bool, bool]:
                # A child task given the connection is inside its transaction.
                return connection.in_transaction(), database.connection().in_transaction()

            shared, own = await asyncio.create_task(child())
            assert (shared, own) == (True, False)
            assert not connection.in_nested_transaction()
        assert not connection.in_transaction()
        transaction = await connection.transaction()
        assert connection.in_transaction()
        await transaction.rollback()
        assert not connection.in_transaction()


@pytest.mark.asyncio
async def test_connection_in_transaction_with_force_rollback(database_url: str) -> None:
    """The session's connection is always inside the session's own transaction."""
    async with Database(database_url, force_rollback=True) as database:
        connection = database.connection()
        assert connection.in_transaction()
        assert not connection.in_nested_transaction()
        async with database.transaction():
            assert connection.in_nested_transaction()
        assert connection.in_transaction()
        assert not connection.in_nested_transaction()


# -- Transaction.is_active ----------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("end", ["commit", "rollback"])
async def test_transaction_is_active(database_url: str, end: str) -> None:
    async with Database(database_url) as database:
        transaction = database.transaction()
        assert not transaction.is_active
        async with transaction:
            assert transaction.is_active
        assert not transaction.is_active

        await transaction.start()
        assert transaction.is_active

        async def sibling() -> bool:
            # Open in any task, unlike 0.9's `_transaction` (None in a sibling task).
            return transaction.is_active

        assert await asyncio.create_task(sibling())
        await (transaction.commit() if end == "commit" else transaction.rollback())
        assert not transaction.is_active


@pytest.mark.asyncio
async def test_transaction_is_active_after_a_failed_block(database_url: str) -> None:
    async with Database(database_url) as database:
        transaction = database.transaction()
        with pytest.raises(RuntimeError, match="boom"):
            async with transaction:
                assert transaction.is_active
                raise RuntimeError("boom")
        assert not transaction.is_active
