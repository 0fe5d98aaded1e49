"""What the psycopg 3 and aiopg (psycopg2) backends share.

Both drivers are libpq underneath and take DB-API cursors with `%s` parameters, so one
adapter serves both: statements compiled with the `format` paramstyle (SQLAlchemy's
psycopg dialects default to `pyformat`, which the shared compiler cannot bind
positionally), transactions as plain SQL on an autocommit connection, `iterate()` through
a server-side cursor declared in SQL, and a small pool per event loop. A backend module
then only says how its driver connects, closes and reports the transaction status.

The pool is ours rather than psycopg_pool's or aiopg's: the core already makes one backend
per event loop, so a pool needs no background tasks (psycopg_pool runs a scheduler and
workers on its loop, left pending when that loop dies), and `terminate()` must drop every
connection of a dead loop synchronously, the same way for both drivers.
"""

from __future__ import annotations

import asyncio
import itertools
import typing
from collections.abc import AsyncGenerator, Awaitable, Callable

from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import ClauseElement

from databases._logging import logger
from databases.backends.common import _sqlalchemy_compat as compat
from databases.backends.common.base import SQLBackend, SQLConnection
from databases.backends.common.compiler import Args, CompiledStatement
from databases.interfaces import Record
from databases.url import DatabaseURL

DEFAULT_MIN_SIZE = 1
DEFAULT_MAX_SIZE = 10
ITERATE_CHUNK = 500
CLOSE_TIMEOUT = 5.0

# libpq's transaction status (psycopg's pq.TransactionStatus, psycopg2's
# TRANSACTION_STATUS_*): the same numbers in both drivers.
STATUS_IDLE = 0
STATUS_INTRANS = 2
STATUS_INERROR = 3

ISOLATION_LEVELS = {
    "serializable": "SERIALIZABLE",
    "repeatable_read": "REPEATABLE READ",
    "read_committed": "READ COMMITTED",
    "read_uncommitted": "READ UNCOMMITTED",
}
TRANSACTION_OPTIONS = frozenset(("isolation", "readonly", "deferrable"))

_cursor_ids = itertools.count(1)

Row = typing.Sequence[typing.Any]


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


class ConnectionPool:
    """Up to `max_size` driver connections of one event loop; idle ones are reused."""

    def __init__(self, backend: LibpqBackend, min_size: int, max_size: int) -> None:
        self._backend = backend
        self._min_size = min_size
        self._slots = asyncio.Semaphore(max_size)
        self._idle: list[typing.Any] = []
        self._used: set[typing.Any] = set()
        self._closing = False
        self._all_back = asyncio.Event()

    async def open(self) -> None:
        for _ in range(self._min_size):
            self._idle.append(await self._backend._open_connection())

    async def acquire(self) -> typing.Any:
        if self._closing:
            raise RuntimeError("The PostgreSQL backend is disconnecting.")
        await self._slots.acquire()
        try:
            connection = None
            while self._idle and connection is None:
                connection = self._idle.pop()
                if self._backend._is_closed(connection):
                    connection = None
            if connection is None:
                connection = await self._backend._open_connection()
        except BaseException:
            self._slots.release()
            raise
        self._used.add(connection)
        return connection

    async def release(self, connection: typing.Any) -> None:
        """Take a connection back, rolled back to no transaction, or drop it."""
        try:
            if not self._closing and await self._reset(connection):
                self._idle.append(connection)
            else:
                await self._close(connection)
        finally:
            self._used.discard(connection)
            self._slots.release()
            if not self._used:
                self._all_back.set()

    async def _reset(self, connection: typing.Any) -> bool:
        backend = self._backend
        if backend._is_closed(connection):
            return False
        if backend._transaction_status(connection) == STATUS_IDLE:
            return True
        try:
            await backend._execute_plain(connection, "ROLLBACK")
        except Exception:
            return False
        return backend._transaction_status(connection) == STATUS_IDLE

    async def _close(self, connection: typing.Any) -> None:
        if self._backend._is_closed(connection):
            # Closed already (terminated, or by the driver): aiopg would unregister its
            # descriptor again, whose number another connection may have by now.
            return
        try:
            await self._backend._close_connection(connection)
        except Exception:  # pragma: no cover - the server is gone: nothing to close
            self._backend._close_now(connection)

    async def close(self, timeout: float) -> None:
        """Close idle connections now and the others when they come back (or at `timeout`)."""
        self._closing = True
        idle, self._idle = self._idle, []
        for connection in idle:
            await self._close(connection)
        if self._used:
            self._all_back.clear()
            try:
                await asyncio.wait_for(self._all_back.wait(), timeout)
            except asyncio.TimeoutError:
                logger.warning(
                    "PostgreSQL connections were still in use %.0f s after disconnect(); "
                    "terminating them",
                    timeout,
                )
                self.terminate()

    def terminate(self) -> None:
        """Drop every connection at once, awaiting nothing (the loop may be dead)."""
        self._closing = True
        connections = [*self._idle, *self._used]
        self._idle.clear()
        self._used.clear()
        for connection in connections:
            self._backend._close_now(connection)


