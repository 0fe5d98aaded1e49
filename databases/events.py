"""What a `Database` tells listeners: each statement it runs, and its pools' connections.

Listeners are plain synchronous callables registered on `database.events`; each gets one
small, immutable event object. They run inside the statement's own task (so context
variables, such as the current OpenTelemetry span, are the caller's), and a listener that
raises is logged and skipped: it never breaks the query. With no listener registered a
statement pays one attribute check. docs/observability.md has examples.
"""

from __future__ import annotations

import asyncio
import dataclasses
import typing

from databases._logging import logger

__all__ = [
    "BackendInfo",
    "DatabaseEvents",
    "PoolAction",
    "PoolEvent",
    "StatementFailed",
    "StatementFinished",
    "StatementStarted",
]

_E = typing.TypeVar("_E")
Listener = typing.Callable[[_E], object]
_L = typing.TypeVar("_L", bound=typing.Callable[..., object])

# What happened to a pooled connection: opened, handed to a caller, given back, thrown away.
PoolAction = typing.Literal["connect", "acquire", "release", "discard"]


@dataclasses.dataclass(frozen=True)
class BackendInfo:
    """Which database a statement ran on, without login or password."""

    # SQLAlchemy's dialect name: "postgresql", "mysql", "sqlite".
    dialect: str
    # The driver: "asyncpg", "psycopg", "aiopg", "aiomysql", "asyncmy", "sqlite3".
    driver: str
    # The server (None for SQLite, or a unix socket without a host).
    host: str | None
    port: int | None
    # The database name (SQLite: the file).
    database: str | None
    # The database system, as OpenTelemetry names it: the dialect's name, except "mariadb"
    # for a MySQL URL once a connection met a MariaDB server.
    system: str = ""


@dataclasses.dataclass(frozen=True, eq=False)
class StatementStarted:
    """A statement is about to run. Compared by identity: the same object is the
    `started` of its `StatementFinished` or `StatementFailed`, to pair them."""

    # The SQL as sent to the driver, with the driver's placeholders.
    sql: str
    # The values of the placeholders; for `many`, one tuple per row.
    parameters: typing.Sequence[typing.Any]
    # An executemany (`execute_many()`): `parameters` holds every row's.
    many: bool
    backend: BackendInfo
    loop: asyncio.AbstractEventLoop

    @property
    def parameter_count(self) -> int:
        """Placeholders' values given (rows, for `many`)."""
        return len(self.parameters)


@dataclasses.dataclass(frozen=True, eq=False)
class StatementFinished:
    """A statement ran to its end (for `iterate()`: the iteration ended)."""

    started: StatementStarted
    # Seconds from start to end.
    elapsed: float


@dataclasses.dataclass(frozen=True, eq=False)
class StatementFailed:
    """A statement raised (or its task was cancelled while it ran)."""

    started: StatementStarted
    elapsed: float
    exception: BaseException


@dataclasses.dataclass(frozen=True, eq=False)
class PoolEvent:
    """A pooled connection was opened, taken, given back or thrown away."""

    action: PoolAction
    backend: BackendInfo
    loop: asyncio.AbstractEventLoop
    # The driver's connection object.
    connection: typing.Any


class DatabaseEvents:
    """The listeners of one `Database`: `database.events`.

    Each `on_*` method returns the listener, so it works as a decorator too; `remove()`
    takes it out again. Registering is thread-safe enough to do at any time: the lists are
    replaced, never changed in place.
    """

    def __init__(self) -> None:
        self._started: tuple[Listener[StatementStarted], ...] = ()
        self._finished: tuple[Listener[StatementFinished], ...] = ()
        self._failed: tuple[Listener[StatementFailed], ...] = ()
        self._pool: tuple[Listener[PoolEvent], ...] = ()
        # Whether any statement listener is registered: all the statement path checks.
        self.watching_statements = False
        self.watching_pool = False

    def on_statement_start(self, listener: _L) -> _L:
        """Call `listener(StatementStarted)` before each statement."""
        self._started = (*self._started, listener)
        self._changed()
        return listener

    def on_statement(self, listener: _L) -> _L:
        """Call `listener(StatementFinished)` after each statement that succeeded."""
        self._finished = (*self._finished, listener)
        self._changed()
        return listener

    def on_statement_error(self, listener: _L) -> _L:
        """Call `listener(StatementFailed)` after each statement that raised."""
        self._failed = (*self._failed, listener)
        self._changed()
        return listener

    def on_pool(self, listener: _L) -> _L:
        """Call `listener(PoolEvent)` when a pooled connection is opened, taken, given
        back or thrown away (docs/observability.md: which backends see which)."""
        self._pool = (*self._pool, listener)
        self._changed()
        return listener

    def remove(self, listener: typing.Callable[..., object]) -> None:
        """Take `listener` out of every list it was registered in."""

        def without(listeners: tuple[_E, ...]) -> tuple[_E, ...]:
            return tuple(each for each in listeners if each != listener)

        before = (self._started, self._finished, self._failed, self._pool)
        self._started = without(self._started)
        self._finished = without(self._finished)
        self._failed = without(self._failed)
        self._pool = without(self._pool)
        if before == (self._started, self._finished, self._failed, self._pool):
            raise ValueError(f"{listener!r} is not a listener of these events.")
        self._changed()

    def _changed(self) -> None:
        self.watching_statements = bool(self._started or self._finished or self._failed)
        self.watching_pool = bool(self._pool)

    # -- emitting (the backends call these) ---------------------------------------------

    def _statement_started(
        self,
        backend: BackendInfo,
        sql: str,
        parameters: typing.Sequence[typing.Any],
        many: bool,
    ) -> StatementStarted:
        event = StatementStarted(sql, parameters, many, backend, asyncio.get_running_loop())
        _call_each(self._started, event)
        return event

    def _statement_finished(self, started: StatementStarted, elapsed: float) -> None:
        if self._finished:
            _call_each(self._finished, StatementFinished(started, elapsed))

    def _statement_failed(
        self, started: StatementStarted, elapsed: float, exception: BaseException
    ) -> None:
        if self._failed:
            _call_each(self._failed, StatementFailed(started, elapsed, exception))

    def _pool_event(self, action: PoolAction, backend: BackendInfo, connection: object) -> None:
        if self._pool:
            loop = asyncio.get_running_loop()
            _call_each(self._pool, PoolEvent(action, backend, loop, connection))


def _call_each(listeners: tuple[Listener[_E], ...], event: _E) -> None:
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            # A listener's bug must not fail the application's query.
            logger.warning(
                "The databases event listener %r raised on %s; the statement goes on",
                listener,
                type(event).__name__,
                exc_info=True,
            )
