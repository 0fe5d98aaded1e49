"""The open transactions of one connection, and whose turn it is to start or end one.

Tasks sharing a connection (a `Connection` passed down to child tasks, or the
force-rollback session's, shared by every loop) share one stack of transactions. A task
may only nest in a transaction it is inside; others wait until it ends. An inner
transaction ends before the one it nests in. The stack only answers these questions and
wakes the waiters: running the driver steps is the `Connection`'s job.
"""

from __future__ import annotations

import asyncio
import contextlib
import typing

from databases._transaction import _ACTIVE_TRANSACTIONS, _InnerTransactionOpenError
from databases.interfaces import TransactionBackend

if typing.TYPE_CHECKING:
    from databases._transaction import Transaction


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
        # The loop of the task that began it (None for the force-rollback session's own).
        self.begun_in = begun_in
        self.begun = False
        # Its COMMIT or ROLLBACK is under way: nothing may nest in it any more.
        self.ending = False


class TransactionStack:
    """A connection's open transactions, outermost first, and the tasks waiting for a turn."""

    __slots__ = ("_entries", "_waiters")

    def __init__(self) -> None:
        self._entries: list[_OpenTransaction] = []
        self._waiters: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> typing.Iterator[_OpenTransaction]:
        return iter(self._entries)

    def transactions(self) -> list[Transaction]:
        return [entry.transaction for entry in self._entries]

    def root(self) -> _OpenTransaction | None:
        return self._entries[0] if self._entries else None

    def innermost(self) -> _OpenTransaction | None:
        return self._entries[-1] if self._entries else None

    def push(self, entry: _OpenTransaction) -> None:
        self._entries.append(entry)

    def remove(self, entry: _OpenTransaction) -> None:
        """Drop an ended (or never begun) transaction and wake the tasks waiting for a turn.

        Gone already if its connection was lost meanwhile (`drain()`).
        """
        if entry in self._entries:
            self._entries.remove(entry)
        self._wake_waiters()

    def clear(self) -> None:
        self._entries.clear()

    def drain(self) -> list[_OpenTransaction]:
        """Drop every transaction (the connection was lost, and they with it), waking the
        tasks waiting for a turn; the dropped ones, outermost first."""
        entries, self._entries = self._entries, []
        self._wake_waiters()
        return entries

    def __contains__(self, entry: object) -> bool:
        return entry in self._entries

    # -- turns ----------------------------------------------------------------------------

    def may_start(self, loop: asyncio.AbstractEventLoop) -> bool:
        """A task may open a transaction here unless another task's transaction is on top.

        On the force-rollback session a transaction begun from another event loop does not
        make this one wait: it nests, as it would on one connection. That loop may be
        blocked waiting for this one (a test inside `with TestClient(app):`).
        """
        if not self._entries:
            return True
        top = self._entries[-1]
        if top.ending:
            return False
        if top.begun_in is not loop:
            return True
        active = _ACTIVE_TRANSACTIONS.get()
        return active is not None and top.transaction in active

    async def wait_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until other tasks' transactions on top have ended."""
        while not self.may_start(loop):
            await self.next_end()

    async def next_end(self) -> None:
        """Wait until some transaction here ends."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _wake_waiters(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    # -- ending -------------------------------------------------------------------------------

    def is_innermost(self, backend: TransactionBackend) -> bool:
        """Whether `backend` can end now; False while transactions that other loops nested
        in it are open (they end first). A nested one of its own loop is a mistake."""
        stack = self._entries
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

    def orphan(self) -> _OpenTransaction | None:
        """The innermost transaction if its loop closed without ending it (a bare
        `loop.close()`: no `shutdown_asyncgens()` told us), unless already ending."""
        top = self.innermost()
        if top is None or top.ending or top.begun_in is None or not top.begun_in.is_closed():
            return None
        return top

    def begun_in(self, loop: asyncio.AbstractEventLoop) -> list[_OpenTransaction]:
        """The transactions begun from `loop`, innermost first."""
        return [entry for entry in self._entries if entry.begun_in is loop][::-1]
