"""SQLite over the standard library's `sqlite3`: the dialect and the driver calls.

Connections come from a pool per event loop (`_sqlite_pool`); each owns a worker thread
(`_sqlite_worker`), and a query is one trip to that thread (execute and fetch together),
not one connection and thread per query.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime
import functools
import itertools
import operator
import re
import sqlite3
import typing
from collections.abc import AsyncGenerator

from sqlalchemy.dialects.sqlite import base as sqlite_types
from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.engine import Engine
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import sqltypes

from databases._sqlite_lock_error import ForceRollbackLockError
from databases.backends import _sqlite_worker as worker
from databases.backends._sqlite_gate import FileGate
from databases.backends._sqlite_pool import (
    NOT_SQLITE3_OPTIONS,
    SQLITE3_KEYWORDS,
    URI_PARAMETERS,
    MemoryKeeper,
    SQLitePool,
    target_for,
)
from databases.backends._sqlite_raw import SQLiteRawConnection, SQLiteRawCursor
from databases.backends._sqlite_worker import Worker
from databases.backends.common import _run_sync as run_sync
from databases.backends.common import _sqlalchemy_compat as compat
from databases.backends.common._driver import ITERATE_CHUNK, Converter
from databases.backends.common._option_values import read_text
from databases.backends.common._options import DriverKeywords, OptionRules, ReadOptions
from databases.backends.common._run_sync import BorrowedConnectionDialect
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
    PoolStats,
    Record,
    StatementCancellation,
)
from databases.url import DatabaseURL

__all__ = [
    "ForceRollbackLockError",
    "SQLiteBackend",
    "SQLiteConnection",
    "SQLitePool",
    "SQLiteRawConnection",
    "SQLiteRawCursor",
    "SQLiteTransaction",
]

T = typing.TypeVar("T")

# Set while a statement runs under `_in_savepoint()`: its trips to the worker go in one
# savepoint each. Per task, so statements of other loops sharing the connection are not.
_IN_SAVEPOINT: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "databases:sqlite_in_savepoint", default=False
)

# The URL's query: the library's options (`max_size`, ...) and SQLite's URI parameters.
OPTION_RULES = OptionRules(url=dict.fromkeys(URI_PARAMETERS, read_text), server=False)
# Keyword options: sqlite3's, and aiosqlite's and the ones sqlite3 takes that we set.
SQLITE_KEYWORDS = DriverKeywords("sqlite3", frozenset((*SQLITE3_KEYWORDS, *NOT_SQLITE3_OPTIONS)))

_timed_savepoints = itertools.count(1)


# SQL that only reads, by its first word (and a WITH without a writing keyword): the
# statements SQLite can interrupt inside a transaction without rolling it back.
_READS = re.compile(r"\s*(SELECT|VALUES)\b", re.IGNORECASE)
_WITH = re.compile(r"\s*WITH\b", re.IGNORECASE)
_WRITES = re.compile(r"\b(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER)\b", re.IGNORECASE)


def _only_reads(sql: str) -> bool:
    if _READS.match(sql):
        return True
    return bool(_WITH.match(sql)) and not _WRITES.search(sql)


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


class SQLiteRunSyncDialect(BorrowedConnectionDialect, SQLiteDialect):
    """`run_sync()` on our sqlite3 connections, on their worker threads (autocommit:
    transactions are ours)."""

    supports_statement_cache = True
    supports_native_decimal = False


RUN_SYNC_DRIVER = run_sync.register("sqlite.databases_sqlite3", __name__, "SQLiteRunSyncDialect")


def _run_sync_on_worker(
    db: sqlite3.Connection,
    gate: FileGate,
    engine: Engine,
    fn: typing.Callable[..., typing.Any],
    args: tuple[typing.Any, ...],
    kwargs: dict[str, typing.Any],
) -> typing.Any:
    """On the worker thread: the whole call through the gate, as one statement would."""
    return gate.call(db, run_sync.run_here, engine, db, fn, args, kwargs)


class _SQLiteSetup(BackendSetup):
    """Shared by every loop's backend: also the database opened, and its keeper."""

    def __init__(
        self,
        url: DatabaseURL,
        options: dict[str, typing.Any],
        dialect: Dialect,
        read: ReadOptions,
    ) -> None:
        super().__init__(url, options, dialect, read, SQLiteBackend.driver_name)
        self.target = target_for(url, options)
        self.memory_keeper = MemoryKeeper()


