"""The contenders: each runs every case of `bench_cases` its own way.

- `raw-*`: the driver alone (an asyncpg pool, an aiomysql pool, one aiosqlite connection).
- `sqlalchemy`: SQLAlchemy 2's `AsyncEngine`, Core statements, autocommit.
- `DatabasesContender`: the `databases` API; the orchestrator runs it with this repository's
  package, the side runner with `databases` 0.9.0 or `databasez` from another virtualenv.

Drivers are imported when a contender is set up, so a side environment needs only the
driver of the backend it runs. What a batch times is only the operations: inputs
(statements, parameter tuples) are built before the clock starts, and the force-rollback
connection is opened before and closed after.

Each case method returns how many rows it got back (reads; writes return 0 and the
orchestrator counts the table), so a contender that does not do the work is caught; the
counting costs every contender the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import time
import typing
from types import ModuleType

import bench_cases as bc

Inputs = list[typing.Any]


class Batch(typing.NamedTuple):
    """What one timed batch took: wall seconds, CPU seconds of this process (every
    thread), and the rows it got back."""

    seconds: float
    cpu_seconds: float
    rows: int


class Contender:
    """One way of running the cases. Subclasses define one `case_<name>` per case."""

    name = "?"

    async def setup(self) -> None:
        """Open pools/connections; called once per backend."""

    async def teardown(self) -> None:
        """Close everything `setup()` opened."""

    async def prepare(self, case: str) -> None:
        """Before a batch (not timed): open the force-rollback connection."""

    async def finish(self, case: str) -> None:
        """After a batch (not timed)."""

    def describe(self) -> dict[str, typing.Any]:
        """Library and version, for the report."""
        return {}

    # Inputs of one batch of `count` operations, built before the clock starts.

    def inputs(self, case: str, count: int) -> Inputs:
        if case in ("fetch_one_select", "fetch_val", "fetch_one_text", "fetch_one_force_rollback"):
            return list(bc.row_ids(count))
        if case in ("gather_100", "gather_100_force_rollback"):
            return list(bc.gather_ids(count))
        if case == "insert":
            return list(bc.insert_values(count))
        if case == "execute_many_1000":
            rows = bc.insert_values(bc.EXECUTE_MANY_ROWS)
            return [rows] * count
        if case == "transaction_10":
            rows = bc.insert_values(bc.TRANSACTION_INSERTS)
            return [rows] * count
        return [None] * count

    async def run_case(self, case: str, count: int) -> Batch:
        """Run `count` operations of `case`: the time they took, the rows they got."""
        method = getattr(self, f"case_{case}")
        inputs = self.inputs(case, count)
        await self.prepare(case)
        try:
            gc.collect()
            cpu_start = time.process_time()
            start = time.perf_counter()
            rows: int = await method(inputs)
            seconds = time.perf_counter() - start
            return Batch(seconds, time.process_time() - cpu_start, rows)
        finally:
            await self.finish(case)


# -- raw drivers ------------------------------------------------------------------------


def dialect_for(backend: str) -> typing.Any:
    if backend == "postgresql":
        from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg

        return pg_asyncpg.dialect()  # type: ignore[no-untyped-call]
    if backend == "mysql":
        from sqlalchemy.dialects.mysql import aiomysql as mysql_aiomysql

        return mysql_aiomysql.dialect()
    from sqlalchemy.dialects.sqlite import aiosqlite as sqlite_aiosqlite

    return sqlite_aiosqlite.dialect()


Row = tuple[typing.Any, ...]
FetchMany = typing.Callable[[int], typing.Awaitable[typing.Any]]


class RawContender(Contender):
    """Common part of the raw drivers: the SQL compiled once, parameters as tuples.

    The cases are written once here, in terms of a few per-driver primitives; each
    primitive is one operation as that driver's user writes it (a plain `def` may hand
    back the driver's own awaitable, so that no coroutine is added around it).
    """

    backend = "?"
    # How `fetch_all_1000_read` reads the rows: asyncpg's Records by name, tuples by index.
    read_rows = staticmethod(bc.read_by_index)

    def __init__(self, url: typing.Any) -> None:
        self.url = url
        self.sql = bc.driver_sql(dialect_for(self.backend))

    def row_args(self, values: typing.Mapping[str, typing.Any]) -> Row:
        return tuple(values[name] for name in bc.WRITE_COLUMNS)

    def inputs(self, case: str, count: int) -> Inputs:
        inputs = super().inputs(case, count)
        if case == "insert":
            return [self.row_args(values) for values in inputs]
        if case in ("execute_many_1000", "transaction_10"):
            rows = [self.row_args(values) for values in inputs[0]] if inputs else []
            return [rows] * count
        return inputs

    # -- per-driver primitives ------------------------------------------------------------

    def fetch_one(self, sql: str, args: Row) -> typing.Awaitable[typing.Any]:
        """The first row (or None), on a connection of the pool."""
        raise NotImplementedError

    def fetch_val(self, sql: str, args: Row) -> typing.Awaitable[typing.Any]:
        """The first column of the first row."""
        raise NotImplementedError

    def fetch_all(self, sql: str, args: Row) -> typing.Awaitable[typing.Any]:
        """All the rows."""
        raise NotImplementedError

    def open_cursor(self, sql: str) -> typing.AsyncContextManager[FetchMany]:
        """A server-side (unbuffered) cursor over `sql`: its `fetch(n)`."""
        raise NotImplementedError

    def insert_returning(self, sql: str, args: Row) -> typing.Awaitable[typing.Any]:
        """One insert, reading the new id."""
        raise NotImplementedError

    def execute_many(self, sql: str, rows: list[Row]) -> typing.Awaitable[typing.Any]:
        """The driver's `executemany`, atomically."""
        raise NotImplementedError

    def transaction(self, sql: str, rows: list[Row]) -> typing.Awaitable[typing.Any]:
        """One `insert_returning` per row of `rows`, in one transaction."""
        raise NotImplementedError

    def fetch_one_held(self, sql: str, args: Row) -> typing.Awaitable[typing.Any]:
        """`fetch_one` on the force-rollback connection (one query at a time)."""
        raise NotImplementedError

    # -- the cases --------------------------------------------------------------------------

    async def _count_rows(self, sql: str, ids: Inputs) -> int:
        seen = 0
        for row_id in ids:
            seen += await self.fetch_one(sql, (row_id,)) is not None
        return seen

    async def case_fetch_one_select(self, ids: Inputs) -> int:
        return await self._count_rows(self.sql.select_by_id.sql, ids)

    async def case_fetch_one_text(self, ids: Inputs) -> int:
        return await self._count_rows(self.sql.text_by_id.sql, ids)

    async def case_fetch_val(self, ids: Inputs) -> int:
        sql, seen = self.sql.score_by_id.sql, 0
        for row_id in ids:
            seen += await self.fetch_val(sql, (row_id,)) is not None
        return seen

    async def case_fetch_all_1000(self, inputs: Inputs) -> int:
        sql, args, seen = self.sql.first_rows.sql, self.sql.first_rows_args, 0
        for _ in inputs:
            seen += len(await self.fetch_all(sql, args))
        return seen

    async def case_fetch_all_1000_read(self, inputs: Inputs) -> int:
        sql, args, seen = self.sql.first_rows.sql, self.sql.first_rows_args, 0
        read = self.read_rows
        for _ in inputs:
            seen += read(await self.fetch_all(sql, args))
        return seen

    async def case_iterate_10k(self, inputs: Inputs) -> int:
        sql, read, seen = self.sql.all_rows.sql, self.read_rows, 0
        for _ in inputs:
            async with self.open_cursor(sql) as fetch:
                while True:
                    rows = await fetch(bc.ITERATE_CHUNK)
                    seen += read(rows)
                    if len(rows) < bc.ITERATE_CHUNK:
                        break
        return seen

    async def case_insert(self, rows: Inputs) -> int:
        sql = self.sql.insert_returning.sql
        for args in rows:
            await self.insert_returning(sql, args)
        return 0

    async def case_execute_many_1000(self, batches: Inputs) -> int:
        sql = self.sql.insert_many.sql
        for rows in batches:
            await self.execute_many(sql, rows)
        return 0

    async def case_transaction_10(self, batches: Inputs) -> int:
        sql = self.sql.insert_returning.sql
        for rows in batches:
            await self.transaction(sql, rows)
        return 0

    async def _gather(self, fetch: typing.Any, batches: Inputs) -> int:
        sql, seen = self.sql.select_by_id.sql, 0
        for ids in batches:
            rows = await asyncio.gather(*(fetch(sql, (row_id,)) for row_id in ids))
            seen += sum(row is not None for row in rows)
        return seen

    async def case_gather_100(self, batches: Inputs) -> int:
        return await self._gather(self.fetch_one, batches)

    async def case_gather_100_force_rollback(self, batches: Inputs) -> int:
        return await self._gather(self.fetch_one_held, batches)

    async def case_fetch_one_force_rollback(self, ids: Inputs) -> int:
        sql, seen = self.sql.select_by_id.sql, 0
        for row_id in ids:
            seen += await self.fetch_one_held(sql, (row_id,)) is not None
        return seen


