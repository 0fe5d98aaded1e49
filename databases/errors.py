"""Errors that tell the user what to do, raised instead of hangs or bare assertions."""

from __future__ import annotations

import asyncio
import sys


class DatabaseNotConnectedError(RuntimeError):
    """A query ran while the database was not connected."""

    def __init__(self, url: str) -> None:
        super().__init__(
            f"The database {url} is not connected: call `await database.connect()` "
            "(or use `async with database:`) before running queries."
        )


class ConnectionLoopError(RuntimeError):
    """A `Connection` object was used in another event loop than the one it belongs to."""

    def __init__(self) -> None:
        super().__init__(
            "This Connection belongs to another event loop. Connections cannot cross "
            "loops: call `database.connection()` inside the loop that uses it."
        )


class TransactionOpenError(RuntimeError):
    """`disconnect()` was called while the calling task still had a transaction open."""


class UnsupportedDatabaseURLError(ValueError):
    """The URL is malformed or names a scheme no backend is registered for."""


if sys.version_info >= (3, 11):

    class DatabaseTimeoutError(TimeoutError):
        """A bounded wait of this package expired (`except TimeoutError` catches it)."""

else:  # pragma: no cover - asyncio.TimeoutError is TimeoutError from 3.11 on

    class DatabaseTimeoutError(TimeoutError, asyncio.TimeoutError):
        """A bounded wait of this package expired (`except TimeoutError` and
        `except asyncio.TimeoutError` both catch it)."""


class PoolTimeoutError(DatabaseTimeoutError):
    """No connection of the pool came free within `pool_timeout`."""


class ConnectTimeoutError(DatabaseTimeoutError):
    """Opening a connection to the server took longer than `connect_timeout`."""


class QueryTimeoutError(DatabaseTimeoutError):
    """A call given `timeout=` did not finish in time; its statement was cancelled."""
