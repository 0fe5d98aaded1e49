"""PostgreSQL through aiopg (`postgresql+aiopg://`), as in 0.9: psycopg2 in async mode.

The module imports without aiopg, so existing test suites that import it keep working;
using it says which package to install. Statements compile with SQLAlchemy's psycopg2
dialect, whose result types expect what aiopg sets up on each connection (JSON, UUID,
hstore decoded by psycopg2). asyncpg (`postgresql://`) is the faster path.
"""

from __future__ import annotations

import contextlib
import importlib
import typing
from collections.abc import Awaitable, Callable

from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2
from sqlalchemy.engine.interfaces import Dialect

from databases.backends._libpq_common import LibpqBackend, LibpqConnection, make_dialect
from databases.backends.common.base import SQLTransaction
from databases.backends.common.compiler import Args
from databases.url import DatabaseURL

# Imported dynamically: typed the same (as Any) whether or not aiopg is installed.
aiopg: typing.Any
psycopg2: typing.Any
try:
    aiopg = importlib.import_module("aiopg")
    psycopg2 = importlib.import_module("psycopg2")
except ImportError:  # pragma: no cover - reported when the backend is used
    aiopg = psycopg2 = None

__all__ = ["AiopgBackend", "AiopgConnection", "AiopgTransaction"]

MESSAGE = (
    "The 'postgresql+aiopg://' backend needs the 'aiopg' package, which is not installed: "
    "pip install 'databases[aiopg]', or use 'postgresql://' (asyncpg)."
)


class AiopgBackend(LibpqBackend):
    """`postgresql+aiopg://user:password@host:5432/name?min_size=1&max_size=10`."""

    def __init__(self, database_url: DatabaseURL | str, **options: typing.Any) -> None:
        if aiopg is None:
            raise ImportError(MESSAGE)
        super().__init__(database_url, **options)

    def _make_dialect(self) -> Dialect:
        return make_dialect(PGDialect_psycopg2, psycopg2)

    async def _open_connection(self) -> typing.Any:
        return await aiopg.connect(**self._driver_kwargs())

    async def _close_connection(self, connection: typing.Any) -> None:
        await connection.close()

    def _close_now(self, connection: typing.Any) -> None:
        # psycopg2's own close is a plain socket close; aiopg's also unregisters its
        # reader from the loop, which fails on a closed loop (nothing to unregister then).
        with contextlib.suppress(Exception):
            connection.close()
        connection.raw.close()

    def _is_closed(self, connection: typing.Any) -> bool:
        return bool(connection.closed)

    def _transaction_status(self, connection: typing.Any) -> int:
        return int(connection.raw.get_transaction_status())

    async def _cursor_run(
        self,
        connection: typing.Any,
        sql: str,
        args: Args | None,
        read: Callable[[typing.Any], Awaitable[typing.Any]] | None,
    ) -> tuple[typing.Any, typing.Any]:
        cursor = await connection.cursor()
        try:
            await cursor.execute(sql, args)
            if read is None:
                return None, None
            return await read(cursor), cursor.description
        finally:
            cursor.close()

    def connection(self) -> AiopgConnection:
        return AiopgConnection(self)


class AiopgTransaction(SQLTransaction):
    """BEGIN (with `isolation`, `readonly`, `deferrable`) or a SAVEPOINT when nested."""


class AiopgConnection(LibpqConnection):
    # aiopg closes the connection when a statement's task is cancelled.
    _statement_cancellation = "breaks_connection"

    _backend: AiopgBackend

    def transaction(self) -> AiopgTransaction:
        return AiopgTransaction(self)
