"""Compile each distinct statement once per dialect and reuse it.

SQLAlchemy's cache key identifies a statement apart from its literal values, so the
compiled SQL, its parameter order and bind converters, and the row shape can be kept
and only the values re-extracted on every call.
"""

from __future__ import annotations

import logging
import threading
import typing

from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import Compiled, ResultColumnsEntry, SQLCompiler

from databases._logging import LOG_EXTRA, logger
from databases.backends.common.records import RecordShape

Converter = typing.Callable[[typing.Any], typing.Any]
Args = tuple[typing.Any, ...]


def _starts_insert(sql: str) -> bool:
    """Raw text has no statement type; its first keyword tells an INSERT apart."""
    first = sql.lstrip().split(None, 1)[:1]
    return bool(first) and first[0].upper() in ("INSERT", "REPLACE")


class CompiledStatement:
    """A statement compiled for one dialect, shared by every execution of that statement."""

    __slots__ = (
        "_bind_plan",
        "_compiled",
        "_dialect",
        "_expanding",
        "_shape",
        "is_insert",
        "result_columns",
        "returning",
        "sql",
    )

    def __init__(self, compiled: Compiled, dialect: Dialect) -> None:
        self._compiled = compiled
        self._dialect = dialect
        self.sql: str = compiled.string
        self._shape: tuple[tuple[str, ...], RecordShape] | None = None
        if isinstance(compiled, SQLCompiler):
            processors: typing.Mapping[str, typing.Any] = compiled._bind_processors
            self._bind_plan: tuple[tuple[str, Converter | None], ...] = tuple(
                (name, processors.get(name)) for name in (compiled.positiontup or ())
            )
            self._expanding = bool(compiled.post_compile_params or compiled.literal_execute_params)
            self.result_columns: list[ResultColumnsEntry] = compiled._result_columns
            self.is_insert: bool = bool(compiled.isinsert) or _starts_insert(self.sql)
            self.returning = bool(compiled.effective_returning)
        else:  # DDL: plain text, no parameters
            self._bind_plan = ()
            self._expanding = False
            self.result_columns = []
            self.is_insert = False
            self.returning = False

    def bind(self, extracted: typing.Any = None, params: typing.Any = None) -> tuple[str, Args]:
        """The SQL text and positional arguments for one execution."""
        compiled = self._compiled
        if not isinstance(compiled, SQLCompiler):
            return self.sql, ()
        values = compiled.construct_params(params=params, extracted_parameters=extracted)
        if not self._expanding:
            return self.sql, tuple(
                values[name] if convert is None else convert(values[name])
                for name, convert in self._bind_plan
            )
        expanded = compiled.construct_expanded_state(values)
        processors: typing.Mapping[str, typing.Any] = expanded.processors
        parameters = expanded.parameters
        args = []
        for name in expanded.positiontup or ():
            convert = processors.get(name)
            value = parameters[name]
            args.append(value if convert is None else convert(value))
        return expanded.statement, tuple(args)

    def shape(
        self, names: tuple[str, ...], type_codes: typing.Sequence[typing.Any] | None = None
    ) -> RecordShape:
        """How rows of this statement are built, for the columns the driver reported."""
        cached = self._shape
        if cached is not None and cached[0] == names:
            return cached[1]
        shape = RecordShape.build(names, self.result_columns, self._dialect, type_codes)
        self._shape = (names, shape)
        return shape


class QueryCompiler:
    """A bounded cache of compiled statements for one dialect, shared by all event loops."""

    def __init__(self, dialect: Dialect, max_size: int = 512) -> None:
        self.dialect = dialect
        self._max_size = max_size
        self._cache: dict[typing.Any, CompiledStatement] = {}
        self._lock = threading.Lock()

    def compile(self, query: ClauseElement) -> tuple[CompiledStatement, typing.Any]:
        """The compiled statement for `query`, and the literal values to run it with."""
        make_key = getattr(query, "_generate_cache_key", None)
        cache_key = make_key() if make_key is not None else None
        if cache_key is None:
            return CompiledStatement(query.compile(dialect=self.dialect), self.dialect), None
        statement = self._cache.get(cache_key.key)
        if statement is None:
            compiled = query.compile(dialect=self.dialect, cache_key=cache_key)
            statement = CompiledStatement(compiled, self.dialect)
            with self._lock:
                if len(self._cache) >= self._max_size:
                    # Evict the oldest entry; dicts keep insertion order.
                    self._cache.pop(next(iter(self._cache)), None)
                self._cache[cache_key.key] = statement
        return statement, cache_key.bindparams

    def prepare(self, query: ClauseElement) -> tuple[CompiledStatement, str, Args]:
        """Compile (or reuse) and bind: what a driver needs to run `query`."""
        statement, extracted = self.compile(query)
        sql, args = statement.bind(extracted)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("Query: %s Args: %s", sql, args, extra=LOG_EXTRA)
        return statement, sql, args

    def prepare_many(
        self, queries: typing.Sequence[ClauseElement]
    ) -> list[tuple[CompiledStatement, str, list[Args]]]:
        """Group consecutive queries that compile alike, for the driver's executemany."""
        groups: list[tuple[CompiledStatement, str, list[Args]]] = []
        for query in queries:
            statement, extracted = self.compile(query)
            sql, args = statement.bind(extracted)
            if groups and groups[-1][0] is statement and groups[-1][1] == sql:
                groups[-1][2].append(args)
            else:
                groups.append((statement, sql, [args]))
        if logger.isEnabledFor(logging.DEBUG):
            for _, sql, rows in groups:
                logger.debug("Query: %s Args: %d rows", sql, len(rows), extra=LOG_EXTRA)
        return groups
