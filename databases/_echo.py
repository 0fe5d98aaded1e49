"""`echo=True`: each statement logged on the "databases" logger, as event listeners.

A statement's values are logged only with `echo_parameters=True`: they are application
data (personal data, tokens) that logs, often shipped elsewhere, should not get by default.
"""

from __future__ import annotations

import logging
import typing

from databases._logging import ECHO_ERROR_EXTRA, ECHO_EXTRA, logger
from databases.events import DatabaseEvents, StatementFailed, StatementFinished, StatementStarted


class Echo:
    """The listeners `echo=True` registers (on `database.events`, like any other)."""

    def __init__(self, parameters: bool) -> None:
        self.parameters = parameters
        # Whether logging was looked at (at the first statement, not when the `Database`
        # is built: a module-global one is built before the application sets logging up).
        self._looked = False

    def register(self, events: DatabaseEvents) -> None:
        events.on_statement(self.finished)
        events.on_statement_error(self.failed)

    def finished(self, event: StatementFinished) -> None:
        self._log(event.started, event.elapsed, None, ECHO_EXTRA)

    def failed(self, event: StatementFailed) -> None:
        self._log(event.started, event.elapsed, type(event.exception).__name__, ECHO_ERROR_EXTRA)

    def _log(
        self,
        started: StatementStarted,
        elapsed: float,
        error: str | None,
        extra: typing.Mapping[str, typing.Any],
    ) -> None:
        """One record: the SQL, its parameter count, its time and, if it failed, the error."""
        if not self._looked:
            self._looked = True
            _make_visible()
        if logger.isEnabledFor(logging.INFO):
            took = f"{elapsed * 1000:.3f} ms"
            outcome = took if error is None else f"failed after {took}: {error}"
            logger.info(
                "%s [%s, %s]%s",
                started.sql,
                _counted(started),
                outcome,
                self._values(started),
                extra={**extra, **_fields(started, elapsed)},
            )

    def _values(self, started: StatementStarted) -> str:
        return f" parameters: {list(started.parameters)!r}" if self.parameters else ""


def _counted(started: StatementStarted) -> str:
    count = started.parameter_count
    if started.many:
        return f"{count} row{'' if count == 1 else 's'}"
    return f"{count} parameter{'' if count == 1 else 's'}"


def _fields(started: StatementStarted, elapsed: float) -> dict[str, typing.Any]:
    """Structured fields of the record, for log handlers that ship them."""
    return {
        "db_statement": started.sql,
        "db_parameter_count": started.parameter_count,
        "db_elapsed": elapsed,
        "db_system": started.backend.dialect,
    }


def _make_visible() -> None:
    """When logging is not set up at all (no handler anywhere), as SQLAlchemy's
    `echo=True`: write the "databases" logger's INFO records to stderr, so that the
    statements show. Otherwise the application's logging configuration decides."""
    if not logger.hasHandlers():
        logger.addHandler(logging.StreamHandler())
        if not logger.isEnabledFor(logging.INFO):
            logger.setLevel(logging.INFO)
