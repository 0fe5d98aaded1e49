"""SQLite over the standard library's `sqlite3`, with connections pooled per event loop.

Each connection owns a worker thread (`_sqlite_worker`); a query is one trip to that
thread (execute and fetch together), not one connection and thread per query.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import operator
import sqlite3
import typing
import uuid
from collections import deque
from collections.abc import AsyncGenerator

from sqlalchemy.dialects.sqlite import base as sqlite_types
from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import sqltypes

from databases._logging import logger
from databases.backends import _sqlite_worker as worker
from databases.backends._sqlite_gate import FileGate, gate_for
from databases.backends._sqlite_raw import SQLiteRawConnection, SQLiteRawCursor
from databases.backends._sqlite_worker import Worker
from databases.backends.common import _sqlalchemy_compat as compat
from databases.backends.common._driver import ITERATE_CHUNK, Converter
from databases.backends.common.base import (
    BackendSetup,
    DriverResult,
    DriverRow,
    SQLBackend,
    SQLConnection,
    SQLTransaction,
)
from databases.backends.common.compiler import Args, CompiledStatement, with_column_bind
from databases.interfaces import (
    ConnectionCapabilities,
    Record,
    Statement,
    StatementCancellation,
)
from databases.url import DatabaseURL

__all__ = [
    "SQLiteBackend",
    "SQLiteConnection",
    "SQLitePool",
    "SQLiteRawConnection",
    "SQLiteRawCursor",
    "SQLiteTransaction",
]

# Our pool's own options; every other option goes to `sqlite3.connect`.
POOL_OPTIONS = ("min_size", "max_size")
# Options of `aiosqlite.connect` (0.9 passed options to it) that are not sqlite3's, and
# sqlite3's options that we set ourselves: the URI flag follows from the URL, the worker
# thread is the only one running statements but others read `in_transaction`.
NOT_SQLITE3_OPTIONS = ("iter_chunk_size", "loop", "uri", "check_same_thread")
# Rows per trip to the worker thread when iterating a raw cursor, as aiosqlite's default.
DEFAULT_ITER_CHUNK_SIZE = 64
# Connections per loop unless `max_size` says otherwise. SQLite runs one writer at a time,
# so more connections only add lock contention ("database is locked").
DEFAULT_MAX_SIZE = 5
# How long sweeping a closed loop waits for its connections to close: SQLite's default
# busy timeout, which a writer waiting for their locks would have spent anyway.
TERMINATE_TIMEOUT = 5.0

T = typing.TypeVar("T")


def _is_memory(url: DatabaseURL, uri: bool) -> bool:
    """Whether the URL names a memory database, which lives only while a connection does."""
    database = url.database
    if database in ("", ":memory:") or url.options.get("mode") == "memory":
        return True
    return uri and database.startswith("file::memory:")


class _Target(typing.NamedTuple):
    """The database file (or memory database) a pool opens, the same for every loop."""

    name: str  # what sqlite3 opens
    uri: bool  # `name` is a URI
    is_memory: bool
    gate: FileGate  # one statement at a time on the file, across pools and loops


def _target_for(url: DatabaseURL, options: typing.Mapping[str, typing.Any]) -> _Target:
    uri = bool(options.get("uri", False))
    name, is_uri = _connect_target(url, uri)
    return _Target(name, is_uri, _is_memory(url, uri), gate_for(name))


def _connect_target(url: DatabaseURL, uri: bool) -> tuple[str, bool]:
    """The filename or URI that sqlite3 opens, and whether it is a URI.

    A plain `:memory:` database becomes a uniquely named shared-cache memory database,
    so every pooled connection (and every loop) sees the same data. With `uri=True` (as
    0.9 documented for `file::memory:?cache=shared`) a database starting with `file:` is
    a URI already.
    """
    database = url.database
    options = url.options
    if database in ("", ":memory:") and not options:
        return f"file:databases-memory-{uuid.uuid4().hex}?mode=memory&cache=shared", True
    query = "&".join(f"{key}={value}" for key, value in options.items())
    if uri and database.startswith("file:"):
        return (f"{database}?{query}" if query else database), True
    if query:
        return f"file:{database}?{query}", True
    return database, False


_TZINFO = operator.attrgetter("tzinfo")
_ISOFORMAT = operator.methodcaller("isoformat", " ", "microseconds")


class _DateTime(sqlite_types.DATETIME):
    """SQLite's DATETIME in its default storage format, written by `isoformat()` in C.

    SQLAlchemy fills a %-format from a dict of the fields, which costs more than the
    rest of binding a row; for a naive `datetime` the text is the same.
    """

    def bind_processor(self, dialect: Dialect) -> Converter | None:
        process = super().bind_processor(dialect)
        if process is None:  # pragma: no cover - SQLAlchemy always formats
            return None
        exact_datetime = datetime.datetime

        def bind(value: typing.Any) -> typing.Any:
            if type(value) is exact_datetime and value.tzinfo is None:
                return value.isoformat(" ", "microseconds")
            return process(value)

        def bind_column(values: tuple[typing.Any, ...]) -> tuple[typing.Any, ...]:
            if set(map(type, values)) == {exact_datetime} and not any(map(_TZINFO, values)):
                return tuple(map(_ISOFORMAT, values))
            return tuple(map(bind, values))

        return with_column_bind(bind, bind_column)


class _Boolean(sqltypes.Boolean):
    """Boolean bound as 1 or 0 without a Python-level check for the values `True`/`False`;
    anything else goes through SQLAlchemy's strict check."""

    def bind_processor(self, dialect: Dialect) -> Converter | None:
        process = super().bind_processor(dialect)  # type: ignore[no-untyped-call]
        if process is None:  # pragma: no cover - SQLite has no native boolean
            return None

        def bind(value: typing.Any) -> typing.Any:
            if value is True:
                return 1
            if value is False:
                return 0
            return process(value)

        def bind_column(values: tuple[typing.Any, ...]) -> tuple[typing.Any, ...]:
            if set(map(type, values)) == {bool}:
                return tuple(map(int, values))
            return tuple(map(bind, values))

        return with_column_bind(bind, bind_column)


