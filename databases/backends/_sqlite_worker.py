"""Running work on an aiosqlite connection's worker thread, safely across event loops.

aiosqlite answers on the caller's loop with `call_soon_threadsafe`; if that loop has
closed meanwhile (`asyncio.run()` ended), its worker thread dies with "Event loop is
closed" and leaks the connection. We queue our own callables instead, whose answer is
dropped when the loop is gone, and stop workers without any loop at all.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import typing

import aiosqlite
import aiosqlite.core

from databases.backends._sqlite_gate import FileGate

T = typing.TypeVar("T")
Args = tuple[typing.Any, ...]


def _settle(
    future: asyncio.Future[typing.Any], result: typing.Any, error: BaseException | None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _deliver(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[typing.Any],
    result: typing.Any,
    error: BaseException | None,
) -> None:
    try:
        loop.call_soon_threadsafe(_settle, future, result, error)
    except RuntimeError:
        return  # the loop closed while we worked: nobody is waiting any more


def call(
    connection: aiosqlite.Connection,
    function: typing.Callable[..., T],
    *args: typing.Any,
) -> asyncio.Future[T]:
    """Run `function(sqlite3_connection, *args)` on the worker thread; await the result."""
    db = connection._connection
    if db is None:
        raise RuntimeError("The SQLite connection is closed.")
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def work() -> None:
        try:
            result = function(db, *args)
        except BaseException as error:
            _deliver(loop, future, None, error)
        else:
            _deliver(loop, future, result, None)

    connection._tx.put_nowait((None, work))
    return future


def stop(connection: aiosqlite.Connection, gate: FileGate) -> threading.Thread:
    """Close the sqlite3 connection and end the worker thread, without an event loop.

    Returns the worker thread, which ends once the connection is closed.
    """
    db = connection._connection
    connection._connection = None
    connection._running = False
    sentinel = aiosqlite.core._STOP_RUNNING_SENTINEL

    def close_and_stop() -> object:
        if db is not None:
            gate.close(db)
        return sentinel

    connection._tx.put_nowait((None, close_and_stop))
    return connection._thread


def wait_stopped(threads: typing.Sequence[threading.Thread], timeout: float) -> bool:
    """Wait up to `timeout` seconds in all for stopped workers to end; True if they did.

    Until a worker has closed its connection, a transaction it held keeps its lock on
    the file, and another connection's write fails at once with "database is locked".
    """
    deadline = time.monotonic() + timeout
    for thread in threads:
        if thread.ident is not None:  # started
            thread.join(max(0.0, deadline - time.monotonic()))
    return not any(thread.is_alive() for thread in threads)


async def close(connection: aiosqlite.Connection, gate: FileGate) -> None:
    """Close the connection after the statements queued before, and end its worker."""
    if connection._connection is None:
        return
    try:
        await call(connection, gate.close)
    finally:
        connection._connection = None
        stop(connection, gate)


# -- what runs on the worker thread -------------------------------------------------------


def fetch_all(
    db: sqlite3.Connection, gate: FileGate, sql: str, args: Args
) -> tuple[list[typing.Any], typing.Any]:
    cursor = gate.execute(db, sql, args)
    try:
        return cursor.fetchall(), cursor.description
    finally:
        cursor.close()


def fetch_one(
    db: sqlite3.Connection, gate: FileGate, sql: str, args: Args
) -> tuple[typing.Any, typing.Any]:
    cursor = gate.execute(db, sql, args)
    try:
        return cursor.fetchone(), cursor.description
    finally:
        cursor.close()


def execute(db: sqlite3.Connection, gate: FileGate, sql: str, args: Args, is_insert: bool) -> int:
    cursor = gate.execute(db, sql, args)
    try:
        # A pooled connection remembers an earlier insert's rowid; only an INSERT reports it.
        if is_insert and cursor.lastrowid:
            return cursor.lastrowid
        return cursor.rowcount
    finally:
        cursor.close()


def execute_many(db: sqlite3.Connection, gate: FileGate, sql: str, rows: list[Args]) -> None:
    """All rows or none, and one disk sync instead of one per row outside a transaction."""
    if db.in_transaction:
        gate.executemany(db, sql, rows).close()
        return
    gate.execute(db, "BEGIN", ()).close()
    try:
        gate.executemany(db, sql, rows).close()
    except BaseException:
        gate.execute(db, "ROLLBACK", ()).close()
        raise
    gate.execute(db, "COMMIT", ()).close()


def alone(
    db: sqlite3.Connection,
    function: typing.Callable[..., T],
    gate: FileGate,
    *args: typing.Any,
) -> T:
    """One call on a connection other calls share: it leaves no transaction behind.

    A transaction it opened (raw `BEGIN` text) is rolled back before the next call runs,
    as releasing a pooled connection would.
    """
    try:
        return function(db, gate, *args)
    finally:
        if db.in_transaction:
            gate.execute(db, "ROLLBACK", ()).close()


def run(db: sqlite3.Connection, gate: FileGate, sql: str) -> None:
    gate.execute(db, sql, ()).close()


def rollback_if_open(db: sqlite3.Connection, gate: FileGate) -> None:
    if db.in_transaction:
        gate.execute(db, "ROLLBACK", ()).close()


def open_cursor(db: sqlite3.Connection, gate: FileGate, sql: str, args: Args) -> sqlite3.Cursor:
    return gate.execute(db, sql, args)


def fetch_many(db: sqlite3.Connection, cursor: sqlite3.Cursor, size: int) -> list[typing.Any]:
    return cursor.fetchmany(size)


def close_cursor(db: sqlite3.Connection, cursor: sqlite3.Cursor) -> None:
    cursor.close()
