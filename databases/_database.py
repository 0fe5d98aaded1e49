"""`Database`: the facade. Configuration, connect/disconnect across loops, query routing.

Everything bound to an event loop (the backend and its pool, per-task connections, every
lock) lives in the `LoopState` of the loop that uses it; the force-rollback connection
lives in the `ForceRollbackSession`. `Database` itself holds only configuration, so a
module-global instance can be created at import time and used from any loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import typing
from collections.abc import AsyncGenerator, Iterator

from sqlalchemy import MetaData, Table
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import ClauseElement

from databases._backend_registry import backend_for_new_loop, find_backend_class
from databases._connection import (
    DEFAULT_BATCH_SIZE,
    Connection,
    ConnectionRole,
    check_batch_size,
)
from databases._echo import Echo
from databases._force_rollback import ForceRollbackSession
from databases._logging import CONNECT_EXTRA, DISCONNECT_EXTRA, logger
from databases._loops import LoopRegistry, LoopState, running_loop
from databases._transaction import _ACTIVE_TRANSACTIONS, Transaction
from databases.backends.common._options import CORE_OPTIONS, take_core_options
from databases.errors import DatabaseNotConnectedError, TransactionOpenError
from databases.events import DatabaseEvents
from databases.interfaces import DatabaseBackend, PoolStats, Record, RecordKey
from databases.url import DatabaseURL

_T = typing.TypeVar("_T")


class _ForceRollbackBlock:
    """One `with database.force_rollback():` block."""

    __slots__ = ("database",)

    def __init__(self, database: Database) -> None:
        self.database = database


# The `force_rollback()` blocks the current context is inside. A context variable, so a
# block reaches what runs in this context and what copies it (tasks created inside the
# block, `asyncio.run()`, `asyncio.to_thread()`, anyio's threads and portals), but not a
# concurrent task that was created outside the block.
_BLOCKS_HERE: contextvars.ContextVar[tuple[_ForceRollbackBlock, ...]] = contextvars.ContextVar(
    "databases:force_rollback_blocks", default=()
)


class Database:
    """A database URL plus options; connections are made per event loop on demand."""

    SUPPORTED_BACKENDS: typing.ClassVar[dict[str, str]] = {
        "postgresql": "databases.backends.postgres:PostgresBackend",
        "postgresql+asyncpg": "databases.backends.postgres:PostgresBackend",
        "postgresql+aiopg": "databases.backends.aiopg:AiopgBackend",
        "postgresql+psycopg": "databases.backends.psycopg:PsycopgBackend",
        "postgres": "databases.backends.postgres:PostgresBackend",
        "mysql": "databases.backends.mysql:MySQLBackend",
        "mysql+aiomysql": "databases.backends.mysql:MySQLBackend",
        "mysql+asyncmy": "databases.backends.asyncmy:AsyncMyBackend",
        "sqlite": "databases.backends.sqlite:SQLiteBackend",
        "sqlite+aiosqlite": "databases.backends.sqlite:SQLiteBackend",
    }

    def __init__(
        self,
        url: str | DatabaseURL,
        *,
        force_rollback: bool = False,
        force_rollback_savepoints: bool | None = None,
        echo: bool | None = None,
        echo_parameters: bool | None = None,
        **options: typing.Any,
    ) -> None:
        """`force_rollback_savepoints` (also `?force_rollback_savepoints=true` in the URL):
        under force_rollback, each statement outside the caller's transactions runs under
        a savepoint of its own, so a failing one rolls back alone (docs/loops.md).

        `echo` (`?echo=true`): log each statement, its parameter count and its time on
        the "databases" logger; `echo_parameters` (`?echo_parameters=true`) adds its
        values (off by default: they are application data) and turns `echo` on.
        docs/observability.md."""
        self.url = DatabaseURL(url)
        self.options = options
        self.is_connected = False
        # The constructor's flag: every context of every loop (a `force_rollback()` block
        # adds the contexts inside it, see `_forced()`).
        self._force_rollback = force_rollback
        # The backends' URL: without the options read here.
        self._backend_url, core_options = take_core_options(self.url)
        self._force_rollback_savepoints = _core_option(
            "force_rollback_savepoints", force_rollback_savepoints, core_options
        )
        # Listeners of statements and pool events; `echo` is one of them.
        self.events = DatabaseEvents()
        # `echo_parameters` alone asks for the statements too: it turns `echo` on.
        with_values = _core_option("echo_parameters", echo_parameters, core_options)
        if _core_option("echo", echo, core_options) or with_values:
            Echo(with_values).register(self.events)
        self._backend_class = self._find_backend_class(self.url)
        # Built outside any loop and never connected: it answers questions about the
        # dialect (ORMs read `database._backend._dialect`) and is the model for the
        # per-loop instances.
        self._template_backend: DatabaseBackend = self._backend_class(
            self._backend_url, **self.options
        )
        self._template_backend._watch(self.events)
        self._states = LoopRegistry[Connection]()
        # With force_rollback: the one connection and transaction that every loop uses.
        self._session: ForceRollbackSession | None = None
        self._session_lock = threading.Lock()

    def _find_backend_class(self, url: DatabaseURL) -> typing.Callable[..., DatabaseBackend]:
        return find_backend_class(url, self.SUPPORTED_BACKENDS)

    # -- per-loop state -------------------------------------------------------------

    def _state(self) -> LoopState[Connection]:
        """The running loop's state, created on first use in that loop."""
        loop = asyncio.get_running_loop()
        state = self._states.find(loop)
        if state is None:
            state = self._states.create(loop, self._backend_for_new_loop, self._on_loop_end)
        return state

    async def _on_loop_end(self, state: LoopState[Connection]) -> None:
        """The loop is shutting down: close its state while it can still run coroutines."""
        self._states.remove(state)
        session, loop = self._session, state.loop
        try:
            if session is not None and loop is not None:
                await session.loop_ended(loop)
        except Exception:
            logger.warning("Could not close the connections of an ending event loop", exc_info=True)
            state.terminate()
            return
        await state.close_or_terminate()

    def _force_rollback_session(self) -> ForceRollbackSession:
        """The force-rollback session, made on first use (again in a forked child)."""
        session = self._session
        if session is not None and session.usable:
            return session
        with self._session_lock:
            session = self._session
            if session is None or not session.usable:
                session = self._session = ForceRollbackSession(
                    self, statement_savepoints=self._force_rollback_savepoints
                )
        return session

    def _forced(self) -> bool:
        """Whether the current context's queries go to the force-rollback session: the
        constructor's `force_rollback=True`, or inside a `force_rollback()` block."""
        if self._force_rollback:
            return True
        blocks = _BLOCKS_HERE.get()
        return bool(blocks) and any(block.database is self for block in blocks)

    def _backend_for_new_loop(self) -> DatabaseBackend:
        backend = backend_for_new_loop(
            self._template_backend, self._backend_class, self._backend_url, self.options
        )
        backend._watch(self.events)
        return backend

    # -- connecting ---------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect in the running loop; other loops then connect on first use."""
        state = self._state()
        if state.connected_explicitly:
            logger.debug("Already connected, skipping connection")
            return
        forced = self._forced()
        if forced:
            self.is_connected = True
            try:
                await self._force_rollback_session().start()
            except BaseException:
                self.is_connected = any(s.connected_explicitly for s in self._states.all())
                raise
        await state.connect(open_backend=not forced)
        self.is_connected = True
        logger.info("Connected to database %s", self.url.obscure_password, extra=CONNECT_EXTRA)

    async def disconnect(self) -> None:
        """Close this loop's state; close everything unless another live loop connected."""
        if not self.is_connected:
            logger.debug("Already disconnected, skipping disconnection")
            return
        loop = asyncio.get_running_loop()
        state = self._states.find(loop)
        others = [other for other in self._states.all() if other is not state]
        last = not any(other.connected_explicitly and other.is_alive() for other in others)
        was_connected = state is not None and state.connected_explicitly
        if state is not None:
            self._check_no_open_transaction(state, ending_session=last)
            self._states.remove(state)
            await state.disconnect()
        if not last:
            if state is None or not was_connected:
                logger.warning(
                    "disconnect() in an event loop that did not connect: the database "
                    "stays connected for the loop(s) that called connect()"
                )
            else:
                logger.debug("Disconnected one event loop; still connected in another")
            return
        self.is_connected = False
        session = self._session
        try:
            if session is not None and session.usable:
                await session.close()
            for other in self._states.pop_all():
                other.close_elsewhere()
        finally:
            self._template_backend.release_shared()
        logger.info(
            "Disconnected from database %s", self.url.obscure_password, extra=DISCONNECT_EXTRA
        )

    def _check_no_open_transaction(
        self, state: LoopState[Connection], ending_session: bool
    ) -> None:
        active = _ACTIVE_TRANSACTIONS.get()
        if not active:
            return
        session = self._session.connection if ending_session and self._session else None
        for transaction, backend in list(active.items()):
            connection = transaction._open.get(backend)
            if connection is None:
                continue
            on_state = isinstance(connection, Connection) and connection._state is state
            if on_state or connection is session:
                raise TransactionOpenError(
                    "disconnect() was called while this task still has a transaction open: "
                    "commit or roll it back first (use `async with database.transaction():`)."
                )

    async def __aenter__(self) -> Database:
        """`async with database:` connects, and disconnects at the end of the block."""
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Disconnect (see `disconnect()`), also when the block raised."""
        await self.disconnect()

    # -- queries ----------------------------------------------------------------------

    def _connection_for_statement(self) -> Connection:
        """The connection for one statement run by a `Database` method.

        A task that holds no connection gets one of the loop's statement connections: it
        is only ever used inside this call, so it can be reused without building a new
        one (and its locks) for every query.
        """
        if not self.is_connected:
            raise DatabaseNotConnectedError(self.url.obscure_password)
        # `_forced()`, without its call when no block is open (the common case).
        if (self._force_rollback or _BLOCKS_HERE.get()) and self._forced():
            return self._force_rollback_session().connection
        state = self._state()
        connection = state.connection_for_statement()
        if connection is None:
            connection = Connection(self, state.backend, state=state, role=ConnectionRole.STATEMENT)
        return connection

    async def fetch_all(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> list[Record]:
        """Run `query` and return every row it gives.

        `query` is a SQLAlchemy Core statement or a SQL string with `:name` parameters;
        `values` binds them (for a statement: `query.values(**values)`, as in 0.9).
        `timeout=` (seconds) bounds the whole call and raises `QueryTimeoutError`, after
        stopping the statement on the server; every query method takes it. The statement
        runs on the current task's connection, or a free one of this loop's pool.
        """
        return await self._connection_for_statement().fetch_all(query, values, timeout=timeout)

    async def fetch_one(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Record | None:
        """The first row of `query`, or None when it gives none (the rest are not read).
        `values` and `timeout=` as for `fetch_all()`."""
        return await self._connection_for_statement().fetch_one(query, values, timeout=timeout)

    async def fetch_val(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        column: RecordKey = 0,
        *,
        timeout: float | None = None,
    ) -> typing.Any:
        """One value of the first row of `query`: its `column` (a position, a name or a
        SQLAlchemy column; the first by default), or None when there is no row."""
        return await self._connection_for_statement().fetch_val(
            query, values, column=column, timeout=timeout
        )

    async def execute(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> typing.Any:
        """Run a statement that returns no rows to read (INSERT, UPDATE, DDL...).

        Returns what 0.9 returned: on PostgreSQL the first column of the first row returned
        (an INSERT into a table with a primary key gives the new key); on MySQL the last
        inserted id, or the affected row count when there is none; on SQLite the last row
        id if non-zero, else the row count.
        """
        return await self._connection_for_statement().execute(query, values, timeout=timeout)

    async def execute_many(
        self,
        query: ClauseElement | str,
        values: list[dict[str, typing.Any]],
        *,
        timeout: float | None = None,
    ) -> None:
        """Run `query` once for each dict of `values` (through the driver's executemany
        where it has one); returns None, as in 0.9."""
        return await self._connection_for_statement().execute_many(query, values, timeout=timeout)

    def iterate(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> AsyncGenerator[Record, None]:
        """Stream the rows of `query` (an async generator holding the task's connection);
        `timeout=` bounds taking the connection and each batch the driver fetches."""
        if not self.is_connected:
            raise DatabaseNotConnectedError(self.url.obscure_password)
        return self.connection().iterate(query, values, timeout=timeout)

    def batched_iterate(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        *,
        timeout: float | None = None,
    ) -> AsyncGenerator[list[Record], None]:
        """Stream the rows of `query` in lists of `batch_size` (the last may be shorter),
        as databasez spells it; `timeout=` as for `iterate()`."""
        if not self.is_connected:
            raise DatabaseNotConnectedError(self.url.obscure_password)
        check_batch_size(batch_size)
        return self.connection().batched_iterate(query, values, batch_size, timeout=timeout)

    # -- synchronous SQLAlchemy code ------------------------------------------------------

    async def run_sync(
        self, fn: typing.Callable[..., _T], *args: typing.Any, **kwargs: typing.Any
    ) -> _T:
        """`fn(sync_connection, *args, **kwargs)` with a SQLAlchemy `Connection` on the
        task's connection (see `Connection.run_sync()`)."""
        return await self._connection_for_statement().run_sync(fn, *args, **kwargs)

    async def create_all(
        self,
        metadata: MetaData,
        *,
        checkfirst: bool = True,
        tables: typing.Sequence[Table] | None = None,
    ) -> None:
        """Create the tables, indexes and types of `metadata` (`metadata.create_all()`
        over this package's own connection: no second driver needed)."""
        await self._connection_for_statement().create_all(
            metadata, checkfirst=checkfirst, tables=tables
        )

    async def drop_all(
        self,
        metadata: MetaData,
        *,
        checkfirst: bool = True,
        tables: typing.Sequence[Table] | None = None,
    ) -> None:
        """Drop the tables, indexes and types of `metadata` (`metadata.drop_all()`)."""
        await self._connection_for_statement().drop_all(
            metadata, checkfirst=checkfirst, tables=tables
        )

    # -- connections and transactions -----------------------------------------------------

    def connection(self) -> Connection:
        """The current task's connection, or with force_rollback the session's, shared by
        every task of every loop (and inside a `force_rollback()` block, its contexts')."""
        if self._forced():
            return self._force_rollback_session().connection
        state = self._state()
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("database.connection() must be called from inside an asyncio task.")
        return state.task_connection(
            task, lambda: Connection(self, state.backend, state=state, task=task)
        )

    def transaction(
        self, *, force_rollback: bool = False, timeout: float | None = None, **kwargs: typing.Any
    ) -> Transaction:
        """A transaction on the task's connection; `timeout=` bounds starting it."""
        return Transaction(
            self.connection, force_rollback=force_rollback, timeout=timeout, **kwargs
        )

    @contextlib.contextmanager
    def force_rollback(self) -> Iterator[None]:
        """Route the queries of the current context through the force-rollback session
        for the block: this task, and the tasks, `asyncio.run()` calls and threads that
        copy its context inside the block (docs/loops.md). Other tasks keep the pool.

        A plain (not async) context manager; nests, and restores the previous setting.
        """
        block = _ForceRollbackBlock(self)
        token = _BLOCKS_HERE.set((*_BLOCKS_HERE.get(), block))
        try:
            yield
        finally:
            try:
                _BLOCKS_HERE.reset(token)
            except ValueError:
                # Left in another context than it was entered in (a fixture whose
                # teardown runs elsewhere): this block ends there, other blocks stay.
                blocks = _BLOCKS_HERE.get()
                if block in blocks:
                    _BLOCKS_HERE.set(tuple(other for other in blocks if other is not block))

    def _set_force_rollback(self, enabled: bool) -> bool:
        """Switch force-rollback on or off for every context and loop, as the constructor's
        flag does; returns the previous setting. The pytest plugin's switch for an app's own
        instance (`force_rollback()` is the per-block form)."""
        previous, self._force_rollback = self._force_rollback, enabled
        return previous

    # -- introspection (also what existing tests and ORMs reach for) ----------------------

    @property
    def dialect(self) -> Dialect:
        """The SQLAlchemy dialect statements are compiled for (to compile DDL, say).

        The same object as 0.9's `database._backend._dialect`, which keeps working.
        """
        backend = self._template_backend
        dialect: Dialect | None = getattr(backend, "_dialect", None)
        if dialect is None:
            raise AttributeError(
                f"{type(backend).__name__} does not name its SQLAlchemy dialect "
                "(backends written for 0.9 set `self._dialect`)"
            )
        return dialect

    def pool_stats(self) -> PoolStats | None:
        """The running event loop's pool: its sizes and how many connections are in use.

        None when this loop has opened no pool (yet, or with force_rollback, where the
        session's connection is outside every loop's pool), outside a loop, or when the
        backend does not tell.
        """
        state = self._current_state()
        if state is None or not state.is_open:
            return None
        return state.backend.pool_stats()

    def _current_state(self) -> LoopState[Connection] | None:
        loop = running_loop()
        return None if loop is None else self._states.find(loop)

    @property
    def _backend(self) -> DatabaseBackend:
        state = self._current_state()
        return state.backend if state is not None else self._template_backend

    @property
    def _connection_map(self) -> typing.MutableMapping[asyncio.Task[typing.Any], Connection]:
        state = self._current_state()
        if state is None:
            return {}
        return state.connections

    @property
    def _global_connection(self) -> Connection | None:
        """The force-rollback session's connection while it runs (name kept from 0.9)."""
        session = self._session
        return session.connection if session is not None and session.started else None

    @property
    def _global_transaction(self) -> Transaction | None:
        """The force-rollback session's own transaction (name kept from 0.9)."""
        session = self._session
        return session.transaction if session is not None else None

    def loop_states(self) -> list[dict[str, typing.Any]]:
        """What this database holds in each event loop, for debugging."""
        return [state.describe() for state in self._states.all()]

    def __repr__(self) -> str:
        return f"<Database {self.url.obscure_password!r} loops={len(self._states)}>"


def _core_option(name: str, keyword: object, from_url: typing.Mapping[str, str]) -> bool:
    """One of `CORE_OPTIONS`, checked: the keyword's value, else the URL's, else False."""
    value = keyword if keyword is not None else from_url.get(name, False)
    checked: bool = CORE_OPTIONS[name](name, value)
    return checked
