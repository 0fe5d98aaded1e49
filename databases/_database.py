"""`Database`: the facade. Configuration, connect/disconnect across loops, query routing.

Everything bound to an event loop (the backend and its pool, per-task connections, every
lock) lives in the `LoopState` of the loop that uses it; the force-rollback connection
lives in the `ForceRollbackSession`. `Database` itself holds only configuration, so a
module-global instance can be created at import time and used from any loop.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from databases._force_rollback import ForceRollbackSession
from databases._logging import CONNECT_EXTRA, DISCONNECT_EXTRA, logger
from databases._loops import LoopRegistry, LoopState, running_loop
from databases._transaction import _ACTIVE_TRANSACTIONS, Transaction
from databases.backends.common._options import CORE_OPTIONS, take_core_options
from databases.errors import DatabaseNotConnectedError, TransactionOpenError
from databases.interfaces import DatabaseBackend, PoolStats, Record
from databases.url import DatabaseURL

_T = typing.TypeVar("_T")


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
        **options: typing.Any,
    ) -> None:
        """`force_rollback_savepoints` (also `?force_rollback_savepoints=true` in the URL):
        under force_rollback, each statement outside the caller's transactions runs under
        a savepoint of its own, so a failing one rolls back alone (docs/loops.md)."""
        self.url = DatabaseURL(url)
        self.options = options
        self.is_connected = False
        self._force_rollback = force_rollback
        # The backends' URL: without the options read here.
        self._backend_url, core_options = take_core_options(self.url)
        savepoints: object = force_rollback_savepoints
        if savepoints is None:
            savepoints = core_options.get("force_rollback_savepoints", False)
        self._force_rollback_savepoints: bool = CORE_OPTIONS["force_rollback_savepoints"](
            "force_rollback_savepoints", savepoints
        )
        self._backend_class = self._find_backend_class(self.url)
        # Built outside any loop and never connected: it answers questions about the
        # dialect (ORMs read `database._backend._dialect`) and is the model for the
        # per-loop instances.
        self._template_backend: DatabaseBackend = self._backend_class(
            self._backend_url, **self.options
        )
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

    def _backend_for_new_loop(self) -> DatabaseBackend:
        return backend_for_new_loop(
            self._template_backend, self._backend_class, self._backend_url, self.options
        )

    # -- connecting ---------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect in the running loop; other loops then connect on first use."""
        state = self._state()
        if state.connected_explicitly:
            logger.debug("Already connected, skipping connection")
            return
        if self._force_rollback:
            self.is_connected = True
            try:
                await self._force_rollback_session().start()
            except BaseException:
                self.is_connected = any(s.connected_explicitly for s in self._states.all())
                raise
        await state.connect(open_backend=not self._force_rollback)
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
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
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
        if self._force_rollback:
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
        """Every row; `timeout=` (seconds) bounds the whole call, as for every query method."""
        return await self._connection_for_statement().fetch_all(query, values, timeout=timeout)

    async def fetch_one(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Record | None:
        return await self._connection_for_statement().fetch_one(query, values, timeout=timeout)

    async def fetch_val(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        column: typing.Any = 0,
        *,
        timeout: float | None = None,
    ) -> typing.Any:
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
        return await self._connection_for_statement().execute(query, values, timeout=timeout)

    async def execute_many(
        self,
        query: ClauseElement | str,
        values: list[dict[str, typing.Any]],
        *,
        timeout: float | None = None,
    ) -> None:
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
        every task of every loop."""
        if self._force_rollback:
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
        """Route every query of the block through the force-rollback session."""
        initial = self._force_rollback
        self._force_rollback = True
        try:
            yield
        finally:
            self._force_rollback = initial

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
