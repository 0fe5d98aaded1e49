"""`Connection`: one backend connection, its statements, locks and transactions.

A `Connection` holds a driver connection from its loop's pool while `async with` blocks
(or single statements) are open, runs statements one at a time under its query lock,
and decides what a cancelled statement does (see `_protect`). Which transactions are
open on it, and whose turn it is, is kept by its `TransactionStack`.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import threading
import typing
import weakref
from collections.abc import AsyncGenerator

from sqlalchemy import MetaData, Table
from sqlalchemy.sql import ClauseElement

from databases._logging import logger
from databases._loops import running_loop
from databases._query import build_query, has_expression, has_expressions, takes_values
from databases._run_to_end import run_to_end
from databases._timed_call import TimedCall
from databases._transaction import _ACTIVE_TRANSACTIONS, Transaction
from databases._transaction_stack import TransactionStack, _OpenTransaction
from databases.errors import (
    ConnectionLoopError,
    DatabaseNotConnectedError,
    ForceRollbackConnectionLostError,
)
from databases.interfaces import (
    ConnectionBackend,
    DatabaseBackend,
    QueryValues,
    Record,
    RecordKey,
    Statement,
    StatementCancellation,
    TransactionBackend,
    capabilities_of,
    carry_session,
    each_record,
    in_savepoint,
    is_broken,
)

if typing.TYPE_CHECKING:
    from databases._loops import LoopState
    from databases.url import DatabaseURL

_T = typing.TypeVar("_T")

# Rows per list of `batched_iterate()` when the caller names no size.
DEFAULT_BATCH_SIZE = 100


def check_batch_size(batch_size: object) -> None:
    """A clear error for a `batch_size` that is not a whole number of rows above zero."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"Invalid batch_size {batch_size!r} for batched_iterate(): give the number of "
            "rows per batch, 1 or more."
        )


def check_sync_function(fn: object) -> None:
    """`run_sync()` calls `fn` in SQLAlchemy's synchronous world: a coroutine function
    would only make a coroutine that nobody awaits."""
    if inspect.iscoroutinefunction(fn) or not callable(fn):
        raise TypeError(
            f"run_sync() takes a synchronous function of a SQLAlchemy Connection, not {fn!r}: "
            "await async code directly instead."
        )


class OwningDatabase(typing.Protocol):
    """What a connection reads of its `Database` (typed so because the database module
    builds connections, and imports this one)."""

    @property
    def url(self) -> DatabaseURL: ...

    @property
    def is_connected(self) -> bool: ...

    @property
    def _force_rollback(self) -> bool: ...


class ConnectionRole(enum.Enum):
    """Who uses a `Connection`, which decides its locking and cancellation policy."""

    # One task's (`database.connection()`), and the child tasks it passes it to.
    TASK = "task"
    # Lent by its loop to one `Database` call at a time, for one statement.
    STATEMENT = "statement"
    # The force-rollback session's: every task of every loop shares it.
    SESSION = "session"


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


def _nothing() -> None:
    return None