class SQLiteDialect(pysqlite.SQLiteDialect_pysqlite):
    """pysqlite's dialect, binding DATETIME and Boolean values faster, to the same result."""

    def type_descriptor(self, typeobj: typing.Any) -> typing.Any:
        impl = super().type_descriptor(typeobj)  # type: ignore[no-untyped-call]
        # Only SQLAlchemy's own types (DATETIME in its default format): subclasses and
        # custom `storage_format`/`regexp` keep their processing.
        if compat.default_sqlite_datetime(impl):
            return impl.adapt(_DateTime)
        if type(impl) is sqltypes.Boolean:
            return impl.adapt(_Boolean)
        return impl


class _MemoryKeeper:
    """Holds one plain connection to a memory database so its data lives while connected."""

    def __init__(self) -> None:
        self._connection: sqlite3.Connection | None = None

    def open(self, target: str) -> None:
        if self._connection is None:
            self._connection = sqlite3.connect(target, uri=True, check_same_thread=False)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


class SQLitePool:
    """Connections (each with its worker thread) for one event loop: reused, opened on demand."""

    def __init__(
        self, url: DatabaseURL | str, *, target: _Target | None = None, **options: typing.Any
    ) -> None:
        """A pool for `url`; `target`, when another loop's pool has one, names the same
        (memory) database as that pool."""
        self._url = DatabaseURL(url)
        self._options = options
        if target is None:
            target = _target_for(self._url, options)
        self.target = target
        self._target, self._uri, self._gate = target.name, target.uri, target.gate
        self._connect_kwargs = {
            key: value
            for key, value in options.items()
            if key not in POOL_OPTIONS and key not in NOT_SQLITE3_OPTIONS
        }
        self._iter_chunk_size = int(options.get("iter_chunk_size", DEFAULT_ITER_CHUNK_SIZE))
        self._max_size = int(options.get("max_size", DEFAULT_MAX_SIZE))
        self._idle: list[Worker] = []
        self._in_use: set[Worker] = set()
        self._waiters: deque[asyncio.Future[Worker]] = deque()
        self._size = 0  # connections open or opening
        self._closed = False
        # The connection one-statement calls share (see `lane()`), outside the pool's size.
        self._lane: Worker | None = None
        self._lane_lock: asyncio.Lock | None = None

    def clone(self) -> SQLitePool:
        """A new pool like this one, on the same database, for another loop."""
        return type(self)(self._url, target=self.target, **self._options)

    def _connect(self) -> sqlite3.Connection:
        """Open a connection (on its worker thread), in autocommit: we BEGIN ourselves."""
        connection: sqlite3.Connection = sqlite3.connect(
            self._target,
            uri=self._uri,
            isolation_level=None,
            check_same_thread=False,
            **self._connect_kwargs,
        )
        return connection

    async def _open(self) -> Worker:
        return await worker.open_worker(self._gate, self._connect)

    def raw_connection(self, connection: Worker) -> SQLiteRawConnection:
        """The object `connection.raw_connection` returns, one per connection."""
        raw = connection.raw
        if raw is None:
            raw = connection.raw = SQLiteRawConnection(connection, self._iter_chunk_size)
        return raw

    async def acquire(self) -> Worker:
        if self._closed:
            raise RuntimeError("The SQLite pool is closed.")
        if self._idle:
            connection = self._idle.pop()
        elif self._size < self._max_size:
            self._size += 1
            try:
                connection = await self._open()
            except BaseException:
                self._size -= 1
                raise
        else:
            waiter: asyncio.Future[Worker]
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                connection = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._hand_over(waiter.result())
                raise
        self._in_use.add(connection)
        return connection

    def lane_is_free(self) -> bool:
        """Whether one-statement calls may share the lane now.

        While none of our connections holds a transaction on the file, the file gate runs
        statements one at a time anyway, so queueing them on one connection loses
        nothing and spares the thread switches of many. With a transaction open, a
        statement may have to wait for SQLite's lock: then it takes a pooled connection,
        so it does not hold up the others.
        """
        return not self._gate.has_open_transactions()

    @property
    def open_lane(self) -> Worker | None:
        """The lane, if it is open already (`lane()` opens it)."""
        return None if self._closed else self._lane

    async def lane(self) -> Worker:
        """The loop's connection for one-statement calls, opened on first use.

        Its worker thread runs their statements in the order they were submitted, as
        one aiosqlite connection shared by many tasks did.
        """
        if self._closed:
            raise RuntimeError("The SQLite pool is closed.")
        lane = self._lane
        if lane is None:
            if self._lane_lock is None:
                self._lane_lock = asyncio.Lock()
            async with self._lane_lock:
                if self._lane is None:
                    self._lane = await self._open()
                lane = self._lane
        return lane

    async def release(self, connection: Worker) -> None:
        if connection not in self._in_use:
            return
        self._in_use.discard(connection)
        try:
            if connection.in_transaction:
                # Never hand the next user a connection inside someone else's transaction.
                await connection.call(worker.rollback_if_open, self._gate)
        except BaseException:
            self._size -= 1
            connection.stop()
            raise
        if self._closed:
            self._size -= 1
            await connection.close()
        else:
            self._hand_over(connection)

    def _hand_over(self, connection: Worker) -> None:
        """Give a free connection to the longest waiter, or keep it idle."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)

    def _take_all(self) -> list[Worker]:
        self._closed = True
        connections = [*self._idle, *self._in_use]
        if self._lane is not None:
            connections.append(self._lane)
            self._lane = None
        self._idle.clear()
        self._in_use.clear()
        self._size = 0
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(RuntimeError("The SQLite pool was closed."))
        self._waiters.clear()
        return connections

    async def close(self) -> None:
        for connection in self._take_all():
            await connection.close()

    def reopen(self) -> None:
        """Open again after `close()` (the force-rollback session connects repeatedly)."""
        self._closed = False

    def terminate(self) -> None:
        """Close every connection from outside its (closed) loop, and wait for that.

        A connection of the closed loop may hold a write transaction (force_rollback
        does): the next loop's writes fail until the worker has closed it.
        """
        threads = [connection.stop() for connection in self._take_all()]
        if not worker.wait_stopped(threads, TERMINATE_TIMEOUT):
            logger.warning(
                "SQLite connections of a closed event loop are still busy after %s s; "
                "their locks on %s last until their statements end",
                TERMINATE_TIMEOUT,
                self._target,
            )


class _SQLiteSetup(BackendSetup):
    """Shared by every loop's backend: also the database opened, and its keeper."""

    def __init__(self, url: DatabaseURL, options: dict[str, typing.Any], dialect: Dialect) -> None:
        super().__init__(url, options, dialect)
        self.target = _target_for(url, options)
        self.memory_keeper = _MemoryKeeper()


