"""One writer at a time per SQLite file, queued in-process instead of by SQLite's sleeps."""

from __future__ import annotations

import sqlite3
import threading
import typing

from databases._sqlite_lock_error import ForceRollbackLockError

T = typing.TypeVar("T")

# How long a statement beside a force-rollback session's transaction waits for a lock
# (SQLite's busy timeout, in milliseconds) before it fails naming the session, instead of
# the connection's own busy timeout: the session keeps its locks until it ends.
SESSION_LOCK_WAIT_MS = 100
# SQLite's primary result codes for a lock held elsewhere: SQLITE_BUSY (another
# connection's lock on the file), SQLITE_LOCKED (a shared-cache table lock).
_LOCK_ERROR_CODES = (5, 6)
_LOCK_ERROR_TEXTS = ("database is locked", "database table is locked")


def is_lock_error(error: sqlite3.OperationalError) -> bool:
    """Whether `error` says that a lock held elsewhere stopped the statement."""
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in _LOCK_ERROR_CODES
    return str(error).startswith(_LOCK_ERROR_TEXTS)


class _SessionHold(typing.NamedTuple):
    """A force-rollback session's connection to the file, and how errors name it."""

    db: sqlite3.Connection
    holder: str


class FileGate:
    """Queues our own statements on one database file (or memory database) in-process.

    SQLite has one writer at a time. When our own connections compete, SQLite's busy
    handler sleeps in steps of up to 100 ms and gives up after `timeout` with "database
    is locked". While none of our connections is inside a transaction on the file,
    statements take this lock instead and run one after another without sleeping.
    Once a transaction is open, the lock is skipped and SQLite's own locking decides,
    so a task waiting for another inside a transaction cannot deadlock on the gate.

    A force-rollback session's transaction (`carry_session()`) holds its locks until the
    session ends: while it is the only other transaction of ours on the file, a statement
    it blocks fails after a short wait, with an error that names the session.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counter_lock = threading.Lock()
        self._open_transactions = 0
        self._session: _SessionHold | None = None

    def carry_session(self, db: sqlite3.Connection, holder: str | None) -> None:
        """`db` now carries a force-rollback session (named `holder`), or no longer (None)."""
        if holder is not None:
            self._session = _SessionHold(db, holder)
        elif self._session is not None and self._session.db is db:
            self._session = None

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
                session = self._session
                if session is not None and self._beside(session, db, was_in_transaction):
                    return _failing_fast(db, session.holder, method, *args)
                return method(*args)
            with self._lock:
                return method(*args)
        finally:
            now_in_transaction = db.in_transaction
            if now_in_transaction != was_in_transaction:
                self._count_transaction(opened=now_in_transaction)

    def _beside(self, session: _SessionHold, db: sqlite3.Connection, in_transaction: bool) -> bool:
        """Whether a statement on `db` may only wait for the session's transaction: the
        session's is the only other transaction of ours open on the file."""
        others = self._open_transactions - (1 if in_transaction else 0)
        return session.db is not db and others == 1 and _in_transaction(session.db)

    def close(self, db: sqlite3.Connection) -> None:
        """Close `db`; a transaction it held ends with it (SQLite rolls it back)."""
        self.carry_session(db, None)
        was_in_transaction = db.in_transaction
        db.close()
        if was_in_transaction:
            self._count_transaction(opened=False)

    def _count_transaction(self, opened: bool) -> None:
        with self._counter_lock:
            self._open_transactions += 1 if opened else -1


def _in_transaction(db: sqlite3.Connection) -> bool:
    """`db.in_transaction`, read from another thread: False once it is closed."""
    try:
        return db.in_transaction
    except sqlite3.ProgrammingError:
        return False


def _failing_fast(
    db: sqlite3.Connection, holder: str, method: typing.Callable[..., T], *args: typing.Any
) -> T:
    """`method(*args)` waiting `SESSION_LOCK_WAIT_MS` at most for a lock (less if the
    connection's own busy timeout is shorter); a lock error then is the session's."""
    (busy_timeout,) = db.execute("PRAGMA busy_timeout").fetchone()
    wait = min(int(busy_timeout), SESSION_LOCK_WAIT_MS)
    db.execute(f"PRAGMA busy_timeout = {wait}").close()
    try:
        return method(*args)
    except sqlite3.OperationalError as error:
        if is_lock_error(error):
            raise ForceRollbackLockError(holder, error) from error
        raise
    finally:
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout)}").close()


_gates: dict[str, FileGate] = {}
_gates_guard = threading.Lock()


def gate_for(target: str) -> FileGate:
    """The process-wide gate of a database file or memory database."""
    with _gates_guard:
        gate = _gates.get(target)
        if gate is None:
            gate = _gates[target] = FileGate()
        return gate
