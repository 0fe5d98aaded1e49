"""What the bundled backends share: setup, connection slot, statement templates, transactions.

A backend module then only says how its driver connects, runs SQL and reports columns.
"""

from __future__ import annotations

import itertools
import threading
import typing
from collections.abc import AsyncGenerator, Awaitable, Sequence

from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import ClauseElement

from databases._bounded import within
from databases._loops import running_loop
from databases.backends.common._driver import NOT_ACQUIRED
from databases.backends.common._options import timeouts
from databases.backends.common.compiler import Args, CompiledStatement, QueryCompiler
from databases.backends.common.records import RecordShape
from databases.errors import ConnectTimeoutError, PoolTimeoutError
from databases.interfaces import (
    ConnectionBackend,
    ConnectionCapabilities,
    DatabaseBackend,
    Record,
    Statement,
    TransactionBackend,
    each_record,
)
from databases.url import DatabaseURL

_T = typing.TypeVar("_T")
_savepoint_ids = itertools.count(1)

# Rows as the driver returns them, and what it says about their columns.
DriverResult = tuple[Sequence[typing.Any], typing.Any]
DriverRow = tuple[typing.Any, typing.Any]


class BackendSetup:
    """What every event loop's instance of one database's backend shares.

    Built once, from the URL and options; `for_new_loop()` hands it to the next instance,
    so the dialect is made and statements are compiled once for all loops.
    """

    def __init__(self, url: DatabaseURL, options: dict[str, typing.Any], dialect: Dialect) -> None:
        self.url = url
        self.options = options
        self.dialect = dialect
        self.compiler = QueryCompiler(dialect)
        # Read (and checked) when the `Database` is made, so a bad value fails there.
        self.timeouts = timeouts(url, options)


class SQLBackend(DatabaseBackend):
    """A bundled backend: one instance per event loop, sharing one `BackendSetup`.

    Constructed from a URL and options (a `Database` does that), or from the setup of
    another loop's instance (`for_new_loop()`).
    """

    # The backend's name in messages.
    name = "SQL"
    # The server's port when the URL gives none (in messages).
    default_port: int | None = None

    def __init__(
        self, database_url: DatabaseURL | str | BackendSetup, **options: typing.Any
    ) -> None:
        if isinstance(database_url, BackendSetup):
            setup = database_url
        else:
            setup = self._make_setup(DatabaseURL(database_url), options)
        self._setup = setup
        self._database_url = setup.url
        self._options = setup.options
        self._dialect = setup.dialect
        self._compiler = setup.compiler
        self._pool_timeout, self._connect_timeout = setup.timeouts

    def _make_setup(self, url: DatabaseURL, options: dict[str, typing.Any]) -> BackendSetup:
        return BackendSetup(url, options, self._make_dialect())

    def _make_dialect(self) -> Dialect:
        raise NotImplementedError()  # pragma: no cover

    def for_new_loop(self) -> SQLBackend:
        return type(self)(self._setup)

    def _not_connected(self) -> RuntimeError:
        return RuntimeError(f"The {self.name} backend is not connected: call connect() first.")

    # -- bounded waits ----------------------------------------------------------------------

    def _connecting(self, opening: Awaitable[_T]) -> Awaitable[_T]:
        """`opening` (a connection, or a pool with its first ones) bounded by `connect_timeout`."""
        return within(opening, self._connect_timeout, self._connect_timed_out)

    def _connect_timed_out(self) -> ConnectTimeoutError:
        url = self._database_url
        port = url.port or self.default_port
        server = f"{url.hostname or 'localhost'}{'' if port is None else f':{port}'}"
        return ConnectTimeoutError(
            f"Could not connect to the {self.name} server at {server} within "
            f"connect_timeout={self._connect_timeout:g} s: check that it is up and reachable, "
            "or raise connect_timeout (None: no bound)."
        )

    def _pool_timed_out(self) -> PoolTimeoutError:
        loop = running_loop()
        stats = self.pool_stats()
        return PoolTimeoutError(
            f"No connection of the {self.name} pool "
            f"(max_size={'?' if stats is None else stats.max_size}) of "
            f"event loop {id(loop):#x} in thread {threading.current_thread().name!r} came "
            f"free within pool_timeout={self._pool_timeout:g} s: hold connections for "
            "shorter, raise max_size (each event loop has a pool of its own), or raise "
            "pool_timeout (None: no bound)."
        )


