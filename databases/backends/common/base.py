"""What the bundled backends share: setup, connection slot, statement templates, transactions.

A backend module then only says how its driver connects, runs SQL and reports columns.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import typing
from collections.abc import AsyncGenerator, Awaitable, Sequence

from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import ClauseElement

from databases._bounded import within
from databases._logging import logger
from databases._loops import running_loop
from databases.backends.common import _run_sync as run_sync
from databases.backends.common._driver import NOT_ACQUIRED
from databases.backends.common._observed import note_sql, observed, observed_batches
from databases.backends.common._options import (
    DriverKeywords,
    OptionRules,
    ReadOptions,
    driver_kwargs,
    read_options,
    timeouts,
)
from databases.backends.common._pool_health import (
    PING_TIMEOUT,
    HealthOptions,
    Ping,
    PoolHealth,
    Verdict,
)
from databases.backends.common.compiler import Args, CompiledStatement, QueryCompiler
from databases.backends.common.records import RecordShape
from databases.errors import ConnectTimeoutError, PoolTimeoutError
from databases.events import BackendInfo, DatabaseEvents, PoolAction
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

# Seconds a polite close of a recycled connection may take before it is cut instead.
RECYCLE_CLOSE_TIMEOUT = 2.0
# Connections one take may replace before giving up (each replaced one leaves the pool,
# and a new one answers its ping, so a healthy server needs at most the pool's size).
MAX_REPLACEMENTS = 100

# Rows as the driver returns them, and what it says about their columns.
DriverResult = tuple[Sequence[typing.Any], typing.Any]
DriverRow = tuple[typing.Any, typing.Any]


class BackendSetup:
    """What every event loop's instance of one database's backend shares.

    Built once, from the URL and options; `for_new_loop()` hands it to the next instance,
    so the dialect is made and statements are compiled once for all loops.
    """

    def __init__(
        self,
        url: DatabaseURL,
        options: dict[str, typing.Any],
        dialect: Dialect,
        read: ReadOptions,
        driver: str,
    ) -> None:
        self.url = url
        self.options = options
        self.dialect = dialect
        # What statement and pool events say about the database; `events` is the
        # `Database`'s once it watches this backend (`SQLBackend._watch`).
        self.info = BackendInfo(
            dialect.name, driver, url.hostname, url.port, url.database, system=dialect.name
        )
        self.events = DatabaseEvents()
        # Whether a connection has told more about the server than the URL does (MySQL or
        # MariaDB: `info.system`), for backends that look.
        self.server_known = False
        self.compiler = QueryCompiler(dialect)
        # The options, read and checked once, when the `Database` is made.
        self.read = read
        self.health = HealthOptions.of(read.library)
        self.timeouts = timeouts(read.library)


class SQLBackend(DatabaseBackend):
    """A bundled backend: one instance per event loop, sharing one `BackendSetup`.

    Constructed from a URL and options (a `Database` does that), or from the setup of
    another loop's instance (`for_new_loop()`).
    """

    # The backend's name in messages.
    name = "SQL"
    # What the backend reads from its URL query besides the library's options.
    option_rules: typing.ClassVar[OptionRules] = OptionRules()
    # Whether connections can die under us (a server): then `pool_pre_ping` and
    # `pool_recycle` apply, and connections found broken are discarded.
    checks_connections: typing.ClassVar[bool] = True
    # The server's port when the URL gives none (in messages).
    default_port: int | None = None
    # The driver's name in statement and pool events.
    driver_name = "unknown"
    # For `run_sync()`: the drivername of the SQLAlchemy async dialect registered to run
    # on this backend's driver connections (`_run_sync.register()`), or why there is none.
    run_sync_driver: typing.ClassVar[str | None] = None
    run_sync_unsupported: typing.ClassVar[str] = "this backend has no SQLAlchemy async dialect"

    def __init__(
        self, database_url: DatabaseURL | str | BackendSetup, **options: typing.Any
    ) -> None:
        if isinstance(database_url, BackendSetup):
            setup = database_url
        else:
            url = DatabaseURL(database_url)
            # Checked once, when the `Database` is built: not at the first query.
            setup = self._make_setup(url, options, self._read_options(url, options))
        self._setup = setup
        self._database_url = setup.url
        self._options = setup.options
        self._dialect = setup.dialect
        self._compiler = setup.compiler
        self._pool_timeout, self._connect_timeout = setup.timeouts
        # This loop's pool's health records (`_pool_health`).
        self._health = PoolHealth(setup.health if self.checks_connections else HealthOptions())
        # The engine of `run_sync()`, made on first use (per loop, as this instance).
        self._run_sync_engine: typing.Any = None

    def _driver_keywords(self) -> DriverKeywords | None:
        """The keyword arguments the driver takes (it is imported by now); `None`: options
        are not checked (a backend deriving from this one that does not say)."""
        return None

    def _read_options(
        self, url: DatabaseURL, options: typing.Mapping[str, typing.Any]
    ) -> ReadOptions:
        """The URL's and keyword options, checked and converted (every keyword option
        passes to a driver whose keywords the backend does not name)."""
        keywords = self._driver_keywords()
        if keywords is None:
            keywords = DriverKeywords(self.name, frozenset(), more=lambda name: True)
        return read_options(url, options, self.option_rules, keywords, self.name)

    def _library_options(self) -> dict[str, typing.Any]:
        """The library's own options given (URL, then keywords), checked and converted."""
        return dict(self._setup.read.library)

    def _get_connection_kwargs(self) -> dict[str, typing.Any]:
        """The driver's keyword arguments: the URL's options, overridden by keyword options
        (read once, when the `Database` was built)."""
        return driver_kwargs(self._setup.read, self.option_rules)

    def _make_setup(
        self,
        url: DatabaseURL,
        options: dict[str, typing.Any],
        read: ReadOptions,
    ) -> BackendSetup:
        return BackendSetup(url, options, self._make_dialect(), read, self.driver_name)

    def _make_dialect(self) -> Dialect:
        raise NotImplementedError()  # pragma: no cover

    def for_new_loop(self) -> SQLBackend:
        return type(self)(self._setup)

    def _watch(self, events: DatabaseEvents) -> None:
        # On the setup every loop's instance shares, and their connections read.
        self._setup.events = events

    def _pool_event(self, action: PoolAction, connection: object) -> None:
        """Tell the pool listeners, if any, what happened to `connection`."""
        setup = self._setup
        if setup.events.watching_pool:
            setup.events._pool_event(action, setup.info, connection)

    def _sync_engine(self) -> typing.Any:
        """The engine that runs `run_sync()` on this backend's driver connections."""
        engine = self._run_sync_engine
        if engine is None:
            drivername = self.run_sync_driver
            if drivername is None:
                raise NotImplementedError(
                    f"run_sync() is not supported on {self._database_url.scheme}://: "
                    f"{self.run_sync_unsupported}."
                )
            engine = self._run_sync_engine = self._make_sync_engine(drivername)
        return engine

    def _make_sync_engine(self, drivername: str) -> typing.Any:
        return run_sync.async_engine(drivername)

    def _not_connected(self) -> RuntimeError:
        return RuntimeError(f"The {self.name} backend is not connected: call connect() first.")

    def _is_broken(self, connection: typing.Any) -> bool:
        """Whether a driver connection is closed for good (by the server or the network).
        The default cannot tell."""
        return False

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