class RawPostgres(RawContender):
    """asyncpg: a pool of 1 to 10 connections; `pool.fetchrow()` and friends."""

    name = "raw"
    backend = "postgresql"
    read_rows = staticmethod(bc.read_by_name)

    def __init__(self, url: typing.Any) -> None:
        super().__init__(url)
        self.pool: typing.Any = None
        self.held: typing.Any = None
        self.held_transaction: typing.Any = None
        self.lock = asyncio.Lock()

    def describe(self) -> dict[str, typing.Any]:
        import asyncpg

        return {"library": "asyncpg", "version": asyncpg.__version__}

    async def setup(self) -> None:
        import asyncpg

        self.pool = await asyncpg.create_pool(
            host=self.url.host,
            port=self.url.port,
            user=self.url.username,
            password=self.url.password,
            database=self.url.database,
            min_size=1,
            max_size=10,
        )

    async def teardown(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def prepare(self, case: str) -> None:
        if case in bc.FORCE_ROLLBACK_CASES:
            self.lock = asyncio.Lock()
            self.held = await self.pool.acquire()
            self.held_transaction = self.held.transaction()
            await self.held_transaction.start()

    async def finish(self, case: str) -> None:
        if self.held is not None:
            held, self.held = self.held, None
            try:
                await self.held_transaction.rollback()
            finally:
                await self.pool.release(held)

    def fetch_one(self, sql: str, args: Row) -> typing.Awaitable[typing.Any]:
        return typing.cast(typing.Awaitable[typing.Any], self.pool.fetchrow(sql, *args))

    def fetch_val(self, sql: str, args: Row) -> typing.Awaitable[typing.Any]:
        return typing.cast(typing.Awaitable[typing.Any], self.pool.fetchval(sql, *args))

    def fetch_all(self, sql: str, args: Row) -> typing.Awaitable[typing.Any]:
        return typing.cast(typing.Awaitable[typing.Any], self.pool.fetch(sql, *args))

    @contextlib.asynccontextmanager
    async def open_cursor(self, sql: str) -> typing.AsyncIterator[FetchMany]:
        async with self.pool.acquire() as connection, connection.transaction():
            cursor = await connection.cursor(sql)
            yield cursor.fetch

    def insert_returning(self, sql: str, args: Row) -> typing.Awaitable[typing.Any]:
        return typing.cast(typing.Awaitable[typing.Any], self.pool.fetchval(sql, *args))

    def execute_many(self, sql: str, rows: list[Row]) -> typing.Awaitable[typing.Any]:
        return typing.cast(typing.Awaitable[typing.Any], self.pool.executemany(sql, rows))

    async def transaction(self, sql: str, rows: list[Row]) -> None:
        async with self.pool.acquire() as connection, connection.transaction():
            for args in rows:
                await connection.fetchval(sql, *args)

    async def fetch_one_held(self, sql: str, args: Row) -> typing.Any:
        async with self.lock:
            return await self.held.fetchrow(sql, *args)


class RawMySQL(RawContender):
    """aiomysql: a pool of 1 to 10 connections in autocommit, default (tuple) cursors."""

    name = "raw"
    backend = "mysql"

    def __init__(self, url: typing.Any) -> None:
        super().__init__(url)
        self.pool: typing.Any = None
        self.held: typing.Any = None
        self.lock = asyncio.Lock()

    def describe(self) -> dict[str, typing.Any]:
        import aiomysql

        return {"library": "aiomysql", "version": aiomysql.__version__}

    async def setup(self) -> None:
        import aiomysql

        self.pool = await aiomysql.create_pool(
            host=self.url.host,
            port=self.url.port or 3306,
            user=self.url.username,
            password=self.url.password or "",
            db=self.url.database,
            minsize=1,
            maxsize=10,
            autocommit=True,
        )

    async def teardown(self) -> None:
        if self.pool is not None:
            self.pool.close()
            await self.pool.wait_closed()

    async def prepare(self, case: str) -> None:
        if case in bc.FORCE_ROLLBACK_CASES:
            self.lock = asyncio.Lock()
            self.held = await self.pool.acquire()
            await self.held.begin()

    async def finish(self, case: str) -> None:
        if self.held is not None:
            held, self.held = self.held, None
            try:
                await held.rollback()
            finally:
                self.pool.release(held)

    async def fetch_one(self, sql: str, args: Row) -> typing.Any:
        async with self.pool.acquire() as connection, connection.cursor() as cursor:
            await cursor.execute(sql, args)
            return await cursor.fetchone()

    async def fetch_val(self, sql: str, args: Row) -> typing.Any:
        row = await self.fetch_one(sql, args)
        return row[0]

    async def fetch_all(self, sql: str, args: Row) -> typing.Any:
        async with self.pool.acquire() as connection, connection.cursor() as cursor:
            await cursor.execute(sql, args)
            return await cursor.fetchall()

    @contextlib.asynccontextmanager
    async def open_cursor(self, sql: str) -> typing.AsyncIterator[FetchMany]:
        import aiomysql

        async with (
            self.pool.acquire() as connection,
            connection.cursor(aiomysql.SSCursor) as cursor,
        ):
            await cursor.execute(sql)
            yield cursor.fetchmany

    async def insert_returning(self, sql: str, args: Row) -> typing.Any:
        async with self.pool.acquire() as connection, connection.cursor() as cursor:
            await cursor.execute(sql, args)
            return cursor.lastrowid

    async def execute_many(self, sql: str, rows: list[Row]) -> None:
        async with self.pool.acquire() as connection, connection.cursor() as cursor:
            await cursor.executemany(sql, rows)

    async def transaction(self, sql: str, rows: list[Row]) -> None:
        async with self.pool.acquire() as connection:
            await connection.begin()
            try:
                async with connection.cursor() as cursor:
                    for args in rows:
                        await cursor.execute(sql, args)
            except BaseException:
                await connection.rollback()
                raise
            await connection.commit()

    async def fetch_one_held(self, sql: str, args: Row) -> typing.Any:
        async with self.lock, self.held.cursor() as cursor:
            await cursor.execute(sql, args)
            return await cursor.fetchone()


def sqlite_stored(value: typing.Any) -> typing.Any:
    """A value as SQLAlchemy stores it on SQLite: a datetime as text (sqlite3's own
    datetime adapter is deprecated)."""
    if isinstance(value, datetime.datetime):
        return value.isoformat(" ", "microseconds")
    return value


def sqlite_rows(rows: typing.Iterable[Row]) -> list[Row]:
    """Rows of `bc.WRITE_COLUMNS` as an aiosqlite user passes them: the timestamp as text
    (`sqlite_stored`), in a plain comprehension. Done inside each timed operation, as
    asyncpg and aiomysql encode their datetimes inside theirs."""
    return [
        (name, score, active, created_at.isoformat(" ", "microseconds"))
        for name, score, active, created_at in rows
    ]


assert bc.WRITE_COLUMNS == ("name", "score", "active", "created_at"), "update sqlite_rows()"


class RawSQLite(RawContender):
    """aiosqlite: one connection in autocommit (`isolation_level=None`), explicit BEGIN and
    COMMIT for the atomic cases. aiosqlite queues concurrent calls on its thread, so the
    force-rollback case runs on the same connection (inside the BEGIN of `prepare`)."""

    name = "raw"
    backend = "sqlite"

    def __init__(self, url: typing.Any) -> None:
        super().__init__(url)
        self.connection: typing.Any = None

    def describe(self) -> dict[str, typing.Any]:
        import aiosqlite

        return {"library": "aiosqlite", "version": aiosqlite.__version__}

    async def setup(self) -> None:
        import aiosqlite

        self.connection = await aiosqlite.connect(self.url.database, isolation_level=None)

    async def teardown(self) -> None:
        if self.connection is not None:
            await self.connection.close()

    async def prepare(self, case: str) -> None:
        if case in bc.FORCE_ROLLBACK_CASES:
            await self.connection.execute("BEGIN")

    async def finish(self, case: str) -> None:
        if case in bc.FORCE_ROLLBACK_CASES and self.connection.in_transaction:
            await self.connection.execute("ROLLBACK")

    @contextlib.asynccontextmanager
    async def _atomic(self) -> typing.AsyncIterator[typing.Any]:
        """BEGIN, then COMMIT, or ROLLBACK on an exception."""
        connection = self.connection
        await connection.execute("BEGIN")
        try:
            yield connection
        except BaseException:
            await connection.execute("ROLLBACK")
            raise
        await connection.execute("COMMIT")

    async def fetch_one(self, sql: str, args: Row) -> typing.Any:
        rows = await self.connection.execute_fetchall(sql, args)
        return rows[0] if rows else None

    async def fetch_val(self, sql: str, args: Row) -> typing.Any:
        row = await self.fetch_one(sql, args)
        return row[0]

    def fetch_all(self, sql: str, args: Row) -> typing.Awaitable[typing.Any]:
        return typing.cast(
            typing.Awaitable[typing.Any], self.connection.execute_fetchall(sql, args)
        )

    @contextlib.asynccontextmanager
    async def open_cursor(self, sql: str) -> typing.AsyncIterator[FetchMany]:
        async with self.connection.execute(sql) as cursor:
            yield cursor.fetchmany

    async def insert_returning(self, sql: str, args: Row) -> typing.Any:
        cursor = await self.connection.execute(sql, sqlite_rows([args])[0])
        return cursor.lastrowid

    async def execute_many(self, sql: str, rows: list[Row]) -> None:
        async with self._atomic() as connection:
            await connection.executemany(sql, sqlite_rows(rows))

    async def transaction(self, sql: str, rows: list[Row]) -> None:
        async with self._atomic() as connection:
            for args in sqlite_rows(rows):
                await connection.execute(sql, args)

    fetch_one_held = fetch_one


RAW_CONTENDERS: dict[str, type[RawContender]] = {
    "postgresql": RawPostgres,
    "mysql": RawMySQL,
    "sqlite": RawSQLite,
}


# -- SQLAlchemy-based contenders: statements built before the clock starts ---------------


class ClauseInputs(Contender):
    """Inputs as SQLAlchemy statements, built the way user code builds them."""

    def inputs(self, case: str, count: int) -> Inputs:
        inputs = super().inputs(case, count)
        if case in ("fetch_one_select", "fetch_one_force_rollback"):
            return [bc.select_by_id(row_id) for row_id in inputs]
        if case == "fetch_val":
            return [bc.select_score_by_id(row_id) for row_id in inputs]
        if case in ("fetch_all_1000", "fetch_all_1000_read"):
            return [bc.select_first_rows()] * count
        if case == "iterate_10k":
            return [bc.select_all_rows()] * count
        if case in ("gather_100", "gather_100_force_rollback"):
            return [[bc.select_by_id(row_id) for row_id in ids] for ids in inputs]
        return inputs


SQLALCHEMY_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "mysql": "mysql+aiomysql",
    "sqlite": "sqlite+aiosqlite",
}