class SQLConnection(ConnectionBackend):
    """A driver connection running statements compiled by the backend's shared compiler.

    Subclasses supply the driver calls: `_take()`/`_give_back()` for the pool, and
    `_fetch_rows()`, `_fetch_row()`, `_execute()`, `_execute_group()`, `_run()`,
    `_iterate_batches()` for statements.
    """

    capabilities: typing.ClassVar[ConnectionCapabilities] = ConnectionCapabilities(
        accepts_values=True
    )

    def __init__(self, backend: SQLBackend) -> None:
        self._backend = backend
        self._compiler = backend._compiler
        self._dialect = backend._dialect
        # The driver connection while acquired.
        self._connection: typing.Any = None

    # -- the connection slot --------------------------------------------------------------

    async def acquire(self) -> None:
        if self._connection is None:
            backend = self._backend
            self._connection = await within(
                self._take(), backend._pool_timeout, backend._pool_timed_out
            )

    async def release(self) -> None:
        connection = self._connection
        if connection is None:
            return
        try:
            await self._give_back(connection)
        finally:
            self._connection = None

    async def _take(self) -> typing.Any:
        """A driver connection from the pool (`acquire()` bounds the wait by `pool_timeout`)."""
        raise NotImplementedError()  # pragma: no cover

    async def _give_back(self, connection: typing.Any) -> None:
        """Return `connection` to the pool (it is still `self._connection` meanwhile)."""
        raise NotImplementedError()  # pragma: no cover

    def _live(self) -> typing.Any:
        """The driver connection; an error saying how to acquire it if there is none."""
        connection = self._connection
        if connection is None:
            raise RuntimeError(NOT_ACQUIRED)
        return connection

    @property
    def raw_connection(self) -> typing.Any:
        connection = self._driver_connection()
        if connection is None:
            raise RuntimeError(NOT_ACQUIRED)
        return connection

    def _driver_connection(self) -> typing.Any:
        """What `raw_connection` gives while acquired (the driver's connection), else None."""
        return self._connection

    def transaction(self) -> TransactionBackend:
        return SQLTransaction(self)

    # -- statements: prepare, driver call, row shape, rows --------------------------------

    async def fetch_all(self, query: Statement) -> list[Record]:
        statement, sql, args = self._compiler.prepare(query)
        rows, columns = await self._fetch_rows(sql, args)
        if not rows:
            return []
        return self._shape(statement, columns).make_all(rows)

    async def fetch_one(self, query: Statement) -> Record | None:
        statement, sql, args = self._compiler.prepare(query)
        row, columns = await self._fetch_row(sql, args)
        if row is None:
            return None
        return self._shape(statement, columns).make(row)

    async def execute(self, query: Statement) -> typing.Any:
        statement, sql, args = self._compiler.prepare(query)
        return await self._execute(statement, sql, args)

    def _shape(self, statement: CompiledStatement, columns: typing.Any) -> RecordShape:
        """The row shape for the columns as the driver reports them (a DB-API description)."""
        return statement.shape_of(columns)

    def _fetch_rows(self, sql: str, args: Args) -> Awaitable[DriverResult]:
        """Every row, and the columns as `_shape()` takes them."""
        raise NotImplementedError()  # pragma: no cover

    def _fetch_row(self, sql: str, args: Args) -> Awaitable[DriverRow]:
        """The first row or `None`, and the columns as `_shape()` takes them."""
        raise NotImplementedError()  # pragma: no cover

    def _execute(self, statement: CompiledStatement, sql: str, args: Args) -> Awaitable[typing.Any]:
        """Run a statement: the new row's id or, as 0.9 gave it, the driver's result."""
        raise NotImplementedError()  # pragma: no cover

    def iterate(self, query: Statement) -> AsyncGenerator[Record, None]:
        return each_record(self._iterate_batches(query))

    async def _iterate_batches(self, query: Statement) -> AsyncGenerator[list[Record], None]:
        raise NotImplementedError()  # pragma: no cover
        yield []  # pragma: no cover

    async def execute_many(self, queries: list[ClauseElement]) -> None:
        await self._run_many(self._compiler.prepare_many(queries))

    async def _execute_many_values(
        self, query: ClauseElement | str, rows: typing.Sequence[typing.Mapping[str, typing.Any]]
    ) -> None:
        await self._run_many(self._compiler.prepare_values(query, rows))

    async def _run_many(self, groups: list[tuple[CompiledStatement, str, list[Args]]]) -> None:
        """Run each group of alike statements with the driver's executemany."""
        for _, sql, rows in groups:
            await self._execute_group(sql, rows)

    def _execute_group(self, sql: str, rows: list[Args]) -> Awaitable[typing.Any]:
        """One executemany."""
        raise NotImplementedError()  # pragma: no cover

    async def _run(self, sql: str) -> None:
        """Run one statement without parameters or results (transaction control)."""
        raise NotImplementedError()  # pragma: no cover

    def _begin_statements(self, options: dict[str, typing.Any]) -> list[str]:
        """The SQL that opens a root transaction with these options."""
        return ["BEGIN"]


class SQLTransaction(TransactionBackend):
    """A root transaction or, nested, a savepoint, driven by plain SQL on the connection."""

    def __init__(self, connection: SQLConnection) -> None:
        self._connection = connection
        self._savepoint: str | None = None

    async def start(self, is_root: bool, extra_options: dict[typing.Any, typing.Any]) -> None:
        if is_root:
            for sql in self._connection._begin_statements(extra_options):
                await self._connection._run(sql)
        else:
            self._savepoint = f"databases_savepoint_{next(_savepoint_ids)}"
            await self._connection._run(f"SAVEPOINT {self._savepoint}")

    async def commit(self) -> None:
        if self._savepoint is None:
            await self._connection._run("COMMIT")
        else:
            await self._connection._run(f"RELEASE SAVEPOINT {self._savepoint}")

    async def rollback(self) -> None:
        if self._savepoint is None:
            await self._connection._run("ROLLBACK")
        else:
            await self._connection._run(f"ROLLBACK TO SAVEPOINT {self._savepoint}")
            await self._connection._run(f"RELEASE SAVEPOINT {self._savepoint}")
