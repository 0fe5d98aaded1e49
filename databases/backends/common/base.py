"""What the bundled backends share: URL and options, dialect, compile cache, transactions.

A backend module then only says how its driver connects, runs SQL and reports columns.
"""

from __future__ import annotations

import itertools
import typing
from collections.abc import AsyncGenerator

from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import ClauseElement

from databases.backends.common.compiler import Args, CompiledStatement, QueryCompiler
from databases.interfaces import (
    ConnectionBackend,
    DatabaseBackend,
    Record,
    TransactionBackend,
    each_record,
)
from databases.url import DatabaseURL

_savepoint_ids = itertools.count(1)


class SQLBackend(DatabaseBackend):
    """A bundled backend: one instance per event loop, sharing dialect and compile cache."""

    _dialect: Dialect

    def __init__(self, database_url: DatabaseURL | str, **options: typing.Any) -> None:
        self._database_url = DatabaseURL(database_url)
        self._options = options
        self._dialect = self._make_dialect()
        self._compiler = QueryCompiler(self._dialect)

    def _make_dialect(self) -> Dialect:
        raise NotImplementedError()  # pragma: no cover

    def _for_new_loop(self) -> SQLBackend:
        backend = type(self)(self._database_url, **self._options)
        backend._dialect = self._dialect
        backend._compiler = self._compiler
        return backend


class SQLConnection(ConnectionBackend):
    """A driver connection running statements compiled by the backend's shared compiler."""

    # The core may pass `QueryValues(query, values)` instead of a clause built from them.
    _accepts_values = True

    def __init__(self, backend: SQLBackend) -> None:
        self._backend = backend
        self._compiler = backend._compiler
        self._dialect = backend._dialect

    @property
    def raw_connection(self) -> typing.Any:
        connection = self._driver_connection()
        if connection is None:
            raise RuntimeError(
                "The connection is not acquired: use it inside `async with connection:`."
            )
        return connection

    def _driver_connection(self) -> typing.Any:
        raise NotImplementedError()  # pragma: no cover

    def transaction(self) -> TransactionBackend:
        return SQLTransaction(self)

    def iterate(self, query: ClauseElement) -> AsyncGenerator[Record, None]:
        return each_record(self._iterate_batches(query))

    async def _iterate_batches(self, query: ClauseElement) -> AsyncGenerator[list[Record], None]:
        raise NotImplementedError()  # pragma: no cover
        yield []  # pragma: no cover

    async def execute_many(self, queries: list[ClauseElement]) -> None:
        await self._run_many(self._compiler.prepare_many(queries))

    async def _execute_many_values(
        self, query: ClauseElement | str, rows: typing.Sequence[typing.Mapping[str, typing.Any]]
    ) -> None:
        await self._run_many(self._compiler.prepare_values(query, rows))

    async def _run_many(self, groups: list[tuple[CompiledStatement, str, list[Args]]]) -> None:
        """Run each group with the driver's executemany."""
        raise NotImplementedError()  # pragma: no cover

    async def _run(self, sql: str) -> None:
        """Run one statement without parameters or results (transaction control)."""
        raise NotImplementedError()  # pragma: no cover

    def _begin_statements(self, options: dict[str, typing.Any]) -> list[str]:
        """The SQL that opens a root transaction with these options."""
        return ["BEGIN"]


class SQLTransaction(TransactionBackend):
    """A root transaction or, nested, a savepoint, driven by plain SQL on the connection."""

    def __init__(self, connection: SQLConnection) -> None:
        self._connection = connection
        self._savepoint: str | None = None

    async def start(self, is_root: bool, extra_options: dict[typing.Any, typing.Any]) -> None:
        if is_root:
            for sql in self._connection._begin_statements(extra_options):
                await self._connection._run(sql)
        else:
            self._savepoint = f"databases_savepoint_{next(_savepoint_ids)}"
            await self._connection._run(f"SAVEPOINT {self._savepoint}")

    async def commit(self) -> None:
        if self._savepoint is None:
            await self._connection._run("COMMIT")
        else:
            await self._connection._run(f"RELEASE SAVEPOINT {self._savepoint}")

    async def rollback(self) -> None:
        if self._savepoint is None:
            await self._connection._run("ROLLBACK")
        else:
            await self._connection._run(f"ROLLBACK TO SAVEPOINT {self._savepoint}")
            await self._connection._run(f"RELEASE SAVEPOINT {self._savepoint}")
