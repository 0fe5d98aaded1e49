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
import typing

import aiosqlite
import aiosqlite.core

T = typing.TypeVar("T")
Args = tuple[typing.Any, ...]


class FileGate:
    """Queues our own statements on one database file (or memory database) in-process.

    SQLite has one writer at a time. When our own connections compete, SQLite's busy
    handler sleeps in steps of up to 100 ms and gives up after `timeout` with "database
    is locked". While none of our connections is inside a transaction on the file,
    statements take this lock instead and run one after another without sleeping.
    Once a transaction is open, the lock is skipped and SQLite's own locking decides,
    so a task waiting for another inside a transaction cannot deadlock on the gate.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counter_lock = threading.Lock()
        self._open_transactions = 0

    def has_open_transactions(self) -> bool:
        return self._open_transactions > 0

    def execute(self, db: sqlite3.Connection, sql: str, args: typing.Any) -> sqlite3.Cursor:
        return self._run(db, db.execute, sql, args)

    def executemany(self, db: sqlite3.Connection, sql: str, rows: typing.Any) -> sqlite3.Cursor:
        return self._run(db, db.executemany, sql, rows)

    def _run(
        self,
        db: sqlite3.Connection,
        method: typing.Callable[[str, typing.Any], sqlite3.Cursor],
        sql: str,
        args: typing.Any,
    ) -> sqlite3.Cursor:
        was_in_transaction = db.in_transaction
        try:
            if was_in_transaction or self._open_transactions:
                return method(sql, args)
            with self._lock:
                return method(sql, args)
        finally:
            now_in_transaction = db.in_transaction
            if now_in_transaction != was_in_transaction:
                with self._counter_lock:
                    self._open_transactions += 1 if now_in_transaction else -1


_gates: dict[str, FileGate] = {}
_gates_guard = threading.Lock()


def gate_for(target: str) -> FileGate:
    """The process-wide gate of a database file or memory database."""
    with _gates_guard:
        gate = _gates.get(target)
        if gate is None:
            gate = _gates[target] = FileGate()
        return gate


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


def stop(connection: aiosqlite.Connection) -> None:
    """Close the sqlite3 connection and end the worker thread, without an event loop."""
    db = connection._connection
    connection._connection = None
    connection._running = False
    sentinel = aiosqlite.core._STOP_RUNNING_SENTINEL

    def close_and_stop() -> object:
        if db is not None:
            db.close()
        return sentinel

    connection._tx.put_nowait((None, close_and_stop))


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