class SQLiteBackend(SQLBackend):
    """SQLite: `sqlite:///relative.db`, `sqlite:////absolute.db`, `sqlite:///:memory:`."""

    name = "SQLite"
    driver_name = "sqlite3"
    option_rules = OPTION_RULES
    _setup: _SQLiteSetup
    # No server can drop a connection: `pool_pre_ping` and `pool_recycle` are accepted
    # (one configuration serves every URL) and change nothing.
    checks_connections = False
    run_sync_driver = RUN_SYNC_DRIVER

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
        _loop_pool.opened = functools.partial(self._pool_event, "connect")
        self._memory_keeper = self._setup.memory_keeper

    def for_new_loop(self) -> SQLiteBackend:
        # From the pool, not the setup: an ORM may have swapped in its own pool options.
        return type(self)(self._setup, _loop_pool=self._pool.clone())

    def _make_setup(
        self,
        url: DatabaseURL,
        options: dict[str, typing.Any],
        read: ReadOptions,
    ) -> _SQLiteSetup:
        return _SQLiteSetup(url, options, self._make_dialect(), read)

    def _driver_keywords(self) -> DriverKeywords:
        return SQLITE_KEYWORDS

    def _make_sync_engine(self, drivername: str) -> Engine:
        # sqlite3 is synchronous on the worker thread: no greenlets needed.
        return run_sync.sync_engine(drivername)

    def _make_dialect(self) -> Dialect:
        dialect = SQLiteDialect(paramstyle="qmark")
        dialect.supports_native_decimal = False
        return dialect

    async def connect(self) -> None:
        self._pool.reopen()
        target = self._pool.target
        if target.is_memory:
            self._memory_keeper.open(target.name)
        await self._pool.open_min_size()

    async def disconnect(self) -> None:
        await self._pool.close()

    def connection(self) -> SQLiteConnection:
        return SQLiteConnection(self)

    def statement_connection(self) -> SQLiteConnection:
        return SQLiteConnection(self, one_statement=True)

    def pool_stats(self) -> PoolStats:
        return self._pool.stats()

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
        # Runs one statement per acquire, so it may use the pool's shared statement connection.
        self._one_statement = one_statement
        self._on_statement_connection = False
        # The answer of the latest call sent to the worker, and its arguments (SQL first),
        # for `_interrupt()`.
        self._in_flight: asyncio.Future[typing.Any] | None = None
        self._in_flight_args: tuple[typing.Any, ...] = ()
        # The next call runs alone in a savepoint, abandoned through this (a timed call).
        self._next_abandonment: worker.Abandonment | None = None

    def _driver_connection(self) -> SQLiteRawConnection | None:
        connection = self._connection
        return None if connection is None else self._pool.raw_connection(connection)

    def transaction(self) -> SQLiteTransaction:
        return SQLiteTransaction(self)

    async def _run_sync(
        self,
        fn: typing.Callable[..., typing.Any],
        args: tuple[typing.Any, ...],
        kwargs: dict[str, typing.Any],
    ) -> typing.Any:
        engine = self._backend._sync_engine()
        return await self._call(_run_sync_on_worker, engine, fn, args, kwargs)

    async def _take(self) -> Worker:
        if self._one_statement and self._pool.statement_connection_is_free():
            pool = self._pool
            shared = pool.open_statement_connection or await pool.statement_connection()
            self._on_statement_connection = True
            return shared
        return await self._pool.acquire()

    async def _give_back(self, connection: Worker) -> None:
        self._connection = None
        shared, self._on_statement_connection = self._on_statement_connection, False
        if not shared:
            await self._pool.release(connection)

    def _call(self, function: typing.Callable[..., T], *args: typing.Any) -> asyncio.Future[T]:
        """Run `function(sqlite3_connection, gate, *args)` on the connection's thread."""
        connection: Worker = self._live()
        if _IN_SAVEPOINT.get():
            return connection.call(
                worker.in_savepoint,
                self._pool._gate,
                worker.STATEMENT_SAVEPOINT,
                None,
                function,
                *args,
            )
        if self._on_statement_connection:
            answer = connection.call(worker.alone, function, self._pool._gate, *args)
        elif self._next_abandonment is not None and self._next_abandonment.claim():
            abandonment, self._next_abandonment = self._next_abandonment, None
            name = f"databases_timed_{next(_timed_savepoints)}"
            answer = connection.call(
                worker.in_savepoint, self._pool._gate, name, abandonment, function, *args
            )
        else:
            answer = connection.call(function, self._pool._gate, *args)
        self._in_flight = answer
        self._in_flight_args = args
        return answer

    def _carry_session(self, holder: str | None) -> None:
        connection = self._connection
        db = None if connection is None else connection.db
        if db is not None:
            self._pool._gate.carry_session(db, holder)

    def _abandonable_next(self) -> worker.Abandonment:
        abandonment = self._next_abandonment = worker.Abandonment(asyncio.current_task())
        return abandonment

    def _interrupt(self) -> None:
        answer, connection = self._in_flight, self._connection
        if answer is not None and not answer.done() and connection is not None:
            args = self._in_flight_args
            sql = args[0] if args and isinstance(args[0], str) else ""
            connection.interrupt(answer, in_transaction_too=_only_reads(sql))

    async def _in_savepoint(
        self, step: typing.Callable[..., typing.Awaitable[T]], *args: typing.Any
    ) -> T:
        # Savepoint, statement and release in one trip to the worker: the force-rollback
        # session's SQLite statements come from every loop at once, with no lock around
        # them, so separate trips could interleave with another loop's.
        token = _IN_SAVEPOINT.set(True)
        try:
            return await step(*args)
        finally:
            _IN_SAVEPOINT.reset(token)

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

    async def _stream_batches(
        self, statement: CompiledStatement, sql: str, args: Args
    ) -> AsyncGenerator[list[Record], None]:
        cursor = await self._call(worker.open_cursor, sql, args)
        connection = self._connection
        assert connection is not None  # _call() checked it
        pending: asyncio.Future[list[typing.Any]] | None = None
        try:
            shape = statement.shape_of(cursor.description)
            pending = self._in_flight = connection.call(worker.fetch_many, cursor, ITERATE_CHUNK)
            self._in_flight_args = (sql,)
            while pending is not None:
                rows = await pending
                pending = None
                if len(rows) == ITERATE_CHUNK:
                    # Ask for the next rows before handing out these: the worker thread
                    # reads them (SQLite without the GIL) while the caller works.
                    pending = connection.call(worker.fetch_many, cursor, ITERATE_CHUNK)
                    self._in_flight, self._in_flight_args = pending, (sql,)
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
