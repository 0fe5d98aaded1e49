"""`Database`, `Connection` and `Transaction`: the public core, safe across event loops.

Everything bound to an event loop (the backend and its pool, per-task connections, the
force-rollback connection and its transaction, every lock) lives in the `LoopState` of
the loop that uses it. `Database` itself holds only configuration, so a module-global
instance can be created at import time and used from any loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import typing
import weakref
from collections.abc import AsyncGenerator, Iterator
from contextvars import ContextVar
from types import TracebackType

from sqlalchemy.sql import ClauseElement

from databases._logging import CONNECT_EXTRA, DISCONNECT_EXTRA, LOG_EXTRA, logger
from databases._query import build_query, has_expression, has_expressions, takes_values
from databases._run_to_end import run_to_end
from databases.errors import (
    ConnectionLoopError,
    DatabaseNotConnectedError,
    TransactionOpenError,
    UnsupportedDatabaseURLError,
)
from databases.importer import import_from_string
from databases.interfaces import (
    DatabaseBackend,
    QueryValues,
    Record,
    Statement,
    StatementCancellation,
    TransactionBackend,
    capabilities_of,
    each_record,
)
from databases.loops import LoopRegistry, LoopState
from databases.url import DatabaseURL

if typing.TYPE_CHECKING:
    from databases._force_rollback import ForceRollbackSession

__all__ = [
    "CONNECT_EXTRA",
    "DISCONNECT_EXTRA",
    "LOG_EXTRA",
    "Connection",
    "Database",
    "DatabaseURL",
    "Transaction",
    "logger",
]

_CallableT = typing.TypeVar("_CallableT", bound=typing.Callable[..., typing.Any])
_T = typing.TypeVar("_T")

# Per context: the transactions this context (task) is inside, each mapped to its backend
# transaction. Copied on write, so a child task inherits its parent's transactions and a
# transaction it starts stays invisible to the parent.
_ACTIVE_TRANSACTIONS: ContextVar[
    weakref.WeakKeyDictionary[Transaction, TransactionBackend] | None
] = ContextVar("databases:active_transactions", default=None)

# Spare `Connection` objects kept per loop for one-statement calls.
MAX_SPARE = 128


class _NoLock:
    """Stands in for a lock where nothing can contend: the driver already runs statements
    in order, or only one call ever uses the connection at a time."""

    def locked(self) -> bool:
        return False

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        return None


_NO_LOCK = _NoLock()


class _OpenTransaction:
    """One transaction on a connection's stack."""

    __slots__ = ("backend", "begun", "begun_in", "ending", "transaction")

    def __init__(
        self,
        transaction: Transaction,
        backend: TransactionBackend,
        begun_in: asyncio.AbstractEventLoop | None,
    ) -> None:
        self.transaction = transaction
        self.backend = backend
        # The loop of the task that began it (on the force-rollback session, any loop).
        self.begun_in = begun_in
        self.begun = False
        # Its COMMIT or ROLLBACK is under way: nothing may nest in it any more.
        self.ending = False


