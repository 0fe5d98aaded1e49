"""The contract between the core and a database driver adapter (a backend).

A backend is a thin adapter: it opens a pool, hands out connections and runs built
SQLAlchemy clauses. Everything loop-bound lives in one backend instance, and the core
creates one instance per event loop, so a backend never has to think about loops.

The methods a 0.9 backend implements are the whole required contract; everything else
here has a default, so such a backend keeps working. docs/writing-a-backend.md walks
through it with an example.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from collections.abc import AsyncGenerator, ItemsView, KeysView, Sequence, ValuesView

from sqlalchemy import SQLColumnExpression
from sqlalchemy.sql import ClauseElement

from databases.events import DatabaseEvents

_T = typing.TypeVar("_T")


class QueryValues(typing.NamedTuple):
    """A query (raw SQL with `:name` parameters, or a clause) and the values to run it with.

    Passed to connections whose capabilities say `accepts_values`, in place of
    `text(sql).bindparams(**values)` or `clause.values(**values)`: the backend can then
    compile once per query and set of value names, with no new clause (and cache key)
    built on every call.
    """

    query: ClauseElement | str
    values: typing.Mapping[str, typing.Any]


# What a connection's statement methods are given: always a built clause, or a
# `QueryValues` when the connection's capabilities say `accepts_values`.
Statement = typing.Union[ClauseElement, QueryValues]


async def each_record(batches: AsyncGenerator[list[Record], None]) -> AsyncGenerator[Record, None]:
    """The records of `batches` one by one; `batches` is closed however iterating stops."""
    try:
        async for batch in batches:
            for record in batch:
                yield record
    finally:
        await batches.aclose()


class StatementCancellation(enum.Enum):
    """What abandoning a running statement (its task cancelled) does to the connection.

    The core lets statements run to their end before a cancellation takes effect where
    abandoning them would hurt the task, or other tasks sharing the connection.
    """

    # The statement finishes in the background and the next one waits for it.
    HARMLESS = "harmless"
    # The statement is cancelled on the server: an open transaction fails.
    ABORTS_TRANSACTION = "aborts_transaction"
    # The driver loses the connection.
    BREAKS_CONNECTION = "breaks_connection"


@dataclasses.dataclass(frozen=True)
class ConnectionCapabilities:
    """What the core may rely on, or must guard against, for one kind of connection.

    The defaults promise nothing: they are what a 0.9 backend gets.
    """

    cancellation: StatementCancellation = StatementCancellation.ABORTS_TRANSACTION
    # The driver itself runs one statement at a time, in the order they were submitted
    # (SQLite's worker thread): the core then needs no lock of its own.
    queues_statements: bool = False
    # Once acquired, statements may be awaited from any event loop, even from several at
    # once (SQLite's worker thread answers each caller in its own loop): the
    # force-rollback session then runs them in the caller's loop, without a hop.
    serves_any_loop: bool = False
    # Statement methods may be given a `QueryValues(query, values)` instead of a clause
    # built from them.
    accepts_values: bool = False


DEFAULT_CAPABILITIES = ConnectionCapabilities()


@dataclasses.dataclass(frozen=True)
class PoolStats:
    """A snapshot of one event loop's connection pool, for monitoring and tests.

    `Database.pool_stats()` returns it for the running loop. SQLAlchemy's pool calls
    `idle` `checkedin()` and `in_use` `checkedout()`.
    """

    # Connections the pool keeps open even when idle (0: it opens them on demand).
    min_size: int
    # The most connections it opens at once.
    max_size: int
    # Open and waiting in the pool.
    idle: int
    # Handed out to callers (a connection still being opened may count here).
    in_use: int

    @property
    def size(self) -> int:
        """Connections open now (or being opened): `idle + in_use`."""
        return self.idle + self.in_use


def capabilities_of(connection: object) -> ConnectionCapabilities:
    """A connection's capabilities; the defaults for one that does not derive from ours."""
    if isinstance(connection, ConnectionBackend):
        return connection.capabilities
    return DEFAULT_CAPABILITIES


