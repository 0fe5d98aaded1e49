"""SQLite connections pooled per event loop: sqlite3 has no pool of its own.

Each pooled connection owns a worker thread (`_sqlite_worker`). Every loop's pool opens
the same database (`Target`), so a memory database is shared across loops while a
`MemoryKeeper` holds it open.
"""

from __future__ import annotations

import asyncio
import sqlite3
import typing
import uuid
from collections import deque

from databases._logging import logger
from databases.backends import _sqlite_worker as worker
from databases.backends._sqlite_gate import FileGate, gate_for
from databases.backends._sqlite_raw import SQLiteRawConnection
from databases.backends._sqlite_worker import Worker
from databases.backends.common._options import LIBRARY_OPTIONS, library_options
from databases.interfaces import PoolStats
from databases.url import DatabaseURL

# Keyword options of `sqlite3.connect` passed on to it. The others we set ourselves:
# `isolation_level` (autocommit: we BEGIN), `check_same_thread` (the worker thread is the
# only one running statements but others read `in_transaction`), `uri` (follows from the URL).
SQLITE3_KEYWORDS = ("timeout", "detect_types", "cached_statements", "factory")
# Keyword options read here and not passed on: aiosqlite's (0.9 passed options to
# `aiosqlite.connect`), and sqlite3's that we set ourselves but accept as 0.9 did.
NOT_SQLITE3_OPTIONS = ("iter_chunk_size", "loop", "uri", "check_same_thread")
# The URI query parameters SQLite itself reads (https://sqlite.org/uri.html): the URL's
# query options other than the library's (`max_size`, ...) go into the file URI.
URI_PARAMETERS = ("cache", "immutable", "mode", "modeof", "nolock", "psow", "vfs")
# Rows per trip to the worker thread when iterating a raw cursor, as aiosqlite's default.
DEFAULT_ITER_CHUNK_SIZE = 64
# Connections per loop unless `max_size` says otherwise. SQLite runs one writer at a time,
# so more connections only add lock contention ("database is locked").
DEFAULT_MAX_SIZE = 5
# How long sweeping a closed loop waits for its connections to close: SQLite's default
# busy timeout, which a writer waiting for their locks would have spent anyway.
TERMINATE_TIMEOUT = 5.0


def split_query(url: DatabaseURL) -> tuple[dict[str, str], dict[str, typing.Any]]:
    """The URL's query: the parameters for the file URI, and the library's own options
    (`max_size`, ...), read. SQLite honours those, never sees them in its URI."""
    ours = library_options(server=False)
    uri_query: dict[str, str] = {}
    pool_options: dict[str, typing.Any] = {}
    for name, value in url.options.items():
        if name in ours:
            pool_options[name] = ours[name].read(name, value)
        else:
            uri_query[name] = value
    return uri_query, pool_options


def is_memory(url: DatabaseURL, uri: bool) -> bool:
    """Whether the URL names a memory database, which lives only while a connection does."""
    database = url.database
    if database in ("", ":memory:") or split_query(url)[0].get("mode") == "memory":
        return True
    return uri and database.startswith("file::memory:")


class Target(typing.NamedTuple):
    """The database file (or memory database) a pool opens, the same for every loop."""

    name: str  # what sqlite3 opens
    uri: bool  # `name` is a URI
    is_memory: bool
    gate: FileGate  # one statement at a time on the file, across pools and loops


def target_for(url: DatabaseURL, options: typing.Mapping[str, typing.Any]) -> Target:
    uri = bool(options.get("uri", False))
    name, is_uri = _connect_target(url, uri)
    return Target(name, is_uri, is_memory(url, uri), gate_for(name))


def _connect_target(url: DatabaseURL, uri: bool) -> tuple[str, bool]:
    """The filename or URI that sqlite3 opens, and whether it is a URI.

    A plain `:memory:` database becomes a uniquely named shared-cache memory database,
    so every pooled connection (and every loop) sees the same data. With `uri=True` (as
    0.9 documented for `file::memory:?cache=shared`) a database starting with `file:` is
    a URI already.
    """
    database = url.database
    options = split_query(url)[0]
    if database in ("", ":memory:") and not options:
        return f"file:databases-memory-{uuid.uuid4().hex}?mode=memory&cache=shared", True
    query = "&".join(f"{key}={value}" for key, value in options.items())
    if uri and database.startswith("file:"):
        return (f"{database}?{query}" if query else database), True
    if query:
        return f"file:{database}?{query}", True
    return database, False


class MemoryKeeper:
    """Holds one plain connection to a memory database so its data lives while connected."""

    def __init__(self) -> None:
        self._connection: sqlite3.Connection | None = None

    def open(self, target: str) -> None:
        if self._connection is None:
            self._connection = sqlite3.connect(target, uri=True, check_same_thread=False)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