class SQLiteBackend(SQLBackend):
    """SQLite: `sqlite:///relative.db`, `sqlite:////absolute.db`, `sqlite:///:memory:`."""

    name = "SQLite"
    _setup: _SQLiteSetup

    def __init__(
        self,
        database_url: DatabaseURL | str | BackendSetup,
        *,
        _loop_pool: SQLitePool | None = None,
        **options: typing.Any,
    ) -> None:
        """`_loop_pool`: this loop's pool, cloned from another loop's (`for_new_loop()`)."""
        super().__init__(database_url, **options)
        if _loop_pool is None:
            _loop_pool = SQLitePool(self._database_url, target=self._setup.target, **self._options)
        self._pool = _loop_pool
        self._memory_keeper = self._setup.memory_keeper

    def for_new_loop(self) -> SQLiteBackend:
        # From the pool, not the setup: an ORM may have swapped in its own pool options.
        return type(self)(self._setup, _loop_pool=self._pool.clone())

    def _make_setup(self, url: DatabaseURL, options: dict[str, typing.Any]) -> _SQLiteSetup:
        return _SQLiteSetup(url, options, self._make_dialect())

    def _make_dialect(self) -> Dialect:
        dialect = SQLiteDialect(paramstyle="qmark")
        dialect.supports_native_decimal = False
        return dialect

    async def connect(self) -> None:
        self._pool.reopen()
        target = self._pool.target
        if target.is_memory:
            self._memory_keeper.open(target.name)

    async def disconnect(self) -> None:
        await self._pool.close()

    def connection(self) -> SQLiteConnection:
        return SQLiteConnection(self)

    def statement_connection(self) -> SQLiteConnection:
        return SQLiteConnection(self, one_statement=True)

    def terminate(self) -> None:
        self._pool.terminate()

    def release_shared(self) -> None:
        self._memory_keeper.close()