class _InnerTransactionOpenError(RuntimeError):
    """`commit()`/`rollback()` of a transaction with a nested one still open: nothing ended."""


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
        **options: typing.Any,
    ) -> None:
        self.url = DatabaseURL(url)
        self.options = options
        self.is_connected = False
        self._force_rollback = force_rollback
        self._backend_class = self._find_backend_class(self.url)
        # Built outside any loop and never connected: it answers questions about the
        # dialect (ORMs read `database._backend._dialect`) and is the model for the
        # per-loop instances.
        self._template_backend: DatabaseBackend = self._backend_class(self.url, **self.options)
        self._states = LoopRegistry()
        # Closes handed to other loops by disconnect(), kept alive until they finish.
        self._closing: set[asyncio.Task[None]] = set()
        # With force_rollback: the one connection and transaction that every loop uses.
        self._session: ForceRollbackSession | None = None
        self._session_lock = threading.Lock()

    def _find_backend_class(self, url: DatabaseURL) -> typing.Callable[..., DatabaseBackend]:
        if not url.scheme:
            raise UnsupportedDatabaseURLError(
                f"Invalid database URL {url.obscure_password!r}: expected "
                "'<dialect>[+<driver>]://...', e.g. 'postgresql://user:password@host/name' "
                "or 'sqlite:///file.db'."
            )
        backend_str = self.SUPPORTED_BACKENDS.get(url.scheme)
        if backend_str is None and url.driver and url.dialect in self.SUPPORTED_BACKENDS:
            # Never another driver than the one asked for.
            drivers = sorted(s for s in self.SUPPORTED_BACKENDS if s.startswith(url.dialect + "+"))
            raise UnsupportedDatabaseURLError(
                f"Unsupported driver {url.driver!r} for {url.dialect!r} in database URL "
                f"scheme {url.scheme!r}. Supported: {', '.join([url.dialect, *drivers])}. "
                "Register another backend in Database.SUPPORTED_BACKENDS."
            )
        if backend_str is None:
            backend_str = self.SUPPORTED_BACKENDS.get(url.dialect)
        if backend_str is None:
            supported = ", ".join(sorted(self.SUPPORTED_BACKENDS))
            raise UnsupportedDatabaseURLError(
                f"Unsupported database URL scheme {url.scheme!r}. Supported schemes: "
                f"{supported}. Register another backend in Database.SUPPORTED_BACKENDS."
            )
        backend_class: typing.Callable[..., DatabaseBackend] = import_from_string(backend_str)
        return backend_class

    # -- per-loop state -------------------------------------------------------------

    def _state(self) -> LoopState:
        """The running loop's state, created on first use in that loop."""
        loop = asyncio.get_running_loop()
        state = self._states.find(loop)
        if state is None:
            state = self._states.create(loop, self._backend_for_new_loop, self._on_loop_end)
        return state

    async def _on_loop_end(self, state: LoopState) -> None:
        """The loop is shutting down: close its state while it can still run coroutines."""
        self._states.remove(state)
        session, loop = self._session, state.loop
        try:
            if session is not None and loop is not None:
                await session.loop_ended(loop)
            await self._close_state(state)
        except Exception:
            logger.warning("Could not close the connections of an ending event loop", exc_info=True)
            state.terminate()

    def _shared_session(self) -> ForceRollbackSession:
        """The force-rollback session, made on first use (again in a forked child)."""
        session = self._session
        if session is not None and session.usable:
            return session
        from databases._force_rollback import ForceRollbackSession

        with self._session_lock:
            session = self._session
            if session is None or not session.usable:
                session = self._session = ForceRollbackSession(self)
        return session

    def _backend_for_new_loop(self) -> DatabaseBackend:
        backend = self._template_backend.for_new_loop()
        if backend is None:
            backend = self._backend_class(self.url, **self.options)
        return backend

    async def _open_state(self, state: LoopState) -> None:
        """Connect the loop's backend, once; the first use in a loop gets here."""
        async with state.open_lock:
            if not state.is_open:
                await state.backend.connect()
                state.is_open = True

    async def _close_state(self, state: LoopState) -> None:
        """Close a state on its own loop: close its pool."""
        state.end()
        if state.is_open:
            state.is_open = False
            await state.backend.disconnect()

    def _close_foreign_state(self, state: LoopState) -> None:
        """Close another loop's state: on that loop if it runs in another thread, else at once.

        The close is handed to the other loop, not waited for: that loop may be blocked
        waiting for this one (a test inside `with TestClient(app):` waits for the app's
        shutdown, which is where this runs).
        """
        loop = state.loop
        runs_elsewhere = (
            loop is not None
            and loop.is_running()
            and not loop.is_closed()
            and state.thread_id != threading.get_ident()
        )
        if loop is not None and runs_elsewhere:
            try:
                loop.call_soon_threadsafe(self._close_on_own_loop, state)
                return
            except RuntimeError:  # the loop closed meanwhile
                pass
        state.terminate()

    def _close_on_own_loop(self, state: LoopState) -> None:
        """Runs on the state's own loop: close it there, terminating it if that fails."""
        task = asyncio.get_running_loop().create_task(self._close_state(state))
        self._closing.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._closing.discard(task)
            if not task.cancelled() and task.exception() is not None:
                logger.warning(
                    "Could not close the connections of event loop %#x; terminating them",
                    state.loop_id,
                    exc_info=task.exception(),
                )
                state.terminate()

        task.add_done_callback(done)

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
                await self._shared_session().start()
            except BaseException:
                self.is_connected = any(s.connected_explicitly for s in self._states.all())
                raise
        else:
            await self._open_state(state)
        state.connected_explicitly = True
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
            state.connected_explicitly = False
            await self._close_state(state)
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
                self._close_foreign_state(other)
        finally:
            self._template_backend.release_shared()
        logger.info(
            "Disconnected from database %s", self.url.obscure_password, extra=DISCONNECT_EXTRA
        )

    def _check_no_open_transaction(self, state: LoopState, ending_session: bool) -> None:
        active = _ACTIVE_TRANSACTIONS.get()
        if not active:
            return
        session = self._session.connection if ending_session and self._session else None
        for transaction, backend in list(active.items()):
            connection = transaction._open.get(backend)
            if connection is None or transaction._ambient:
                continue
            if connection._state is state or connection is session:
                raise TransactionOpenError(
                    "disconnect() was called while this task still has a transaction open: "
                    "commit or roll it back first (use `async with database.transaction():`)."
                )

    async def __aenter__(self) -> Database:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.disconnect()

    # -- queries ----------------------------------------------------------------------

    def _check_connected(self) -> None:
        if not self.is_connected:
            raise DatabaseNotConnectedError(self.url.obscure_password)

    def _connection_for_query(self) -> Connection:
        self._check_connected()
        return self.connection()

    def _connection_for_statement(self) -> Connection:
        """The connection for one statement run by a `Database` method.

        A task that holds no connection gets one of the loop's spare `Connection`
        objects: it is only ever used inside this call, so it can be reused without
        building a new one (and its locks) for every query.
        """
        self._check_connected()
        if self._force_rollback:
            return self._shared_session().connection
        state = self._state()
        # While no task holds a connection (the common case) the keyed lookup is skipped.
        if state.connections:
            task = asyncio.current_task()
            connection = state.connections.get(task) if task is not None else None
            if connection is not None:
                return connection
        if state.spare_connections:
            return state.spare_connections.pop()
        return self._new_connection(state, spare=True)

    def _new_connection(self, state: LoopState, spare: bool = False) -> Connection:
        connection = Connection(self, state.backend, spare=spare)
        connection._state = state
        return connection

    async def fetch_all(
        self, query: ClauseElement | str, values: dict[str, typing.Any] | None = None
    ) -> list[Record]:
        return await self._connection_for_statement().fetch_all(query, values)

    async def fetch_one(
        self, query: ClauseElement | str, values: dict[str, typing.Any] | None = None
    ) -> Record | None:
        return await self._connection_for_statement().fetch_one(query, values)

    async def fetch_val(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        column: typing.Any = 0,
    ) -> typing.Any:
        return await self._connection_for_statement().fetch_val(query, values, column=column)

    async def execute(
        self, query: ClauseElement | str, values: dict[str, typing.Any] | None = None
    ) -> typing.Any:
        return await self._connection_for_statement().execute(query, values)

    async def execute_many(
        self, query: ClauseElement | str, values: list[dict[str, typing.Any]]
    ) -> None:
        return await self._connection_for_statement().execute_many(query, values)

    def iterate(
        self, query: ClauseElement | str, values: dict[str, typing.Any] | None = None
    ) -> AsyncGenerator[Record, None]:
        """Stream the rows of `query` (an async generator holding the task's connection)."""
        return self._connection_for_query().iterate(query, values)

    # -- connections and transactions -----------------------------------------------------

    def connection(self) -> Connection:
        """The current task's connection, or with force_rollback the session's, shared by
        every task of every loop."""
        if self._force_rollback:
            return self._shared_session().connection
        state = self._state()
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("database.connection() must be called from inside an asyncio task.")
        connection = state.connections.get(task)
        if connection is None:
            connection = self._new_connection(state)
            connection._task = weakref.ref(task)
            state.connections[task] = connection
        return connection

    def transaction(self, *, force_rollback: bool = False, **kwargs: typing.Any) -> Transaction:
        return Transaction(self.connection, force_rollback=force_rollback, **kwargs)

    @contextlib.contextmanager
    def force_rollback(self) -> Iterator[None]:
        """Route every query of the block through the loop's rollback-only connection."""
        initial = self._force_rollback
        self._force_rollback = True
        try:
            yield
        finally:
            self._force_rollback = initial

    # -- introspection (also what existing tests and ORMs reach for) ----------------------

    def _current_state(self) -> LoopState | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return self._states.find(loop)

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
        session = self._session
        return session.connection if session is not None and session.started else None

    @property
    def _global_transaction(self) -> Transaction | None:
        session = self._session
        return session.global_transaction if session is not None else None

    def loop_states(self) -> list[dict[str, typing.Any]]:
        """What this database holds in each event loop, for debugging."""
        return [state.describe() for state in self._states.all()]

    def __repr__(self) -> str:
        return f"<Database {self.url.obscure_password!r} loops={len(self._states)}>"


