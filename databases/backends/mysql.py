"""MySQL and MariaDB through aiomysql, one connection pool per event loop.

Statements are compiled once (format paramstyle) by the shared compiler and sent with a
tuple of arguments; rows come back through the column types' result processors.

`iterate()` streams with an unbuffered cursor. While such a stream is open the MySQL
protocol allows no other command on that connection, yet tasks sharing the connection
(force-rollback mode) may run queries between two rows. So any other operation first
reads the rest of the open stream into memory, and the iterator carries on from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import typing
from collections.abc import AsyncGenerator, Sequence

from sqlalchemy.dialects.mysql import pymysql as pymysql_dialect
from sqlalchemy.dialects.mysql.aiomysql import MySQLDialect_aiomysql
from sqlalchemy.engine.interfaces import Dialect

from databases._logging import logger
from databases._loops import running_loop
from databases.backends.common import _driver_compat as driver
from databases.backends.common import _run_sync as run_sync
from databases.backends.common._driver import (
    ITERATE_CHUNK,
    require_driver,
    tear_down,
)
from databases.backends.common._option_values import read_text, ssl_reader
from databases.backends.common._options import (
    DriverKeywords,
    OptionRules,
    signature_keywords,
)
from databases.backends.common._run_sync import BorrowedConnectionDialect
from databases.backends.common.base import (
    BackendSetup,
    DriverResult,
    DriverRow,
    SQLBackend,
    SQLConnection,
    SQLTransaction,
)
from databases.backends.common.compiler import Args, CompiledStatement
from databases.interfaces import (
    ConnectionCapabilities,
    PoolStats,
    Record,
    StatementCancellation,
)
from databases.url import DatabaseURL

try:
    import aiomysql
except ImportError:  # pragma: no cover - reported when the backend is used
    aiomysql = None

__all__ = ["MySQLBackend", "MySQLConnection", "MySQLTransaction"]

DEFAULT_PORT = 3306
# URL query options the driver takes; `ssl` is true or false only.
OPTION_RULES = OptionRules(
    url={"unix_socket": read_text, "ssl": ssl_reader()},
    renames={"min_size": "minsize", "max_size": "maxsize"},
)

# Accepted spellings (lower case, underscores as spaces) and the SQL level they name.
ISOLATION_LEVELS = {
    "serializable": "SERIALIZABLE",
    "repeatable read": "REPEATABLE READ",
    "read committed": "READ COMMITTED",
    "read uncommitted": "READ UNCOMMITTED",
}
TRANSACTION_OPTIONS = ("isolation",)

# Bit of the server status flags: the session is inside a transaction.
_SERVER_STATUS_IN_TRANS = 1
# `create_pool()` arguments that `connect()` does not take.
_POOL_ONLY_KWARGS = ("minsize", "maxsize", "pool_recycle")


def _fetch_all(cursor: typing.Any) -> typing.Any:
    return cursor.fetchall()


def _fetch_one(cursor: typing.Any) -> typing.Any:
    return cursor.fetchone()


def _inserted_id_or_count(cursor: typing.Any) -> typing.Any:
    """As in 0.9: the new row's id, or (none: UPDATE, DELETE) the affected row count."""
    return cursor.lastrowid or cursor.rowcount


async def _resolve(value: typing.Any) -> typing.Any:
    """Await driver results that may be awaitable (aiomysql mixes futures and values)."""
    if hasattr(value, "__await__"):  # futures and coroutines; plain values otherwise
        return await value
    return value


def _isolation_level(value: typing.Any) -> str:
    """The SQL isolation level for an `isolation=` option, e.g. "read_committed"."""
    key = " ".join(str(value).replace("_", " ").lower().split())
    level = ISOLATION_LEVELS.get(key)
    if level is None:
        accepted = ", ".join(repr(name.replace(" ", "_")) for name in ISOLATION_LEVELS)
        raise ValueError(
            f"Unsupported MySQL transaction isolation {value!r}; accepted: {accepted} "
            "(case-insensitive; underscores or spaces)."
        )
    return level


def _check_transaction_options(options: typing.Mapping[typing.Any, typing.Any]) -> None:
    unknown = [name for name in options if name not in TRANSACTION_OPTIONS]
    if unknown:
        names = ", ".join(sorted(repr(name) for name in unknown))
        raise TypeError(
            f"Unsupported MySQL transaction option(s) {names}; accepted: "
            f"{', '.join(TRANSACTION_OPTIONS)}."
        )
    isolation = options.get("isolation")
    if isolation is not None:
        _isolation_level(isolation)


