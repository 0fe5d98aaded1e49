"""What the psycopg 3 and aiopg (psycopg2) backends share.

Both drivers are libpq underneath and take DB-API cursors with `%s` parameters, so one
adapter serves both: statements compiled with the `format` paramstyle (SQLAlchemy's
psycopg dialects default to `pyformat`, which the shared compiler cannot bind
positionally), transactions as plain SQL on an autocommit connection, `iterate()` through
a server-side cursor declared in SQL, and a small pool per event loop (`_libpq_pool`).
A backend module then only says how its driver connects, closes, runs a cursor and
reports the transaction status.
"""

from __future__ import annotations

import itertools
import typing
from collections.abc import AsyncGenerator, Awaitable, Callable

from sqlalchemy.engine.interfaces import Dialect

from databases.backends._libpq_pool import (
    STATUS_IDLE,
    STATUS_INERROR,
    STATUS_INTRANS,
    ConnectionPool,
)
from databases.backends.common import _sqlalchemy_compat as compat
from databases.backends.common._driver import ITERATE_CHUNK
from databases.backends.common._option_values import LIBPQ_SSL_MODES, ssl_reader
from databases.backends.common._options import (
    DriverKeywords,
    OptionRules,
    pool_sizes,
    server_kwargs,
    signature_keywords,
)
from databases.backends.common.base import (
    BackendSetup,
    DriverResult,
    DriverRow,
    SQLBackend,
    SQLConnection,
)
from databases.backends.common.compiler import Args, CompiledStatement
from databases.interfaces import PoolStats, Record
from databases.url import DatabaseURL

CLOSE_TIMEOUT = 5.0
# `ssl` as libpq's `sslmode` (`true` is `require`); keyword options are the driver's
# connect() keywords and libpq's connection parameters.
OPTION_RULES = OptionRules(
    url={"ssl": ssl_reader(LIBPQ_SSL_MODES, {True: "require", False: "disable"})},
    renames={"ssl": "sslmode"},
)
LIBPQ_PARAMETERS = "libpq's connection parameters (application_name, options, sslmode, ...)"

ISOLATION_LEVELS = {
    "serializable": "SERIALIZABLE",
    "repeatable_read": "REPEATABLE READ",
    "read_committed": "READ COMMITTED",
    "read_uncommitted": "READ UNCOMMITTED",
}
TRANSACTION_OPTIONS = frozenset(("isolation", "readonly", "deferrable"))

_cursor_ids = itertools.count(1)

Row = typing.Sequence[typing.Any]
# Reads a result from a cursor that has run a statement.
CursorRead = Callable[[typing.Any], Awaitable[typing.Any]]


def make_dialect(dialect_class: typing.Any, dbapi: typing.Any) -> Dialect:
    """SQLAlchemy's dialect for the driver, compiling `%s` parameters in order."""
    dialect: Dialect = dialect_class(dbapi=dbapi, paramstyle="format")
    # LIKE's ESCAPE '\\' and other literals as for standard_conforming_strings=on.
    compat.assume_standard_conforming_strings(dialect)
    return dialect


def begin_statement(options: typing.Mapping[str, typing.Any]) -> str:
    """`BEGIN` with the transaction options asyncpg's `transaction()` takes."""
    unknown = sorted(set(options) - TRANSACTION_OPTIONS)
    if unknown:
        raise TypeError(f"Unknown transaction options: {', '.join(unknown)}")
    parts = ["BEGIN"]
    isolation = options.get("isolation")
    if isolation is not None:
        if isolation not in ISOLATION_LEVELS:
            raise ValueError(
                f"isolation is expected to be one of {sorted(ISOLATION_LEVELS)}, not {isolation!r}"
            )
        parts.append(f"ISOLATION LEVEL {ISOLATION_LEVELS[isolation]}")
    if options.get("readonly"):
        parts.append("READ ONLY")
    if options.get("deferrable"):
        parts.append("DEFERRABLE")
    return " ".join(parts)


