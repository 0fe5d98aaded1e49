"""`connection.raw_connection` on SQLite: aiosqlite's public async API, on our worker thread.

In 0.9 the raw connection was an `aiosqlite.Connection`. User code awaits its methods
(`await raw.execute(...)`, `async with raw.execute(...) as cursor`, `create_function`,
`execute_fetchall`, `iterdump`, `backup`, ...), so ours offers the same methods and
properties, run in order with our own statements on the connection's worker thread.
The connection belongs to the pool: closing it is not offered.
"""

from __future__ import annotations

import sqlite3
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable

from databases.backends._sqlite_gate import FileGate

if typing.TYPE_CHECKING:
    from databases.backends._sqlite_worker import Worker

T = typing.TypeVar("T")
Parameters = typing.Union[typing.Sequence[typing.Any], typing.Mapping[str, typing.Any]]


def _gated(
    db: sqlite3.Connection, gate: FileGate, method: Callable[..., T], *args: typing.Any
) -> T:
    """Runs on the worker: SQL that may open or end a transaction goes through the gate."""
    return gate.call(db, method, *args)


def _plain(db: sqlite3.Connection, method: Callable[..., T], *args: typing.Any) -> T:
    """Runs on the worker: a call that cannot change the transaction state."""
    return method(*args)


def _insert_rowid(db: sqlite3.Connection, gate: FileGate, sql: str, args: Parameters) -> typing.Any:
    gate.call(db, db.execute, sql, args).close()
    return db.execute("SELECT last_insert_rowid()").fetchone()


def _fetch_all(
    db: sqlite3.Connection, gate: FileGate, sql: str, args: Parameters
) -> list[typing.Any]:
    cursor = gate.call(db, db.execute, sql, args)
    try:
        return cursor.fetchall()
    finally:
        cursor.close()


def _dump(db: sqlite3.Connection) -> list[str]:
    return list(db.iterdump())


class _Pending(typing.Generic[T]):
    """What aiosqlite's helpers return: await it, or `async with` it (a cursor then
    closes on exit)."""

    __slots__ = ("_awaitable", "_result")

    def __init__(self, awaitable: Awaitable[T]) -> None:
        self._awaitable = awaitable

    def __await__(self) -> Generator[typing.Any, None, T]:
        return self._awaitable.__await__()

    async def __aenter__(self) -> T:
        self._result = await self._awaitable
        return self._result

    async def __aexit__(self, *exc_info: object) -> None:
        if isinstance(self._result, SQLiteRawCursor):
            await self._result.close()


class SQLiteRawCursor:
    """A `sqlite3.Cursor` used from async code, as an `aiosqlite.Cursor` is."""

    def __init__(self, connection: SQLiteRawConnection, cursor: sqlite3.Cursor) -> None:
        self._connection = connection
        self._worker = connection._worker
        self._cursor = cursor

    async def execute(self, sql: str, parameters: Parameters | None = None) -> SQLiteRawCursor:
        await self._worker.call(
            _gated, self._worker.gate, self._cursor.execute, sql, parameters or ()
        )
        return self

    async def executemany(self, sql: str, parameters: Iterable[Parameters]) -> SQLiteRawCursor:
        await self._worker.call(
            _gated, self._worker.gate, self._cursor.executemany, sql, parameters
        )
        return self

    async def executescript(self, sql_script: str) -> SQLiteRawCursor:
        await self._worker.call(_gated, self._worker.gate, self._cursor.executescript, sql_script)
        return self

    async def fetchone(self) -> typing.Any:
        return await self._worker.call(_plain, self._cursor.fetchone)

    async def fetchmany(self, size: int | None = None) -> list[typing.Any]:
        return await self._worker.call(_plain, self._cursor.fetchmany, size or self.arraysize)

    async def fetchall(self) -> list[typing.Any]:
        return await self._worker.call(_plain, self._cursor.fetchall)

    async def close(self) -> None:
        if self._worker.db is not None:
            await self._worker.call(_plain, self._cursor.close)

    async def __aiter__(self) -> AsyncIterator[typing.Any]:
        size = self._connection._iter_chunk_size
        while rows := await self.fetchmany(size):
            for row in rows:
                yield row

    async def __aenter__(self) -> SQLiteRawCursor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    @property
    def description(self) -> typing.Any:
        return self._cursor.description

    @property
    def row_factory(self) -> typing.Any:
        return self._cursor.row_factory

    @row_factory.setter
    def row_factory(self, factory: typing.Any) -> None:
        self._cursor.row_factory = factory

    @property
    def connection(self) -> sqlite3.Connection:
        return self._cursor.connection


