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
import os
import typing
import weakref
from collections.abc import AsyncGenerator

from sqlalchemy.sql import ClauseElement

from databases._connection import Connection, ConnectionRole, OwningDatabase, _next_or_none
from databases._logging import logger
from databases._loops import LEFT_BY_PARENT, LoopState
from databases._session_loop import SESSION_LOOP, call_blocking, call_in
from databases._transaction import Transaction
from databases.errors import DatabaseNotConnectedError
from databases.interfaces import (
    ConnectionBackend,
    DatabaseBackend,
    Record,
    TransactionBackend,
    each_record,
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
    """

    def __init__(self, database: SessionDatabase) -> None:
        self._database = database
        self.loop = SESSION_LOOP.get()
        self.pid = os.getpid()
        self.state = LoopState[Connection](self.loop, database._backend_for_new_loop)
        # The session's connection as its home, the session loop, runs it.
        self.home = Connection(
            database, self.state.backend, state=self.state, role=ConnectionRole.SESSION
        )
        # What every loop holds: forwards to `home`.
        self.connection = SessionConnection(database, self)
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
        """Acquire the connection and begin the transaction, unless that happened already."""
        if not self.started:
            await self.call(self._start_here)

    async def _start_here(self) -> None:
        async with self.home:
            pass  # the first holder begins the transaction, which holds the connection on

    async def close(self) -> None:
        """Roll back everything and close the connection (the last `disconnect()`)."""
        await self.call(self._close_here)

    def close_blocking(self, timeout: float) -> None:
        """`close()` from a thread that runs no event loop (process exit)."""
        call_blocking(self.loop, self._close_here, timeout)

    async def _close_here(self) -> None:
        try:
            await self.home._close_session()
        finally:
            await self.state.close_backend()

    def watch_running_loop(self) -> None:
        """Make sure the database has a state for the running loop: the end of that loop
        rolls back what its tasks leave open here (`loop_ended`)."""
        self._database._state()

    async def loop_ended(self, loop: asyncio.AbstractEventLoop) -> None:
        """`loop` is ending: roll back the transactions its tasks began and left open."""
        if self.usable and self.home._transactions:
            await self.call(lambda: self.home._roll_back_begun_in(loop))


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
        closed loop left open, and calls given `timeout=` still go through the session loop.
        """
        connection = self._connection
        if timeout is not None or not self._capabilities.serves_any_loop:
            return None
        if not self._session.started:
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
            return await direct.fetch_all(self._prepare(query, values))
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
            return await direct.fetch_one(self._prepare(query, values))
        return await self._session.call(
            lambda: self._here(self._home.fetch_one, query, values, timeout=timeout)
        )

    async def fetch_val(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        column: typing.Any = 0,
        *,
        timeout: float | None = None,
    ) -> typing.Any:
        direct = self._direct(timeout)
        if direct is not None:
            return await direct.fetch_val(self._prepare(query, values), column)
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
            return await direct.execute(self._prepare(query, values))
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
            await self._execute_many_step(query, values)()
            return
        await self._session.call(
            lambda: self._here(self._home.execute_many, query, values, timeout=timeout)
        )

    async def _here(
        self,
        step: typing.Callable[..., typing.Awaitable[_T]],
        *args: typing.Any,
        **kwargs: typing.Any,
    ) -> _T:
        """On the session loop: run one of the session connection's steps."""
        if len(self._transactions) > 1:
            # Savepoints of a loop closed without `shutdown_asyncgens()` go first, or
            # this statement would run inside them and be rolled back with them.
            await self._home._roll_back_orphans()
        return await step(*args, **kwargs)

    def iterate(
        self,
        query: ClauseElement | str,
        values: dict[str, typing.Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> AsyncGenerator[Record, None]:
        return each_record(self._batches(query, values, timeout))

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
        try:
            while True:
                batch = await self._session.call(lambda: _next_or_none(batches))
                if batch is None:
                    return
                yield batch
        finally:
            await self._session.call(batches.aclose)

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
        await self._session.call(lambda: self._home._end_transaction(backend, commit))

    @property
    def raw_connection(self) -> typing.Any:
        """The driver's connection. It belongs to the session loop (another thread): read
        its attributes from anywhere, but run its coroutines only through this object's
        methods (SQLite's is the exception: its worker thread serves any loop)."""
        return self._home.raw_connection


def _is_closed(loop: asyncio.AbstractEventLoop | None) -> bool:
    return loop is not None and loop.is_closed()
