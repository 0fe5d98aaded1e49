"""Compile each distinct statement once per dialect and reuse it.

SQLAlchemy's cache key identifies a statement apart from its literal values, so the
compiled SQL, its parameter order and bind converters, and the row shape can be kept
and only the values re-extracted on every call.
"""

from __future__ import annotations

import itertools
import logging
import operator
import threading
import typing

from sqlalchemy import exc, literal, text
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import Compiled, ResultColumnsEntry, SQLCompiler

from databases._logging import LOG_EXTRA, logger
from databases.backends.common import _sqlalchemy_compat as compat
from databases.backends.common._driver import Converter
from databases.backends.common.records import RecordShape
from databases.backends.common.simple_select import Key, simple_select_key
from databases.interfaces import QueryValues as QueryValues  # re-exported: its 0.9-era home
from databases.interfaces import Statement

Args = tuple[typing.Any, ...]
Values = typing.Mapping[str, typing.Any]

# A value type not seen yet by `_raw_args` (None is a known "no processor").
_UNKNOWN: typing.Any = object()


def with_column_bind(
    bind: Converter, bind_column: typing.Callable[[tuple[typing.Any, ...]], tuple[typing.Any, ...]]
) -> Converter:
    """A bind processor that can also convert a whole column of `execute_many` rows at
    once (`bind_column`), which is faster when one C-level `map()` can do it."""
    bind.bind_column = bind_column  # type: ignore[attr-defined]
    return bind


def _starts_insert(sql: str) -> bool:
    """Raw text has no statement type; its first keyword tells an INSERT apart."""
    first = sql.lstrip().split(None, 1)[:1]
    return bool(first) and first[0].upper() in ("INSERT", "REPLACE")


class _DefaultContext:
    """What column default callables see of SQLAlchemy's execution context."""

    __slots__ = ("_row_keys", "current_column", "current_parameters")

    def __init__(
        self,
        parameters: typing.MutableMapping[str, typing.Any],
        row_keys: tuple[str, ...] | None = None,
    ) -> None:
        self.current_parameters = parameters
        self.current_column: typing.Any = None
        # The value names of one row of a multi-VALUES INSERT, else None.
        self._row_keys = row_keys

    def get_current_parameters(
        self, isolate_multiinsert_groups: bool = True
    ) -> typing.MutableMapping[str, typing.Any]:
        """The statement's parameters; in a multi-VALUES INSERT (by default), the values
        of the current column's row under their own names, as SQLAlchemy gives them."""
        row_keys = self._row_keys
        parameters = self.current_parameters
        if not isolate_multiinsert_groups or row_keys is None:
            return parameters
        column = self.current_column
        if compat.later_row_column(column):
            # Row n > 0: its parameters are named `<key>_m<n>`.
            index = column.index + 1
            row = {column.original.key: parameters.get(column.key)}
        else:
            index = 0
            row = {column.key: parameters.get(column.key)}
        row.update((key, parameters[f"{key}_m{index}"]) for key in row_keys)
        return row


