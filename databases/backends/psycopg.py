"""PostgreSQL through psycopg 3's async API (`postgresql+psycopg://`).

Statements compile with SQLAlchemy's own psycopg dialect, and connections use that
dialect's adapters (JSON, inet, ...), so rows come back exactly as SQLAlchemy's engine
gives them. Connections are autocommit: transactions are the SQL the core asks for.
"""

from __future__ import annotations

import functools
import importlib
import typing

from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg, PGDialectAsync_psycopg
from sqlalchemy.engine.interfaces import Dialect

from databases.backends._libpq_common import (
    OPTION_RULES,
    CursorRead,
    LibpqBackend,
    LibpqConnection,
    libpq_keywords,
    make_dialect,
)
from databases.backends.common import _run_sync as run_sync
from databases.backends.common import _sqlalchemy_compat as compat
from databases.backends.common._driver import require_driver
from databases.backends.common._option_values import read_int_or_none
from databases.backends.common._options import DriverKeywords
from databases.backends.common._run_sync import BorrowedConnectionDialect
from databases.backends.common.base import BackendSetup, SQLTransaction
from databases.backends.common.compiler import Args
from databases.url import DatabaseURL

# Imported dynamically: typed the same (as Any) whether or not psycopg is installed.
psycopg: typing.Any
try:
    psycopg = importlib.import_module("psycopg")
except ImportError:  # pragma: no cover - reported when the backend is used
    psycopg = None

__all__ = ["PsycopgBackend", "PsycopgConnection", "PsycopgTransaction"]

# Keywords of `AsyncConnection.connect()` we give it ourselves.
_OWN_KEYWORDS = ("autocommit", "context")


def _is_libpq_parameter(name: str) -> bool:
    try:
        psycopg.conninfo.conninfo_to_dict(f"{name}=0")
    except psycopg.ProgrammingError:
        return False
    return True


@functools.cache
def _psycopg_keywords() -> DriverKeywords:
    connect = psycopg.AsyncConnection.connect
    return libpq_keywords("psycopg", connect, _OWN_KEYWORDS, _is_libpq_parameter)


class PsycopgRunSyncDialect(BorrowedConnectionDialect, PGDialectAsync_psycopg):
    """`run_sync()` on our psycopg connections (autocommit: transactions are ours)."""

    supports_statement_cache = True


RUN_SYNC_DRIVER = run_sync.register(
    "postgresql.databases_psycopg", __name__, "PsycopgRunSyncDialect"
)


class PsycopgBackend(LibpqBackend):
    """`postgresql+psycopg://user:password@host:5432/name?min_size=1&max_size=10`."""

    name = "PostgreSQL (psycopg)"
    driver_name = "psycopg"
    run_sync_driver = RUN_SYNC_DRIVER
    # `prepare_threshold=none` turns server-side prepared statements off (pgbouncer).
    option_rules = OPTION_RULES._replace(
        url={**OPTION_RULES.url, "prepare_threshold": read_int_or_none}
    )

    def __init__(
        self, database_url: DatabaseURL | str | BackendSetup, **options: typing.Any
    ) -> None:
        require_driver(psycopg, "psycopg", "psycopg", self.name)
        super().__init__(database_url, **options)

    def _make_dialect(self) -> Dialect:
        return make_dialect(PGDialect_psycopg, psycopg)

    def _driver_keywords(self) -> DriverKeywords:
        return _psycopg_keywords()

    def connection(self) -> PsycopgConnection:
        return PsycopgConnection(self)

    async def _open_connection(self, kwargs: dict[str, typing.Any]) -> typing.Any:
        # The dialect's adapters map: JSON and the other types as its engine sets them up.
        context = compat.psycopg_adapters(self._dialect)
        return await psycopg.AsyncConnection.connect(autocommit=True, context=context, **kwargs)

    def _close_now(self, connection: typing.Any) -> None:
        # libpq's own close: a socket close, no event loop involved.
        connection.pgconn.finish()

    def _transaction_status(self, connection: typing.Any) -> int:
        return int(connection.info.transaction_status)

    async def _cursor_run(
        self, connection: typing.Any, sql: str, args: Args | None, read: CursorRead | None
    ) -> tuple[typing.Any, typing.Any]:
        async with connection.cursor() as cursor:
            await cursor.execute(sql, args)
            if read is None:
                return None, None
            return await read(cursor), cursor.description

    async def _executemany(self, connection: typing.Any, sql: str, rows: list[Args]) -> None:
        # In one pipeline, so one implicit transaction: all rows or none.
        async with connection.cursor() as cursor:
            await cursor.executemany(sql, rows)


class PsycopgTransaction(SQLTransaction):
    """BEGIN (with `isolation`, `readonly`, `deferrable`) or a SAVEPOINT when nested."""


class PsycopgConnection(LibpqConnection):
    _backend: PsycopgBackend

    def transaction(self) -> PsycopgTransaction:
        return PsycopgTransaction(self)
