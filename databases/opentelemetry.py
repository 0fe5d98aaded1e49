"""OpenTelemetry spans for a `Database`'s statements (`pip install databases[opentelemetry]`).

    from databases.opentelemetry import instrument
    instrument(database)

One CLIENT span per statement, a child of the caller's current span (also under
force_rollback, whose statements may run on the session's own loop: they run in a copy of
the caller's context). Attributes follow OpenTelemetry's stable database semantic
conventions. Parameter values are not recorded unless `capture_parameters=True`. Built on
`database.events`; this module imports without opentelemetry installed and raises a clear
error only when `instrument()` is called.
"""

from __future__ import annotations

import re
import typing
import weakref

from databases._database import Database
from databases._logging import logger
from databases.events import StatementFailed, StatementFinished, StatementStarted

if typing.TYPE_CHECKING:
    # The annotations only: the module imports without opentelemetry installed.
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["Instrumentation", "instrument"]

INSTRUMENTATION_NAME = "databases"
# `db.system.name` by `BackendInfo.system`: the dialect's name, or "mariadb" for a MySQL URL
# whose server turned out to be MariaDB.
SYSTEM_NAMES = {
    "postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mariadb",
    "sqlite": "sqlite",
}

# Drivers whose errors carry MySQL's error number first in their arguments.
MYSQL_DRIVERS = ("pymysql", "asyncmy")

