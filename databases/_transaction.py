"""`Transaction`, and which transactions each task is inside (`_ACTIVE_TRANSACTIONS`).

A `Transaction` object only remembers which backend transactions it started, on which
connection; the connection runs them (turns, savepoints, locks: `Connection` and
`_transaction_stack`).
"""

from __future__ import annotations

import functools
import typing
import weakref
from contextvars import ContextVar

from databases._bounded import within
from databases._timed_call import checked_timeout
from databases.errors import ConnectionLoopError, QueryTimeoutError
from databases.interfaces import TransactionBackend

_CallableT = typing.TypeVar("_CallableT", bound=typing.Callable[..., typing.Any])

# Per context: the transactions this context (task) is inside, each mapped to its backend
# transaction. Copied on write, so a child task inherits its parent's transactions and a
# transaction it starts stays invisible to the parent.
_ACTIVE_TRANSACTIONS: ContextVar[
    weakref.WeakKeyDictionary[Transaction, TransactionBackend] | None
] = ContextVar("databases:active_transactions", default=None)


class TransactionHost(typing.Protocol):
    """What runs a transaction's steps: a `Connection` (typed so because the connection
    module builds transactions, and imports this one)."""

    async def _start_transaction(
        self, transaction: Transaction, options: dict[str, typing.Any]
    ) -> TransactionBackend: ...

    async def _end_transaction(self, backend: TransactionBackend, commit: bool) -> None: ...


class _InnerTransactionOpenError(RuntimeError):
    """`commit()`/`rollback()` of a transaction with a nested one still open: nothing ended."""


class Transaction:
    """A transaction (or savepoint, when nested): a context manager, awaitable or decorator."""

    def __init__(
        self,
        connection_callable: typing.Callable[[], TransactionHost],
        force_rollback: bool = False,
        *,
        timeout: float | None = None,
        **kwargs: typing.Any,
    ) -> None:
        """`timeout` bounds each start: waiting for a connection, for the turn of this
        transaction on a connection other tasks share, and BEGIN. Commit and rollback are
        not bounded by it: a transaction half ended would be worse than a slow end."""
        # Asked at each start: a transaction made by `database.transaction()` runs on the
        # connection of whichever task starts it.
        self._connection_callable = connection_callable
        self._force_rollback = force_rollback
        self._timeout = None if timeout is None else checked_timeout(timeout)
        self._extra_options = kwargs
        # Backend transactions started through this object and not yet ended, oldest
        # first, each with the connection it runs on. One object can be active in
        # several tasks at once when it decorates a function.
        self._open: dict[TransactionBackend, TransactionHost] = {}

    @property
    def is_active(self) -> bool:
        """Whether this transaction is open: started and not yet committed or rolled back,
        in whichever task (what `commit()` and `rollback()` would end)."""
        return bool(self._open)

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

    async def __aenter__(self) -> Transaction:
        """Start the transaction (see `start()`)."""
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None = None, *exc_details: object
    ) -> None:
        """Roll back on an exception (or always, with force_rollback), else commit."""
        if exc_type is None and not self._force_rollback:
            await self.commit()
        else:
            await self.rollback()

    def __await__(self) -> typing.Generator[typing.Any, None, Transaction]:
        """`transaction = await database.transaction()` starts it; end it with `commit()`
        or `rollback()`."""
        return self.start().__await__()

    def __call__(self, func: _CallableT) -> _CallableT:
        """Run each call of the decorated async function inside this transaction."""

        @functools.wraps(func)
        async def wrapper(*args: typing.Any, **kwargs: typing.Any) -> typing.Any:
            async with self:
                return await func(*args, **kwargs)

        return typing.cast(_CallableT, wrapper)

    async def start(self) -> Transaction:
        """Begin the transaction, or a savepoint when the connection is in one already,
        and return it; the task that started it (and its children) are inside it."""
        connection = self._connection_callable()
        backend = await within(
            connection._start_transaction(self, self._extra_options),
            self._timeout,
            self._start_timed_out,
        )
        self._began(backend, connection)
        active = _ACTIVE_TRANSACTIONS.get()
        active = weakref.WeakKeyDictionary() if active is None else active.copy()
        active[self] = backend
        _ACTIVE_TRANSACTIONS.set(active)
        return self

    def _start_timed_out(self) -> QueryTimeoutError:
        return QueryTimeoutError(
            f"The transaction did not start within timeout={self._timeout:g} s (waiting for "
            "a connection, for other transactions on a connection tasks share, or BEGIN); "
            "nothing was begun."
        )

    def _began(self, backend: TransactionBackend, connection: TransactionHost) -> None:
        """`backend` was begun for this transaction on `connection`."""
        self._open[backend] = connection

    async def commit(self) -> None:
        """Commit it (release the savepoint, when nested). A transaction nested inside it
        must have ended first."""
        await self._end(commit=True)

    async def rollback(self) -> None:
        """Roll it back (to its savepoint, when nested); an outer transaction goes on."""
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

    def _abandoned(self, backend: TransactionBackend) -> None:
        """Forget `backend`: its connection rolls it back for tasks that are gone (their
        loop ended), so no context of theirs can still be inside it."""
        self._open.pop(backend, None)

    def _ended(self, backend: TransactionBackend) -> None:
        """Forget `backend`, which its connection has ended (or failed to end, and dropped)."""
        self._open.pop(backend, None)
        active = _ACTIVE_TRANSACTIONS.get()
        if active is not None and active.get(self) is backend:
            active = active.copy()
            del active[self]
            _ACTIVE_TRANSACTIONS.set(active)
