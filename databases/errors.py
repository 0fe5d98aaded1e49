"""Errors that tell the user what to do, raised instead of hangs or bare assertions."""

from __future__ import annotations

import asyncio
import sys
import typing

if typing.TYPE_CHECKING:
    from databases._sqlite_lock_error import ForceRollbackLockError as ForceRollbackLockError


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


class ForceRollbackConnectionLostError(ConnectionError):
    """The force-rollback session's connection was lost (a server restart, a killed
    session, a cut network): the server rolled back its transaction, and with it
    everything the session held. The driver's error is the `__cause__`.

    A `ConnectionError` (so an `OSError`), as the network errors it stands for: the
    statement may be fine, the connection under it is gone.
    """

    def __init__(
        self, url: str, *, in_transaction: bool = False, reconnecting: bool = False
    ) -> None:
        if reconnecting:
            message = (
                f"The force-rollback connection to {url} was lost, and a new one could not "
                "be made (see the cause): everything the force-rollback session held is "
                "gone. The next query tries again."
            )
        elif in_transaction:
            message = (
                f"This transaction ran on the force-rollback connection to {url}, which "
                "was lost: the server rolled it back, with everything the force-rollback "
                "session held. It can be neither continued nor committed; statements "
                "outside it run in a new force-rollback session."
            )
        else:
            message = (
                f"The force-rollback connection to {url} was lost (closed by the server "
                "or the network): the server rolled back the force-rollback transaction, "
                "so everything written in this session since it began is gone. The next "
                "query starts a new force-rollback session on a new connection."
            )
        super().__init__(message)


class InvalidOptionError(ValueError):
    """An option of `Database(url, **options)` or of its URL query has a bad value.

    Raised when the `Database` is built, not at the first query; the message names the
    option and what it takes.
    """


class UnknownOptionError(InvalidOptionError, TypeError):
    """An option that neither `databases` nor the backend's driver takes.

    Also a `TypeError`, as Python raises for an unexpected keyword argument (and as the
    driver raised it in 0.9, at the first query).
    """


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


class DatabaseExistsError(RuntimeError):
    """`create_database()` found the database there already."""

    def __init__(self, url: str) -> None:
        super().__init__(
            f"The database {url} exists already: pass existing='keep' to use it as it is, "
            "or existing='drop' to drop it and create it empty."
        )


def __getattr__(name: str) -> typing.Any:
    """`ForceRollbackLockError`, an `sqlite3.OperationalError`, lives in a module of its
    own: imported on first use, so that `import databases` needs no `sqlite3`."""
    if name == "ForceRollbackLockError":
        from databases._sqlite_lock_error import ForceRollbackLockError as ForceRollbackLockError

        return ForceRollbackLockError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