class SQLitePool:
    """Connections (each with its worker thread) for one event loop: reused, opened on demand."""

    def __init__(
        self, url: DatabaseURL | str, *, target: Target | None = None, **options: typing.Any
    ) -> None:
        """A pool for `url`; `target`, when another loop's pool has one, names the same
        (memory) database as that pool."""
        self._url = DatabaseURL(url)
        self._options = options
        if target is None:
            target = target_for(self._url, options)
        self.target = target
        self._target, self._uri, self._gate = target.name, target.uri, target.gate
        self._connect_kwargs = {
            key: value
            for key, value in options.items()
            if key not in LIBRARY_OPTIONS and key not in NOT_SQLITE3_OPTIONS
        }
        self._iter_chunk_size = int(options.get("iter_chunk_size", DEFAULT_ITER_CHUNK_SIZE))
        # Keyword options override the URL's.
        sizes = {**split_query(self._url)[1], **options}
        self._min_size = int(sizes.get("min_size", 0))
        self._max_size = int(sizes.get("max_size", max(DEFAULT_MAX_SIZE, self._min_size)))
        self._idle: list[Worker] = []
        self._in_use: set[Worker] = set()
        self._waiters: deque[asyncio.Future[Worker]] = deque()
        self._size = 0  # connections open or opening
        self._closed = False
        # The connection one-statement calls share (see `statement_connection()`), outside
        # the pool's size.
        self._statement_connection: Worker | None = None
        self._statement_connection_lock: asyncio.Lock | None = None
        # Told of each connection opened (the backend's pool events).
        self.opened: typing.Callable[[Worker], None] | None = None

    def clone(self) -> SQLitePool:
        """A new pool like this one, on the same database, for another loop."""
        return type(self)(self._url, target=self.target, **self._options)

    def _connect(self) -> sqlite3.Connection:
        """Open a connection (on its worker thread), in autocommit: we BEGIN ourselves."""
        connection: sqlite3.Connection = sqlite3.connect(
            self._target,
            uri=self._uri,
            isolation_level=None,
            check_same_thread=False,
            **self._connect_kwargs,
        )
        return connection

    async def _open(self) -> Worker:
        connection = await worker.open_worker(self._gate, self._connect)
        if self.opened is not None:
            self.opened(connection)
        return connection

    def raw_connection(self, connection: Worker) -> SQLiteRawConnection:
        """The object `connection.raw_connection` returns, one per connection."""
        raw = connection.raw
        if not isinstance(raw, SQLiteRawConnection):
            raw = connection.raw = SQLiteRawConnection(connection, self._iter_chunk_size)
        return raw

    async def acquire(self) -> Worker:
        if self._closed:
            raise RuntimeError("The SQLite pool is closed.")
        if self._idle:
            connection = self._idle.pop()
        elif self._size < self._max_size:
            connection = await self._open_counted()
        else:
            waiter: asyncio.Future[Worker]
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                connection = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._hand_over(waiter.result())
                raise
        self._in_use.add(connection)
        return connection

    def stats(self) -> PoolStats:
        """The pooled connections; the statement connection is outside the pool's size."""
        idle = len(self._idle)
        return PoolStats(min_size=0, max_size=self._max_size, idle=idle, in_use=self._size - idle)

    async def open_min_size(self) -> None:
        """Open connections until the pool holds `min_size` (on `connect()`)."""
        while self._size < self._min_size and not self._closed:
            self._hand_over(await self._open_counted())

    async def _open_counted(self) -> Worker:
        """A new connection, counted in the pool's size from before it opens (so that
        callers meanwhile do not open more than `max_size`)."""
        self._size += 1
        try:
            return await self._open()
        except BaseException:
            self._size -= 1
            raise

    def statement_connection_is_free(self) -> bool:
        """Whether one-statement calls may share the statement connection now.

        While none of our connections holds a transaction on the file, the file gate runs
        statements one at a time anyway, so queueing them on one connection loses
        nothing and spares the thread switches of many. With a transaction open, a
        statement may have to wait for SQLite's lock: then it takes a pooled connection,
        so it does not hold up the others.
        """
        return not self._gate.has_open_transactions()

    @property
    def open_statement_connection(self) -> Worker | None:
        """The statement connection, if it is open already (`statement_connection()` opens it)."""
        return None if self._closed else self._statement_connection

    async def statement_connection(self) -> Worker:
        """The loop's connection for one-statement calls, opened on first use.

        Its worker thread runs their statements in the order they were submitted, as
        one aiosqlite connection shared by many tasks did.
        """
        if self._closed:
            raise RuntimeError("The SQLite pool is closed.")
        shared = self._statement_connection
        if shared is None:
            if self._statement_connection_lock is None:
                self._statement_connection_lock = asyncio.Lock()
            async with self._statement_connection_lock:
                if self._statement_connection is None:
                    self._statement_connection = await self._open()
                shared = self._statement_connection
        return shared

    async def release(self, connection: Worker) -> None:
        if connection not in self._in_use:
            return
        self._in_use.discard(connection)
        try:
            if connection.in_transaction:
                # Never hand the next user a connection inside someone else's transaction.
                await connection.call(worker.rollback_if_open, self._gate)
        except BaseException:
            self._size -= 1
            connection.stop()
            raise
        if self._closed:
            self._size -= 1
            await connection.close()
        else:
            self._hand_over(connection)

    def _hand_over(self, connection: Worker) -> None:
        """Give a free connection to the longest waiter, or keep it idle."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)

    def _take_all(self) -> list[Worker]:
        self._closed = True
        connections = [*self._idle, *self._in_use]
        if self._statement_connection is not None:
            connections.append(self._statement_connection)
            self._statement_connection = None
        self._idle.clear()
        self._in_use.clear()
        self._size = 0
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(RuntimeError("The SQLite pool was closed."))
        self._waiters.clear()
        return connections

    async def close(self) -> None:
        for connection in self._take_all():
            await connection.close()

    def reopen(self) -> None:
        """Open again after `close()` (the force-rollback session connects repeatedly)."""
        self._closed = False

    def terminate(self) -> None:
        """Close every connection from outside its (closed) loop, and wait for that.

        A connection of the closed loop may hold a write transaction (force_rollback
        does): the next loop's writes fail until the worker has closed it.
        """
        threads = [connection.stop() for connection in self._take_all()]
        if not worker.wait_stopped(threads, TERMINATE_TIMEOUT):
            logger.warning(
                "SQLite connections of a closed event loop are still busy after %s s; "
                "their locks on %s last until their statements end",
                TERMINATE_TIMEOUT,
                self._target,
            )