class Connection:
    """One backend connection, held while `async with` blocks are open (re-entrant)."""

    def __init__(
        self,
        database: OwningDatabase,
        backend: DatabaseBackend,
        *,
        state: LoopState[Connection] | None = None,
        role: ConnectionRole = ConnectionRole.TASK,
        task: asyncio.Task[typing.Any] | None = None,
        shares_with: Connection | None = None,
        statement_savepoints: bool = False,
    ) -> None:
        """`state` is the loop state it belongs to (its loop, and where it is returned);
        `task` the task that holds it (TASK); `shares_with` another connection whose driver
        connection and transactions this one is a second face of (the force-rollback
        session's, seen from other loops); `statement_savepoints`: run each statement of a
        caller inside none of its transactions under a savepoint of its own (see
        `_statement()`)."""
        self._database = database
        self._statement_savepoints = statement_savepoints
        self._backend = backend
        self._state = state
        self._task = weakref.ref(task) if task is not None else None
        # A statement connection is owned by no task: its loop lends it to one `Database`
        # call at a time and keeps it for reuse. That call runs one statement, which the
        # backend may serve from a connection it shares (`statement_connection()`), and
        # nothing else uses it meanwhile, so it needs no locks.
        self._for_statement = role is ConnectionRole.STATEMENT
        self._is_session = role is ConnectionRole.SESSION
        self._connection: ConnectionBackend
        if shares_with is not None:
            self._connection = shares_with._connection
        elif self._for_statement:
            self._connection = backend.statement_connection()
        else:
            self._connection = backend.connection()
        self._capabilities = capabilities_of(self._connection)
        self._accepts_values = self._capabilities.accepts_values
        cancellation = self._capabilities.cancellation
        # Whether statements run to their end when their task is cancelled (see _protect).
        # On the session's connection abandoning one would hurt the other tasks unless
        # it is harmless.
        if self._is_session:
            self._shield_statements = cancellation is not StatementCancellation.HARMLESS
        else:
            self._shield_statements = cancellation is StatementCancellation.BREAKS_CONNECTION
        self._connection_lock: asyncio.Lock | _NoLock = (
            _NO_LOCK if self._for_statement else asyncio.Lock()
        )
        self._connection_counter = 0
        self._transactions: TransactionStack = (
            shares_with._transactions if shares_with is not None else TransactionStack()
        )
        # Queries on one connection never overlap; a driver that queues them needs no lock.
        self._query_lock: asyncio.Lock | _NoLock = (
            _NO_LOCK
            if self._for_statement or self._capabilities.queues_statements
            else asyncio.Lock()
        )
        self._loop: asyncio.AbstractEventLoop | None
        if state is not None:
            self._loop = state.loop
        else:
            self._loop = running_loop()
        # What releasing the driver connection ends with (decided here, as it runs after
        # every statement of a statement connection): a statement connection goes back
        # to its loop for reuse, a task's connection leaves the task's slot.
        self._returned: typing.Callable[[], None] = _nothing
        if state is not None and self._for_statement:
            self._returned = functools.partial(state.keep_statement_connection, self)
        elif state is not None and task is not None:
            self._returned = self._leave_task_slot

    def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise ConnectionLoopError()

    # -- holding the driver connection ----------------------------------------------------

    async def __aenter__(self) -> Connection:
        """Hold a driver connection from the pool until the matching exit; nested entries
        are counted, and the last exit gives it back."""
        self._check_loop()
        lock = self._connection_lock
        if self._for_statement:
            await self._hold()
        elif self._connection_counter and not lock.locked():
            # Held already, and nobody is acquiring or releasing it: nothing to wait for.
            self._connection_counter += 1
        else:
            async with lock:
                await self._hold()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Leave one `async with connection:`; the last one gives the driver connection
        back to the pool."""
        lock = self._connection_lock
        if self._for_statement:
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
                await self._acquire()
            except BaseException:
                self._connection_counter = 0
                self._returned()
                raise

    async def _let_go(self) -> None:
        """One holder fewer; the last releases the driver connection. Lock held."""
        self._connection_counter -= 1
        if self._connection_counter == 0:
            try:
                await self._connection.release()
            finally:
                self._returned()

    async def _acquire(self) -> None:
        """Acquire from the pool, opening this loop's backend first if needed."""
        database = self._database
        if not database.is_connected:
            raise DatabaseNotConnectedError(database.url.obscure_password)
        state = self._state
        if state is not None and not state.is_open:
            await state.open()
        await self._connection.acquire()
        if self._is_session:
            try:
                await self._begin_session_transaction()
            except BaseException:
                await self._connection.release()
                raise

    def _leave_task_slot(self) -> None:
        """Released: no longer the connection of the task that held it."""
        task = self._task() if self._task is not None else None
        if task is not None and self._state is not None:
            self._state.forget_task_connection(task, self)

    # -- the force-rollback session's transaction -----------------------------------------

    async def _begin_session_transaction(self) -> None:
        """Put the session's connection inside a transaction that is never committed."""
        transaction = Transaction(lambda: self, force_rollback=True)
        backend = self._connection.transaction()
        await backend.start(is_root=True, extra_options={})
        transaction._began(backend, self)
        entry = _OpenTransaction(transaction, backend, None)
        entry.begun = True
        self._transactions.push(entry)
        # Held until the session closes, so the connection outlives every block.
        self._connection_counter += 1
        carry_session(self._connection, self._session_holder())

    def _session_holder(self) -> str:
        """The session, as another connection's error names it (`_carry_session()`)."""
        database = self._database
        how = "force_rollback=True" if database._force_rollback else "`force_rollback()` blocks"
        return (
            f"the force-rollback session of {database.url.obscure_password} (for {how}; "
            f"its transaction is served by thread {threading.current_thread().name!r})"
        )

    async def _close_session(self, lost: bool = False) -> None:
        """Roll back everything done on the session's connection and release it.

        `lost`: the connection is known to be lost; the server rolled everything back.
        """
        async with self._connection_lock:
            if self._connection_counter == 0:
                return
            try:
                root = self._transactions.root()
                if root is not None:
                    for entry in self._transactions:
                        entry.transaction._abandoned(entry.backend)
                    if not lost:
                        await self._roll_back_session(root)
            finally:
                self._transactions.clear()
                self._connection_counter = 0
                carry_session(self._connection, None)
                await self._connection.release()

    async def _roll_back_session(self, root: _OpenTransaction) -> None:
        """Roll back the session's transaction, unless the server dropped the connection
        (and so rolled it back) already: then say so, but raise no driver error."""
        try:
            await self._protect(self._locked(root.backend.rollback()))
        except Exception:
            if not is_broken(self._connection):
                raise
            logger.warning(
                "The force-rollback connection to %s had been closed by the server, which "
                "rolled back its transaction; nothing left to roll back",
                self._database.url.obscure_password,
            )
            logger.debug("Rolling back the lost force-rollback connection", exc_info=True)

    async def _drop_lost_session(self) -> list[_OpenTransaction]:
        """The session's connection is lost: forget its transactions (the server rolled
        them back) and let the driver connection go. Returns the callers' transactions
        that were open on it, which can never end here now.

        Calls that hold the connection meanwhile keep their hold; those waiting to begin
        or end a transaction find it gone (`_begin`, `_end_step`).
        """
        async with self._connection_lock, self._query_lock:
            entries = self._transactions.drain()
            # Each began with a hold that only its end would let go.
            held = [entry for entry in entries if entry.begun and not entry.ending]
            self._connection_counter -= len(held)
            try:
                await self._connection.release()
            except Exception:
                logger.debug("Could not release a lost force-rollback connection", exc_info=True)
        return [entry for entry in held if entry.begun_in is not None]

    async def _begin_new_session(self) -> None:
        """After `_drop_lost_session()`: a new driver connection, in a new transaction."""
        async with self._connection_lock:
            if self._transactions.root() is not None:
                return  # a holder began one meanwhile (`_acquire`)
            async with self._query_lock:
                await self._connection.acquire()
                try:
                    await self._begin_session_transaction()
                except BaseException:
                    await self._connection.release()
                    raise

    def _lost_transaction_error(self) -> ForceRollbackConnectionLostError:
        """A transaction's turn came after the session's connection was lost under it."""
        return ForceRollbackConnectionLostError(
            self._database.url.obscure_password, in_transaction=True
        )

    # -- statements -------------------------------------------------------------------------

    def _protect(self, step: typing.Awaitable[_T]) -> typing.Awaitable[_T]:
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

    async def _locked(self, step: typing.Awaitable[_T]) -> _T:
        """Await one driver step of this connection under its query lock."""
        async with self._query_lock:
            return await step

    async def _perform(
        self,
        method: typing.Callable[..., typing.Awaitable[_T]],
        *args: typing.Any,
        timeout: float | None = None,
    ) -> _T:
        """Call one driver method holding this connection, under its query lock.

        A statement connection serves just this call and nothing else can reach it, so it
        is held and let go around the call directly, without `async with` and its locks.
        """
        if timeout is not None:
            call = TimedCall(self._connection, f"{method.__name__}()", timeout)
            return await call.bound(self._perform_timed(call, method, args))
        if not self._for_statement:
            async with self, self._query_lock:
                return await self._statement(method, *args)
        await self._hold()
        try:
            return await self._protect(method(*args))
        finally:
            await self._let_go()

    def _statement(
        self, method: typing.Callable[..., typing.Awaitable[_T]], *args: typing.Any
    ) -> typing.Awaitable[_T]:
        """What to await to run one statement (`method(*args)`).

        With `force_rollback_savepoints`, a statement of a caller inside none of the
        session's transactions runs under a savepoint of its own, to its end, so that
        its failure rolls back only itself: on PostgreSQL it would otherwise abort the
        session's transaction for every later statement.
        """
        if self._statement_savepoints and self._outside_transactions():
            return run_to_end(in_savepoint(self._connection, method, *args))
        return self._protect(method(*args))

    def _outside_transactions(self) -> bool:
        """Whether the caller is inside none of the transactions open here (the session's
        own aside, which no caller is inside)."""
        transactions = self._transactions
        if len(transactions) <= 1:
            return True
        active = _ACTIVE_TRANSACTIONS.get()
        return not active or not any(entry.transaction in active for entry in transactions)

    async def _perform_timed(
        self,
        call: TimedCall,
        method: typing.Callable[..., typing.Awaitable[_T]],
        args: tuple[typing.Any, ...],
    ) -> _T:
        """`_perform` for a call given `timeout=` (which `call` bounds)."""
        if not self._for_statement:
            async with self, self._query_lock:
                return await call.step(lambda: method(*args), bool(self._transactions))
        await self._hold()
        try:
            return await call.step(lambda: method(*args), False)
        finally:
            await self._let_go()

    async def fetch_all(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> list[Record]:
        """Every row of `query` on this connection; as `Database.fetch_all()`."""
        return await self._perform(
            self._connection.fetch_all, self._prepare(query, values), timeout=timeout
        )

    async def fetch_one(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Record | None:
        """The first row of `query`, or None; as `Database.fetch_one()`."""
        return await self._perform(
            self._connection.fetch_one, self._prepare(query, values), timeout=timeout
        )

    async def fetch_val(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        column: RecordKey = 0,
        *,
        timeout: float | None = None,
    ) -> typing.Any:
        """One value of the first row, or None; as `Database.fetch_val()`."""
        return await self._perform(
            self._connection.fetch_val, self._prepare(query, values), column, timeout=timeout
        )

    async def execute(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> typing.Any:
        """Run a statement on this connection; returns as `Database.execute()`."""
        return await self._perform(
            self._connection.execute, self._prepare(query, values), timeout=timeout
        )

    async def execute_many(
        self,
        query: ClauseElement | str,
        values: list[dict[str, typing.Any]],
        *,
        timeout: float | None = None,
    ) -> None:
        """Run `query` once for each dict of `values`; as `Database.execute_many()`."""
        run_many = self._execute_many_step(query, values)
        if timeout is not None:
            call = TimedCall(self._connection, "execute_many()", timeout)
            await call.bound(self._perform_timed(call, run_many, ()))
            return
        async with self, self._query_lock:
            await self._statement(run_many)

    def _execute_many_step(
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
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> AsyncGenerator[Record, None]:
        """The rows of `query`; `timeout=` bounds taking the connection and each batch of
        rows the driver fetches (not the whole iteration)."""
        return each_record(self._iterate_batches_of(query, values, timeout))

    async def batched_iterate(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        *,
        timeout: float | None = None,
    ) -> AsyncGenerator[list[Record], None]:
        """The rows of `query` in lists of `batch_size` (the last one may be shorter), as
        databasez spells it; `timeout=` as for `iterate()`."""
        check_batch_size(batch_size)
        rows = self.iterate(query, values, timeout=timeout)
        try:
            batch: list[Record] = []
            async for row in rows:
                batch.append(row)
                if len(batch) == batch_size:
                    yield batch
                    batch = []
            if batch:
                yield batch
        finally:
            await rows.aclose()

    def _iterate_batches_of(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None,
        timeout: float | None,
    ) -> AsyncGenerator[list[Record], None]:
        if timeout is None:
            return self._batches(query, values)
        call = TimedCall(self._connection, "A batch of iterate()", timeout)
        return self._batches_timed(query, values, call)

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
                            batch = await self._protect(batches.__anext__())
                        except StopAsyncIteration:
                            return
                    yield batch
            finally:
                async with self._query_lock:
                    await batches.aclose()

    async def _batches_timed(
        self, query: ClauseElement | str, values: dict[str, typing.Any] | None, call: TimedCall
    ) -> AsyncGenerator[list[Record], None]:
        """`_batches`, each batch (and taking the connection) bounded by `call`."""
        built = self._prepare(query, values)
        await call.bound(self.__aenter__())
        try:
            batches = self._connection._iterate_batches(built)
            try:
                while True:
                    batch = await call.bound(self._next_batch_timed(call, batches))
                    if batch is None:
                        return
                    yield batch
            finally:
                async with self._query_lock:
                    await batches.aclose()
        finally:
            await self.__aexit__()

    async def _next_batch_timed(
        self, call: TimedCall, batches: AsyncGenerator[list[Record], None]
    ) -> list[Record] | None:
        async with self._query_lock:
            return await call.step(lambda: _next_or_none(batches), bool(self._transactions))

    # -- synchronous SQLAlchemy code ------------------------------------------------------

    async def run_sync(
        self, fn: typing.Callable[..., _T], *args: typing.Any, **kwargs: typing.Any
    ) -> _T:
        """`fn(sync_connection, *args, **kwargs)`, where `sync_connection` is a SQLAlchemy
        `Connection` running on this connection's driver connection (no second driver,
        no second connection), inside the caller's transaction if one is open.

        `fn` runs alone on the connection; its `commit()`/`rollback()` do nothing, as
        the transactions are this package's (`transaction()`); outside one, each of its
        statements commits as it runs. Not on aiopg (an error says what to use).
        """
        check_sync_function(fn)
        async with self, self._query_lock:
            return typing.cast(_T, await self._protect(self._sync_call(fn, args, kwargs)))

    def _sync_call(
        self,
        fn: typing.Callable[..., typing.Any],
        args: tuple[typing.Any, ...],
        kwargs: dict[str, typing.Any],
    ) -> typing.Awaitable[typing.Any]:
        """The backend's call (a backend not deriving from `ConnectionBackend` has none)."""
        run = getattr(self._connection, "_run_sync", None)
        if run is None:
            raise NotImplementedError(
                f"run_sync() is not supported by {type(self._connection).__name__}"
            )
        return typing.cast(typing.Awaitable[typing.Any], run(fn, args, kwargs))

    async def create_all(
        self,
        metadata: MetaData,
        *,
        checkfirst: bool = True,
        tables: typing.Sequence[Table] | None = None,
    ) -> None:
        """`metadata.create_all()` on this connection (through `run_sync()`): tables,
        indexes, constraints and types (a PostgreSQL ENUM); with `checkfirst`, what
        exists already is skipped."""
        await self.run_sync(metadata.create_all, tables=tables, checkfirst=checkfirst)

    async def drop_all(
        self,
        metadata: MetaData,
        *,
        checkfirst: bool = True,
        tables: typing.Sequence[Table] | None = None,
    ) -> None:
        """`metadata.drop_all()` on this connection (through `run_sync()`); with
        `checkfirst`, what does not exist is skipped."""
        await self.run_sync(metadata.drop_all, tables=tables, checkfirst=checkfirst)

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

    # -- transactions -----------------------------------------------------------------------

    def transaction(
        self, *, force_rollback: bool = False, timeout: float | None = None, **kwargs: typing.Any
    ) -> Transaction:
        """A transaction on this connection (a savepoint inside another one), to use as
        `async with`, to await, or as a decorator; as `Database.transaction()`."""
        return Transaction(lambda: self, force_rollback, timeout=timeout, **kwargs)

    @property
    def raw_connection(self) -> typing.Any:
        """The driver's own connection (asyncpg, psycopg, aiomysql...; SQLite: an object
        with aiosqlite's API), while this connection is held."""
        return self._connection.raw_connection

    def in_transaction(self) -> bool:
        """Whether a transaction is open on this connection, begun by any task using it
        (with force_rollback: always, the session's own)."""
        return bool(self._transactions)

    def in_nested_transaction(self) -> bool:
        """Whether a transaction nested in another (a savepoint) is open on this connection."""
        return len(self._transactions) > 1

    @property
    def _transaction_stack(self) -> list[Transaction]:
        """The open transactions, outermost first."""
        return self._transactions.transactions()

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
        transactions = self._transactions
        await self.__aenter__()
        try:
            await transactions.wait_turn(loop)
            is_root = not transactions
            entry = _OpenTransaction(transaction, self._connection.transaction(), loop)
            # Claimed before awaiting, so other tasks wait for their turn.
            transactions.push(entry)
            try:
                # To its end even when the caller is cancelled meanwhile: a transaction is
                # either begun and on the stack, or not begun at all.
                await run_to_end(self._begin(entry, is_root, options))
            except BaseException:
                if entry.begun:  # begun, then cancelled: nobody will end it
                    await run_to_end(self._locked(entry.backend.rollback()))
                transactions.remove(entry)
                raise
        except BaseException:
            await run_to_end(self.__aexit__())
            raise
        return entry.backend

    async def _begin(
        self, entry: _OpenTransaction, is_root: bool, options: dict[str, typing.Any]
    ) -> None:
        async with self._query_lock:
            if entry not in self._transactions:  # the session's connection was lost
                raise self._lost_transaction_error()
            await entry.backend.start(is_root=is_root, extra_options=options)
        entry.begun = True

    async def _end_transaction(self, backend: TransactionBackend, commit: bool) -> None:
        """Commit or roll back `backend`, once it is the innermost transaction here."""
        self._check_loop()
        transactions = self._transactions
        while True:
            if self._is_session:
                await self._roll_back_orphans()
            if transactions.is_innermost(backend):
                break
            await transactions.next_end()
        await self._end_innermost(commit)

    async def _end_innermost(self, commit: bool) -> None:
        transactions = self._transactions
        entry = typing.cast(_OpenTransaction, transactions.innermost())
        entry.ending = True
        try:
            # To its end even when the caller is cancelled meanwhile (also while it waits
            # for another task's statement): a savepoint dropped from the stack without its
            # ROLLBACK would leave its writes in the enclosing transaction.
            await run_to_end(self._end_step(entry, commit))
        finally:
            transactions.remove(entry)
            await run_to_end(self.__aexit__())

    async def _end_step(self, entry: _OpenTransaction, commit: bool) -> None:
        """COMMIT or ROLLBACK (or their savepoint forms) under the query lock."""
        async with self._query_lock:
            if entry not in self._transactions:  # the session's connection was lost
                raise self._lost_transaction_error()
            backend = entry.backend
            await (backend.commit() if commit else backend.rollback())

    async def _roll_back_orphans(self) -> None:
        """Roll back innermost transactions whose loop closed without ending them (a bare
        `loop.close()`: no `shutdown_asyncgens()` told us). One being rolled back by
        another call already stops this: this one queues after it."""
        while (orphan := self._transactions.orphan()) is not None:
            orphan.transaction._abandoned(orphan.backend)
            await self._end_innermost(commit=False)

    async def _roll_back_begun_in(self, loop: asyncio.AbstractEventLoop) -> None:
        """Roll back the transactions begun from `loop` (it is ending), innermost first."""
        for entry in self._transactions.begun_in(loop):
            if entry in self._transactions:
                entry.transaction._abandoned(entry.backend)
                await self._end_transaction(entry.backend, commit=False)


async def _next_or_none(batches: AsyncGenerator[list[Record], None]) -> list[Record] | None:
    """The next batch, or None at the end (which is no failure: no savepoint rollback)."""
    try:
        return await batches.__anext__()
    except StopAsyncIteration:
        return None