@functools.cache
def _aiomysql_keywords() -> DriverKeywords:
    """What `aiomysql.create_pool()` takes, its own and `aiomysql.connect()`'s."""
    names = signature_keywords(aiomysql.create_pool, aiomysql.connect)
    return DriverKeywords("aiomysql", names)


def _server_thread_id(connection: typing.Any) -> int:
    """The server's id of a connection's session (what KILL takes)."""
    thread_id = getattr(connection, "thread_id", None)
    if callable(thread_id):  # aiomysql, as PyMySQL
        return int(thread_id())
    value = connection.server_thread_id
    return int(value[0] if isinstance(value, tuple) else value)


def _drop_connection(connection: typing.Any) -> None:
    """Close a driver connection's socket without awaiting anything; never raises.

    On the running loop this is the driver's own synchronous `close()`. On a closed or
    idle loop the transport could not finish its teardown, so the socket is closed at
    once and the driver is told it has no transport any more (which also keeps its
    `__del__` from trying again).
    """
    try:
        loop = driver.mysql_connection_loop(connection)
        if loop is not None and loop.is_running() and running_loop() is loop:
            connection.close()
            return
        driver.mysql_cut(connection, loop)
    except Exception:  # pragma: no cover - best effort by design
        logger.debug("Could not close a MySQL connection of a closed loop", exc_info=True)


class AiomysqlRunSyncDialect(BorrowedConnectionDialect, MySQLDialect_aiomysql):
    """`run_sync()` on our aiomysql connections (autocommit: transactions are ours)."""

    supports_statement_cache = True


RUN_SYNC_DRIVER = run_sync.register("mysql.databases_aiomysql", __name__, "AiomysqlRunSyncDialect")