def is_broken(connection: object) -> bool:
    """`connection._is_broken()`; False for one that does not derive from ours."""
    return isinstance(connection, ConnectionBackend) and connection._is_broken()


def carry_session(connection: object, holder: str | None) -> None:
    """`connection._carry_session(holder)`; nothing for one that does not derive from ours."""
    if isinstance(connection, ConnectionBackend):
        connection._carry_session(holder)


def in_savepoint(
    connection: typing.Any, step: typing.Callable[..., typing.Awaitable[_T]], *args: typing.Any
) -> typing.Awaitable[_T]:
    """`connection._in_savepoint(step, *args)`; the default's way for a connection that
    does not derive from ours."""
    if isinstance(connection, ConnectionBackend):
        return connection._in_savepoint(step, *args)
    return _around_savepoint(connection, _always, step, *args)


def _always() -> bool:
    return True


async def _around_savepoint(
    connection: typing.Any,
    in_transaction: typing.Callable[[], bool],
    step: typing.Callable[..., typing.Awaitable[_T]],
    *args: typing.Any,
) -> _T:
    """`step(*args)` inside a nested `connection.transaction()` (a savepoint), unless no
    transaction is open to protect (`in_transaction()`)."""
    if not in_transaction():
        return await step(*args)
    savepoint = connection.transaction()
    await savepoint.start(is_root=False, extra_options={})
    try:
        result = await step(*args)
    except BaseException:
        if in_transaction():
            await savepoint.rollback()
        raise
    if in_transaction():  # else the statement ended it (MySQL's implicit commit)
        await savepoint.commit()
    return result


class Abandonable(typing.Protocol):
    """A statement in flight that a timeout may abandon (see `_abandonable_next`)."""

    def abandon(self) -> bool:
        """Roll the statement back once it ends; False if it has kept its work already."""
        ...

    def close(self) -> None:
        """The step is over: no later statement runs under it."""
        ...


class DatabaseBackend:
    """A pool of connections to one database, used from one event loop.

    Constructed as `BackendClass(database_url, **options)` with the `Database`'s URL and
    keyword options. Required: `connect()`, `disconnect()`, `connection()`.
    """

    async def connect(self) -> None:
        """Open the pool (or whatever the driver needs); called once per loop."""
        raise NotImplementedError()  # pragma: no cover

    async def disconnect(self) -> None:
        """Close the pool; connections still in use may be cut."""
        raise NotImplementedError()  # pragma: no cover

    def connection(self) -> ConnectionBackend:
        """A new, not yet acquired connection object (cheap: no I/O)."""
        raise NotImplementedError()  # pragma: no cover

    # Optional hooks: the defaults keep a backend that does not know them working.

    def for_new_loop(self) -> DatabaseBackend | None:
        """A fresh, unconnected instance for another event loop.

        Override to share loop-independent state (a compiled-statement cache, say) with
        the new instance. `None`, the default, tells the core to construct one from the
        URL and options as it constructed this one.
        """
        return None

    def terminate(self) -> None:
        """Drop every connection at once, awaiting nothing.

        Called for a loop that is closed or cannot run our coroutines any more, maybe from
        another thread; the server rolls back whatever those connections left open. The
        default does nothing: the connections go when the process does.
        """

    def release_shared(self) -> None:
        """Free what all loops' instances share, once the database is fully disconnected.

        Called on the instance the `Database` built first. The default has nothing to free.
        """

    def statement_connection(self) -> ConnectionBackend:
        """A connection that runs exactly one statement between `acquire()` and `release()`.

        `Database.fetch_one()` and the like use it when the task holds no connection, so
        a backend may serve it from a connection those calls share. The default is
        `connection()`.
        """
        return self.connection()

    def pool_stats(self) -> PoolStats | None:
        """How many connections the pool holds, and how many are in use, while connected.

        For `Database.pool_stats()`. The default, `None`, says the backend does not tell.
        """
        return None

    def _watch(self, events: DatabaseEvents) -> None:
        """Report statements and pool events to `events` (`database.events`).

        Called on every instance the `Database` builds, before it connects. The default
        reports nothing: listeners then see no statement of this backend.
        """


