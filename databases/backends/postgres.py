"""PostgreSQL through asyncpg: one asyncpg pool per event loop.

SQLAlchemy's asyncpg dialect compiles (numbered `$n` parameters with casts); its result
types are adjusted for a bare asyncpg connection, which returns JSON as text and does
not report column type codes with rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import decimal
import functools
import hashlib
import typing
from collections.abc import AsyncGenerator

from sqlalchemy.dialects.postgresql import JSON, JSONB
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import processors
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import sqltypes

from databases._logging import logger
from databases.backends.common import _driver_compat as driver
from databases.backends.common import _run_sync as run_sync
from databases.backends.common import _sqlalchemy_compat as compat
from databases.backends.common._driver import ITERATE_CHUNK, require_driver
from databases.backends.common._option_values import (
    LIBPQ_SSL_MODES,
    read_float,
    read_int,
    ssl_reader,
)
from databases.backends.common._options import (
    DriverKeywords,
    OptionRules,
    pool_sizes,
    server_kwargs,
    signature_keywords,
)
from databases.backends.common._run_sync import BorrowedConnectionDialect
from databases.backends.common.base import (
    BackendSetup,
    DriverResult,
    DriverRow,
    SQLBackend,
    SQLConnection,
)
from databases.backends.common.compiler import Args, CompiledStatement
from databases.backends.common.records import RecordShape
from databases.backends.common.transports import close_now
from databases.interfaces import PoolStats, Record, TransactionBackend
from databases.url import DatabaseURL

try:
    import asyncpg
except ImportError:  # pragma: no cover - reported when the backend is used
    asyncpg = None

__all__ = ["PostgresBackend", "PostgresConnection", "PostgresTransaction"]

# How long disconnect() waits for connections still in use before terminating them.
CLOSE_TIMEOUT = 5.0
# URL query options asyncpg takes, and the `ssl` modes besides true and false (libpq's).
OPTION_RULES = OptionRules(
    url={
        "statement_cache_size": read_int,
        "command_timeout": read_float,
        "ssl": ssl_reader(LIBPQ_SSL_MODES),
    },
)


class _ByValue:
    """Numeric results by value: asyncpg gives Decimal for NUMERIC and float for FLOAT.

    A mixin, not a `Numeric` subclass: SQLAlchemy 2.1's `Float` is no `Numeric`, and a
    class deriving from both would call `Float.__init__` with Numeric's `scale`.
    """

    render_bind_cast = True
    asdecimal: bool

    def bind_processor(self, dialect: Dialect) -> None:
        return None

    def result_processor(
        self, dialect: Dialect, coltype: object
    ) -> typing.Callable[[typing.Any], typing.Any]:
        if self.asdecimal:
            to_decimal = processors.to_decimal_processor_factory(
                decimal.Decimal, compat.decimal_return_scale(self)
            )

            def as_decimal(value: typing.Any) -> typing.Any:
                return to_decimal(value) if isinstance(value, float) else value

            return as_decimal

        # C-level: None stays None, floats stay, Decimals become floats.
        to_float: typing.Callable[[typing.Any], typing.Any] = processors.to_float
        return to_float


class _Numeric(_ByValue, sqltypes.Numeric):  # type: ignore[type-arg]
    pass


class _Float(_ByValue, sqltypes.Float):  # type: ignore[type-arg]
    pass


class PostgresDialect(PGDialect_asyncpg):
    """The asyncpg dialect, with JSON decoded from text and numbers converted by value."""

    colspecs = {  # noqa: RUF012
        **PGDialect_asyncpg.colspecs,
        sqltypes.JSON: JSON,
        JSONB: JSONB,
        sqltypes.Numeric: _Numeric,
        sqltypes.Float: _Float,
    }
    # A bare asyncpg connection has no JSON codec (SQLAlchemy installs one on its own
    # connections): results arrive as text and are decoded by the JSON types. SQLAlchemy
    # 2.1 reads this flag; 2.0 always decodes.
    supports_native_json_deserialization = False

    def __init__(self, **kwargs: typing.Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        # LIKE's ESCAPE '\\' and other literals as for standard_conforming_strings=on.
        compat.assume_standard_conforming_strings(self)


class PostgresRunSyncDialect(BorrowedConnectionDialect, PostgresDialect):
    """`run_sync()` on our asyncpg connections: JSON as our statements get it (no codec)."""

    supports_statement_cache = True

    def on_connect(self) -> typing.Callable[[typing.Any], None]:
        def autocommit(adapted: typing.Any) -> None:
            # Only the adapter's own setting (no SQL): it then begins no asyncpg
            # transaction of its own, and statements join the caller's.
            PGDialect_asyncpg.set_isolation_level(self, adapted, "AUTOCOMMIT")  # type: ignore[no-untyped-call]

        return autocommit


RUN_SYNC_DRIVER = run_sync.register(
    "postgresql.databases_asyncpg", __name__, "PostgresRunSyncDialect"
)


@functools.cache
def _asyncpg_keywords() -> DriverKeywords:
    """What `asyncpg.create_pool()` takes, its own and `asyncpg.connect()`'s."""
    names = signature_keywords(asyncpg.create_pool, asyncpg.connect)
    return DriverKeywords("asyncpg", names)