class SQLAlchemyContender(ClauseInputs):
    """SQLAlchemy 2 `AsyncEngine`, Core: `create_async_engine(url, pool_size=10,
    max_overflow=0, isolation_level="AUTOCOMMIT")`, one `engine.connect()` per operation.

    The atomic cases (`execute_many_1000`, `transaction_10`) and the force-rollback
    connection use a second engine with the default isolation level and `begin()`, since
    an AUTOCOMMIT connection sends no BEGIN.
    """

    name = "sqlalchemy"

    def __init__(self, backend: str, url: typing.Any) -> None:
        self.backend = backend
        self.url = url
        self.engine: typing.Any = None
        self.tx_engine: typing.Any = None
        self.held: typing.Any = None
        self.lock = asyncio.Lock()
        self.text_query: typing.Any = None
        self.insert_query: typing.Any = None

    def describe(self) -> dict[str, typing.Any]:
        import sqlalchemy

        return {"library": "SQLAlchemy", "version": sqlalchemy.__version__}

    def _engine_url(self) -> str:
        url = self.url.set(drivername=SQLALCHEMY_DRIVERS[self.backend])
        return str(url.render_as_string(hide_password=False))

    async def setup(self) -> None:
        import sqlalchemy
        from sqlalchemy.ext.asyncio import create_async_engine

        url = self._engine_url()
        self.engine = create_async_engine(
            url, pool_size=10, max_overflow=0, isolation_level="AUTOCOMMIT"
        )
        self.tx_engine = create_async_engine(url, pool_size=10, max_overflow=0)
        self.text_query = sqlalchemy.text(bc.TEXT_SELECT_BY_ID)
        self.insert_query = bc.insert_row()

    async def teardown(self) -> None:
        for engine in (self.engine, self.tx_engine):
            if engine is not None:
                await engine.dispose()

    async def prepare(self, case: str) -> None:
        if case in bc.FORCE_ROLLBACK_CASES:
            self.lock = asyncio.Lock()
            self.held = await self.tx_engine.connect()
            await self.held.begin()

    async def finish(self, case: str) -> None:
        if self.held is not None:
            held, self.held = self.held, None
            try:
                await held.rollback()
            finally:
                await held.close()

    async def _first(self, statement: typing.Any, params: typing.Any = None) -> typing.Any:
        async with self.engine.connect() as connection:
            result = await connection.execute(statement, params)
            return result.first()

    async def _all(self, statement: typing.Any) -> typing.Any:
        async with self.engine.connect() as connection:
            result = await connection.execute(statement)
            return result.all()

    async def case_fetch_one_select(self, statements: Inputs) -> int:
        seen = 0
        for statement in statements:
            seen += await self._first(statement) is not None
        return seen

    async def case_fetch_one_text(self, ids: Inputs) -> int:
        query, seen = self.text_query, 0
        for row_id in ids:
            seen += await self._first(query, {"id": row_id}) is not None
        return seen

    async def case_fetch_val(self, statements: Inputs) -> int:
        seen = 0
        for statement in statements:
            async with self.engine.connect() as connection:
                seen += await connection.scalar(statement) is not None
        return seen

    async def case_fetch_all_1000(self, statements: Inputs) -> int:
        seen = 0
        for statement in statements:
            seen += len(await self._all(statement))
        return seen

    async def case_fetch_all_1000_read(self, statements: Inputs) -> int:
        seen = 0
        for statement in statements:
            seen += bc.read_by_attribute(await self._all(statement))
        return seen

    async def case_iterate_10k(self, statements: Inputs) -> int:
        # Server-side cursors: asyncpg's need a transaction, hence the second engine.
        seen = 0
        for statement in statements:
            async with self.tx_engine.connect() as connection:
                result = await connection.stream(
                    statement, execution_options={"yield_per": bc.ITERATE_CHUNK}
                )
                async for partition in result.partitions():
                    seen += bc.read_by_attribute(partition)
        return seen

    async def case_insert(self, rows: Inputs) -> int:
        query = self.insert_query
        for values in rows:
            async with self.engine.connect() as connection:
                result = await connection.execute(query, values)
                _new_id = result.inserted_primary_key
        return 0

    async def case_execute_many_1000(self, batches: Inputs) -> int:
        query = self.insert_query
        for rows in batches:
            async with self.tx_engine.begin() as connection:
                await connection.execute(query, rows)
        return 0

    async def case_transaction_10(self, batches: Inputs) -> int:
        query = self.insert_query
        for rows in batches:
            async with self.tx_engine.begin() as connection:
                for values in rows:
                    await connection.execute(query, values)
        return 0

    async def case_gather_100(self, batches: Inputs) -> int:
        seen = 0
        for statements in batches:
            rows = await asyncio.gather(*(self._first(statement) for statement in statements))
            seen += sum(row is not None for row in rows)
        return seen

    async def _locked_first(self, statement: typing.Any) -> typing.Any:
        async with self.lock:
            result = await self.held.execute(statement)
            return result.first()

    async def case_gather_100_force_rollback(self, batches: Inputs) -> int:
        seen = 0
        for statements in batches:
            rows = await asyncio.gather(*(self._locked_first(s) for s in statements))
            seen += sum(row is not None for row in rows)
        return seen

    async def case_fetch_one_force_rollback(self, statements: Inputs) -> int:
        seen = 0
        for statement in statements:
            seen += await self._locked_first(statement) is not None
        return seen


