"""The force-rollback session: one connection in one transaction, for every loop.

With `force_rollback=True` a `Database` is one logical session for the whole process:
everything every loop does goes into one transaction, rolled back at the last
`disconnect()` (or at process end). The connection lives on the session loop (a thread
of its own, see `_session_loop`), because a loop that connected may be idle, blocked or
closed while others use it. Every other loop forwards its calls there and awaits the
result in its own loop; the session's `Connection` runs them exactly as it runs the
calls of tasks sharing it in one loop (same locks, same transaction turn-taking).
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import typing
import weakref
from collections.abc import AsyncGenerator

from sqlalchemy.sql import ClauseElement

from databases._connection import (
    Connection,
    ConnectionRole,
    OwningDatabase,
    _next_or_none,
    check_sync_function,
)
from databases._logging import logger
from databases._loops import LEFT_BY_PARENT, LoopState
from databases._session_loop import SESSION_LOOP, call_blocking, call_in
from databases._transaction import _ACTIVE_TRANSACTIONS, Transaction
from databases.errors import DatabaseNotConnectedError, ForceRollbackConnectionLostError
from databases.interfaces import (
    ConnectionBackend,
    DatabaseBackend,
    Record,
    RecordKey,
    TransactionBackend,
    each_record,
    is_broken,
)

_T = typing.TypeVar("_T")

# How long process exit waits for each open session's rollback.
EXIT_ROLLBACK_TIMEOUT = 5.0


class SessionDatabase(OwningDatabase, typing.Protocol):
    """What the session uses of its `Database` (typed so because the database module
    imports this one)."""

    def _backend_for_new_loop(self) -> DatabaseBackend: ...

    def _state(self) -> object: ...


_open_sessions: weakref.WeakSet[ForceRollbackSession] = weakref.WeakSet()


class ForceRollbackSession:
    """A database's force-rollback connection and transaction, owned by the session loop.

    One per database and process: each `start()` after a `close()` begins a new session on
    the same objects (a new pool and connection, a new transaction).

    A connection lost under it (a server restart, a killed session) fails the calls that
    meet it with one clear error, `ForceRollbackConnectionLostError`; the next call begins
    a new session on a new connection (`renew_here()`). Everything below marked "on the
    session loop" runs there only, so it needs no lock against other threads.
    """

    def __init__(self, database: SessionDatabase, *, statement_savepoints: bool = False) -> None:
        self._database = database
        self.loop = SESSION_LOOP.get()
        self.pid = os.getpid()
        self.state = LoopState[Connection](self.loop, database._backend_for_new_loop)
        # The session's connection as its home, the session loop, runs it.
        self.home = Connection(
            database,
            self.state.backend,
            state=self.state,
            role=ConnectionRole.SESSION,
            statement_savepoints=statement_savepoints,
        )
        # What every loop holds: forwards to `home`.
        self.connection = SessionConnection(database, self)
        # The driver error that lost the connection, until a new one replaces it.
        self.lost: BaseException | None = None
        # One more at each replacement: a call begun before belongs to the lost connection.
        self.generation = 0
        # Callers' transactions that were open on a lost connection and have not ended
        # yet, each with the driver error that lost it.
        self.lost_transactions: dict[TransactionBackend, BaseException] = {}
        self._renewing: asyncio.Lock | None = None
        _open_sessions.add(self)

    @property
    def started(self) -> bool:
        """The connection is acquired and inside its transaction."""
        return self.home._connection_counter > 0

    @property
    def usable(self) -> bool:
        """Made in this process: a forked child makes its own."""
        return self.pid == os.getpid()

    @property
    def transaction(self) -> Transaction | None:
        """The session's own transaction, while the session runs."""
        root = self.home._transactions.root()
        return root.transaction if root is not None else None

    async def call(
        self,
        call: typing.Callable[[], typing.Coroutine[typing.Any, typing.Any, _T]],
        undo: typing.Callable[[_T], typing.Coroutine[typing.Any, typing.Any, object]] | None = None,
    ) -> _T:
        """Run `call()` on the session loop and await its result in the running loop."""
        return await call_in(self.loop, call, undo)

    async def start(self) -> None:
        """Acquire the connection and begin the transaction, unless that happened already
        (on a connection not known to be lost)."""
        if not self.started or self.lost is not None:
            await self.call(self._start_here)

    async def _start_here(self) -> None:
        if self.lost is not None:
            await self.renew_here()
            return
        async with self.home:
            pass  # the first holder begins the transaction, which holds the connection on

    # -- a lost connection (on the session loop) -------------------------------------------

    def lost_error(
        self,
        cause: BaseException | None,
        *,
        in_transaction: bool = False,
        reconnecting: bool = False,
    ) -> ForceRollbackConnectionLostError:
        error = ForceRollbackConnectionLostError(
            self._database.url.obscure_password,
            in_transaction=in_transaction,
            reconnecting=reconnecting,
        )
        error.__cause__ = cause
        return error

    def holds(self, generation: int | None) -> bool:
        """Whether the connection of `generation` is still the session's, and not lost."""
        return (
            generation == self.generation
            and self.lost is None
            and not is_broken(self.home._connection)
        )

    def loss(
        self, error: BaseException, generation: int, *, in_transaction: bool = False
    ) -> ForceRollbackConnectionLostError | None:
        """A call begun at `generation` failed with `error`: the error to raise instead if
        its connection is lost (noting the loss), else None."""
        if isinstance(error, ForceRollbackConnectionLostError):
            return error
        if self.holds(generation):
            return None  # the statement failed, not the connection
        if generation == self.generation and self.lost is None:
            self.lost = error
        return self.lost_error(error, in_transaction=in_transaction)

    async def renew_here(self) -> None:
        """Replace a lost connection by a new one in a new transaction: a new session.

        The callers' transactions that were open on the lost one are kept apart: ending
        them, or running statements inside them, raises (`check_not_in_lost_transaction()`).
        """
        if self._renewing is None:
            self._renewing = asyncio.Lock()
        async with self._renewing:
            cause = self.lost
            if cause is None:
                return  # renewed by the call before
            for entry in await self.home._drop_lost_session():
                self.lost_transactions[entry.backend] = cause
            self.generation += 1
            try:
                await self.home._begin_new_session()
            except Exception as exc:
                # Still lost (the server is down, say): the same error, the next call
                # tries again.
                raise self.lost_error(exc, reconnecting=True) from exc
            self.lost = None
        logger.warning(
            "The force-rollback connection to %s was lost; a new force-rollback session "
            "began on a new connection (the lost session's data is gone)",
            self._database.url.obscure_password,
        )

    def check_not_in_lost_transaction(self) -> None:
        """Raise if the caller is inside a transaction of a lost connection."""
        lost = self.lost_transactions
        if not lost:
            return
        active = _ACTIVE_TRANSACTIONS.get()
        for backend in active.values() if active else ():
            cause = lost.get(backend)
            if cause is not None:
                raise self.lost_error(cause, in_transaction=True)

    async def close(self) -> None:
        """Roll back everything and close the connection (the last `disconnect()`)."""
        await self.call(self._close_here)

    def close_blocking(self, timeout: float) -> None:
        """`close()` from a thread that runs no event loop (process exit)."""
        call_blocking(self.loop, self._close_here, timeout)

    async def _close_here(self) -> None:
        lost, self.lost = self.lost is not None, None
        self.lost_transactions.clear()
        try:
            await self.home._close_session(lost=lost)
        finally:
            await self.state.close_backend()

    def watch_running_loop(self) -> None:
        """Make sure the database has a state for the running loop: the end of that loop
        rolls back what its tasks leave open here (`loop_ended`)."""
        self._database._state()

    async def loop_ended(self, loop: asyncio.AbstractEventLoop) -> None:
        """`loop` is ending: roll back the transactions its tasks began and left open."""
        if self.usable and self.home._transactions:
            await self.call(lambda: self._roll_back_begun_in_here(loop))

    async def _roll_back_begun_in_here(self, loop: asyncio.AbstractEventLoop) -> None:
        generation = self.generation
        try:
            await self.home._roll_back_begun_in(loop)
        except Exception as exc:
            if self.loss(exc, generation) is None:
                raise
            logger.debug("An ending loop's transactions were on a lost connection", exc_info=True)


