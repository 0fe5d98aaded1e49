"""The per-loop connection pool of the libpq backends (psycopg 3 and aiopg).

Ours rather than psycopg_pool's or aiopg's: the core already makes one backend per event
loop, so a pool needs no background tasks (psycopg_pool runs a scheduler and workers on
its loop, left pending when that loop dies), and `terminate()` must drop every connection
of a dead loop without awaiting, the same way for both drivers.
"""

from __future__ import annotations

import asyncio
import typing

from databases._logging import logger
from databases._loops import running_loop
from databases.backends.common._driver import tear_down
from databases.events import PoolAction
from databases.interfaces import PoolStats

# libpq's transaction status (psycopg's pq.TransactionStatus, psycopg2's
# TRANSACTION_STATUS_*): the same numbers in both drivers.
STATUS_IDLE = 0
STATUS_INTRANS = 2
STATUS_INERROR = 3


class LibpqDriver(typing.Protocol):
    """The driver calls the pool makes (a libpq backend provides them)."""

    async def _open_bounded(self, kwargs: dict[str, typing.Any]) -> typing.Any: ...

    def _pool_event(self, action: PoolAction, connection: object) -> None: ...

    async def _close_connection(self, connection: typing.Any) -> None: ...

    def _close_now(self, connection: typing.Any) -> None: ...

    def _is_closed(self, connection: typing.Any) -> bool: ...

    def _forget_closed(self, connection: typing.Any) -> None: ...

    def _transaction_status(self, connection: typing.Any) -> int: ...

    async def _execute_plain(self, connection: typing.Any, sql: str) -> None: ...


class ConnectionPool:
    """Up to `max_size` driver connections of one event loop; idle ones are reused."""

    def __init__(
        self, driver: LibpqDriver, kwargs: dict[str, typing.Any], min_size: int, max_size: int
    ) -> None:
        self._driver = driver
        # The driver's connect() arguments.
        self._kwargs = kwargs
        self._min_size = min_size
        self._max_size = max_size
        self._slots = asyncio.Semaphore(max_size)
        self._idle: list[typing.Any] = []
        self._used: set[typing.Any] = set()
        self._closing = False
        self._all_back = asyncio.Event()
        # The loop whose selector watches the connections' sockets.
        self._loop = running_loop()

    async def open(self) -> None:
        try:
            for _ in range(self._min_size):
                self._idle.append(await self._driver._open_bounded(self._kwargs))
        except BaseException:
            # Nobody will close the pool: drop the connections it opened so far.
            idle, self._idle = self._idle, []
            for connection in idle:
                self._driver._close_now(connection)
            raise

    async def acquire(self) -> typing.Any:
        if self._closing:
            raise RuntimeError("The PostgreSQL backend is disconnecting.")
        await self._slots.acquire()
        try:
            connection = None
            while self._idle and connection is None:
                connection = self._idle.pop()
                if self._driver._is_closed(connection):
                    connection = None
            if connection is None:
                connection = await self._driver._open_bounded(self._kwargs)
        except BaseException:
            self._slots.release()
            raise
        self._used.add(connection)
        return connection

    def stats(self) -> PoolStats:
        return PoolStats(self._min_size, self._max_size, len(self._idle), len(self._used))

    async def release(self, connection: typing.Any) -> None:
        """Take a connection back, rolled back to no transaction, or drop it."""
        try:
            if self._closing:
                await self.close_connection(connection)
            elif self._driver._is_closed(connection):
                # Closed by its user (which reported it as discarded) or by the driver.
                await self.close_connection(connection)
            elif await self._reset(connection):
                self._idle.append(connection)
            else:
                # Open, but its transaction would not end: thrown away.
                self._driver._pool_event("discard", connection)
                await self.close_connection(connection)
        finally:
            self._used.discard(connection)
            self._slots.release()
            if not self._used:
                self._all_back.set()

    async def _reset(self, connection: typing.Any) -> bool:
        driver = self._driver
        if driver._is_closed(connection):
            return False
        if driver._transaction_status(connection) == STATUS_IDLE:
            return True
        try:
            await driver._execute_plain(connection, "ROLLBACK")
        except Exception:
            return False
        return driver._transaction_status(connection) == STATUS_IDLE

    async def close_connection(self, connection: typing.Any) -> None:
        """Close one connection, unless it is closed already."""
        if self._driver._is_closed(connection):
            # Closed already (terminated, or by the driver): aiopg would unregister its
            # descriptor again, whose number another connection may have by now. Only
            # what the driver still keeps on the loop goes.
            self._driver._forget_closed(connection)
            return
        try:
            await self._driver._close_connection(connection)
        except Exception:  # pragma: no cover - the server is gone: nothing to close
            self._driver._close_now(connection)

    async def close(self, timeout: float) -> None:
        """Close idle connections now and the others when they come back (or at `timeout`)."""
        self._closing = True
        idle, self._idle = self._idle, []
        for connection in idle:
            await self.close_connection(connection)
        if self._used:
            self._all_back.clear()
            try:
                await asyncio.wait_for(self._all_back.wait(), timeout)
            except asyncio.TimeoutError:
                logger.warning(
                    "PostgreSQL connections were still in use %.0f s after disconnect(); "
                    "terminating them",
                    timeout,
                )
                self.terminate()

    def terminate(self) -> None:
        """Drop every connection at once, awaiting nothing (the loop may be dead)."""
        self._closing = True
        connections = [*self._idle, *self._used]
        self._idle.clear()
        self._used.clear()

        def drop() -> None:
            for connection in connections:
                self._driver._close_now(connection)

        tear_down(self._loop, drop)