class SQLiteRawConnection:
    """A pooled SQLite connection with `aiosqlite.Connection`'s public async API."""

    def __init__(self, worker: Worker, iter_chunk_size: int) -> None:
        self._worker = worker
        self._iter_chunk_size = iter_chunk_size

    @property
    def _db(self) -> sqlite3.Connection:
        db = self._worker.db
        if db is None:
            raise RuntimeError("The SQLite connection is closed.")
        return db

    def _run(self, method: Callable[..., T], *args: typing.Any) -> Awaitable[T]:
        return self._worker.call(_gated, self._worker.gate, method, *args)

    async def _cursor_of(
        self, method: Callable[..., sqlite3.Cursor], *args: typing.Any
    ) -> SQLiteRawCursor:
        return SQLiteRawCursor(self, await self._run(method, *args))

    def cursor(self) -> _Pending[SQLiteRawCursor]:
        return _Pending(self._cursor_of(self._db.cursor))

    def execute(self, sql: str, parameters: Parameters | None = None) -> _Pending[SQLiteRawCursor]:
        return _Pending(self._cursor_of(self._db.execute, sql, parameters or ()))

    def executemany(self, sql: str, parameters: Iterable[Parameters]) -> _Pending[SQLiteRawCursor]:
        return _Pending(self._cursor_of(self._db.executemany, sql, parameters))

    def executescript(self, sql_script: str) -> _Pending[SQLiteRawCursor]:
        return _Pending(self._cursor_of(self._db.executescript, sql_script))

    def execute_insert(
        self, sql: str, parameters: Parameters | None = None
    ) -> _Pending[typing.Any]:
        """Run an INSERT; its row id as a one-value row."""
        return _Pending(self._worker.call(_insert_rowid, self._worker.gate, sql, parameters or ()))

    def execute_fetchall(
        self, sql: str, parameters: Parameters | None = None
    ) -> _Pending[list[typing.Any]]:
        return _Pending(self._worker.call(_fetch_all, self._worker.gate, sql, parameters or ()))

    async def commit(self) -> None:
        await self._run(self._db.commit)

    async def rollback(self) -> None:
        await self._run(self._db.rollback)

    async def interrupt(self) -> None:
        """Interrupt the running statement: called from here, not queued behind it."""
        self._db.interrupt()

    async def create_function(
        self,
        name: str,
        num_params: int,
        func: Callable[..., typing.Any],
        deterministic: bool = False,
    ) -> None:
        await self._worker.call(_create_function, name, num_params, func, deterministic)

    async def set_progress_handler(self, handler: Callable[[], int | None] | None, n: int) -> None:
        await self._worker.call(_plain, self._db.set_progress_handler, handler, n)

    async def set_trace_callback(self, handler: Callable[[str], object] | None) -> None:
        await self._worker.call(_plain, self._db.set_trace_callback, handler)

    async def enable_load_extension(self, value: bool) -> None:
        await self._worker.call(_plain, self._db.enable_load_extension, value)

    async def load_extension(self, path: str) -> None:
        await self._worker.call(_plain, self._db.load_extension, path)

    async def iterdump(self) -> AsyncIterator[str]:
        """The database as SQL text, line by line (read at once on the worker thread)."""
        for line in await self._worker.call(_dump):
            yield line

    async def backup(
        self,
        target: SQLiteRawConnection | sqlite3.Connection,
        *,
        pages: int = -1,
        progress: Callable[[int, int, int], object] | None = None,
        name: str = "main",
        sleep: float = 0.250,
    ) -> None:
        """Copy the database into `target` (a sqlite3 connection or another raw one)."""
        target_db = target._db if isinstance(target, SQLiteRawConnection) else target
        await self._worker.call(_backup, target_db, pages, progress, name, sleep)

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    @property
    def isolation_level(self) -> str | None:
        return self._db.isolation_level

    @property
    def row_factory(self) -> typing.Any:
        return self._db.row_factory

    @row_factory.setter
    def row_factory(self, factory: typing.Any) -> None:
        self._db.row_factory = factory

    @property
    def text_factory(self) -> typing.Any:
        return self._db.text_factory

    @text_factory.setter
    def text_factory(self, factory: typing.Any) -> None:
        self._db.text_factory = factory

    @property
    def total_changes(self) -> int:
        return self._db.total_changes


def _create_function(
    db: sqlite3.Connection,
    name: str,
    num_params: int,
    func: Callable[..., typing.Any],
    deterministic: bool,
) -> None:
    db.create_function(name, num_params, func, deterministic=deterministic)


def _backup(
    db: sqlite3.Connection,
    target: sqlite3.Connection,
    pages: int,
    progress: Callable[[int, int, int], object] | None,
    name: str,
    sleep: float,
) -> None:
    db.backup(target, pages=pages, progress=progress, name=name, sleep=sleep)