class ConnectionBackend:
    """One driver connection, acquired from the backend's pool.

    Required: `acquire()`, `release()`, `fetch_all()`, `fetch_one()`, `execute()`,
    `execute_many()`, `iterate()`, `transaction()`, `raw_connection`. Statement methods
    get a built clause, or a `QueryValues` if `capabilities.accepts_values`.
    """

    # Override with a `ConnectionCapabilities(...)` saying what the driver guarantees.
    capabilities: typing.ClassVar[ConnectionCapabilities] = DEFAULT_CAPABILITIES

    async def acquire(self) -> None:
        """Take a driver connection from the pool; again while held: nothing."""
        raise NotImplementedError()  # pragma: no cover

    async def release(self) -> None:
        """Give the driver connection back, outside any transaction; none held: nothing."""
        raise NotImplementedError()  # pragma: no cover

    async def fetch_all(self, query: Statement) -> list[Record]:
        """Every row of the result."""
        raise NotImplementedError()  # pragma: no cover

    async def fetch_one(self, query: Statement) -> Record | None:
        """The first row of the result, `None` for none."""
        raise NotImplementedError()  # pragma: no cover

    async def fetch_val(self, query: Statement, column: typing.Any = 0) -> typing.Any:
        """One value (by position or name) of the first row; `None` for no row."""
        row = await self.fetch_one(query)
        return None if row is None else row[column]

    async def execute(self, query: Statement) -> typing.Any:
        """Run a statement; the result as 0.9 gave it (e.g. the new row's id)."""
        raise NotImplementedError()  # pragma: no cover

    async def execute_many(self, queries: list[ClauseElement]) -> None:
        """Run each built clause in turn."""
        raise NotImplementedError()  # pragma: no cover

    async def _execute_many_values(
        self, query: ClauseElement | str, rows: typing.Sequence[typing.Mapping[str, typing.Any]]
    ) -> None:
        """`execute_many` given the query and its rows; the default builds a clause per row."""
        from databases._query import build_query

        await self.execute_many([build_query(query, row) for row in rows])

    async def iterate(self, query: Statement) -> AsyncGenerator[Record, None]:
        """The rows of the result one by one, ideally without reading them all first."""
        raise NotImplementedError()  # pragma: no cover
        yield True  # pragma: no cover

    async def _iterate_batches(self, query: Statement) -> AsyncGenerator[list[Record], None]:
        """Rows in the batches the driver fetches them in; the core locks per batch.

        The default serves backends that only implement `iterate()`: a row per batch.
        """
        async for record in self.iterate(query):
            yield [record]

    def transaction(self) -> TransactionBackend:
        """A new, not yet started transaction object on this connection."""
        raise NotImplementedError()  # pragma: no cover

    async def _run_sync(
        self,
        fn: typing.Callable[..., typing.Any],
        args: tuple[typing.Any, ...],
        kwargs: dict[str, typing.Any],
    ) -> typing.Any:
        """`fn(sync_connection, *args, **kwargs)` with a SQLAlchemy `Connection` running on
        this (acquired) driver connection, for `run_sync()`. The default: not supported."""
        raise NotImplementedError(
            f"run_sync() is not supported by {type(self).__name__}: its backend offers no "
            "SQLAlchemy connection over its driver connection"
        )

    def _is_broken(self) -> bool:
        """Whether the driver connection held now is gone for good: closed by the server
        (a restart, a killed session) or by the network. The force-rollback session asks
        after a failure, to tell a lost connection from a failing statement. The default
        cannot tell: never."""
        return False

    def _carry_session(self, holder: str | None) -> None:
        """This connection now carries the force-rollback session's transaction, open
        until the session ends (`holder` names the session, for other connections'
        errors), or no longer does (None). SQLite's tells the file's gate, so that a
        statement of another connection blocked by that transaction fails at once with
        an error that names it. The default: nothing."""

    async def _in_savepoint(
        self, step: typing.Callable[..., typing.Awaitable[_T]], *args: typing.Any
    ) -> _T:
        """`step(*args)`, one statement, under a savepoint of its own: if it fails, only
        it is rolled back and the enclosing transaction goes on (PostgreSQL would refuse
        every later statement). The default uses a nested `transaction()`."""
        return await _around_savepoint(self, self._in_transaction, step, *args)

    def _in_transaction(self) -> bool:
        """Whether the driver connection is inside a transaction now, as far as the driver
        knows without asking the server. The default assumes it is."""
        return True

    def _interrupt(self) -> typing.Awaitable[object] | None:
        """Ask the server to stop the statement running on this connection now.

        Called when a call's `timeout=` expires during a statement that cancelling its
        task does not stop (`cancellation` is BREAKS_CONNECTION or HARMLESS); runs in the
        connection's loop, without awaiting. Returns what to await until the request is
        made, or None. The default can do nothing: the statement runs to its end.
        """
        return None

    def _abandonable_next(self) -> Abandonable | None:
        """Run the next statement alone in a savepoint, in one step of the driver, and
        return what abandons it (rolls it back) when a call's `timeout=` expires.

        For connections that queue statements (`queues_statements`): no lock of the core
        keeps other tasks' statements from running between a savepoint and its release
        there. None (the default): not supported; the core then sets the savepoint.
        """
        return None

    @property
    def raw_connection(self) -> typing.Any:
        """The driver's own connection object, while acquired."""
        raise NotImplementedError()  # pragma: no cover


