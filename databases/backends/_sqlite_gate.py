"""One writer at a time per SQLite file, queued in-process instead of by SQLite's sleeps."""

from __future__ import annotations

import sqlite3
import threading
import typing

T = typing.TypeVar("T")


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
        return self.call(db, db.execute, sql, args)

    def executemany(self, db: sqlite3.Connection, sql: str, rows: typing.Any) -> sqlite3.Cursor:
        return self.call(db, db.executemany, sql, rows)

    def call(self, db: sqlite3.Connection, method: typing.Callable[..., T], *args: typing.Any) -> T:
        """Run `method(*args)`, which may run SQL on `db`, through the gate.

        Anything that may open or end a transaction on `db` goes through here, so the
        count of open transactions stays right.
        """
        was_in_transaction = db.in_transaction
        try:
            if was_in_transaction or self._open_transactions:
                return method(*args)
            with self._lock:
                return method(*args)
        finally:
            now_in_transaction = db.in_transaction
            if now_in_transaction != was_in_transaction:
                self._count_transaction(opened=now_in_transaction)

    def close(self, db: sqlite3.Connection) -> None:
        """Close `db`; a transaction it held ends with it (SQLite rolls it back)."""
        was_in_transaction = db.in_transaction
        db.close()
        if was_in_transaction:
            self._count_transaction(opened=False)

    def _count_transaction(self, opened: bool) -> None:
        with self._counter_lock:
            self._open_transactions += 1 if opened else -1


_gates: dict[str, FileGate] = {}
_gates_guard = threading.Lock()


def gate_for(target: str) -> FileGate:
    """The process-wide gate of a database file or memory database."""
    with _gates_guard:
        gate = _gates.get(target)
        if gate is None:
            gate = _gates[target] = FileGate()
        return gate
