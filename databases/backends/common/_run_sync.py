"""`run_sync()`: a SQLAlchemy `Connection` on a driver connection we already hold.

SQLAlchemy runs synchronous code over an asyncio driver through its async dialects and
greenlets (`sqlalchemy.ext.asyncio`). We give it our own driver connection, lent for one
call: the engine's `async_creator` returns whatever connection the calling task lends it
(`lent()`), and the dialects here leave everything that belongs to the pool and the
transactions of `databases` alone. They begin, commit and roll back nothing (the
statements run inside whatever transaction the caller has open, or each on its own
outside one), close nothing, and install nothing on the connection (no codecs or
handlers), so that our own statements see it exactly as before.

Only public SQLAlchemy API: `create_async_engine(async_creator=...)`, the dialect
registry, and the documented `Dialect` hooks these classes override.
"""

from __future__ import annotations

import contextlib
import contextvars
import typing
from collections.abc import Iterator

from sqlalchemy import create_engine
from sqlalchemy.dialects import registry
from sqlalchemy.engine import Connection as SyncConnection
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

if typing.TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

_T = typing.TypeVar("_T")

SyncFunction = typing.Callable[..., typing.Any]

# The driver connection lent to the engine for the call running now (in this context).
_LENT: contextvars.ContextVar[typing.Any] = contextvars.ContextVar("databases_run_sync_lent")


@contextlib.contextmanager
def lending(driver_connection: typing.Any) -> Iterator[None]:
    """Lend `driver_connection` to the engine's creator for the block."""
    token = _LENT.set(driver_connection)
    try:
        yield
    finally:
        _LENT.reset(token)


def lent() -> typing.Any:
    """The driver connection lent now; an error outside `lending()`."""
    connection = _LENT.get(None)
    if connection is None:
        raise RuntimeError("run_sync(): no connection was lent to the SQLAlchemy engine")
    return connection


async def _lent_async() -> typing.Any:
    return lent()


class BorrowedConnectionDialect:
    """Mixin for a SQLAlchemy dialect class that runs statements on a borrowed connection.

    Put it first in the bases. Transactions, closing and connection setup belong to
    `databases`: the Dialect hooks that would do them here do nothing.
    """

    @classmethod
    def get_dialect_cls(cls, url: typing.Any) -> type:
        return cls

    @classmethod
    def get_async_dialect_cls(cls, url: typing.Any) -> type:
        # psycopg's sync dialect names its own async one here: this class instead.
        return cls

    def on_connect(self) -> typing.Any:
        # None: nothing to run on a new connection. The base dialects install codecs or
        # notice handlers on the driver connection, which would change what our own
        # statements get back.
        return None

    def do_begin(self, dbapi_connection: typing.Any) -> None:
        return None

    def do_commit(self, dbapi_connection: typing.Any) -> None:
        return None

    def do_rollback(self, dbapi_connection: typing.Any) -> None:
        return None

    def do_close(self, dbapi_connection: typing.Any) -> None:
        return None

    def do_terminate(self, dbapi_connection: typing.Any) -> None:
        return None

    def set_isolation_level(self, dbapi_connection: typing.Any, level: typing.Any) -> None:
        return None

    def reset_isolation_level(self, dbapi_connection: typing.Any) -> None:
        return None


def register(name: str, module: str, attribute: str) -> str:
    """Register a borrowing dialect as `<dialect>.<name>`; returns its URL's drivername."""
    dialect, _, driver = name.partition(".")
    registry.register(name, module, attribute)
    return f"{dialect}+{driver}"


def async_engine(drivername: str) -> AsyncEngine:
    """An engine whose every connection is the one lent by the calling task."""
    from sqlalchemy.ext.asyncio import create_async_engine

    return create_async_engine(
        f"{drivername}://",
        async_creator=_lent_async,
        poolclass=NullPool,
        pool_reset_on_return=None,
    )


def sync_engine(drivername: str) -> Engine:
    """An engine whose every connection is the one lent in this thread's context (a
    driver that is synchronous on a thread of ours)."""
    return create_engine(
        f"{drivername}://",
        creator=lent,
        poolclass=NullPool,
        pool_reset_on_return=None,
    )


async def run_async(
    engine: AsyncEngine,
    driver_connection: typing.Any,
    fn: SyncFunction,
    args: tuple[typing.Any, ...],
    kwargs: dict[str, typing.Any],
) -> typing.Any:
    """`fn(sync_connection, *args, **kwargs)` on `driver_connection`, through greenlets."""
    with lending(driver_connection):
        async with engine.connect() as connection:
            return await connection.run_sync(fn, *args, **kwargs)


def run_here(
    engine: Engine,
    driver_connection: typing.Any,
    fn: SyncFunction,
    args: tuple[typing.Any, ...],
    kwargs: dict[str, typing.Any],
) -> typing.Any:
    """`fn(sync_connection, *args, **kwargs)` on `driver_connection`, in this thread."""
    with lending(driver_connection), engine.connect() as connection:
        return _call(fn, connection, args, kwargs)


def _call(
    fn: SyncFunction,
    connection: SyncConnection,
    args: tuple[typing.Any, ...],
    kwargs: dict[str, typing.Any],
) -> typing.Any:
    return fn(connection, *args, **kwargs)