class TransactionBackend:
    """A transaction (root) or savepoint (nested) on one connection."""

    async def start(self, is_root: bool, extra_options: dict[typing.Any, typing.Any]) -> None:
        """BEGIN (root, with the options given to `transaction()`) or a SAVEPOINT."""
        raise NotImplementedError()  # pragma: no cover

    async def commit(self) -> None:
        raise NotImplementedError()  # pragma: no cover

    async def rollback(self) -> None:
        raise NotImplementedError()  # pragma: no cover


# What `row[key]` takes, besides a slice: a position (negative counts from the end), a
# column name, or a SQLAlchemy column expression (`table.c.name`, `column("name")`, an ORM
# attribute), as SQLAlchemy's own rows take them.
RecordKey = typing.Union[int, str, SQLColumnExpression[typing.Any]]


class Record(Sequence[typing.Any]):
    """A result row: positional like a tuple, keyed like a mapping.

    A backend's row class implements `_mapping`, `__getitem__` and `__len__` (the 0.9
    contract); the mapping methods and attribute access below derive from them. The
    bundled backends' rows (`databases.backends.common.records.Record`) implement every
    method themselves, and iterate over the column names, as 0.9's rows did.

    Values are typed `Any`: a row's column types are known only once the query runs.
    """

    __slots__ = ()

    @property
    def _mapping(self) -> typing.Mapping[typing.Any, typing.Any]:
        """The row as a read-only mapping of column name (or column) to value."""
        raise NotImplementedError()  # pragma: no cover

    @typing.overload
    def __getitem__(self, key: RecordKey) -> typing.Any: ...

    @typing.overload
    def __getitem__(self, key: slice) -> Sequence[typing.Any]: ...

    def __getitem__(self, key: RecordKey | slice) -> typing.Any:
        raise NotImplementedError()  # pragma: no cover

    def keys(self) -> KeysView[str]:
        """The column names, in order."""
        return self._mapping.keys()

    def values(self) -> ValuesView[typing.Any]:
        """The values, in column order."""
        return self._mapping.values()

    def items(self) -> ItemsView[str, typing.Any]:
        """(column name, value) pairs, in column order."""
        return self._mapping.items()

    def __getattr__(self, name: str) -> typing.Any:
        """`row.name` is `row._mapping["name"]`.

        Names beginning with an underscore are the row's own attributes: a row still being
        built (or unpickled) then does not look its `_mapping` up as a column.
        """
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            mapping = self._mapping
        except NotImplementedError:  # a 0.9 row class need not implement it
            raise AttributeError(f"Record has no column {name!r}") from None
        try:
            return mapping[name]
        except KeyError:
            columns = ", ".join(map(str, mapping))
            raise AttributeError(f"Record has no column {name!r}; columns: {columns}") from None