def _roll_back_at_exit() -> None:
    """Roll back what sessions still hold when the process ends (no last `disconnect()`)."""
    for session in list(_open_sessions):
        if not (session.usable and session.started):
            continue
        try:
            session.close_blocking(EXIT_ROLLBACK_TIMEOUT)
        except Exception:
            logger.warning("Could not roll back a force-rollback session at exit", exc_info=True)


atexit.register(_roll_back_at_exit)


def _leave_sessions_to_parent() -> None:
    """In a forked child: the parent's sessions are the parent's (see `LEFT_BY_PARENT`)."""
    LEFT_BY_PARENT.extend(_open_sessions)
    _open_sessions.clear()


if hasattr(os, "register_at_fork"):  # pragma: no branch - every POSIX Python has it
    os.register_at_fork(after_in_child=_leave_sessions_to_parent)


class SessionConnection(Connection):
    """What `database.connection()` gives under force_rollback, in every loop and task.

    Each call is forwarded to the session's connection on its home, the session loop
    (SQLite's statements run on it from the calling loop: see `_direct()`). It shares
    that connection's driver connection and transactions; it never holds the driver
    connection itself, so its own locks and counter stay unused.
    """

    def __init__(self, database: SessionDatabase, session: ForceRollbackSession) -> None:
        home = session.home
        super().__init__(
            database,
            home._backend,
            state=session.state,
            role=ConnectionRole.SESSION,
            shares_with=home,
        )
        self._session = session
        self._home = home

    def __repr__(self) -> str:
        return f"<SessionConnection of {self._database!r}>"

    def _check_loop(self) -> None:
        """Any loop may use it."""

    def _check_connected(self) -> None:
        if not self._database.is_connected:
            raise DatabaseNotConnectedError(self._database.url.obscure_password)

    async def __aenter__(self) -> SessionConnection:
        # The session holds its connection from start to end: entering only starts it.
        self._check_connected()
        await self._session.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def _direct(self, timeout: float | None) -> ConnectionBackend | None:
        """The session's driver connection, when a statement may run on it right here.

        A driver that serves any loop (SQLite) runs statements in the caller's loop: no hop
        to the session loop. Starting the session, transactions, rolling back what a
        closed loop left open, anything after a lost connection, and calls given `timeout=`
        still go through the session loop.
        """
        connection = self._connection
        session = self._session
        if (
            timeout is not None
            or not self._capabilities.serves_any_loop
            or not session.started
            or session.lost is not None
            or session.lost_transactions
        ):
            return None
        top = self._transactions.innermost()
        nested = len(self._transactions) > 1
        if nested and top is not None and (top.ending or _is_closed(top.begun_in)):
            return None
        return connection

    async def fetch_all(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> list[Record]:
        direct = self._direct(timeout)
        if direct is not None:
            return await self._home._statement(direct.fetch_all, self._prepare(query, values))
        return await self._session.call(
            lambda: self._here(self._home.fetch_all, query, values, timeout=timeout)
        )

    async def fetch_one(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Record | None:
        direct = self._direct(timeout)
        if direct is not None:
            return await self._home._statement(direct.fetch_one, self._prepare(query, values))
        return await self._session.call(
            lambda: self._here(self._home.fetch_one, query, values, timeout=timeout)
        )

    async def fetch_val(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        column: RecordKey = 0,
        *,
        timeout: float | None = None,
    ) -> typing.Any:
        direct = self._direct(timeout)
        if direct is not None:
            prepared = self._prepare(query, values)
            return await self._home._statement(direct.fetch_val, prepared, column)
        return await self._session.call(
            lambda: self._here(self._home.fetch_val, query, values, column, timeout=timeout)
        )

    async def execute(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> typing.Any:
        direct = self._direct(timeout)
        if direct is not None:
            return await self._home._statement(direct.execute, self._prepare(query, values))
        return await self._session.call(
            lambda: self._here(self._home.execute, query, values, timeout=timeout)
        )

    async def execute_many(
        self,
        query: ClauseElement | str,
        values: list[dict[str, typing.Any]],
        *,
        timeout: float | None = None,
    ) -> None:
        if self._direct(timeout) is not None:
            await self._home._statement(self._execute_many_step(query, values))
            return
        await self._session.call(
            lambda: self._here(self._home.execute_many, query, values, timeout=timeout)
        )

    async def run_sync(
        self, fn: typing.Callable[..., _T], *args: typing.Any, **kwargs: typing.Any
    ) -> _T:
        """On the session loop's thread (where the session's connection lives), inside
        the session's transaction."""
        check_sync_function(fn)
        home = self._home
        return await self._session.call(
            lambda: self._here(home.run_sync, functools.partial(fn, **kwargs), *args)
        )

    # -- on the session loop ----------------------------------------------------------------

    async def _here(
        self,
        step: typing.Callable[..., typing.Awaitable[_T]],
        *args: typing.Any,
        **kwargs: typing.Any,
    ) -> _T:
        """Run one of the session connection's steps: on a new session if the connection
        was lost, never inside a transaction of a lost one."""
        session = self._session
        if session.lost is not None:
            await session.renew_here()
        session.check_not_in_lost_transaction()
        if kwargs:  # `timeout=`
            step = functools.partial(step, **kwargs)
        return await self._guarded(session.generation, self._after_orphans, step, *args)

    async def _after_orphans(
        self, step: typing.Callable[..., typing.Awaitable[_T]], *args: typing.Any
    ) -> _T:
        if len(self._transactions) > 1:
            # Savepoints of a loop closed without `shutdown_asyncgens()` go first, or
            # this statement would run inside them and be rolled back with them.
            await self._home._roll_back_orphans()
        return await step(*args)

    def iterate(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> AsyncGenerator[Record, None]:
        return each_record(self._batches(query, values, timeout))

    async def _guarded(
        self,
        generation: int,
        step: typing.Callable[..., typing.Awaitable[_T]],
        *args: typing.Any,
        in_transaction: bool = False,
    ) -> _T:
        """`step(*args)` of a call begun on the connection of `generation`: if that
        connection is lost, one clear error instead of the driver's."""
        session = self._session
        if generation != session.generation:
            raise session.lost_error(None, in_transaction=in_transaction)
        try:
            return await step(*args)
        except Exception as exc:
            lost = session.loss(exc, generation, in_transaction=in_transaction)
            if lost is None or lost is exc:
                raise
            raise lost from exc

    async def _first_batch(
        self, batches: AsyncGenerator[list[Record], None]
    ) -> tuple[int, list[Record] | None]:
        return self._session.generation, await _next_or_none(batches)

    async def _close_batches(
        self, batches: AsyncGenerator[list[Record], None], generation: int | None
    ) -> None:
        session = self._session
        try:
            await batches.aclose()
        except Exception:
            if session.holds(generation):
                raise
            logger.debug("Could not close a stream of a lost connection", exc_info=True)

    # -- streams and transactions -----------------------------------------------------------

    async def _batches(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None,
        timeout: float | None = None,
    ) -> AsyncGenerator[list[Record], None]:
        """The rows of `query` in batches: straight from a driver that serves any loop,
        else each batch fetched by one call forwarded to the session loop."""
        direct = self._direct(timeout)
        if direct is not None:
            rows = direct._iterate_batches(self._prepare(query, values))
            try:
                async for chunk in rows:
                    yield chunk
            finally:
                await rows.aclose()
            return
        batches = self._home._iterate_batches_of(query, values, timeout)
        generation: int | None = None
        try:
            began, batch = await self._session.call(lambda: self._here(self._first_batch, batches))
            generation = began
            next_batch = functools.partial(self._guarded, began, _next_or_none, batches)
            while batch is not None:
                yield batch
                batch = await self._session.call(next_batch)
        finally:
            ended = generation
            await self._session.call(lambda: self._close_batches(batches, ended))

    async def _start_transaction(
        self,
        transaction: Transaction,
        options: dict[str, typing.Any],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> TransactionBackend:
        loop = asyncio.get_running_loop()
        self._session.watch_running_loop()
        home = self._home
        return await self._session.call(
            lambda: self._here(home._start_transaction, transaction, options, loop),
            undo=lambda backend: home._end_transaction(backend, commit=False),
        )

    async def _end_transaction(self, backend: TransactionBackend, commit: bool) -> None:
        await self._session.call(lambda: self._end_here(backend, commit))

    async def _end_here(self, backend: TransactionBackend, commit: bool) -> None:
        session = self._session
        cause = session.lost_transactions.pop(backend, None)
        if cause is not None:
            raise session.lost_error(cause, in_transaction=True)
        await self._guarded(
            session.generation,
            self._home._end_transaction,
            backend,
            commit,
            in_transaction=True,
        )

    @property
    def raw_connection(self) -> typing.Any:
        """The driver's connection. It belongs to the session loop (another thread): read
        its attributes from anywhere, but run its coroutines only through this object's
        methods (SQLite's is the exception: its worker thread serves any loop)."""
        return self._home.raw_connection


def _is_closed(loop: asyncio.AbstractEventLoop | None) -> bool:
    return loop is not None and loop.is_closed()