def libpq_keywords(
    driver: str,
    connect: typing.Callable[..., typing.Any],
    taken: tuple[str, ...],
    is_parameter: typing.Callable[[str], bool],
) -> DriverKeywords:
    """What a libpq driver's `connect` takes by keyword (but the keywords in `taken`, which
    we give it ourselves), and libpq's connection parameters, as `is_parameter` says."""
    return DriverKeywords(
        driver,
        signature_keywords(connect, leave_out=taken),
        more=is_parameter,
        more_note=LIBPQ_PARAMETERS,
    )


class LibpqBackend(SQLBackend):
    """One pool per event loop of a libpq-based driver; subclasses make the driver calls."""

    name = "PostgreSQL"
    option_rules = OPTION_RULES
    default_port = 5432

    def __init__(
        self, database_url: DatabaseURL | str | BackendSetup, **options: typing.Any
    ) -> None:
        super().__init__(database_url, **options)
        self._pool: ConnectionPool | None = None

    async def connect(self) -> None:
        if self._pool is not None:
            return
        # The URL's parts it has; options pass as given (psycopg's `prepare_threshold=None`).
        server = server_kwargs(self._database_url, "dbname")
        kwargs = {key: value for key, value in server.items() if value is not None}
        kwargs.update(self._get_connection_kwargs())
        min_size, max_size = pool_sizes(kwargs)
        kwargs = {
            key: value for key, value in kwargs.items() if key not in ("min_size", "max_size")
        }
        pool = ConnectionPool(self, kwargs, min_size, max_size)
        await pool.open()
        self._pool = pool

    async def disconnect(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close(CLOSE_TIMEOUT)

    def terminate(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()

    def pool_stats(self) -> PoolStats | None:
        return None if self._pool is None else self._pool.stats()

    # -- the driver's part --------------------------------------------------------------

    async def _open_bounded(self, kwargs: dict[str, typing.Any]) -> typing.Any:
        """A new connection, bounded by `connect_timeout`."""
        connection = await self._connecting(self._open_connection(kwargs))
        self._pool_event("connect", connection)
        return connection

    async def _open_connection(self, kwargs: dict[str, typing.Any]) -> typing.Any:
        raise NotImplementedError()  # pragma: no cover

    async def _close_connection(self, connection: typing.Any) -> None:
        await connection.close()

    def _close_now(self, connection: typing.Any) -> None:
        """Close without awaiting (the connection's loop may be closed)."""
        raise NotImplementedError()  # pragma: no cover

    def _is_closed(self, connection: typing.Any) -> bool:
        return bool(connection.closed)

    def _is_broken(self, connection: typing.Any) -> bool:
        return self._is_closed(connection)

    def _forget_closed(self, connection: typing.Any) -> None:
        """A connection found closed: take off the loop what the driver still keeps there
        (nothing, unless the driver says otherwise)."""

    def _transaction_status(self, connection: typing.Any) -> int:
        raise NotImplementedError()  # pragma: no cover

    async def _execute_plain(self, connection: typing.Any, sql: str) -> None:
        await self._cursor_run(connection, sql, None, None)

    async def _cursor_run(
        self, connection: typing.Any, sql: str, args: Args | None, read: CursorRead | None
    ) -> tuple[typing.Any, typing.Any]:
        """Run one statement on a new cursor: what `read(cursor)` gives, and its columns."""
        raise NotImplementedError()  # pragma: no cover

    async def _executemany(self, connection: typing.Any, sql: str, rows: list[Args]) -> None:
        raise NotImplementedError()  # pragma: no cover


async def _fetch_all(cursor: typing.Any) -> list[Row]:
    rows: list[Row] = await cursor.fetchall()
    return rows


async def _fetch_one(cursor: typing.Any) -> Row | None:
    row: Row | None = await cursor.fetchone()
    return row


async def _first_value(cursor: typing.Any) -> typing.Any:
    if cursor.description is None:
        return None
    row = await cursor.fetchone()
    return None if row is None else row[0]


class LibpqConnection(SQLConnection):
    """A pooled connection running statements through the backend's cursors."""

    _backend: LibpqBackend

    async def _take(self) -> typing.Any:
        pool = self._backend._pool
        if pool is None:
            raise self._backend._not_connected()
        return await pool.acquire()

    async def _give_back(self, connection: typing.Any) -> None:
        pool = self._backend._pool
        if pool is not None:
            await pool.release(connection)
        elif not self._backend._is_closed(connection):
            # Disconnected meanwhile: the pool is gone, the connection goes too.
            await self._backend._close_connection(connection)

    # -- pool health: the driver calls ---------------------------------------------------

    async def _ping(self, connection: typing.Any) -> None:
        await self._backend._execute_plain(connection, "SELECT 1")

    async def _close(self, connection: typing.Any) -> None:
        await self._backend._close_connection(connection)

    def _close_now(self, connection: typing.Any) -> None:
        if not self._backend._is_closed(connection):
            self._backend._close_now(connection)

    def _fetch_rows(self, sql: str, args: Args) -> Awaitable[DriverResult]:
        return self._backend._cursor_run(self._live(), sql, args, _fetch_all)

    def _fetch_row(self, sql: str, args: Args) -> Awaitable[DriverRow]:
        return self._backend._cursor_run(self._live(), sql, args, _fetch_one)

    async def _execute(self, statement: CompiledStatement, sql: str, args: Args) -> typing.Any:
        value, _ = await self._backend._cursor_run(self._live(), sql, args, _first_value)
        return value

    def _execute_group(self, sql: str, rows: list[Args]) -> Awaitable[None]:
        return self._backend._executemany(self._live(), sql, rows)

    async def _run(self, sql: str) -> None:
        await self._backend._execute_plain(self._live(), sql)

    def _begin_statements(self, options: dict[str, typing.Any]) -> list[str]:
        return [begin_statement(options)]

    async def _stream_batches(
        self, statement: CompiledStatement, sql: str, args: Args
    ) -> AsyncGenerator[list[Record], None]:
        """Stream through a server-side cursor declared in SQL, `ITERATE_CHUNK` rows a trip.

        Outside a transaction the cursor is WITH HOLD, so it needs no transaction of its
        own: one the caller opens while iterating stays the caller's.
        """
        connection = self._live()
        run = self._backend._cursor_run
        name = f"databases_cursor_{next(_cursor_ids)}"
        held = self._backend._transaction_status(connection) == STATUS_IDLE
        hold = " WITH HOLD" if held else ""
        await run(connection, f"DECLARE {name} NO SCROLL CURSOR{hold} FOR {sql}", args, None)
        try:
            fetch = f"FETCH {ITERATE_CHUNK} FROM {name}"
            shape = None
            while True:
                rows, description = await run(connection, fetch, (), _fetch_all)
                if not rows:
                    return
                if shape is None:
                    shape = self._shape(statement, description)
                yield shape.make_all(rows)
                if len(rows) < ITERATE_CHUNK:
                    return
        finally:
            await self._close_cursor(connection, name, held)

    async def _close_cursor(self, connection: typing.Any, name: str, held: bool) -> None:
        """Close a cursor without risking an error inside the caller's transaction."""
        backend = self._backend
        if backend._is_closed(connection):
            return
        status = backend._transaction_status(connection)
        if status == STATUS_INERROR:
            return  # Its rollback closes the cursor.
        if not held:
            # The transaction it was declared in may have ended, or rolled back to a
            # savepoint from before it: then the cursor is gone already.
            if status != STATUS_INTRANS:
                return
            found, _ = await backend._cursor_run(
                connection, "SELECT 1 FROM pg_cursors WHERE name = %s", (name,), _first_value
            )
            if not found:
                return
        await backend._execute_plain(connection, f"CLOSE {name}")