class CompiledStatement:
    """A statement compiled for one dialect, shared by every execution of that statement."""

    __slots__ = (
        "_bind_plan",
        "_compiled",
        "_converters",
        "_defaults",
        "_described",
        "_dialect",
        "_expanding",
        "_extracted_plan",
        "_multi_keys",
        "_shape",
        "binds_rows_directly",
        "is_insert",
        "names",
        "result_columns",
        "returning",
        "sql",
    )

    def __init__(self, compiled: Compiled, dialect: Dialect) -> None:
        self._compiled = compiled
        self._dialect = dialect
        self.sql: str = compiled.string
        self._shape: tuple[tuple[str, ...], RecordShape] | None = None
        self._described: tuple[typing.Any, RecordShape] | None = None
        # Set when compiled for a set of value names: rows with exactly those names are
        # bound by `row_args`/`rows_args` (see `takes_rows_like`).
        self.binds_rows_directly = False
        if isinstance(compiled, SQLCompiler):
            processors = compat.bind_processors(compiled)
            self._bind_plan: tuple[tuple[str, Converter | None], ...] = tuple(
                (name, processors.get(name)) for name in (compiled.positiontup or ())
            )
            self._expanding = bool(compiled.post_compile_params or compiled.literal_execute_params)
            self.result_columns: list[ResultColumnsEntry] = compat.result_columns(compiled)
            self.is_insert: bool = bool(compiled.isinsert) or _starts_insert(self.sql)
            self.returning = bool(compiled.effective_returning)
            # Python-side column defaults (`default=`, `onupdate=`) SQLAlchemy leaves to the
            # execution: computed here, per execution, as SQLAlchemy's engine would.
            self._defaults: tuple[tuple[str, typing.Any, typing.Any], ...] = ()
            self._multi_keys: tuple[str, ...] | None = None
            if compiled.insert_prefetch or compiled.update_prefetch:
                key_of = compat.param_key_getter(compiled)
                self._defaults = tuple(
                    (key_of(column), column, column.default)
                    for column in compiled.insert_prefetch
                    if column.default is not None
                ) + tuple(
                    (key_of(column), column, column.onupdate)
                    for column in compiled.update_prefetch
                    if column.onupdate is not None
                )
                self._multi_keys = compat.multi_values_keys(compiled)
        else:  # DDL: plain text, no parameters
            self._bind_plan = ()
            self._defaults = ()
            self._multi_keys = None
            self._expanding = False
            self.result_columns = []
            self.is_insert = False
            self.returning = False
        # The parameter names in the order the SQL takes them.
        self.names: tuple[str, ...] = tuple(name for name, _ in self._bind_plan)
        self._converters: dict[str, Converter] = {
            name: convert for name, convert in self._bind_plan if convert is not None
        }
        self._extracted_plan = self._plan_extracted()

    def _plan_extracted(self) -> tuple[tuple[int, Converter | None], ...] | None:
        """Where each parameter's value is in the bind parameters a statement with the same
        cache key yields (its `compat.cache_key(...).bindparams`), with its converter.

        `bind()` then reads the values straight from those, as SQLAlchemy's
        `construct_params()` would: by position in the cache key, `.value` of each. Only
        when that is all it would do: every parameter comes from the cache key, none is
        required, computed by a callable, expanded, escaped or filled by a default.
        """
        compiled = self._compiled
        if not isinstance(compiled, SQLCompiler) or self._expanding or self._defaults:
            return None
        position_of = compat.cache_key_positions(compiled)
        if position_of is None or compiled.escaped_bind_names:
            return None
        index_of_name: dict[str, int] = {}
        for bind, name in compiled.bind_names.items():
            index = position_of.get(bind)
            if index is None or bind.required or bind.callable:
                return None
            index_of_name[name] = index
        if any(name not in index_of_name for name in self.names):
            return None
        return tuple((index_of_name[name], convert) for name, convert in self._bind_plan)

    def takes_rows_like(self, row: Values) -> bool:
        """Whether rows with these keys supply every parameter, and nothing else does.

        Then `rows_args` binds them straight, without SQLAlchemy's parameter assembly: no
        literal values in the statement, no defaults to compute, no expanding IN lists.
        """
        return (
            isinstance(self._compiled, SQLCompiler)
            and not self._expanding
            and not self._defaults
            and len(self._bind_plan) == len(row)
            and all(name in row for name, _ in self._bind_plan)
        )

    def row_args(self, row: Values) -> Args:
        """The arguments of one row that `takes_rows_like` accepts."""
        return tuple(
            [
                row[name] if convert is None else convert(row[name])
                for name, convert in self._bind_plan
            ]
        )

    def rows_args(self, rows: typing.Sequence[Values]) -> list[Args]:
        """The arguments of rows that `takes_rows_like` accepts, converted column by
        column (C-level loops do most of the work)."""
        names = self.names
        if not names:
            return [()] * len(rows)
        get = operator.itemgetter(*names)
        if len(names) == 1:
            args: list[Args] = [(value,) for value in map(get, rows)]
        else:
            args = list(map(get, rows))
        converters = [
            (index, convert) for index, (_, convert) in enumerate(self._bind_plan) if convert
        ]
        if not converters:
            return args
        columns = list(zip(*args))
        for index, convert in converters:
            bind_column = getattr(convert, "bind_column", None)
            if bind_column is not None:
                columns[index] = bind_column(columns[index])
            else:
                columns[index] = tuple(map(convert, columns[index]))
        return list(zip(*columns))

    def bind(self, extracted: typing.Any = None, params: typing.Any = None) -> tuple[str, Args]:
        """The SQL text and positional arguments for one execution."""
        plan = self._extracted_plan
        if plan is not None and extracted is not None and params is None:
            return self.sql, tuple(
                [
                    extracted[index].value if convert is None else convert(extracted[index].value)
                    for index, convert in plan
                ]
            )
        return self._bind_constructed(extracted, params)

    def _bind_constructed(
        self, extracted: typing.Any = None, params: typing.Any = None
    ) -> tuple[str, Args]:
        """`bind()` by SQLAlchemy's `construct_params()`."""
        compiled = self._compiled
        if not isinstance(compiled, SQLCompiler):
            return self.sql, ()
        values = compiled.construct_params(params=params, extracted_parameters=extracted)
        if self._defaults:
            self._fill_defaults(values)
        if not self._expanding:
            return self.sql, tuple(
                values[name] if convert is None else convert(values[name])
                for name, convert in self._bind_plan
            )
        expanded = compiled.construct_expanded_state(values)
        # The expanded state converts only the parameters it expanded (`id_1_1`, ...);
        # the others keep their own processors, as SQLAlchemy's execution context merges.
        processors: typing.Mapping[str, typing.Any] = expanded.processors
        own = self._converters
        parameters = expanded.parameters
        args = []
        for name in expanded.positiontup or ():
            convert = processors.get(name) or own.get(name)
            value = parameters[name]
            args.append(value if convert is None else convert(value))
        return expanded.statement, tuple(args)

    def _fill_defaults(self, values: typing.MutableMapping[str, typing.Any]) -> None:
        context = _DefaultContext(values, self._multi_keys)
        for key, column, default in self._defaults:
            if key in values and values[key] is not None:
                continue
            if default.is_scalar:
                values[key] = default.arg
            elif default.is_callable:
                context.current_column = column
                values[key] = default.arg(context)

    def shape_of(self, description: typing.Any) -> RecordShape:
        """The row shape for a DB-API cursor description (name, type code, ...).

        The whole description is compared with the last one (in C) before any names are
        taken out of it: a statement nearly always describes its columns the same way.
        """
        described = self._described
        if described is not None and described[0] == description:
            return described[1]
        columns = description or ()
        shape = self.shape(
            tuple(column[0] for column in columns), tuple(column[1] for column in columns)
        )
        self._described = (description, shape)
        return shape

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