_IDENTIFIER = r'(?:"[^"]+"|`[^`]+`|\[[^\]]+\]|[\w$.]+)'
# The table a statement of each operation acts on, for `db.query.summary`.
_TARGETS = {
    "SELECT": re.compile(rf"\bFROM\s+({_IDENTIFIER})", re.IGNORECASE),
    "INSERT": re.compile(rf"^\s*INSERT\s+(?:IGNORE\s+)?INTO\s+({_IDENTIFIER})", re.IGNORECASE),
    "REPLACE": re.compile(rf"^\s*REPLACE\s+INTO\s+({_IDENTIFIER})", re.IGNORECASE),
    "UPDATE": re.compile(rf"^\s*UPDATE\s+({_IDENTIFIER})", re.IGNORECASE),
    "DELETE": re.compile(rf"^\s*DELETE\s+FROM\s+({_IDENTIFIER})", re.IGNORECASE),
}
_FIRST_WORD = re.compile(r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*([A-Za-z]+)", re.DOTALL)

# Each instrumented database's instrumentation, until `uninstrument()`.
_INSTRUMENTED: weakref.WeakKeyDictionary[Database, Instrumentation] = weakref.WeakKeyDictionary()


class Instrumentation:
    """The listeners `instrument()` registered; `uninstrument()` takes them out."""

    def __init__(self, database: Database, tracer: Tracer, capture_parameters: bool) -> None:
        self._database = database
        self._tracer = tracer
        self._capture_parameters = capture_parameters
        # Each running statement's span, until it ends.
        self._spans: weakref.WeakKeyDictionary[StatementStarted, Span] = weakref.WeakKeyDictionary()
        events = database.events
        events.on_statement_start(self._started)
        events.on_statement(self._finished)
        events.on_statement_error(self._failed)

    def uninstrument(self) -> None:
        """Take the listeners out: `database`'s statements make no more spans."""
        if _INSTRUMENTED.get(self._database) is self:
            del _INSTRUMENTED[self._database]
        events = self._database.events
        for listener in (self._started, self._finished, self._failed):
            events.remove(listener)

    def _started(self, event: StatementStarted) -> None:
        from opentelemetry.trace import SpanKind  # imported by instrument() already

        attributes = statement_attributes(event, self._capture_parameters)
        # The conventions' span name: the summary, else the database system.
        name = str(attributes.get("db.query.summary") or attributes["db.system.name"])
        # The current context is the caller's: the span is a child of its current span.
        self._spans[event] = self._tracer.start_span(
            name, kind=SpanKind.CLIENT, attributes=attributes
        )

    def _finished(self, event: StatementFinished) -> None:
        span = self._spans.pop(event.started, None)
        if span is not None:
            span.end()

    def _failed(self, event: StatementFailed) -> None:
        from opentelemetry.trace import Status, StatusCode  # imported already

        span = self._spans.pop(event.started, None)
        if span is None:
            return
        error = event.exception
        kind = type(error)
        span.set_attribute("error.type", f"{kind.__module__}.{kind.__qualname__}")
        code = response_status_code(error)
        if code is not None:
            span.set_attribute("db.response.status_code", code)
        span.set_status(Status(StatusCode.ERROR, kind.__name__))
        span.end()


def instrument(
    database: Database,
    *,
    tracer_provider: TracerProvider | None = None,
    capture_parameters: bool = False,
) -> Instrumentation:
    """Make a span of every statement `database` runs from now on.

    `tracer_provider`: the provider to use (default: the global one). `capture_parameters`:
    record the statements' values as `db.query.parameter.<index>` (off by default: they
    are application data).
    """
    try:
        from opentelemetry import trace
    except ImportError as error:
        raise ImportError(
            "databases.opentelemetry needs the OpenTelemetry API: "
            "pip install 'databases[opentelemetry]' (or opentelemetry-api)."
        ) from error
    from databases import __version__

    current = _INSTRUMENTED.get(database)
    if current is not None:
        # As OpenTelemetry's instrumentors do: a second call changes nothing (it would
        # make every span twice).
        logger.warning(
            "databases.opentelemetry.instrument(): %r is instrumented already; call "
            "uninstrument() on what the first call returned to change its settings",
            database,
        )
        return current
    tracer = trace.get_tracer(INSTRUMENTATION_NAME, __version__, tracer_provider)
    instrumentation = _INSTRUMENTED[database] = Instrumentation(
        database, tracer, capture_parameters
    )
    return instrumentation


def statement_attributes(
    event: StatementStarted, capture_parameters: bool = False
) -> dict[str, str | int]:
    """The semantic conventions' attributes of one statement."""
    backend = event.backend
    attributes: dict[str, str | int] = {
        "db.system.name": SYSTEM_NAMES.get(backend.system or backend.dialect, "other_sql"),
        "db.query.text": event.sql,
    }
    if backend.database:
        attributes["db.namespace"] = backend.database
    if backend.host:
        attributes["server.address"] = backend.host
    if backend.port is not None:
        attributes["server.port"] = backend.port
    operation, target = summarise(event.sql)
    if operation is not None:
        if event.many and event.parameter_count > 1:
            operation = f"BATCH {operation}"
            attributes["db.operation.batch.size"] = event.parameter_count
        attributes["db.operation.name"] = operation
        attributes["db.query.summary"] = operation if target is None else f"{operation} {target}"
    if capture_parameters and not event.many:
        for index, value in enumerate(event.parameters):
            attributes[f"db.query.parameter.{index}"] = repr(value)
    return attributes


def summarise(sql: str) -> tuple[str | None, str | None]:
    """The operation (first keyword) and the table it acts on, where plain to see."""
    match = _FIRST_WORD.match(sql)
    if match is None:
        return None, None
    operation = match.group(1).upper()
    pattern = _TARGETS.get(operation)
    target = None
    if pattern is not None:
        found = pattern.search(sql)
        if found is not None:
            target = found.group(1)
    return operation, target


def response_status_code(error: BaseException) -> str | None:
    """The database's own error code: MySQL's error number, PostgreSQL's SQLSTATE,
    SQLite's extended result code (from the drivers' public attributes)."""
    args = getattr(error, "args", ())
    if type(error).__module__.split(".")[0] in MYSQL_DRIVERS:
        # The number, as the conventions ask (PyMySQL 1.2 also has a `sqlstate`).
        return str(args[0]) if args and isinstance(args[0], int) else None
    for attribute in ("sqlstate", "pgcode", "sqlite_errorcode"):
        code = getattr(error, attribute, None)
        if code is not None:
            return str(code)
    return None