class MySQLBackend(SQLBackend):
    """MySQL/MariaDB: `mysql://user:password@host:3306/name` (also `mysql+aiomysql://`)."""

    name = "MySQL"
    driver_name = "aiomysql"
    option_rules = OPTION_RULES
    default_port = DEFAULT_PORT
    # How the driver is named in messages, and the extra that installs it.
    _driver_name = "aiomysql"
    _driver_extra = "mysql"
    run_sync_driver = RUN_SYNC_DRIVER

    def __init__(
        self, database_url: DatabaseURL | str | BackendSetup, **options: typing.Any
    ) -> None:
        self._require_driver()
        super().__init__(database_url, **options)
        self._pool: typing.Any = None

    # -- driver specifics (AsyncMyBackend overrides these) ---------------------------------

    def _driver_module(self) -> typing.Any:
        return aiomysql

    def _require_driver(self) -> None:
        require_driver(self._driver_module(), self._driver_name, self._driver_extra, self.name)

    def _driver_keywords(self) -> DriverKeywords:
        return _aiomysql_keywords()

    async def _create_pool(self, **kwargs: typing.Any) -> typing.Any:
        return await self._driver_module().create_pool(**kwargs)

    async def _acquire_from(self, pool: typing.Any) -> typing.Any:
        return await pool.acquire()

    async def _release_to(self, pool: typing.Any, connection: typing.Any) -> None:
        closed = self._is_closed(connection)
        await _resolve(pool.release(connection))
        wakeup = driver.mysql_pool_wakeup(pool)
        if closed and wakeup is not None:
            # aiomysql forgets to wake a waiting acquire() when a closed connection comes
            # back, though its slot is free now.
            await wakeup()

    async def _cursor(self, connection: typing.Any, unbuffered: bool = False) -> typing.Any:
        # Ours escape bytes with every PyMySQL; the driver's when the probe turned them off.
        cursor_class = driver.AIOMYSQL_SSCURSOR if unbuffered else driver.AIOMYSQL_CURSOR
        if cursor_class is None:
            module = self._driver_module()
            cursor_class = module.SSCursor if unbuffered else module.Cursor
        return await _resolve(connection.cursor(cursor_class))

    @staticmethod
    def _is_closed(connection: typing.Any) -> bool:
        closed = getattr(connection, "closed", None)
        if closed is None:
            return not getattr(connection, "connected", True)
        return bool(closed)

    def _is_broken(self, connection: typing.Any) -> bool:
        return self._is_closed(connection)

    @staticmethod
    def _in_transaction(connection: typing.Any) -> bool:
        status = getattr(connection, "get_transaction_status", None)
        if status is not None:
            return bool(status())
        return bool(getattr(connection, "server_status", 0) & _SERVER_STATUS_IN_TRANS)

    # -- configuration --------------------------------------------------------------------

    def _make_dialect(self) -> Dialect:
        # aiomysql is PyMySQL underneath: same value conversions, same paramstyle.
        dialect: Dialect = pymysql_dialect.dialect(paramstyle="format")
        return dialect

    def _pool_kwargs(self) -> dict[str, typing.Any]:
        """Everything `create_pool` gets: the URL's server and login, then the options."""
        url = self._database_url
        kwargs: dict[str, typing.Any] = {
            "port": url.port or DEFAULT_PORT,
            "user": url.username,
            "password": url.password,
            "db": url.database or None,
            "autocommit": True,
        }
        if url.hostname:
            kwargs["host"] = url.hostname
        if self._connect_timeout is not None:
            # The driver's own bounds only the TCP connect (not the handshake), but it
            # also applies to the connections the pool opens later, which `connect()`'s
            # bound does not reach. asyncmy takes no less than a second.
            kwargs["connect_timeout"] = max(self._connect_timeout, 1.0)
        kwargs.update(self._get_connection_kwargs())
        return kwargs

    # -- lifecycle ------------------------------------------------------------------------

    async def connect(self) -> None:
        self._require_driver()
        if self._pool is None:
            self._pool = await self._connecting(self._create_pool(**self._pool_kwargs()))

    async def disconnect(self) -> None:
        """Close the pool: idle connections say goodbye, ones still in use are cut."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        pool.close()  # no new acquisitions; connections released later get closed
        idle = driver.mysql_pool_idle(pool)
        while idle:
            connection = idle.popleft()
            try:
                await connection.ensure_closed()
            except Exception:
                _drop_connection(connection)
            except BaseException:
                _drop_connection(connection)
                raise
        # Whoever still holds a connection loses it now rather than hanging disconnect().
        pool.terminate()

    def connection(self) -> MySQLConnection:
        return MySQLConnection(self)

    def pool_stats(self) -> PoolStats | None:
        pool = self._pool
        if pool is None:
            return None
        # aiomysql's and asyncmy's public counters; `size` counts connections being opened.
        idle = pool.freesize
        return PoolStats(pool.minsize, pool.maxsize, idle, pool.size - idle)

    async def _kill_query(self, thread_id: int) -> None:
        """Stop the statement of session `thread_id`, from a connection of its own (the
        pool may have none free): MySQL ends it with an error and keeps its transaction."""
        kwargs = {
            key: value for key, value in self._pool_kwargs().items() if key not in _POOL_ONLY_KWARGS
        }
        connection = await self._connecting(self._driver_module().connect(**kwargs))
        try:
            cursor = await self._cursor(connection)
            try:
                await cursor.execute("KILL QUERY %s", (thread_id,))
            finally:
                await _resolve(cursor.close())
        finally:
            connection.close()

    def terminate(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        tear_down(driver.mysql_pool_loop(pool), lambda: self._drop_pool(pool))

    @staticmethod
    def _drop_pool(pool: typing.Any) -> None:
        """Close every connection of `pool` without awaiting; never raises."""
        connections: list[typing.Any] = []
        with contextlib.suppress(Exception):
            connections = driver.mysql_pool_cut_all(pool)
        for connection in connections:
            _drop_connection(connection)


class _Stream:
    """An unbuffered result being iterated, and what was buffered of it."""

    __slots__ = ("buffer", "cursor", "error", "live")

    def __init__(self, cursor: typing.Any) -> None:
        self.cursor = cursor
        # Rows read ahead because another operation needed the connection.
        self.buffer: list[typing.Any] = []
        # The rest of the result is still on the wire, unread.
        self.live = True
        # Why reading ahead failed, raised to the iterator after its buffered rows.
        self.error: BaseException | None = None


class MySQLTransaction(SQLTransaction):
    """BEGIN (after SET TRANSACTION ISOLATION LEVEL, with `isolation=`) or SAVEPOINT."""

    async def start(self, is_root: bool, extra_options: dict[typing.Any, typing.Any]) -> None:
        _check_transaction_options(extra_options)
        await super().start(is_root, extra_options)


class MySQLConnection(SQLConnection):
    _backend: MySQLBackend
    # aiomysql closes a connection whose statement was cancelled mid-way.
    capabilities = ConnectionCapabilities(
        cancellation=StatementCancellation.BREAKS_CONNECTION, accepts_values=True
    )

    def __init__(self, backend: MySQLBackend) -> None:
        super().__init__(backend)
        # The pool the connection came from (the backend forgets it on disconnect()).
        self._pool: typing.Any = None
        # The unbuffered stream currently occupying the connection, if any.
        self._stream: _Stream | None = None
        self._wire_lock: asyncio.Lock | None = None

    @property
    def _lock(self) -> asyncio.Lock:
        """One command at a time on the wire, even if a caller does not serialise.

        Made on first use, inside the loop that uses it (Python 3.9 binds a lock to
        the current loop when it is created).
        """
        lock = self._wire_lock
        if lock is None:
            lock = self._wire_lock = asyncio.Lock()
        return lock

    def transaction(self) -> MySQLTransaction:
        return MySQLTransaction(self)

    def _in_transaction(self) -> bool:
        # DDL and a few other statements commit implicitly, ending the transaction.
        connection = self._connection
        return connection is not None and self._backend._in_transaction(connection)

    def _interrupt(self) -> typing.Awaitable[None] | None:
        connection = self._connection
        if connection is None or self._backend._is_closed(connection):
            return None
        return self._backend._kill_query(_server_thread_id(connection))

    def _begin_statements(self, options: dict[str, typing.Any]) -> list[str]:
        _check_transaction_options(options)
        isolation = options.get("isolation")
        if isolation is None:
            return ["BEGIN"]
        # Without SESSION/GLOBAL this applies to the next transaction only.
        return [f"SET TRANSACTION ISOLATION LEVEL {_isolation_level(isolation)}", "BEGIN"]

    # -- acquire / release ----------------------------------------------------------------

    async def _take(self) -> typing.Any:
        pool = self._backend._pool
        if pool is None:
            raise self._backend._not_connected()
        connection = await self._backend._acquire_from(pool)
        self._pool = pool
        setup = self._backend._setup
        if not setup.server_known:
            # The server's handshake tells MariaDB from MySQL: events name the system.
            setup.server_known = True
            if "MariaDB" in _server_info(connection):
                setup.info = dataclasses.replace(setup.info, system="mariadb")
        return connection

    async def _give_back(self, connection: typing.Any) -> None:
        pool = self._pool
        backend = self._backend
        try:
            async with self._lock:
                try:
                    await self._settle()
                    if not backend._is_closed(connection) and backend._in_transaction(connection):
                        # Never hand the next user a connection inside someone else's
                        # transaction.
                        await self._run_on(connection, "ROLLBACK")
                except Exception:
                    logger.warning(
                        "Could not reset a MySQL connection on release; closing it",
                        exc_info=True,
                    )
                    _drop_connection(connection)
        except BaseException:
            # Cancelled: the connection's state is unknown, so the pool must not reuse it.
            _drop_connection(connection)
            raise
        finally:
            self._connection = None
            self._pool = None
            await backend._release_to(pool, connection)

    # -- pool health: the driver calls ---------------------------------------------------

    async def _ping(self, connection: typing.Any) -> None:
        # COM_PING, never reconnecting: a dead connection is replaced, not revived.
        await _resolve(connection.ping(reconnect=False))

    async def _close(self, connection: typing.Any) -> None:
        await connection.ensure_closed()

    def _close_now(self, connection: typing.Any) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            # Its rows are gone with the connection.
            stream.live = False
            stream.error = RuntimeError("The MySQL connection was lost while iterating.")
        _drop_connection(connection)

    # -- the wire ---------------------------------------------------------------------------

    async def _settle(self) -> None:
        """Free the wire: read the rest of an open stream into its buffer. Lock held."""
        stream = self._stream
        if stream is None:
            return
        self._stream = None
        stream.live = False
        cursor = stream.cursor
        try:
            stream.buffer.extend(await _resolve(cursor.fetchall()))
        except BaseException as exc:
            stream.error = (
                exc
                if isinstance(exc, Exception)
                else RuntimeError("Reading the rest of the result was interrupted.")
            )
            connection = self._connection
            if connection is not None:
                # The protocol state is unknown now: the pool must not reuse it.
                _drop_connection(connection)
            raise
        await self._close_cursor(cursor)

    async def _close_cursor(self, cursor: typing.Any) -> None:
        try:
            await _resolve(cursor.close())
        except Exception:
            connection = self._connection
            if connection is not None:
                _drop_connection(connection)
            raise

    async def _run_on(self, connection: typing.Any, sql: str, args: typing.Any = ()) -> None:
        cursor = await self._backend._cursor(connection)
        try:
            await cursor.execute(sql, args)
        finally:
            await _resolve(cursor.close())

    # -- queries ----------------------------------------------------------------------------

    async def _query(
        self, sql: str, args: typing.Any, read: typing.Callable[[typing.Any], typing.Any]
    ) -> tuple[typing.Any, typing.Any]:
        """Run one statement on a fresh cursor; `read(cursor)` and the column description."""
        async with self._lock:
            connection = self._live()
            await self._settle()
            cursor = await self._backend._cursor(connection)
            try:
                await cursor.execute(sql, args)
                return await _resolve(read(cursor)), cursor.description
            finally:
                await _resolve(cursor.close())

    def _fetch_rows(self, sql: str, args: Args) -> typing.Awaitable[DriverResult]:
        return self._query(sql, args, _fetch_all)

    def _fetch_row(self, sql: str, args: Args) -> typing.Awaitable[DriverRow]:
        return self._query(sql, args, _fetch_one)

    async def _execute(self, statement: CompiledStatement, sql: str, args: Args) -> typing.Any:
        result, _ = await self._query(sql, args, _inserted_id_or_count)
        return result

    async def _run_many(self, groups: list[tuple[CompiledStatement, str, list[Args]]]) -> None:
        # One cursor for all groups, under one turn of the wire lock.
        async with self._lock:
            connection = self._live()
            await self._settle()
            cursor = await self._backend._cursor(connection)
            try:
                for _, sql, rows in groups:
                    await cursor.executemany(sql, rows)
            finally:
                await _resolve(cursor.close())

    async def _stream_batches(
        self, statement: CompiledStatement, sql: str, args: Args
    ) -> AsyncGenerator[list[Record], None]:
        async with self._lock:
            connection = self._live()
            await self._settle()
            cursor = await self._backend._cursor(connection, unbuffered=True)
            try:
                await cursor.execute(sql, args)
            except BaseException:
                with contextlib.suppress(Exception):
                    await self._close_cursor(cursor)
                raise
            stream = _Stream(cursor)
            self._stream = stream
        try:
            shape = statement.shape_of(cursor.description)
            while True:
                rows = await self._next_rows(stream)
                if not rows:
                    break
                yield shape.make_all(rows)
        finally:
            await self._end_stream(stream)

    async def _next_rows(self, stream: _Stream) -> Sequence[typing.Any]:
        """The next rows of a stream: what was buffered first, else from the wire."""
        if stream.buffer:
            rows, stream.buffer = stream.buffer, []
            return rows
        if stream.error is not None:
            error, stream.error = stream.error, None
            raise error
        if not stream.live:
            return ()
        async with self._lock:
            if not stream.live:  # another operation buffered the rest meanwhile
                rows, stream.buffer = stream.buffer, []
                if not rows and stream.error is not None:
                    error, stream.error = stream.error, None
                    raise error
                return rows
            try:
                rows = await _resolve(stream.cursor.fetchmany(ITERATE_CHUNK))
            except BaseException:
                stream.live = False
                if self._stream is stream:
                    self._stream = None
                raise
            if len(rows) < ITERATE_CHUNK:
                # The result is complete: the wire is free again.
                stream.live = False
                if self._stream is stream:
                    self._stream = None
                await self._close_cursor(stream.cursor)
            return typing.cast(Sequence[typing.Any], rows)

    async def _end_stream(self, stream: _Stream) -> None:
        """The iterator finished or was abandoned: read off what remains on the wire."""
        stream.buffer = []
        stream.error = None
        if not stream.live:
            return
        async with self._lock:
            if not stream.live:
                return
            stream.live = False
            if self._stream is stream:
                self._stream = None
            # MySQL cannot cancel a result mid-way: closing reads what is left of it.
            await self._close_cursor(stream.cursor)

    async def _run(self, sql: str) -> None:
        async with self._lock:
            connection = self._live()
            await self._settle()
            await self._run_on(connection, sql)


def _server_info(connection: typing.Any) -> str:
    """The server's version string from its handshake (aiomysql's and asyncmy's public
    `get_server_info()`): `10.11.19-MariaDB-...` on MariaDB."""
    get = getattr(connection, "get_server_info", None)
    return str(get()) if get is not None else ""