def _add_to_groups(
    groups: list[tuple[CompiledStatement, str, list[Args]]],
    statement: CompiledStatement,
    sql: str,
    args: list[Args],
) -> None:
    """Extend the last group when the SQL is the same, else start a new one."""
    if groups and groups[-1][0] is statement and groups[-1][1] == sql:
        groups[-1][2].extend(args)
    else:
        groups.append((statement, sql, args))


def _log_groups(groups: list[tuple[CompiledStatement, str, list[Args]]]) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        for _, sql, rows in groups:
            logger.debug("Query: %s Args: %d rows", sql, len(rows), extra=LOG_EXTRA)


class QueryCompiler:
    """A bounded cache of compiled statements for one dialect, shared by all event loops."""

    def __init__(self, dialect: Dialect, max_size: int = 512) -> None:
        self.dialect = dialect
        self._max_size = max_size
        self._cache: dict[typing.Any, CompiledStatement] = {}
        # Simple selects by `simple_select_key`, with the objects whose identity the key
        # holds, kept alive with the entry so that no other object can take their id.
        self._simple: dict[Key, tuple[CompiledStatement, tuple[typing.Any, ...]]] = {}
        self._lock = threading.Lock()
        self._value_processors: dict[type, Converter | None] = {}

    def _cached(
        self, key: typing.Any, make: typing.Callable[[], CompiledStatement]
    ) -> CompiledStatement:
        statement = self._cache.get(key)
        if statement is None:
            statement = make()
            self._store(self._cache, key, statement)
        return statement

    def _store(
        self, cache: dict[typing.Any, typing.Any], key: typing.Any, value: typing.Any
    ) -> None:
        """Add to a bounded cache, evicting the oldest entry (dicts keep insertion order)."""
        with self._lock:
            if len(cache) >= self._max_size:
                cache.pop(next(iter(cache)), None)
            cache[key] = value

    def _compile_text(self, sql: str) -> CompiledStatement:
        return self._cached(
            ("text", sql),
            lambda: CompiledStatement(text(sql).compile(dialect=self.dialect), self.dialect),
        )

    def _value_processor(self, value: typing.Any) -> Converter | None:
        """How a raw query's value is bound: as the type its Python type implies (as
        `bindparams`), remembered per Python type."""
        process = compat.bind_processor(literal(value).type, self.dialect)
        self._value_processors[type(value)] = process
        return process

    def _raw_args(self, statement: CompiledStatement, values: Values | None) -> Args:
        names = statement.names
        if values is None:
            values = {}
        processors = self._value_processors
        converted = []
        try:
            for name in names:
                value = values[name]
                process = processors.get(type(value), _UNKNOWN)
                if process is _UNKNOWN:
                    process = self._value_processor(value)
                converted.append(value if process is None else process(value))
        except KeyError as missing:
            raise exc.InvalidRequestError(
                f"A value is required for bind parameter {missing.args[0]!r}"
            ) from None
        if len(values) > len(names):
            unknown = sorted(set(values) - set(names))
            if unknown:
                raise exc.ArgumentError(
                    f"This text() construct doesn't define a bound parameter named {unknown[0]!r}"
                )
        return tuple(converted)

    def compile(self, query: ClauseElement) -> tuple[CompiledStatement, typing.Any, Values | None]:
        """The compiled statement for `query`, the literal values to run it with, and the
        values `query.params()` set when SQLAlchemy keeps them apart (2.1)."""
        simple = simple_select_key(query)
        if simple is not None:
            found = self._simple.get(simple[0])
            if found is not None:
                return found[0], simple[1], None
        cache_key = compat.cache_key(query)
        if cache_key is None:
            compiled = query.compile(dialect=self.dialect)
            return CompiledStatement(compiled, self.dialect), None, None
        statement = self._cached(
            cache_key.key,
            lambda: CompiledStatement(
                query.compile(dialect=self.dialect, cache_key=cache_key), self.dialect
            ),
        )
        if simple is not None:
            self._remember_simple(simple, statement, cache_key.bindparams)
        return statement, cache_key.bindparams, compat.key_params(cache_key)

    def _remember_simple(
        self,
        simple: tuple[Key, list[typing.Any], tuple[typing.Any, ...]],
        statement: CompiledStatement,
        extracted: typing.Sequence[typing.Any],
    ) -> None:
        """File `statement` under the simple key too, once SQLAlchemy's own extraction has
        been seen to give the same bind parameters in the same order."""
        key, binds, anchors = simple
        if len(binds) != len(extracted) or any(a is not b for a, b in zip(binds, extracted)):
            return
        self._store(self._simple, key, (statement, anchors))

    def prepare(self, query: Statement) -> tuple[CompiledStatement, str, Args]:
        """Compile (or reuse) and bind: what a driver needs to run `query`."""
        if isinstance(query, QueryValues):
            statement, sql, args = self._prepare_values(query.query, query.values)
        else:
            statement, extracted, params = self.compile(query)
            sql, args = statement.bind(extracted, params)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("Query: %s Args: %s", sql, args, extra=LOG_EXTRA)
        return statement, sql, args

    def prepare_many(
        self, queries: typing.Sequence[ClauseElement]
    ) -> list[tuple[CompiledStatement, str, list[Args]]]:
        """Group consecutive queries that compile alike, for the driver's executemany."""
        groups: list[tuple[CompiledStatement, str, list[Args]]] = []
        for query in queries:
            statement, extracted, params = self.compile(query)
            sql, args = statement.bind(extracted, params)
            _add_to_groups(groups, statement, sql, [args])
        _log_groups(groups)
        return groups

    def _prepare_values(
        self, query: ClauseElement | str, values: Values
    ) -> tuple[CompiledStatement, str, Args]:
        if isinstance(query, str):
            statement = self._compile_text(query)
            return statement, statement.sql, self._raw_args(statement, values)
        cache_key = compat.cache_key(query)
        statement = self._compile_with_keys(query, cache_key, tuple(values), many=False)
        extracted = cache_key.bindparams if cache_key is not None else None
        if not extracted and statement.binds_rows_directly:
            return statement, statement.sql, statement.row_args(values)
        sql, args = statement.bind(extracted, values)
        return statement, sql, args

    def prepare_values(
        self, query: ClauseElement | str, rows: typing.Sequence[Values]
    ) -> list[tuple[CompiledStatement, str, list[Args]]]:
        """One compiled statement per run of rows with the same keys, for executemany.

        A clause is compiled once with the rows' keys as its parameters (as SQLAlchemy
        does for executemany), instead of once per row as `query.values(**row)`.
        """
        groups: list[tuple[CompiledStatement, str, list[Args]]] = []
        if isinstance(query, str):
            statement = self._compile_text(query)
            groups.append(
                (statement, statement.sql, [self._raw_args(statement, row) for row in rows])
            )
        else:
            cache_key = compat.cache_key(query)
            extracted = cache_key.bindparams if cache_key is not None else None
            # Runs of consecutive rows with the same keys share a compiled statement.
            for keys, run in itertools.groupby(rows, tuple):
                same_keys = list(run)
                statement = self._compile_with_keys(query, cache_key, keys, many=True)
                if not extracted and statement.binds_rows_directly:
                    _add_to_groups(groups, statement, statement.sql, statement.rows_args(same_keys))
                    continue
                for row in same_keys:
                    sql, args = statement.bind(extracted, row)
                    _add_to_groups(groups, statement, sql, [args])
        _log_groups(groups)
        return groups

    def _compile_with_keys(
        self, query: ClauseElement, cache_key: typing.Any, keys: tuple[str, ...], many: bool
    ) -> CompiledStatement:
        """`query` compiled to take `keys` as parameters, as SQLAlchemy's engine compiles
        a statement executed with parameters (`for_executemany` drops implicit RETURNING)."""

        def make() -> CompiledStatement:
            table = getattr(query, "table", None)
            columns = getattr(table, "c", None)
            if columns is not None:
                unknown = sorted(set(keys) - set(columns.keys()))
                if unknown:
                    # As `.values(**values)` refuses them: a misspelt key is not dropped.
                    raise exc.CompileError(f"Unconsumed column names: {', '.join(unknown)}")
            compiled = query.compile(
                dialect=self.dialect,
                cache_key=cache_key,
                column_keys=sorted(keys),
                for_executemany=many,
            )
            statement = CompiledStatement(compiled, self.dialect)
            statement.binds_rows_directly = statement.takes_rows_like(dict.fromkeys(keys))
            return statement

        if cache_key is None:
            return make()
        return self._cached(("keys", many, cache_key.key, frozenset(keys)), make)
