"""One stdlib `sqlite3` connection per daemon thread, driven from any event loop.

A `sqlite3.Connection` blocks, so each of ours lives on a thread of its own that runs
queued calls in order. An answer goes back with `call_soon_threadsafe` to the loop that
asked, and is dropped if that loop closed meanwhile (`asyncio.run()` ended): the thread
keeps serving. A worker is stopped without any loop, so a closed loop's connections can
still be closed, and its thread is a daemon, so a database never disconnected cannot
keep the process from exiting.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import sqlite3
import threading
import time
import typing

from databases.backends._sqlite_gate import FileGate

T = typing.TypeVar("T")
Args = tuple[typing.Any, ...]
Connector = typing.Callable[[], sqlite3.Connection]
# A queued call: function(db, *args), and where its answer goes. No function: stop.
_Job = tuple[
    typing.Optional[typing.Callable[..., typing.Any]],
    Args,
    typing.Optional[asyncio.AbstractEventLoop],
    typing.Optional[asyncio.Future[typing.Any]],
]

THREAD_NAME = "databases-sqlite-worker"
_numbers = itertools.count(1)


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
) -> bool:
    """Hand the answer to the loop that asked; False if that loop has closed."""
    try:
        loop.call_soon_threadsafe(_settle, future, result, error)
    except RuntimeError:
        return False  # the loop closed while we worked: nobody is waiting any more
    return True


class Worker:
    """A sqlite3 connection and the thread that alone runs statements on it."""

    __slots__ = (
        "_interrupting",
        "_put",
        "_running",
        "_running_in_transaction",
        "_running_lock",
        "db",
        "gate",
        "raw",
        "thread",
    )

    def __init__(
        self,
        gate: FileGate,
        connect: Connector,
        opener: asyncio.AbstractEventLoop,
        opened: asyncio.Future[Worker],
    ) -> None:
        """Start the thread, which connects and then answers `opened` on `opener`."""
        self.gate = gate
        # Set by the thread once connected; None again once `stop()` was called.
        self.db: sqlite3.Connection | None = None
        # The `raw_connection` users get, made and kept here by the pool on first use
        # (an `_sqlite_raw.SQLiteRawConnection`).
        self.raw: object = None
        # The answer of the call running now, which `interrupt()` may stop.
        self._running: asyncio.Future[typing.Any] | None = None
        # Whether a transaction was open when that call started.
        self._running_in_transaction = False
        # An `interrupt()` is under way (it holds the lock meanwhile).
        self._interrupting = False
        self._running_lock = threading.Lock()
        jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._put = jobs.put
        self.thread = threading.Thread(
            target=self._serve,
            args=(jobs, connect, opener, opened),
            name=f"{THREAD_NAME}-{next(_numbers)}",
            daemon=True,
        )
        self.thread.start()

    @property
    def in_transaction(self) -> bool:
        db = self.db
        return db is not None and db.in_transaction

    def call(self, function: typing.Callable[..., T], *args: typing.Any) -> asyncio.Future[T]:
        """Run `function(sqlite3_connection, *args)` on the thread; await the result."""
        if self.db is None:
            raise RuntimeError("The SQLite connection is closed.")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._put((function, args, loop, future))
        return future

    def interrupt(self, answer: asyncio.Future[typing.Any], in_transaction_too: bool) -> None:
        """Stop the call that answers `answer`, if it still runs (from any thread).

        SQLite's interrupt rolls back the whole transaction around an interrupted write,
        so in a transaction that was open before the call started, only a call the caller
        knows to read (`in_transaction_too`) is stopped; other calls run to their end.
        """
        with self._running_lock:
            # Announced before looking: a call that ends meanwhile sees it and waits for
            # the lock, so the interrupt cannot reach the next call instead.
            self._interrupting = True
            try:
                db = self.db
                if self._running is not answer or db is None:
                    return
                if in_transaction_too or not self._running_in_transaction:
                    db.interrupt()
            finally:
                self._interrupting = False

    def stop(self) -> threading.Thread:
        """Close the connection after the calls queued before, and end the thread.

        Needs no event loop. Returns the thread, which ends once the connection is closed.
        """
        self.db = None
        self._put((None, (), None, None))
        return self.thread

    async def close(self) -> None:
        """`stop()`, and wait until the connection is closed."""
        if self.db is None:
            return
        self.db = None
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[None] = loop.create_future()
        self._put((None, (), loop, closed))
        await closed

    def _serve(
        self,
        jobs: queue.SimpleQueue[_Job],
        connect: Connector,
        opener: asyncio.AbstractEventLoop,
        opened: asyncio.Future[Worker],
    ) -> None:
        try:
            db = connect()
        except BaseException as error:
            _deliver(opener, opened, None, error)
            return
        self.db = db
        if not _deliver(opener, opened, self, None):
            self.db = None  # nobody will ever use it
            self.gate.close(db)
            return
        get = jobs.get
        running_lock = self._running_lock
        while True:
            function, args, loop, future = get()
            if function is None:
                break
            assert loop is not None and future is not None
            # In this order: `interrupt()` reads the second once it sees the first.
            self._running_in_transaction = db.in_transaction
            self._running = future
            try:
                result = function(db, *args)
            except BaseException as error:
                self._running = None
                if self._interrupting:  # one meant for this call: let it end first
                    with running_lock:
                        pass
                _deliver(loop, future, None, error)
            else:
                self._running = None
                if self._interrupting:
                    with running_lock:
                        pass
                _deliver(loop, future, result, None)
        self.db = None  # also when `stop()` came before the connection was open
        failure: BaseException | None = None
        try:
            self.gate.close(db)
        except BaseException as error:
            failure = error
        if loop is not None and future is not None:
            _deliver(loop, future, None, failure)


async def open_worker(gate: FileGate, connect: Connector) -> Worker:
    """A new worker whose thread has opened its connection with `connect()`."""
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[Worker] = loop.create_future()
    worker = Worker(gate, connect, loop, opened)
    try:
        return await opened
    except asyncio.CancelledError:
        # The thread may still connect: it closes again once it reads the stop.
        worker.stop()
        raise


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
        if db.in_transaction:  # an interrupt rolled it back already
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


# The savepoint of a statement under `force_rollback_savepoints`: released before the
# next call runs, so one name serves.
STATEMENT_SAVEPOINT = "databases_statement"


class Abandonment:
    """Whether a call run by `in_savepoint` keeps its work, decided once: by the worker when
    the call succeeds first, or by its caller giving up first (its timeout expired).

    Made for the next call of one task's step (`claim()`), and of no use once that step is
    over (`close()`): other tasks' calls on a shared connection never run under it.
    """

    __slots__ = ("_claimed", "_lock", "_outcome", "_owner")

    def __init__(self, owner: asyncio.Task[typing.Any] | None) -> None:
        self._lock = threading.Lock()
        self._outcome: bool | None = None  # True: kept, False: abandoned
        self._owner = owner
        self._claimed = False

    def claim(self) -> bool:
        """Whether the call being made now is the one to run under it (once)."""
        if self._claimed or self._owner is None or asyncio.current_task() is not self._owner:
            return False
        self._claimed = True
        return True

    def close(self) -> None:
        """The step is over: no later call may claim it."""
        self._owner = None

    def abandon(self) -> bool:
        """The caller gives up; False if the call has kept its work already."""
        with self._lock:
            if self._outcome is None:
                self._outcome = False
            return not self._outcome

    def keep(self) -> bool:
        """The call succeeded; False if its caller has given up already."""
        with self._lock:
            if self._outcome is None:
                self._outcome = True
            return self._outcome


def in_savepoint(
    db: sqlite3.Connection,
    gate: FileGate,
    name: str,
    abandonment: Abandonment | None,
    function: typing.Callable[..., T],
    *args: typing.Any,
) -> T:
    """`function(db, gate, *args)` alone in a savepoint, rolled back if it fails or its
    caller abandons it (`abandonment`, for a call given `timeout=`; `None`: it cannot be):
    one job, so no other call on the connection, from any loop, runs in between."""
    gate.execute(db, f"SAVEPOINT {name}", ()).close()
    try:
        result = function(db, gate, *args)
        kept = abandonment is None or abandonment.keep()
    except BaseException:
        kept = False
        raise
    finally:
        if not kept and db.in_transaction:  # (an interrupted write ended the transaction)
            gate.execute(db, f"ROLLBACK TO SAVEPOINT {name}", ()).close()
        if db.in_transaction:
            gate.execute(db, f"RELEASE SAVEPOINT {name}", ()).close()
    if not kept:
        raise sqlite3.OperationalError("abandoned: its caller's timeout expired")
    return result


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