class DatabasesContender(ClauseInputs):
    """The `databases` API: this repository's package, `databases` 0.9.0 or `databasez`
    (`module` is the imported package). Every case is the code a user writes.

    `rollback_options`: more options for the force-rollback cases' databases (this
    package's `force_rollback_savepoints`, in the `databases+savepoints` contender).
    """

    def __init__(
        self,
        name: str,
        module: ModuleType,
        url: str,
        options: dict[str, typing.Any] | None = None,
        rollback_options: dict[str, typing.Any] | None = None,
    ) -> None:
        self.name = name
        self.module = module
        self.url = url
        self.options = dict(options or {})
        self.rollback_options = dict(rollback_options or {})
        self.database: typing.Any = None
        self.rollback_database: typing.Any = None
        self.insert_query: typing.Any = None
        # databasez returns SQLAlchemy Rows (`row.name`); databases' Records are read the
        # way its documentation shows, `row["name"]`.
        self.by_attribute = module.__name__ == "databasez"

    def describe(self) -> dict[str, typing.Any]:
        version = getattr(self.module, "__version__", None)
        if version is None:
            from importlib import metadata

            version = metadata.version(self.module.__name__)
        return {
            "library": self.module.__name__,
            "version": version,
            "file": getattr(self.module, "__file__", None),
        }

    async def setup(self) -> None:
        self.database = self.module.Database(self.url, **self.options)
        await self.database.connect()
        self.insert_query = bc.insert_row()

    async def teardown(self) -> None:
        if self.database is not None:
            await self.database.disconnect()

    async def prepare(self, case: str) -> None:
        if case in bc.FORCE_ROLLBACK_CASES:
            database = self.module.Database(
                self.url, force_rollback=True, **self.options, **self.rollback_options
            )
            await database.connect()
            self.rollback_database = database
            # Open the connection and its transaction, and warm the statement cache.
            await database.fetch_one(bc.select_by_id(1))

    async def finish(self, case: str) -> None:
        if self.rollback_database is not None:
            database, self.rollback_database = self.rollback_database, None
            await database.disconnect()

    async def case_fetch_one_select(self, statements: Inputs) -> int:
        database, seen = self.database, 0
        for statement in statements:
            seen += await database.fetch_one(statement) is not None
        return seen

    async def case_fetch_one_text(self, ids: Inputs) -> int:
        database, sql, seen = self.database, bc.TEXT_SELECT_BY_ID, 0
        for row_id in ids:
            seen += await database.fetch_one(sql, {"id": row_id}) is not None
        return seen

    async def case_fetch_val(self, statements: Inputs) -> int:
        database, seen = self.database, 0
        for statement in statements:
            seen += await database.fetch_val(statement) is not None
        return seen

    async def case_fetch_all_1000(self, statements: Inputs) -> int:
        database, seen = self.database, 0
        for statement in statements:
            seen += len(await database.fetch_all(statement))
        return seen

    async def case_fetch_all_1000_read(self, statements: Inputs) -> int:
        database, seen = self.database, 0
        read = bc.read_by_attribute if self.by_attribute else bc.read_by_name
        for statement in statements:
            seen += read(await database.fetch_all(statement))
        return seen

    async def case_iterate_10k(self, statements: Inputs) -> int:
        database, seen = self.database, 0
        for statement in statements:
            if self.by_attribute:
                async for row in database.iterate(statement):
                    _values = (row.id, row.name, row.score, row.active, row.created_at)
                    seen += 1
            else:
                async for row in database.iterate(statement):
                    _values = (
                        row["id"],
                        row["name"],
                        row["score"],
                        row["active"],
                        row["created_at"],
                    )
                    seen += 1
        return seen

    async def case_insert(self, rows: Inputs) -> int:
        database, query = self.database, self.insert_query
        for values in rows:
            await database.execute(query, values)
        return 0

    async def case_execute_many_1000(self, batches: Inputs) -> int:
        database, query = self.database, self.insert_query
        for rows in batches:
            await database.execute_many(query, rows)
        return 0

    async def case_transaction_10(self, batches: Inputs) -> int:
        database, query = self.database, self.insert_query
        for rows in batches:
            async with database.transaction():
                for values in rows:
                    await database.execute(query, values)
        return 0

    async def case_gather_100(self, batches: Inputs) -> int:
        database, seen = self.database, 0
        for statements in batches:
            rows = await asyncio.gather(*(database.fetch_one(s) for s in statements))
            seen += sum(row is not None for row in rows)
        return seen

    async def case_gather_100_force_rollback(self, batches: Inputs) -> int:
        database, seen = self.rollback_database, 0
        for statements in batches:
            rows = await asyncio.gather(*(database.fetch_one(s) for s in statements))
            seen += sum(row is not None for row in rows)
        return seen

    async def case_fetch_one_force_rollback(self, statements: Inputs) -> int:
        database, seen = self.rollback_database, 0
        for statement in statements:
            seen += await database.fetch_one(statement) is not None
        return seen


