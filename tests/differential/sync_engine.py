"""A synchronous SQLAlchemy Engine behind the few AsyncEngine calls the differential test makes.

aiopg has no SQLAlchemy dialect of its own; it is psycopg2 in async mode, so the oracle for
`postgresql+aiopg://` is SQLAlchemy's `postgresql+psycopg2` engine: the same driver and the
same result types. Each call blocks the event loop briefly, which is harmless here: the two
sides never run at the same time.
"""

from __future__ import annotations

import contextlib
import typing
from collections.abc import AsyncIterator, Callable

import sqlalchemy as sa


class SyncConnection:
    """`AsyncConnection`'s execute/stream/run_sync over a sync connection."""

    def __init__(self, connection: sa.Connection) -> None:
        self._connection = connection

    async def execute(self, statement: typing.Any, parameters: typing.Any = None) -> typing.Any:
        return self._connection.execute(statement, parameters)

    async def run_sync(
        self, fn: Callable[..., typing.Any], *args: typing.Any, **kwargs: typing.Any
    ) -> typing.Any:
        return fn(self._connection, *args, **kwargs)

    async def stream(self, statement: typing.Any) -> AsyncIterator[typing.Any]:
        result = self._connection.execution_options(stream_results=True).execute(statement)

        async def rows() -> AsyncIterator[typing.Any]:
            for row in result:
                yield row

        return rows()


class SyncEngine:
    """The oracle engine for a driver SQLAlchemy only has a sync dialect for."""

    def __init__(self, url: str) -> None:
        self._engine = sa.create_engine(url)
        self.dialect = self._engine.dialect

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[SyncConnection]:
        with self._engine.begin() as connection:
            yield SyncConnection(connection)

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[SyncConnection]:
        with self._engine.connect() as connection:
            yield SyncConnection(connection)

    async def dispose(self) -> None:
        self._engine.dispose()
