"""A call given `timeout=`: its bound, its savepoint, and stopping its statement.

The bound is `within()`'s: the whole call (waiting for a connection, for the connection's
turn, the statement itself) is cancelled when it expires. What that does to a running
statement depends on the driver (its `StatementCancellation`):

- ABORTS_TRANSACTION (asyncpg, psycopg): the driver cancels the statement on the server.
- BREAKS_CONNECTION (aiomysql, asyncmy, aiopg): abandoning the statement would lose the
  connection, so it runs on (`run_to_end`) and the backend's `_interrupt()` asks the
  server to stop it (MySQL's KILL QUERY, a libpq cancel request).
- HARMLESS (SQLite): the caller stops waiting at once, and `_interrupt()` stops the
  statement on its thread unless that would roll back the transaction around it.

Inside a transaction the statement runs in a savepoint of its own, rolled back when it
fails or is stopped: the transaction goes on as if the statement had never run (on
PostgreSQL a cancelled statement would otherwise fail the whole transaction). Where the
driver queues statements (SQLite), other tasks' statements could run between the
savepoint and its end, so the backend runs all three as one step and the timeout abandons
it (`_abandonable_next()`); a statement that kept its work first is not misreported.
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Awaitable, Callable

from databases._bounded import positive_seconds, within
from databases._logging import logger
from databases._run_to_end import run_to_end
from databases.errors import QueryTimeoutError
from databases.interfaces import (
    Abandonable,
    ConnectionBackend,
    StatementCancellation,
    TransactionBackend,
    capabilities_of,
)

_T = typing.TypeVar("_T")

# How long a timed-out call waits for the server to take its interrupt request.
INTERRUPT_TIMEOUT = 10.0


def checked_timeout(timeout: object) -> float:
    """A call's `timeout=`: seconds above zero."""
    seconds = positive_seconds(timeout)
    if seconds is not None:
        return seconds
    raise ValueError(f"timeout= takes seconds above zero (or None for no bound), not {timeout!r}.")


class TimedCall:
    """One call given `timeout=` on one backend connection."""

    __slots__ = (
        "_abandonable",
        "_backend",
        "_cancellation",
        "_interrupting",
        "_queues",
        "_running",
        "_settled",
        "_timeout",
        "_what",
    )

    def __init__(self, backend: ConnectionBackend, what: str, timeout: object) -> None:
        self._backend = backend
        self._what = what
        self._timeout = checked_timeout(timeout)
        capabilities = capabilities_of(backend)
        self._cancellation = capabilities.cancellation
        self._queues = capabilities.queues_statements
        # The statement in flight, where the backend keeps it in its savepoint itself.
        self._abandonable: Abandonable | None = None
        # A driver step of the call is in flight.
        self._running = False
        # The driver step succeeded: only tidying up (RELEASE SAVEPOINT, giving the
        # connection back) is left, and a timeout now would misreport its outcome.
        self._settled = False
        # The request to stop it, while being made.
        self._interrupting: asyncio.Future[typing.Any] | None = None

    @property
    def shields(self) -> bool:
        """Whether the driver step must run to its end even when the call is cancelled."""
        return self._cancellation is StatementCancellation.BREAKS_CONNECTION

    def bound(self, call: Awaitable[_T]) -> Awaitable[_T]:
        """`call` (the whole call), cancelled once the timeout expires."""
        return within(call, self._timeout, self._timed_out, self._expire)

    def _timed_out(self) -> QueryTimeoutError:
        return QueryTimeoutError(
            f"{self._what} did not finish within timeout={self._timeout:g} s. It was "
            "stopped; inside a transaction it was rolled back alone, and the transaction "
            "goes on."
        )

    def _expire(self) -> bool:
        """The timer fired: ask the server to stop a statement that cancelling cannot.
        False once the statement succeeded: the call then ends with its result."""
        if self._settled:
            return False
        if self._abandonable is not None and not self._abandonable.abandon():
            return False  # it has kept its work: too late to undo
        if self._running and self._cancellation is not StatementCancellation.ABORTS_TRANSACTION:
            request = self._backend._interrupt()
            if request is not None:
                self._interrupting = asyncio.ensure_future(request)
        return True

    async def step(self, make_step: Callable[[], Awaitable[_T]], in_transaction: bool) -> _T:
        """One driver step, with the connection held and locked; in a savepoint inside a
        transaction."""
        self._settled = False
        if in_transaction and self._queues:
            abandonable = self._backend._abandonable_next()
            if abandonable is not None:
                return await self._abandonable_step(make_step, abandonable)
        savepoint = self._backend.transaction() if in_transaction else None
        begun: list[TransactionBackend] = []
        try:
            if savepoint is not None:
                await run_to_end(_begin_savepoint(savepoint, begun))
            self._running = True
            try:
                step = make_step()
                result = await (run_to_end(step) if self.shields else step)
                self._settled = True
            finally:
                self._running = False
                await self._interrupted()
        except BaseException:
            if begun:
                await run_to_end(begun[0].rollback())
            raise
        if begun:
            await run_to_end(begun[0].commit())
        return result

    async def _abandonable_step(
        self, make_step: Callable[[], Awaitable[_T]], abandonable: Abandonable
    ) -> _T:
        """A step the backend runs alone in a savepoint of its own (it queues statements,
        so others' may run between ours): abandoned, rather than rolled back here."""
        self._abandonable = abandonable
        self._running = True
        try:
            result = await make_step()
            self._settled = True
        finally:
            self._running = False
            self._abandonable = None
            abandonable.close()
        return result

    async def _interrupted(self) -> None:
        """Wait until the request to stop the statement was made, so that it cannot reach
        the connection's next statement instead."""
        request, self._interrupting = self._interrupting, None
        if request is None:
            return
        try:
            await run_to_end(asyncio.wait_for(asyncio.shield(request), INTERRUPT_TIMEOUT))
        except Exception:
            logger.warning("Could not interrupt a timed-out statement", exc_info=True)


async def _begin_savepoint(savepoint: TransactionBackend, begun: list[TransactionBackend]) -> None:
    await savepoint.start(is_root=False, extra_options={})
    begun.append(savepoint)
