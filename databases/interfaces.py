"""The contracts between the core and a database driver adapter.

A backend is a thin adapter: it opens a pool, hands out connections and runs built
SQLAlchemy clauses. Everything loop-bound lives in one backend instance, and the core
creates one instance per event loop, so a backend never has to think about loops.
"""

from __future__ import annotations

import typing
from collections.abc import AsyncGenerator, Sequence

from sqlalchemy.sql import ClauseElement


async def each_record(batches: AsyncGenerator[list[Record], None]) -> AsyncGenerator[Record, None]:
    """The records of `batches` one by one; `batches` is closed however iterating stops."""
    try:
        async for batch in batches:
            for record in batch:
                yield record
    finally:
        await batches.aclose()


class DatabaseBackend:
    """A pool of connections to one database, used from one event loop."""

    async def connect(self) -> None:
        raise NotImplementedError()  # pragma: no cover

    async def disconnect(self) -> None:
        raise NotImplementedError()  # pragma: no cover

    def connection(self) -> ConnectionBackend:
        raise NotImplementedError()  # pragma: no cover

    # The hooks below are ours; the defaults keep third-party backends working unchanged.

    def _for_new_loop(self) -> DatabaseBackend | None:
        """A fresh, unconnected instance for another event loop.

        `None` tells the core to build one from the URL and options as it built this one.
        """
        return None

    def _terminate(self) -> None:
        """Drop every connection at once, awaiting nothing.

        Called for a loop that is closed or cannot run our coroutines any more; the
        server rolls back whatever those connections left open.
        """

    def _release_shared(self) -> None:
        """Free what all loops' instances share, once the database is fully disconnected."""

    def _statement_connection(self) -> ConnectionBackend | None:
        """A connection that runs exactly one statement between `acquire()` and `release()`.

        `Database.fetch_one()` and the like use it when the task holds no connection,
        so a backend may serve it from a connection those calls share. `None`: use
        `connection()`.
        """
        return None


class ConnectionBackend:
    """One driver connection, acquired from the backend's pool."""

    # What abandoning a running statement (its task cancelled) does to the connection:
    # "harmless" (it finishes in the background and the next one waits),
    # "aborts_transaction" (cancelled on the server: an open transaction fails) or
    # "breaks_connection" (the driver loses the connection). The core lets statements
    # finish before a cancellation where that would hurt tasks sharing the connection.
    _statement_cancellation = "aborts_transaction"
    # True when the driver itself runs one statement at a time in the order they were
    # submitted (SQLite's worker thread): the core then needs no lock of its own.
    _queues_statements = False
    # True when, once acquired, its statements may be awaited from any event loop, even
    # from several at once (SQLite's worker thread answers each caller in its own loop):
    # the force-rollback session then runs them in the caller's loop, without a hop.
    _serves_any_loop = False

    async def acquire(self) -> None:
        raise NotImplementedError()  # pragma: no cover

    async def release(self) -> None:
        raise NotImplementedError()  # pragma: no cover

    async def fetch_all(self, query: ClauseElement) -> list[Record]:
        raise NotImplementedError()  # pragma: no cover

    async def fetch_one(self, query: ClauseElement) -> Record | None:
        raise NotImplementedError()  # pragma: no cover

    async def fetch_val(self, query: ClauseElement, column: typing.Any = 0) -> typing.Any:
        row = await self.fetch_one(query)
        return None if row is None else row[column]

    async def execute(self, query: ClauseElement) -> typing.Any:
        raise NotImplementedError()  # pragma: no cover

    async def execute_many(self, queries: list[ClauseElement]) -> None:
        raise NotImplementedError()  # pragma: no cover

    async def _execute_many_values(
        self, query: ClauseElement | str, rows: typing.Sequence[typing.Mapping[str, typing.Any]]
    ) -> None:
        """`execute_many` given the query and its rows; the default builds a clause per row."""
        from databases._query import build_query

        await self.execute_many([build_query(query, row) for row in rows])

    async def iterate(self, query: ClauseElement) -> AsyncGenerator[Record, None]:
        raise NotImplementedError()  # pragma: no cover
        yield True  # pragma: no cover

    async def _iterate_batches(self, query: ClauseElement) -> AsyncGenerator[list[Record], None]:
        """Rows in the batches the driver fetches them in; the core locks per batch.

        The default serves backends that only implement `iterate()`: a row per batch.
        """
        async for record in self.iterate(query):
            yield [record]

    def transaction(self) -> TransactionBackend:
        raise NotImplementedError()  # pragma: no cover

    @property
    def raw_connection(self) -> typing.Any:
        raise NotImplementedError()  # pragma: no cover


class TransactionBackend:
    """A transaction (root) or savepoint (nested) on one connection."""

    async def start(self, is_root: bool, extra_options: dict[typing.Any, typing.Any]) -> None:
        raise NotImplementedError()  # pragma: no cover

    async def commit(self) -> None:
        raise NotImplementedError()  # pragma: no cover

    async def rollback(self) -> None:
        raise NotImplementedError()  # pragma: no cover


class Record(Sequence[typing.Any]):
    """A result row: positional like a tuple, keyed like a mapping."""

    __slots__ = ()

    @property
    def _mapping(self) -> typing.Mapping[str, typing.Any]:
        raise NotImplementedError()  # pragma: no cover

    def __getitem__(self, key: typing.Any) -> typing.Any:
        raise NotImplementedError()  # pragma: no cover
