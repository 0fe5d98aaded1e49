"""PostgreSQL through aiopg (`postgresql+aiopg://`), as in 0.9: psycopg2 in async mode.

The module imports without aiopg, so existing test suites that import it keep working;
using it says which package to install. Statements compile with SQLAlchemy's psycopg2
dialect, whose result types expect what aiopg sets up on each connection (JSON, UUID,
hstore decoded by psycopg2). asyncpg (`postgresql://`) is the faster path.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import typing

from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2
from sqlalchemy.engine.interfaces import Dialect

from databases.backends._libpq_common import (
    CursorRead,
    LibpqBackend,
    LibpqConnection,
    libpq_keywords,
    make_dialect,
)
from databases.backends._libpq_pool import STATUS_IDLE
from databases.backends.common import _driver_compat as driver
from databases.backends.common._driver import require_driver
from databases.backends.common._options import DriverKeywords
from databases.backends.common.base import BackendSetup, SQLTransaction
from databases.backends.common.compiler import Args, CompiledStatement
from databases.interfaces import ConnectionCapabilities, StatementCancellation
from databases.url import DatabaseURL

# Imported dynamically: typed the same (as Any) whether or not aiopg is installed.
aiopg: typing.Any
psycopg2: typing.Any
try:
    aiopg = importlib.import_module("aiopg")
    psycopg2 = importlib.import_module("psycopg2")
    importlib.import_module("psycopg2.extensions")
except ImportError:  # pragma: no cover - reported when the backend is used
    aiopg = psycopg2 = None

__all__ = ["AiopgBackend", "AiopgConnection", "AiopgTransaction"]


def _is_libpq_parameter(name: str) -> bool:
    try:
        psycopg2.extensions.parse_dsn(f"{name}=0")
    except psycopg2.ProgrammingError:
        return False
    return True


@functools.cache
def _aiopg_keywords() -> DriverKeywords:
    return libpq_keywords("aiopg", aiopg.connect, (), _is_libpq_parameter)


class AiopgBackend(LibpqBackend):
    """`postgresql+aiopg://user:password@host:5432/name?min_size=1&max_size=10`."""

    name = "PostgreSQL (aiopg)"
    driver_name = "aiopg"
    # psycopg2 under aiopg runs in its asynchronous mode, which SQLAlchemy has no
    # dialect for.
    run_sync_unsupported = (
        "SQLAlchemy has no async dialect for aiopg; use postgresql+psycopg:// (psycopg 3) "
        "or postgresql+asyncpg:// for run_sync(), create_all() and drop_all()"
    )

    def __init__(
        self, database_url: DatabaseURL | str | BackendSetup, **options: typing.Any
    ) -> None:
        require_driver(aiopg, "aiopg", "aiopg", self.name)
        super().__init__(database_url, **options)

    def _make_dialect(self) -> Dialect:
        return make_dialect(PGDialect_psycopg2, psycopg2)

    def _driver_keywords(self) -> DriverKeywords:
        return _aiopg_keywords()

    def connection(self) -> AiopgConnection:
        return AiopgConnection(self)

    async def _open_connection(self, kwargs: dict[str, typing.Any]) -> typing.Any:
        return await aiopg.connect(**kwargs)

    def _close_now(self, connection: typing.Any) -> None:
        # psycopg2's own close is a plain socket close; aiopg's also unregisters its
        # reader from the loop, which fails on a closed loop (nothing to unregister then).
        with contextlib.suppress(Exception):
            connection.close()
        connection.raw.close()

    def _forget_closed(self, connection: typing.Any) -> None:
        # libpq closed it (found broken), and aiopg missed it: the reader aiopg keeps for
        # its descriptor would make the next connection given that number fail to register.
        if driver.aiopg_reader_left(connection):
            connection.close()

    def _transaction_status(self, connection: typing.Any) -> int:
        return int(connection.raw.get_transaction_status())

    async def _cursor_run(
        self, connection: typing.Any, sql: str, args: Args | None, read: CursorRead | None
    ) -> tuple[typing.Any, typing.Any]:
        cursor = await connection.cursor()
        try:
            await cursor.execute(sql, args)
            if read is None:
                return None, None
            return await read(cursor), cursor.description
        finally:
            cursor.close()

    async def _executemany(self, connection: typing.Any, sql: str, rows: list[Args]) -> None:
        # aiopg has no executemany: row by row.
        for args in rows:
            await self._cursor_run(connection, sql, args, None)


class AiopgTransaction(SQLTransaction):
    """BEGIN (with `isolation`, `readonly`, `deferrable`) or a SAVEPOINT when nested."""


class AiopgConnection(LibpqConnection):
    # aiopg closes the connection when a statement's task is cancelled.
    capabilities = ConnectionCapabilities(
        cancellation=StatementCancellation.BREAKS_CONNECTION, accepts_values=True
    )

    _backend: AiopgBackend

    def transaction(self) -> AiopgTransaction:
        return AiopgTransaction(self)

    def _interrupt(self) -> asyncio.Future[None] | None:
        """libpq's cancel request (on a thread: psycopg2 waits for it). aiopg turns the
        statement's QueryCanceled into a CancelledError and reports it to the loop's
        exception handler; the connection stays usable."""
        connection = self._connection
        if connection is None or connection.closed:
            return None
        return asyncio.get_running_loop().run_in_executor(None, connection.raw.cancel)

    async def _run_many(self, groups: list[tuple[CompiledStatement, str, list[Args]]]) -> None:
        """All or nothing, as asyncpg's executemany: in a transaction of its own when none
        is open (in one, an error aborts that transaction anyway)."""
        backend = self._backend
        connection = self._live()
        own = backend._transaction_status(connection) == STATUS_IDLE
        if own:
            await backend._execute_plain(connection, "BEGIN")
        try:
            await super()._run_many(groups)
        except BaseException:
            if own and not backend._is_closed(connection):
                await backend._execute_plain(connection, "ROLLBACK")
            raise
        if own:
            await backend._execute_plain(connection, "COMMIT")