class LibpqBackend(SQLBackend):
    """One pool per event loop of a libpq-based driver; subclasses connect and close."""

    def __init__(self, database_url: DatabaseURL | str, **options: typing.Any) -> None:
        super().__init__(database_url, **options)
        self._pool: ConnectionPool | None = None

    def _get_connection_kwargs(self) -> dict[str, typing.Any]:
        """Pool sizes and libpq options from the URL query, overridden by keyword options."""
        url_options = self._database_url.options
        kwargs: dict[str, typing.Any] = {}
        for name in ("min_size", "max_size"):
            if name in url_options:
                kwargs[name] = int(url_options[name])
        ssl = url_options.get("ssl")
        if ssl is not None:
            kwargs["sslmode"] = {"true": "require", "false": "disable"}.get(
                ssl.lower(), ssl.lower()
            )
        kwargs.update(self._options)
        return kwargs

    def _driver_kwargs(self) -> dict[str, typing.Any]:
        """What the driver's connect() takes: libpq keywords plus the options."""
        url = self._database_url
        kwargs: dict[str, typing.Any] = {
            "host": url.hostname,
            "port": url.port,
            "user": url.username,
            "password": url.password,
            "dbname": url.database,
        }
        kwargs.update(self._get_connection_kwargs())
        kwargs.pop("min_size", None)
        kwargs.pop("max_size", None)
        return {key: value for key, value in kwargs.items() if value is not None}

    async def connect(self) -> None:
        if self._pool is not None:
            return
        sizes = self._get_connection_kwargs()
        max_size = sizes.get("max_size", max(DEFAULT_MAX_SIZE, sizes.get("min_size", 0)))
        min_size = sizes.get("min_size", min(DEFAULT_MIN_SIZE, max_size))
        pool = ConnectionPool(self, min_size, max_size)
        await pool.open()
        self._pool = pool

    async def disconnect(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close(CLOSE_TIMEOUT)

    def _terminate(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()

    # -- the driver's part --------------------------------------------------------------

    async def _open_connection(self) -> typing.Any:
        raise NotImplementedError()  # pragma: no cover

    async def _close_connection(self, connection: typing.Any) -> None:
        raise NotImplementedError()  # pragma: no cover

    def _close_now(self, connection: typing.Any) -> None:
        """Close without the event loop (it may be closed or busy in another thread)."""
        raise NotImplementedError()  # pragma: no cover

    def _is_closed(self, connection: typing.Any) -> bool:
        raise NotImplementedError()  # pragma: no cover

    def _transaction_status(self, connection: typing.Any) -> int:
        raise NotImplementedError()  # pragma: no cover

    async def _execute_plain(self, connection: typing.Any, sql: str) -> None:
        await self._cursor_run(connection, sql, None, None)

    async def _cursor_run(
        self,
        connection: typing.Any,
        sql: str,
        args: Args | None,
        read: Callable[[typing.Any], Awaitable[typing.Any]] | None,
    ) -> tuple[typing.Any, typing.Any]:
        """Run one statement on a new cursor: what `read(cursor)` gives, and its columns."""
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

    def __init__(self, backend: LibpqBackend) -> None:
        super().__init__(backend)
        self._connection: typing.Any = None

    def _driver_connection(self) -> typing.Any:
        return self._connection

    async def acquire(self) -> None:
        if self._connection is not None:
            return
        pool = self._backend._pool
        if pool is None:
            raise RuntimeError("The PostgreSQL backend is not connected.")
        self._connection = await pool.acquire()

    async def release(self) -> None:
        connection, self._connection = self._connection, None
        pool = self._backend._pool
        if connection is not None and pool is not None:
            await pool.release(connection)
        elif connection is not None and not self._backend._is_closed(connection):
            await self._backend._close_connection(connection)

    def _live(self) -> typing.Any:
        if self._connection is None:
            raise RuntimeError("The connection is not acquired: use `async with connection:`.")
        return self._connection

    async def _query(
        self, sql: str, args: Args, read: Callable[[typing.Any], Awaitable[typing.Any]]
    ) -> tuple[typing.Any, typing.Any]:
        return await self._backend._cursor_run(self._live(), sql, args, read)

    async def fetch_all(self, query: ClauseElement) -> list[Record]:
        statement, sql, args = self._compiler.prepare(query)
        rows, description = await self._query(sql, args, _fetch_all)
        if not rows:
            return []
        return statement.shape_of(description).make_all(rows)

    async def fetch_one(self, query: ClauseElement) -> Record | None:
        statement, sql, args = self._compiler.prepare(query)
        row, description = await self._query(sql, args, _fetch_one)
        if row is None:
            return None
        return statement.shape_of(description).make(row)

    async def execute(self, query: ClauseElement) -> typing.Any:
        _, sql, args = self._compiler.prepare(query)
        value, _ = await self._query(sql, args, _first_value)
        return value

    async def _run_many(self, groups: list[tuple[CompiledStatement, str, list[Args]]]) -> None:
        """Row by row, all or nothing as asyncpg's executemany: in a transaction of its own
        when none is open (in one, an error aborts that transaction anyway)."""
        connection = self._live()
        own = self._backend._transaction_status(connection) == STATUS_IDLE
        if own:
            await self._backend._execute_plain(connection, "BEGIN")
        try:
            for _, sql, rows in groups:
                for args in rows:
                    await self._query(sql, args, _no_result)
        except BaseException:
            if own and not self._backend._is_closed(connection):
                await self._backend._execute_plain(connection, "ROLLBACK")
            raise
        if own:
            await self._backend._execute_plain(connection, "COMMIT")

    async def _run(self, sql: str) -> None:
        await self._backend._execute_plain(self._live(), sql)

    def _begin_statements(self, options: dict[str, typing.Any]) -> list[str]:
        return [begin_statement(options)]

    async def _iterate_batches(self, query: ClauseElement) -> AsyncGenerator[list[Record], None]:
        """Stream through a server-side cursor declared in SQL, `ITERATE_CHUNK` rows a trip.

        Outside a transaction the cursor is WITH HOLD, so it needs no transaction of its
        own: one the caller opens while iterating stays the caller's.
        """
        statement, sql, args = self._compiler.prepare(query)
        connection = self._live()
        name = f"databases_cursor_{next(_cursor_ids)}"
        held = self._backend._transaction_status(connection) == STATUS_IDLE
        hold = " WITH HOLD" if held else ""
        await self._query(f"DECLARE {name} NO SCROLL CURSOR{hold} FOR {sql}", args, _no_result)
        try:
            fetch = f"FETCH {ITERATE_CHUNK} FROM {name}"
            shape = None
            while True:
                rows, description = await self._query(fetch, (), _fetch_all)
                if not rows:
                    return
                if shape is None:
                    shape = statement.shape_of(description)
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
            found, _ = await self._query(
                "SELECT 1 FROM pg_cursors WHERE name = %s", (name,), _first_value
            )
            if not found:
                return
        await backend._execute_plain(connection, f"CLOSE {name}")


async def _no_result(cursor: typing.Any) -> None:
    return None
