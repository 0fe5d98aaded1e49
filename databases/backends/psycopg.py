"""PostgreSQL through psycopg 3's async API (`postgresql+psycopg://`).

Statements compile with SQLAlchemy's own psycopg dialect, and connections use that
dialect's adapters (JSON, inet, ...), so rows come back exactly as SQLAlchemy's engine
gives them. Connections are autocommit: transactions are the SQL the core asks for.
"""

from __future__ import annotations

import importlib
import typing
from collections.abc import Awaitable, Callable

from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine.interfaces import Dialect

from databases.backends._libpq_common import (
    LibpqBackend,
    LibpqConnection,
    make_dialect,
)
from databases.backends.common.base import SQLTransaction
from databases.backends.common.compiler import Args, CompiledStatement
from databases.url import DatabaseURL

# Imported dynamically: typed the same (as Any) whether or not psycopg is installed.
psycopg: typing.Any
try:
    psycopg = importlib.import_module("psycopg")
except ImportError:  # pragma: no cover - reported when the backend is used
    psycopg = None

__all__ = ["PsycopgBackend", "PsycopgConnection", "PsycopgTransaction"]


class PsycopgBackend(LibpqBackend):
    """`postgresql+psycopg://user:password@host:5432/name?min_size=1&max_size=10`."""

    def __init__(self, database_url: DatabaseURL | str, **options: typing.Any) -> None:
        if psycopg is None:
            raise ImportError(
                "The 'postgresql+psycopg://' backend needs the 'psycopg' package (3.x): "
                "pip install 'databases[psycopg]'"
            )
        super().__init__(database_url, **options)

    def _make_dialect(self) -> Dialect:
        return make_dialect(PGDialect_psycopg, psycopg)

    async def _open_connection(self) -> typing.Any:
        # The dialect's adapters map: JSON and the other types as its engine sets them up.
        context = getattr(self._dialect, "_psycopg_adapters_map", None)
        return await psycopg.AsyncConnection.connect(
            autocommit=True, context=context, **self._driver_kwargs()
        )

    async def _close_connection(self, connection: typing.Any) -> None:
        await connection.close()

    def _close_now(self, connection: typing.Any) -> None:
        # libpq's own close: a socket close, no event loop involved.
        connection.pgconn.finish()

    def _is_closed(self, connection: typing.Any) -> bool:
        return bool(connection.closed)

    def _transaction_status(self, connection: typing.Any) -> int:
        return int(connection.info.transaction_status)

    async def _cursor_run(
        self,
        connection: typing.Any,
        sql: str,
        args: Args | None,
        read: Callable[[typing.Any], Awaitable[typing.Any]] | None,
    ) -> tuple[typing.Any, typing.Any]:
        async with connection.cursor() as cursor:
            await cursor.execute(sql, args)
            if read is None:
                return None, None
            return await read(cursor), cursor.description

    def connection(self) -> PsycopgConnection:
        return PsycopgConnection(self)


class PsycopgTransaction(SQLTransaction):
    """BEGIN (with `isolation`, `readonly`, `deferrable`) or a SAVEPOINT when nested."""


class PsycopgConnection(LibpqConnection):
    _backend: PsycopgBackend

    def transaction(self) -> PsycopgTransaction:
        return PsycopgTransaction(self)

    async def _run_many(self, groups: list[tuple[CompiledStatement, str, list[Args]]]) -> None:
        async with self._live().cursor() as cursor:
            for _, sql, rows in groups:
                await cursor.executemany(sql, rows)