class PostgresBackend(SQLBackend):
    """`postgresql://user:password@host:5432/name?min_size=1&max_size=10&ssl=true`."""

    name = "PostgreSQL"
    driver_name = "asyncpg"
    option_rules = OPTION_RULES
    default_port = 5432
    run_sync_driver = RUN_SYNC_DRIVER

    def __init__(
        self, database_url: DatabaseURL | str | BackendSetup, **options: typing.Any
    ) -> None:
        require_driver(asyncpg, "asyncpg", "postgresql", self.name)
        super().__init__(database_url, **options)
        self._pool: typing.Any = None

    def _make_dialect(self) -> Dialect:
        dialect: Dialect = PostgresDialect()
        return dialect

    def _driver_keywords(self) -> DriverKeywords:
        return _asyncpg_keywords()

    async def connect(self) -> None:
        if self._pool is not None:
            return
        kwargs = server_kwargs(self._database_url, "database")
        kwargs.update(self._get_connection_kwargs())
        kwargs["min_size"], kwargs["max_size"] = pool_sizes(kwargs)
        self._pool = await asyncpg.create_pool(connect=self._connect_one, **kwargs)

    async def _connect_one(self, *args: typing.Any, **kwargs: typing.Any) -> typing.Any:
        """Every connection the pool opens, bounded by `connect_timeout` (asyncpg's
        `connect=` hook: also where pool listeners hear of it)."""
        connection = await self._connecting(asyncpg.connect(*args, **kwargs))
        self._pool_event("connect", connection)
        return connection

    async def disconnect(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT)
        except asyncio.TimeoutError:
            logger.warning(
                "PostgreSQL connections were still in use %.0f s after disconnect(); "
                "terminating them",
                CLOSE_TIMEOUT,
            )
            pool.terminate()

    def connection(self) -> PostgresConnection:
        return PostgresConnection(self)

    def _is_broken(self, connection: typing.Any) -> bool:
        try:
            return bool(connection.is_closed())
        except asyncpg.InterfaceError:
            # Its pool detaches a connection that closed: "released back to the pool".
            return True

    def pool_stats(self) -> PoolStats | None:
        pool = self._pool
        if pool is None:
            return None
        idle = pool.get_idle_size()
        return PoolStats(pool.get_min_size(), pool.get_max_size(), idle, pool.get_size() - idle)

    def terminate(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # Sockets are closed from this thread: asyncpg's transports need no loop for that.
        loop, connections = driver.asyncpg_pool_connections(pool)
        # First mark the pool terminated (asyncpg's own terminate(), which also fails half
        # way on a closed loop): otherwise, when this loop runs again, the connections'
        # ends make asyncpg 0.32 start a task to replace them, left pending at its close.
        with contextlib.suppress(Exception):
            pool.terminate()
        for connection in connections:
            close_now(driver.asyncpg_transport(connection), loop)
            # Tell asyncpg it is gone, or collecting it warns "unclosed connection".
            driver.asyncpg_mark_aborted(connection)


class PostgresTransaction(TransactionBackend):
    """asyncpg's own transaction (savepoints when nested), which its cursors require.

    Options: `isolation` ("serializable", "repeatable_read", "read_committed",
    "read_uncommitted"), `readonly`, `deferrable`.
    """

    def __init__(self, connection: PostgresConnection) -> None:
        self._connection = connection
        self._transaction: typing.Any = None

    async def start(self, is_root: bool, extra_options: dict[typing.Any, typing.Any]) -> None:
        self._transaction = self._connection._live().transaction(**extra_options)
        await self._transaction.start()

    async def commit(self) -> None:
        await self._transaction.commit()

    async def rollback(self) -> None:
        await self._transaction.rollback()


class PostgresConnection(SQLConnection):
    _backend: PostgresBackend

    def __init__(self, backend: PostgresBackend) -> None:
        super().__init__(backend)
        # Cursor names free for reuse, so DECLARE/FETCH texts repeat and hit asyncpg's
        # statement cache.
        self._cursor_names: dict[str, list[str]] = {}
        self._cursor_count = 0

    def transaction(self) -> PostgresTransaction:
        return PostgresTransaction(self)

    async def _take(self) -> typing.Any:
        pool = self._backend._pool
        if pool is None:
            raise self._backend._not_connected()
        return await pool.acquire()

    async def _give_back(self, connection: typing.Any) -> None:
        await self._backend._pool.release(connection)

    # -- pool health: the driver calls ---------------------------------------------------

    def _health_key(self, connection: typing.Any) -> typing.Any:
        # The pool hands out a new proxy each time: the connection behind it lasts.
        return driver.asyncpg_unproxied(connection)

    async def _ping(self, connection: typing.Any) -> None:
        await connection.execute("SELECT 1")

    async def _close(self, connection: typing.Any) -> None:
        await connection.close()

    def _close_now(self, connection: typing.Any) -> None:
        # A closed pool connection frees its slot in the pool by itself; one asyncpg has
        # closed already is cut off from its proxy.
        with contextlib.suppress(asyncpg.InterfaceError):
            connection.terminate()

    def _shape(self, statement: CompiledStatement, columns: typing.Any) -> RecordShape:
        return statement.shape(columns)

    async def _fetch_rows(self, sql: str, args: Args) -> DriverResult:
        rows = await self._live().fetch(sql, *args)
        return rows, tuple(rows[0].keys()) if rows else ()

    async def _fetch_row(self, sql: str, args: Args) -> DriverRow:
        row = await self._live().fetchrow(sql, *args)
        return row, None if row is None else tuple(row.keys())

    def _execute(self, statement: CompiledStatement, sql: str, args: Args) -> typing.Any:
        return self._live().fetchval(sql, *args)

    def _execute_group(self, sql: str, rows: list[Args]) -> typing.Any:
        return self._live().executemany(sql, rows)

    async def _stream_batches(
        self, statement: CompiledStatement, sql: str, args: Args
    ) -> AsyncGenerator[list[Record], None]:
        """Stream through a server-side cursor declared in SQL, `ITERATE_CHUNK` rows a trip.

        Outside a transaction the cursor is WITH HOLD, so it needs no transaction of its
        own: one opened by the caller while iterating stays the caller's, committed or
        rolled back by its own block and nothing else.
        """
        connection = self._live()
        name = self._cursor_name(sql)
        hold = "" if connection.is_in_transaction() else " WITH HOLD"
        await connection.execute(f"DECLARE {name} NO SCROLL CURSOR{hold} FOR {sql}", *args)
        try:
            fetch = f"FETCH {ITERATE_CHUNK} FROM {name}"
            shape = None
            while True:
                rows = await connection.fetch(fetch)
                if not rows:
                    return
                if shape is None:
                    shape = statement.shape(tuple(rows[0].keys()))
                yield shape.make_all(rows)
                if len(rows) < ITERATE_CHUNK:
                    return
        finally:
            await self._close_cursor(connection, name, held=bool(hold))

    async def _close_cursor(self, connection: typing.Any, name: str, held: bool) -> None:
        """Close a cursor without risking an error inside the caller's transaction."""
        if connection.is_closed():
            return
        try:
            if not held:
                # The transaction it was declared in may have ended, or rolled back to a
                # savepoint from before it: then the cursor is gone already.
                if not connection.is_in_transaction():
                    return
                if not await connection.fetchval("SELECT 1 FROM pg_cursors WHERE name = $1", name):
                    return
            await connection.execute(f"CLOSE {name}")
        except asyncpg.InFailedSQLTransactionError:
            return  # The pool's reset on release closes it.
        self._cursor_names.setdefault(name.split("_")[2], []).append(name)

    def _cursor_name(self, sql: str) -> str:
        """A free cursor name for this query.

        asyncpg caches the prepared FETCH by its text, row description included, so a
        name must only ever serve one query; reusing it for the same query keeps hitting
        that cache.
        """
        digest = hashlib.blake2b(sql.encode(), digest_size=8).hexdigest()
        free = self._cursor_names.get(digest)
        if free:
            return free.pop()
        self._cursor_count += 1
        return f"databases_cursor_{digest}_{self._cursor_count}"

    async def _run(self, sql: str) -> None:
        await self._live().execute(sql)