def _retrieve(task: asyncio.Future[typing.Any]) -> None:
    """Mark a task's error as seen (a ping given up on may fail later, unawaited)."""
    if not task.cancelled():
        task.exception()


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
        self._events = backend._setup.events
        # The driver connection while acquired.
        self._connection: typing.Any = None

    @property
    def _info(self) -> BackendInfo:
        # Read at each use: a backend may learn more about its server once connected.
        return self._backend._setup.info

    # -- the connection slot --------------------------------------------------------------

    async def acquire(self) -> None:
        if self._connection is None:
            backend = self._backend
            self._connection = await within(
                self._take(), backend._pool_timeout, backend._pool_timed_out
            )
            if backend._health.active:
                await self._make_healthy()
            if self._events.watching_pool:
                backend._pool_event("acquire", self._connection)

    async def release(self) -> None:
        connection = self._connection
        if connection is None:
            return
        health = self._backend._health
        try:
            if self._backend._is_broken(connection):
                # Lost (server gone, killed, cut): never back into the pool.
                health.found_dead()
                await self._discard(connection, polite=False)
            else:
                if health.active:
                    health.alive(self._health_key(connection))
                if self._events.watching_pool:
                    self._backend._pool_event("release", connection)
                await self._give_back_or_drop(connection)
        finally:
            self._connection = None

    async def _give_back_or_drop(self, connection: typing.Any) -> None:
        """Give `connection` back; if the driver's own reset on return finds it lost (asyncpg
        resets, then closes it and frees its slot), drop it without an error: the caller's
        work ended before, and SQLAlchemy's pool does the same (it logs and invalidates)."""
        try:
            await self._give_back(connection)
        except Exception as error:
            if not self._backend._is_broken(connection):
                raise
            self._backend._health.found_dead()
            self._backend._pool_event("discard", connection)
            logger.info("A connection was lost before it was given back: dropped (%r)", error)

    async def _take(self) -> typing.Any:
        """A driver connection from the pool (`acquire()` bounds the wait by `pool_timeout`)."""
        raise NotImplementedError()  # pragma: no cover

    async def _give_back(self, connection: typing.Any) -> None:
        """Return `connection` to the pool (it is still `self._connection` meanwhile)."""
        raise NotImplementedError()  # pragma: no cover

    # -- healthy pools: the step after the take (rules in `_pool_health`) ------------------

    async def _make_healthy(self) -> None:
        """Recycle or ping the connection just taken as the pool's health rules say, and
        replace it until one may be handed out."""
        health = self._backend._health
        presume_dead = False
        for _ in range(MAX_REPLACEMENTS):
            connection = self._connection
            key = self._health_key(connection)
            verdict = health.verdict(key, presume_dead)
            if verdict is Verdict.READY:
                return
            if verdict is Verdict.PING:
                try:
                    ping = await self._ping_within_timeout(connection)
                except BaseException:
                    # Cancelled while pinging: its state is unknown, so it goes.
                    await self._discard(connection, polite=False)
                    raise
                if ping is Ping.ANSWERED:
                    health.alive(key)
                    return
                health.found_dead()
                presume_dead = presume_dead or ping is Ping.TIMED_OUT
                logger.info(
                    "A pooled %s connection failed its ping (%s): replacing it",
                    self._backend.name,
                    ping.value,
                )
            await self._discard(connection, polite=verdict is Verdict.RECYCLE)
            self._connection = await self._take()
        raise RuntimeError(
            f"No healthy {self._backend.name} connection after replacing {MAX_REPLACEMENTS}."
        )

    async def _ping_within_timeout(self, connection: typing.Any) -> Ping:
        """Ping `connection` in a task of its own, given up after `PING_TIMEOUT`.

        A ping without an answer is not cancelled and awaited: some drivers' cancellation
        waits for the server (psycopg), which may never answer. The connection is cut
        first, which ends whatever the driver waits for, and the ping is left to finish.
        """
        ping = asyncio.ensure_future(self._ping(connection))
        ping.add_done_callback(_retrieve)
        try:
            await asyncio.wait((ping,), timeout=PING_TIMEOUT)
        except BaseException:
            self._close_now(connection)
            ping.cancel()
            raise
        if not ping.done():
            self._close_now(connection)
            ping.cancel()
            return Ping.TIMED_OUT
        if ping.cancelled() or ping.exception() is not None:
            logger.debug("Ping failed", exc_info=None if ping.cancelled() else ping.exception())
            return Ping.FAILED
        return Ping.ANSWERED

    async def _discard(self, connection: typing.Any, polite: bool) -> None:
        """Close `connection` (a recycled one politely, within `RECYCLE_CLOSE_TIMEOUT`),
        then give it back: every pool drops a closed connection, freeing its slot."""
        self._backend._pool_event("discard", connection)
        try:
            if polite:
                try:
                    await asyncio.wait_for(self._close(connection), RECYCLE_CLOSE_TIMEOUT)
                except Exception:
                    self._close_now(connection)
            else:
                self._close_now(connection)
        finally:
            try:
                await self._give_back(connection)
            finally:
                self._connection = None

    def _health_key(self, connection: typing.Any) -> typing.Any:
        """What identifies the driver connection across takes (the pool may wrap it)."""
        return connection

    async def _ping(self, connection: typing.Any) -> None:
        """One cheap round trip to the server; raises if the connection is dead."""
        raise NotImplementedError()  # pragma: no cover

    async def _close(self, connection: typing.Any) -> None:
        """Close `connection` the polite way (the server is told)."""
        self._close_now(connection)

    def _close_now(self, connection: typing.Any) -> None:
        """Close `connection` at once, awaiting nothing; never raises."""
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

    async def _run_sync(
        self,
        fn: typing.Callable[..., typing.Any],
        args: tuple[typing.Any, ...],
        kwargs: dict[str, typing.Any],
    ) -> typing.Any:
        engine = self._backend._sync_engine()
        return await run_sync.run_async(engine, self._live(), fn, args, kwargs)

    def _is_broken(self) -> bool:
        connection = self._connection
        return connection is not None and self._backend._is_broken(connection)

    # -- statements: prepare, driver call, row shape, rows --------------------------------

    async def fetch_all(self, query: Statement) -> list[Record]:
        statement, sql, args = self._compiler.prepare(query)
        # Inline when nobody listens: no coroutine of its own on the hot path.
        if self._events.watching_statements:
            rows, columns = await observed(
                self._events, self._info, sql, args, False, self._fetch_rows, sql, args
            )
        else:
            try:
                rows, columns = await self._fetch_rows(sql, args)
            except Exception as error:
                note_sql(error, sql)
                raise
        if not rows:
            return []
        return self._shape(statement, columns).make_all(rows)

    async def fetch_one(self, query: Statement) -> Record | None:
        statement, sql, args = self._compiler.prepare(query)
        if self._events.watching_statements:
            row, columns = await observed(
                self._events, self._info, sql, args, False, self._fetch_row, sql, args
            )
        else:
            try:
                row, columns = await self._fetch_row(sql, args)
            except Exception as error:
                note_sql(error, sql)
                raise
        if row is None:
            return None
        return self._shape(statement, columns).make(row)

    async def execute(self, query: Statement) -> typing.Any:
        statement, sql, args = self._compiler.prepare(query)
        if self._events.watching_statements:
            return await observed(
                self._events, self._info, sql, args, False, self._execute, statement, sql, args
            )
        try:
            return await self._execute(statement, sql, args)
        except Exception as error:
            note_sql(error, sql)
            raise

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

    def _iterate_batches(self, query: Statement) -> AsyncGenerator[list[Record], None]:
        statement, sql, args = self._compiler.prepare(query)
        return observed_batches(
            self._events, self._info, sql, args, self._stream_batches(statement, sql, args)
        )

    async def _stream_batches(
        self, statement: CompiledStatement, sql: str, args: Args
    ) -> AsyncGenerator[list[Record], None]:
        """The rows of one statement, in the driver's batches."""
        raise NotImplementedError()  # pragma: no cover
        yield []  # pragma: no cover

    async def execute_many(self, queries: list[ClauseElement]) -> None:
        await self._observed_many(self._compiler.prepare_many(queries))

    async def _execute_many_values(
        self, query: ClauseElement | str, rows: typing.Sequence[typing.Mapping[str, typing.Any]]
    ) -> None:
        await self._observed_many(self._compiler.prepare_values(query, rows))

    def _observed_many(
        self, groups: list[tuple[CompiledStatement, str, list[Args]]]
    ) -> Awaitable[None]:
        """`_run_many(groups)`, reported as one statement: its SQL (each group's, when
        they differ) and every row."""
        if len(groups) == 1:
            sql, rows = groups[0][1], groups[0][2]
        else:
            sql = ";\n".join(dict.fromkeys(group[1] for group in groups))
            # Copied only for listeners: an error's note needs the SQL alone.
            watching = self._events.watching_statements
            rows = [row for group in groups for row in group[2]] if watching else []
        return observed(self._events, self._info, sql, rows, True, self._run_many, groups)

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