def databases_options(backend: str, library: str) -> dict[str, typing.Any]:
    """Pool options so every `databases`-style contender has a pool of 10 connections.

    `library`: "this" (this repository), "databases" (0.9.0) or "databasez".
    PostgreSQL and MySQL: `min_size=1, max_size=10` (pools grow to 10 in `gather_100`;
    0.9.0 would otherwise open 10 connections for each force-rollback database, which
    needs one). SQLite: this repository's pool takes `max_size`; 0.9.0 opens a connection
    per acquire and would pass unknown options on to `sqlite3.connect()`, so it gets none.
    databasez runs on a SQLAlchemy engine: `pool_size=10, max_overflow=0`, as the
    `sqlalchemy` contender (its pool opens connections on demand).
    """
    if library == "databasez":
        return {"pool_size": 10, "max_overflow": 0}
    if backend in ("postgresql", "mysql"):
        return {"min_size": 1, "max_size": 10}
    if library == "this":
        return {"max_size": 10}
    return {}


def databases_url(url: str, library: str) -> str:
    """databasez picks psycopg and asyncmy for bare schemes: name the drivers all others use."""
    if library != "databasez":
        return url
    scheme, sep, rest = url.partition("://")
    if "+" in scheme:
        return url
    driver = {"postgresql": "asyncpg", "postgres": "asyncpg", "mysql": "aiomysql"}.get(
        scheme, "aiosqlite"
    )
    return f"{scheme}+{driver}{sep}{rest}"