class SQLiteTransaction(SQLTransaction):
    """BEGIN / SAVEPOINT; like the original, extra options are accepted and ignored."""


class SQLiteConnection(SQLConnection):
    _backend: SQLiteBackend
    # The worker thread finishes an abandoned statement; the next call queues behind it.
    # It runs statements in order, and answers each caller in the caller's loop.
    capabilities = ConnectionCapabilities(
        cancellation=StatementCancellation.HARMLESS,
        queues_statements=True,
        serves_any_loop=True,
        accepts_values=True,
    )
    _connection: Worker | None

    def __init__(self, backend: SQLiteBackend, one_statement: bool = False) -> None:
        super().__init__(backend)
        self._pool = backend._pool
        # Runs one statement per acquire, so it may use the pool's shared lane.
        self._one_statement = one_statement
        self._on_lane = False

    def _driver_connection(self) -> SQLiteRawConnection | None:
        connection = self._connection
        return None if connection is None else self._pool.raw_connection(connection)

    def transaction(self) -> SQLiteTransaction:
        return SQLiteTransaction(self)

    async def _take(self) -> Worker:
        if self._one_statement and self._pool.lane_is_free():
            lane = self._pool.open_lane or await self._pool.lane()
            self._on_lane = True
            return lane
        return await self._pool.acquire()

    async def _give_back(self, connection: Worker) -> None:
        self._connection = None
        on_lane, self._on_lane = self._on_lane, False
        if not on_lane:
            await self._pool.release(connection)

    def _call(self, function: typing.Callable[..., T], *args: typing.Any) -> asyncio.Future[T]:
        """Run `function(sqlite3_connection, gate, *args)` on the connection's thread."""
        connection: Worker = self._live()
        if self._on_lane:
            return connection.call(worker.alone, function, self._pool._gate, *args)
        return connection.call(function, self._pool._gate, *args)

    def _fetch_rows(self, sql: str, args: Args) -> asyncio.Future[DriverResult]:
        return self._call(worker.fetch_all, sql, args)

    def _fetch_row(self, sql: str, args: Args) -> asyncio.Future[DriverRow]:
        return self._call(worker.fetch_one, sql, args)

    def _execute(
        self, statement: CompiledStatement, sql: str, args: Args
    ) -> asyncio.Future[typing.Any]:
        return self._call(worker.execute, sql, args, statement.is_insert)

    def _execute_group(self, sql: str, rows: list[Args]) -> asyncio.Future[None]:
        return self._call(worker.execute_many, sql, rows)

    async def _iterate_batches(self, query: Statement) -> AsyncGenerator[list[Record], None]:
        statement, sql, args = self._compiler.prepare(query)
        cursor = await self._call(worker.open_cursor, sql, args)
        connection = self._connection
        assert connection is not None  # _call() checked it
        pending: asyncio.Future[list[typing.Any]] | None = None
        try:
            shape = statement.shape_of(cursor.description)
            pending = connection.call(worker.fetch_many, cursor, ITERATE_CHUNK)
            while pending is not None:
                rows = await pending
                pending = None
                if len(rows) == ITERATE_CHUNK:
                    # Ask for the next rows before handing out these: the worker thread
                    # reads them (SQLite without the GIL) while the caller works.
                    pending = connection.call(worker.fetch_many, cursor, ITERATE_CHUNK)
                if rows:
                    yield shape.make_all(rows)
        finally:
            if pending is not None:
                with contextlib.suppress(Exception):
                    await pending
            if connection.db is not None:
                await connection.call(worker.close_cursor, cursor)

    async def _run(self, sql: str) -> None:
        await self._call(worker.run, sql)