class Connection:
    """One backend connection, held while `async with` blocks are open (re-entrant)."""

    def __init__(
        self, database: Database, backend: DatabaseBackend, *, spare: bool = False
    ) -> None:
        self._database = database
        self._backend = backend
        # A spare is owned by no task: the loop lends it to one `Database` call at a time
        # and keeps it for reuse. That call runs one statement, which the backend may
        # serve from a connection it shares (DatabaseBackend.statement_connection), and
        # nothing else uses it meanwhile, so it needs no locks.
        self._spare = spare
        self._connection = backend.statement_connection() if spare else backend.connection()
        self._capabilities = capabilities_of(self._connection)
        self._accepts_values = self._capabilities.accepts_values
        # Whether statements run to their end when their task is cancelled (see _finish).
        self._shield_statements = (
            self._capabilities.cancellation is StatementCancellation.BREAKS_CONNECTION
        )
        self._connection_lock: asyncio.Lock | _NoLock = _NO_LOCK if spare else asyncio.Lock()
        self._connection_counter = 0
        # Open transactions, outermost first.
        self._open_transactions: list[_OpenTransaction] = []
        # Queries on one connection never overlap; a driver that queues them needs no lock.
        self._query_lock: asyncio.Lock | _NoLock = (
            _NO_LOCK if spare or self._capabilities.queues_statements else asyncio.Lock()
        )
        self._transaction_waiters: list[asyncio.Future[None]] = []
        self._state: LoopState | None = None
        self._task: weakref.ref[asyncio.Task[typing.Any]] | None = None
        self._is_global = False
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    def _make_shared(self) -> None:
        """Make this the loop's force-rollback connection, used by every task."""
        self._is_global = True
        # Abandoning a statement would hurt the other tasks unless it is harmless.
        self._shield_statements = (
            self._capabilities.cancellation is not StatementCancellation.HARMLESS
        )

    def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise ConnectionLoopError()

    async def __aenter__(self) -> Connection:
        self._check_loop()
        lock = self._connection_lock
        if self._spare:
            await self._hold()
        elif self._connection_counter and not lock.locked():
            # Held already, and nobody is acquiring or releasing it: nothing to wait for.
            self._connection_counter += 1
        else:
            async with lock:
                await self._hold()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        lock = self._connection_lock
        if self._spare:
            await self._let_go()
        elif self._connection_counter > 1 and not lock.locked():
            self._connection_counter -= 1
        else:
            async with lock:
                await self._let_go()

    async def _hold(self) -> None:
        """One more holder; the first acquires the driver connection. Lock held."""
        self._connection_counter += 1
        if self._connection_counter == 1:
            try:
                await self._open()
            except BaseException:
                self._connection_counter = 0
                self._forget()
                raise

    async def _let_go(self) -> None:
        """One holder fewer; the last releases the driver connection. Lock held."""
        self._connection_counter -= 1
        if self._connection_counter == 0:
            try:
                await self._connection.release()
            finally:
                self._forget()

    async def _open(self) -> None:
        """Acquire from the pool, connecting this loop's backend first if needed."""
        database = self._database
        if not database.is_connected:
            raise DatabaseNotConnectedError(database.url.obscure_password)
        state = self._state
        if state is not None and not state.is_open:
            await database._open_state(state)
        await self._connection.acquire()
        if self._is_global:
            try:
                await self._begin_rollback_transaction()
            except BaseException:
                await self._connection.release()
                raise

    async def _begin_rollback_transaction(self) -> None:
        """Put the force-rollback connection inside a transaction that is never committed."""
        transaction = Transaction(lambda: self, force_rollback=True)
        transaction._ambient = True
        backend = self._connection.transaction()
        await backend.start(is_root=True, extra_options={})
        transaction._open[backend] = self
        self._open_transactions.append(_OpenTransaction(transaction, backend, None))
        # Held until the session closes, so the connection outlives every block.
        self._connection_counter += 1

    async def _close_global(self) -> None:
        """Roll back everything done on the force-rollback connection and release it."""
        async with self._connection_lock:
            if self._connection_counter == 0:
                return
            try:
                if self._open_transactions:
                    root = self._open_transactions[0]
                    for entry in self._open_transactions:
                        entry.transaction._open.pop(entry.backend, None)
                    await self._finish(self._locked(root.backend.rollback()))
            finally:
                self._open_transactions.clear()
                self._connection_counter = 0
                await self._connection.release()

    def _finish(self, step: typing.Awaitable[_T]) -> typing.Awaitable[_T]:
        """What to await to run one driver step: where abandoning it would hurt, to its end.

        Tasks that share the force-rollback connection share its transaction. If a
        cancelled task abandoned a statement half-way, the driver would cancel it on the
        server and abort that transaction for everyone. So the statement completes first
        and the cancellation follows. The same holds for any connection of a driver that
        loses the connection when a statement is abandoned (MySQL). Otherwise a task's own
        connection is cancelled the driver's way, promptly.
        """
        if not self._shield_statements:
            return step
        return run_to_end(step)

    def _forget(self) -> None:
        """Drop this connection from its task's slot once it is released."""
        if self._spare:
            if self._state is not None and len(self._state.spare_connections) < MAX_SPARE:
                self._state.spare_connections.append(self)
            return
        if self._state is None or self._task is None:
            return
        task = self._task()
        if task is not None and self._state.connections.get(task) is self:
            del self._state.connections[task]

    # -- queries ----------------------------------------------------------------------

    async def _run(self, step: typing.Callable[..., typing.Awaitable[_T]], *args: typing.Any) -> _T:
        """Run one driver step holding this connection.

        A spare serves just this step and nothing else can reach it, so it is held and
        let go around the step directly, without `async with` and its locks.
        """
        if not self._spare:
            async with self, self._query_lock:
                return await self._finish(step(*args))
        await self._hold()
        try:
            return await self._finish(step(*args))
        finally:
            await self._let_go()

    async def fetch_all(
        self, query: ClauseElement | str, values: dict[str, typing.Any] | None = None
    ) -> list[Record]:
        return await self._run(self._connection.fetch_all, self._prepare(query, values))

    async def fetch_one(
        self, query: ClauseElement | str, values: dict[str, typing.Any] | None = None
    ) -> Record | None:
        return await self._run(self._connection.fetch_one, self._prepare(query, values))

    async def fetch_val(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        column: typing.Any = 0,
    ) -> typing.Any:
        return await self._run(self._connection.fetch_val, self._prepare(query, values), column)

    async def execute(
        self, query: ClauseElement | str, values: dict[str, typing.Any] | None = None
    ) -> typing.Any:
        return await self._run(self._connection.execute, self._prepare(query, values))

    async def execute_many(
        self, query: ClauseElement | str, values: list[dict[str, typing.Any]]
    ) -> None:
        run_many = self._execute_many_call(query, values)
        async with self, self._query_lock:
            await self._finish(run_many())

    def _execute_many_call(
        self, query: ClauseElement | str, values: list[dict[str, typing.Any]]
    ) -> typing.Callable[[], typing.Awaitable[None]]:
        """The driver call that runs `query` once per row of `values`."""
        if not takes_values(query) and values:
            build_query(query, values[0])  # raises, as 0.9 did: no `.values()` here
        if self._accepts_values and not has_expressions(values):
            return functools.partial(self._connection._execute_many_values, query, values)
        # Expressions are rendered into each row's statement, as 0.9 did.
        built = [build_query(query, row) for row in values]
        return functools.partial(self._connection.execute_many, built)

    def iterate(
        self, query: ClauseElement | str, values: dict[str, typing.Any] | None = None
    ) -> AsyncGenerator[Record, None]:
        return each_record(self._batches(query, values))

    async def _batches(
        self, query: ClauseElement | str, values: dict[str, typing.Any] | None
    ) -> AsyncGenerator[list[Record], None]:
        """The rows of `query` in the driver's batches, holding this connection throughout."""
        built = self._prepare(query, values)
        async with self:
            batches = self._connection._iterate_batches(built)
            try:
                while True:
                    # The lock is taken per batch, so tasks sharing this connection can run
                    # their own queries between batches instead of waiting for the whole scan.
                    async with self._query_lock:
                        try:
                            batch = await self._finish(batches.__anext__())
                        except StopAsyncIteration:
                            return
                    yield batch
            finally:
                async with self._query_lock:
                    await batches.aclose()

    @staticmethod
    def _build_query(
        query: ClauseElement | str, values: dict[str, typing.Any] | None = None
    ) -> ClauseElement:
        return build_query(query, values)

    def _prepare(
        self, query: ClauseElement | str, values: dict[str, typing.Any] | None
    ) -> Statement:
        """The query as the backend takes it: bundled backends bind the values themselves."""
        bind_here = isinstance(query, str) or bool(values and takes_values(query))
        if bind_here and self._accepts_values and not (values and has_expression(values)):
            return QueryValues(query, values or {})
        return build_query(query, values)

    # -- transactions -------------------------------------------------------------------

    def transaction(self, *, force_rollback: bool = False, **kwargs: typing.Any) -> Transaction:
        def connection_callable() -> Connection:
            return self

        return Transaction(connection_callable, force_rollback, **kwargs)

    @property
    def raw_connection(self) -> typing.Any:
        return self._connection.raw_connection

    @property
    def _transaction_stack(self) -> list[Transaction]:
        """The open transactions, outermost first."""
        return [entry.transaction for entry in self._open_transactions]

    def _may_start_transaction(self, loop: asyncio.AbstractEventLoop) -> bool:
        """A task may open a transaction here unless another task's transaction is on top.

        On the force-rollback session a transaction begun from another event loop does not
        make this one wait: it nests, as it would on one connection. That loop may be
        blocked waiting for this one (a test inside `with TestClient(app):`).
        """
        if not self._open_transactions:
            return True
        top = self._open_transactions[-1]
        if top.ending:
            return False
        if top.transaction._ambient or top.begun_in is not loop:
            return True
        active = _ACTIVE_TRANSACTIONS.get()
        return active is not None and top.transaction in active

    async def _wait_transaction_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        """On a shared connection, wait until other tasks' transactions have ended."""
        while not self._may_start_transaction(loop):
            await self._next_transaction_end()

    async def _next_transaction_end(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._transaction_waiters.append(waiter)
        try:
            await waiter
        finally:
            with contextlib.suppress(ValueError):
                self._transaction_waiters.remove(waiter)

    async def _locked(self, step: typing.Awaitable[_T]) -> _T:
        """Run one driver step of this connection under its query lock."""
        async with self._query_lock:
            return await step

    def _transaction_ended(self) -> None:
        for waiter in self._transaction_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._transaction_waiters.clear()

    async def _start_transaction(
        self,
        transaction: Transaction,
        options: dict[str, typing.Any],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> TransactionBackend:
        """Begin `transaction` here (a savepoint when nested), once it is this task's turn.

        `loop` is the caller's event loop, where it differs from this connection's.
        """
        if loop is None:
            loop = asyncio.get_running_loop()
        await self.__aenter__()
        try:
            await self._wait_transaction_turn(loop)
            is_root = not self._open_transactions
            entry = _OpenTransaction(transaction, self._connection.transaction(), loop)
            # Claimed before awaiting, so other tasks wait for their turn.
            self._open_transactions.append(entry)
            try:
                # To its end even when the caller is cancelled meanwhile: a transaction is
                # either begun and on the stack, or not begun at all.
                await run_to_end(self._begin(entry, is_root, options))
            except BaseException:
                if entry.begun:  # begun, then cancelled: nobody will end it
                    await run_to_end(self._locked(entry.backend.rollback()))
                self._open_transactions.remove(entry)
                self._transaction_ended()
                raise
        except BaseException:
            await run_to_end(self.__aexit__())
            raise
        return entry.backend

    async def _begin(
        self, entry: _OpenTransaction, is_root: bool, options: dict[str, typing.Any]
    ) -> None:
        async with self._query_lock:
            await entry.backend.start(is_root=is_root, extra_options=options)
        entry.begun = True

    async def _end_transaction(self, backend: TransactionBackend, commit: bool) -> None:
        """Commit or roll back `backend`, once it is the innermost transaction here."""
        self._check_loop()
        while True:
            if self._is_global:
                await self._roll_back_orphans()
            if self._is_innermost(backend):
                break
            await self._next_transaction_end()
        await self._end_innermost(commit)

    async def _end_innermost(self, commit: bool) -> None:
        entry = self._open_transactions[-1]
        entry.ending = True
        backend = entry.backend
        try:
            # To its end even when the caller is cancelled meanwhile (also while it waits
            # for another task's statement): a savepoint dropped from the stack without its
            # ROLLBACK would leave its writes in the enclosing transaction.
            step = backend.commit() if commit else backend.rollback()
            await run_to_end(self._locked(step))
        finally:
            self._open_transactions.remove(entry)
            self._transaction_ended()
            await run_to_end(self.__aexit__())

    def _is_innermost(self, backend: TransactionBackend) -> bool:
        """Whether `backend` can end now; False while transactions that other loops nested
        in it are open (they end first). A nested one of its own loop is a mistake."""
        stack = self._open_transactions
        index = next((i for i, entry in enumerate(stack) if entry.backend is backend), None)
        if index is None:
            raise RuntimeError("This transaction is not open on this connection.")
        above = stack[index + 1 :]
        for entry in above:
            if entry.begun_in is stack[index].begun_in:
                raise _InnerTransactionOpenError(
                    "Cannot end a transaction while a transaction nested in it is still open: "
                    "commit or roll back the inner one first."
                )
        return not above

    async def _roll_back_orphans(self) -> None:
        """Roll back innermost transactions whose loop closed without ending them (a bare
        `loop.close()`: no `shutdown_asyncgens()` told us)."""
        while self._open_transactions:
            top = self._open_transactions[-1]
            if top.ending or top.begun_in is None or not top.begun_in.is_closed():
                return  # (already being rolled back by another call: this one queues after)
            top.transaction._open.pop(top.backend, None)
            await self._end_innermost(commit=False)

    async def _roll_back_begun_in(self, loop: asyncio.AbstractEventLoop) -> None:
        """Roll back the transactions begun from `loop` (it is ending), innermost first."""
        for entry in [entry for entry in self._open_transactions if entry.begun_in is loop][::-1]:
            if entry in self._open_transactions:
                entry.transaction._open.pop(entry.backend, None)
                await self._end_transaction(entry.backend, commit=False)


class Transaction:
    """A transaction (or savepoint, when nested): a context manager, awaitable or decorator."""

    def __init__(
        self,
        connection_callable: typing.Callable[[], Connection],
        force_rollback: bool = False,
        **kwargs: typing.Any,
    ) -> None:
        self._connection_callable = connection_callable
        self._force_rollback = force_rollback
        self._extra_options = kwargs
        # Backend transactions started through this object and not yet ended, oldest
        # first, each with the connection it runs on. One object can be active in
        # several tasks at once when it decorates a function.
        self._open: dict[TransactionBackend, Connection] = {}
        # The force-rollback connection's own transaction: shared by every task.
        self._ambient = False

    @property
    def _transaction(self) -> TransactionBackend | None:
        """The backend transaction of the current context (task), as in 0.9.

        None in a task that did not start it or inherit it, even while it is open: such a
        task may wait for this to turn None.
        """
        active = _ACTIVE_TRANSACTIONS.get()
        if active is None:
            return None
        backend = active.get(self)
        return backend if backend is not None and backend in self._open else None

    def _ending(self) -> TransactionBackend | None:
        """The backend transaction that `commit()`/`rollback()` end: the current context's,
        else the newest still open, so a transaction can be ended from another task than
        the one that started it (a pytest fixture's setup and teardown)."""
        backend = self._transaction
        if backend is None:
            for backend in reversed(self._open):
                return backend
        return backend

    @property
    def _connection(self) -> Connection:
        backend = self._ending()
        if backend is not None:
            return self._open[backend]
        return self._connection_callable()

    async def __aenter__(self) -> Transaction:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        if exc_type is not None or self._force_rollback:
            await self.rollback()
        else:
            await self.commit()

    def __await__(self) -> typing.Generator[typing.Any, None, Transaction]:
        return self.start().__await__()

    def __call__(self, func: _CallableT) -> _CallableT:
        """Run each call of the decorated async function inside this transaction."""

        @functools.wraps(func)
        async def wrapper(*args: typing.Any, **kwargs: typing.Any) -> typing.Any:
            async with self:
                return await func(*args, **kwargs)

        return typing.cast(_CallableT, wrapper)

    async def start(self) -> Transaction:
        connection = self._connection_callable()
        backend = await connection._start_transaction(self, self._extra_options)
        self._open[backend] = connection
        active = _ACTIVE_TRANSACTIONS.get()
        active = weakref.WeakKeyDictionary() if active is None else active.copy()
        active[self] = backend
        _ACTIVE_TRANSACTIONS.set(active)
        return self

    async def commit(self) -> None:
        await self._end(commit=True)

    async def rollback(self) -> None:
        await self._end(commit=False)

    async def _end(self, commit: bool) -> None:
        backend = self._ending()
        if backend is None:
            raise RuntimeError(
                "This transaction is not active: start it first "
                "(`async with database.transaction():` or `await transaction.start()`)."
            )
        connection = self._open[backend]
        try:
            await connection._end_transaction(backend, commit)
        except (_InnerTransactionOpenError, ConnectionLoopError):
            raise  # nothing was ended: the transaction stays open where it runs
        except BaseException:
            self._ended(backend)
            raise
        self._ended(backend)

    def _ended(self, backend: TransactionBackend) -> None:
        """Forget `backend`, which its connection has ended (or failed to end, and dropped)."""
        self._open.pop(backend, None)
        active = _ACTIVE_TRANSACTIONS.get()
        if active is not None and active.get(self) is backend:
            active = active.copy()
            del active[self]
            _ACTIVE_TRANSACTIONS.set(active)
