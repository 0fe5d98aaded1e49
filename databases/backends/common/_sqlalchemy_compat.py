"""Every use of SQLAlchemy's private API, in one place, each probed once at import.

What makes a statement cheap to run again lives on private attributes: the cache key, the
compiled statement's bind processors and result columns, the match of its bind parameters
with the cache key's, what a select's cache key is made of. Another SQLAlchemy release may
change any of them. So each fast path is tried at import on small statements and compared
with what the public API gives; one that fails is off, `FAST_PATHS[name]` says why (one
debug line on the "databases" logger too), and the public API serves instead: slower,
never a different result.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import re
import typing
import warnings

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    bindparam,
    column,
    exc,
    insert,
    select,
)
from sqlalchemy.dialects.sqlite import base as sqlite_types
from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import operators, sqltypes
from sqlalchemy.sql.compiler import ResultColumnsEntry, SQLCompiler
from sqlalchemy.sql.elements import BinaryExpression, BindParameter, UnaryExpression
from sqlalchemy.sql.selectable import Select
from sqlalchemy.types import TypeEngine

from databases._logging import logger
from databases.backends.common._driver import Converter

# name -> None when the fast path is on, else why it is off.
FAST_PATHS: dict[str, str | None] = {}

OffsetLimitParam: typing.Any  # the class of `limit()`/`offset()` values
try:
    from sqlalchemy.sql.selectable import _OffsetLimitParam as OffsetLimitParam
except ImportError:  # pragma: no cover - another SQLAlchemy; the simple-select probe fails
    OffsetLimitParam = BindParameter


def _on(name: str) -> bool:
    return FAST_PATHS.get(name) is None


# -- the cache key ("statement_cache") ------------------------------------------------------

# A warnings filter for SQLAlchemy's "will not cache" warnings (a `TypeDecorator` without
# `cache_ok`, a custom construct without `inherit_cache`), which it repeats for every
# statement: such a statement is compiled afresh each time, as databases 0.9 compiled every
# statement, which is nothing to tell the caller of a query about.
_NO_CACHE_WARNING = (
    "ignore",
    re.compile(r".*(will not produce a cache key|will not make use of SQL compilation caching)"),
    exc.SAWarning,
    None,
    0,
)


def cache_key(query: typing.Any) -> typing.Any:
    """SQLAlchemy's cache key of `query` (its `.key`, `.bindparams`), or None when the
    statement cannot be cached, without SQLAlchemy's warning about it."""
    if FAST_PATHS["statement_cache"] is not None:
        return None
    if "_generate_cache_key" in getattr(query, "__dict__", ()):
        return query._generate_cache_key()  # memoized by SQLAlchemy: no walk, no warning
    filters: typing.Any = warnings.filters
    # Not `catch_warnings()`: that costs more than a cached query, and its filters reset
    # lets every "once" warning through again. The entry is first for the call only.
    filters.insert(0, _NO_CACHE_WARNING)
    try:
        return query._generate_cache_key()
    finally:
        # Gone only if another thread replaced the filter list meanwhile.
        with contextlib.suppress(ValueError):
            filters.remove(_NO_CACHE_WARNING)


def key_params(key: typing.Any) -> typing.Mapping[str, typing.Any] | None:
    """The values `statement.params(...)` set, which SQLAlchemy 2.1 keeps with the cache
    key instead of in the bind parameters (2.0 has no such field: None)."""
    return getattr(key, "params", None) or None


def _probe_statement_cache() -> str | None:
    table = _sample_table()
    key = select(table).where(table.c.id == 5)._generate_cache_key()
    if key is None or not isinstance(key.key, tuple):
        return "a select has no cache key tuple"
    if [bind.value for bind in key.bindparams] != [5]:
        return "the cache key does not carry the statement's bind parameters"
    return None


# -- type processors ("type_processors") ----------------------------------------------------


def bind_processor(type_: TypeEngine[typing.Any], dialect: Dialect) -> Converter | None:
    """How a value of this type is bound for this dialect (memoized by SQLAlchemy)."""
    if _on("type_processors"):
        return type_._cached_bind_processor(dialect)
    return type_.dialect_impl(dialect).bind_processor(dialect)


def result_processor(
    type_: TypeEngine[typing.Any], dialect: Dialect, coltype: typing.Any
) -> Converter | None:
    """How a result value of this type is converted for this dialect (memoized by
    SQLAlchemy per driver type code)."""
    if _on("type_processors"):
        return type_._cached_result_processor(dialect, coltype)
    return type_.dialect_impl(dialect).result_processor(dialect, coltype)


def _probe_type_processors() -> str | None:
    dialect = _sample_dialect()
    moment = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456)
    text = "2024-05-06 07:08:09.123456"
    samples: tuple[tuple[typing.Any, typing.Any, str], ...] = (
        (DateTime(), moment, text),
        (JSON(), {"a": [1]}, '{"a": [1]}'),
    )
    for type_, value, stored in samples:
        impl = type_.dialect_impl(dialect)
        bind = type_._cached_bind_processor(dialect)
        public_bind = impl.bind_processor(dialect)
        result = type_._cached_result_processor(dialect, None)
        public_result = impl.result_processor(dialect, None)
        if bind is None or public_bind is None or bind(value) != public_bind(value):
            return f"{type_!r} binds unlike its dialect_impl().bind_processor()"
        if result is None or public_result is None or result(stored) != public_result(stored):
            return f"{type_!r} converts results unlike its dialect_impl().result_processor()"
    return None


# -- a compiled statement's parts ("compiled_parts") ----------------------------------------


def bind_processors(compiled: SQLCompiler) -> typing.Mapping[str, typing.Any]:
    """The bind processor of each parameter that has one, by parameter name."""
    if _on("compiled_parts"):
        processors: typing.Mapping[str, typing.Any] = compiled._bind_processors
        return processors
    return _public_bind_processors(compiled)


def _public_bind_processors(compiled: SQLCompiler) -> dict[str, typing.Any]:
    dialect = compiled.dialect
    found: dict[str, typing.Any] = {}
    for parameter, name in compiled.bind_names.items():
        if parameter in compiled.literal_execute_params:
            continue
        if isinstance(parameter.type, sqltypes.TupleType):
            found[name] = tuple(bind_processor(kind, dialect) for kind in parameter.type.types)
            continue
        process = bind_processor(parameter.type, dialect)
        if process is not None:
            found[name] = process
    return found


def result_columns(compiled: SQLCompiler) -> list[ResultColumnsEntry]:
    """What SQLAlchemy knows of each result column: key name, objects and type."""
    if _on("compiled_parts"):
        return list(compiled._result_columns)
    return _public_result_columns(compiled)


def _public_result_columns(compiled: SQLCompiler) -> list[ResultColumnsEntry]:
    """The statement's exported (or returned) columns; an empty key name lets the row
    take the name the driver reports."""
    statement = compiled.statement
    columns: typing.Sequence[typing.Any] = compiled.effective_returning or ()
    if not columns:
        columns = list(getattr(statement, "exported_columns", ()))
    return [ResultColumnsEntry("", "", (column,), column.type) for column in columns]


def param_key_getter(compiled: SQLCompiler) -> typing.Callable[[typing.Any], str]:
    """The parameter name an INSERT/UPDATE gives a column's value."""
    if _on("compiled_parts"):
        getter: typing.Callable[[typing.Any], str] = compiled._within_exec_param_key_getter
        return getter
    return _public_param_key_getter(compiled)


def _public_param_key_getter(compiled: SQLCompiler) -> typing.Callable[[typing.Any], str]:
    names = compiled.binds

    def key_of(column: typing.Any) -> str:
        # A column of another table than the statement's (multi-table UPDATE) is
        # prefixed with its table's name.
        if column.key in names:
            return str(column.key)
        return f"{column.table.name}_{column.key}"

    return key_of


def _probe_compiled_parts() -> str | None:
    dialect = _sample_dialect()
    table = _sample_table()
    query = select(table.c.id, table.c.data).where(table.c.stamp > bindparam("since", DateTime))
    compiled: typing.Any = query.compile(dialect=dialect)
    private = dict(compiled._bind_processors)
    public = _public_bind_processors(compiled)
    if private.keys() != public.keys():
        return f"bind processors for {sorted(private)}, expected {sorted(public)}"
    columns = compiled._result_columns
    expected = _public_result_columns(compiled)
    if [entry.keyname for entry in columns] != ["id", "data"] or [
        entry.type for entry in columns
    ] != [entry.type for entry in expected]:
        return "result columns unlike the statement's selected columns"
    if any(table.c.id not in entry.objects for entry in columns[:1]):
        return "a result column does not list its Column object"
    inserting: typing.Any = insert(table).compile(dialect=dialect, column_keys=["id"])
    key_of = inserting._within_exec_param_key_getter
    public_key_of = _public_param_key_getter(inserting)
    keys = [key_of(column) for column in inserting.insert_prefetch]
    if keys != ["stamp", "amount"] or keys != list(map(public_key_of, inserting.insert_prefetch)):
        return f"an INSERT's column defaults are named {keys}, not by their column keys"
    return None


# -- binding from the cache key ("bind_plan") -----------------------------------------------


def cache_key_positions(compiled: SQLCompiler) -> dict[typing.Any, int] | None:
    """For a statement compiled under a cache key: each of its bind parameters -> the
    position of the one standing for it in the bind parameters of any statement with the
    same key (`cache_key(...).bindparams`). None when it cannot be told."""
    if not _on("bind_plan"):
        return None
    key = getattr(compiled, "cache_key", None)
    matches = getattr(compiled, "_cache_key_bind_match", None)
    if key is None or matches is None or key_params(key):
        return None
    return {
        bind: index
        for index, original in enumerate(key.bindparams)
        for bind in matches[0].get(original, ())
    }


def _probe_bind_plan() -> str | None:
    dialect = _sample_dialect()
    table = _sample_table()

    def build(number: int, name: str) -> Select[typing.Any]:
        return select(table).where(table.c.id == number, table.c.name == name)

    first = build(1, "a")
    key: typing.Any = first._generate_cache_key()
    compiled: typing.Any = first.compile(dialect=dialect, cache_key=key)
    if getattr(compiled, "cache_key", None) is not key:
        return "a compiled statement does not keep its cache key"
    positions = cache_key_positions(compiled)
    if positions is None:
        return "a compiled statement has no cache-key bind match"
    other: typing.Any = build(2, "b")._generate_cache_key()
    expected = compiled.construct_params(extracted_parameters=other.bindparams)
    found = {
        name: other.bindparams[positions[bind]].value for bind, name in compiled.bind_names.items()
    }
    if found != expected:
        return f"values by cache-key position {found} differ from construct_params() {expected}"
    return None


# -- a simple select's parts ("simple_select") ----------------------------------------------

# What a select's cache key is made of, in the releases whose statement classes have been
# reviewed for `simple_select`: every attribute it does not read stays at its class default
# unless a generative method sets it on the statement, which `select_parts` refuses.
_SELECT_2_0 = (
    "_raw_columns",
    "_memoized_select_entities",
    "_from_obj",
    "_where_criteria",
    "_having_criteria",
    "_order_by_clauses",
    "_group_by_clauses",
    "_setup_joins",
    "_correlate",
    "_correlate_except",
    "_limit_clause",
    "_offset_clause",
    "_fetch_clause",
    "_fetch_clause_options",
    "_for_update_arg",
    "_distinct",
    "_distinct_on",
    "_label_style",
    "_independent_ctes",
    "_independent_ctes_opts",
    "_prefixes",
    "_suffixes",
    "_statement_hints",
    "_hints",
    "_annotations",
    "_with_options",
    "_with_context_options",
    "_propagate_attrs",
    "dialect_options",
)
# 2.1 adds correlation mode (a property of `_auto_correlate` and `_correlate_except`),
# clause hooks, compile-state functions and `.params()` values: all set on the statement
# when used.
_SELECT_2_1 = (
    *_SELECT_2_0[:10],
    "_correlate_mode",
    *_SELECT_2_0[10:18],
    "_post_select_clause",
    "_pre_columns_clause",
    "_post_criteria_clause",
    "_post_body_clause",
    *_SELECT_2_0[18:26],
    "_compile_state_funcs",
    "_propagate_attrs",
    "_params",
    "dialect_options",
)
_BIND = ("key", "type", "callable", "value", "literal_execute")
REVIEWED_TRAVERSALS: dict[typing.Any, tuple[tuple[str, ...], ...]] = {
    Select: (_SELECT_2_0, _SELECT_2_1),
    BinaryExpression: (("left", "right", "operator", "negate", "modifiers", "type"),),
    BindParameter: (_BIND,),
    OffsetLimitParam: (_BIND,),
    UnaryExpression: (("element", "operator", "modifier"),),
}

# Instance attributes a simple select may carry: its structure, and what SQLAlchemy
# memoizes on it (results of earlier calls, not structure).
_STRUCTURE = frozenset(
    (
        "_raw_columns",
        "_where_criteria",
        "_label_style",
        "_order_by_clauses",
        "_limit_clause",
        "_offset_clause",
        # Set to None by limit() and offset(); checked below.
        "_fetch_clause",
        "_fetch_clause_options",
    )
)
_MEMOIZED = frozenset(
    ("_generate_cache_key", "_memoized_keys", "dialect_options", "_all_selected_columns")
)
DIRECTIONS = frozenset((operators.asc_op, operators.desc_op))


# A simple select's columns, WHERE criteria, ORDER BY clauses, LIMIT, OFFSET, label style
# (a plain tuple: this runs for every statement).
SelectParts = tuple[
    typing.Sequence[typing.Any],
    typing.Sequence[typing.Any],
    typing.Sequence[typing.Any],
    typing.Any,
    typing.Any,
    typing.Any,
]


def select_parts(query: typing.Any) -> SelectParts | None:
    """The parts of an exact `Select` that sets nothing but its columns, WHERE, ORDER BY,
    LIMIT, OFFSET and label style; None for any other statement, or when off."""
    if type(query) is not Select or FAST_PATHS["simple_select"] is not None:
        return None
    attributes = query.__dict__
    if not _STRUCTURE.issuperset(attributes.keys() - _MEMOIZED):
        return None
    if (
        attributes.get("dialect_options")
        or query._fetch_clause is not None
        or query._fetch_clause_options is not None
    ):
        return None
    return (
        query._raw_columns,
        query._where_criteria,
        query._order_by_clauses,
        query._limit_clause,
        query._offset_clause,
        query._label_style,
    )


def plain_table(element: typing.Any) -> bool:
    """A `Table` itself, without annotations (as an ORM entity would add)."""
    return type(element) is Table and not element._annotations


def plain_column(element: typing.Any) -> bool:
    """A `Column` of a `Table`, as `table.c.name` gives it (no alias, no annotations)."""
    return (
        type(element) is Column
        and not element._annotations
        and type(element.table) is Table
        and not element.table._annotations
    )


# Whether a bind parameter's key is anonymous (made from its id, as for a literal value):
# SQLAlchemy 2.1 keeps the key's anonymous part apart, 2.0 flags the key.
_ANONYMOUS_KEY = "_anon_map_key" if hasattr(BindParameter, "_anon_map_key") else None


def literal_bind(element: typing.Any, bind_type: type) -> bool:
    """An anonymous bind parameter holding a plain value (not a callable, not expanded)."""
    anonymous = element._anon_map_key is not None if _ANONYMOUS_KEY else element._key_is_anon
    return bool(
        anonymous
        and type(element.type) is bind_type
        and element.callable is None
        and not element.expanding
        and not element.literal_execute
        and not element.isoutparam
    )


def plain_direction(clause: typing.Any) -> bool:
    """`column.asc()`/`column.desc()` of a plain column, nothing more."""
    return (
        type(clause) is UnaryExpression
        and clause.operator is None
        and clause.modifier in DIRECTIONS
        and not clause._propagate_attrs
        and plain_column(clause.element)
    )


def _traversal(cls: typing.Any) -> tuple[str, ...]:
    return tuple(name for name, _ in getattr(cls, "_traverse_internals", ()))


def _probe_simple_select() -> str | None:
    for cls, reviewed in REVIEWED_TRAVERSALS.items():
        if _traversal(cls) not in reviewed:
            return f"{cls.__name__} traverses {_traversal(cls)}, not a reviewed list"
    table = _sample_table()
    query = select(table).where(table.c.id == 5).order_by(table.c.id.desc()).limit(3).offset(2)
    parts = select_parts(query)
    if parts is None:
        return "a simple select is not recognised"
    columns, where, order_by, limit, offset, label_style = parts
    if list(columns) != [table] or not plain_table(columns[0]):
        return "a select's columns are not its raw columns"
    (criterion,) = where
    binds = [criterion.right, limit, offset]
    if not (
        plain_column(criterion.left)
        and literal_bind(criterion.right, Integer)
        and all(type(bound) is OffsetLimitParam for bound in binds[1:])
        and plain_direction(order_by[0])
    ):
        return "a simple select's parts have another shape"
    key: typing.Any = query._generate_cache_key()
    if list(key.bindparams) != binds:
        return "the cache key extracts other bind parameters, or in another order"
    if query.get_label_style() is not label_style:
        return "the label style is not where it was"
    for changed in (query.correlate(None), query.distinct(), query.params(x=1)):
        if select_parts(changed) is not None:
            return "a select with more than the simple parts is taken as simple"
    return None


# -- numeric scale ("decimal_scale") --------------------------------------------------------

_DEFAULT_DECIMAL_RETURN_SCALE = 10


def decimal_return_scale(type_: typing.Any) -> int:
    """The decimal places a float result keeps when made a `Decimal` for this type."""
    if _on("decimal_scale"):
        scale: int = type_._effective_decimal_return_scale
        return scale
    return _public_decimal_return_scale(type_)


def _public_decimal_return_scale(type_: typing.Any) -> int:
    if type_.decimal_return_scale is not None:
        return int(type_.decimal_return_scale)
    scale = getattr(type_, "scale", None)
    return int(scale) if scale is not None else _DEFAULT_DECIMAL_RETURN_SCALE


def _probe_decimal_scale() -> str | None:
    for type_ in (Numeric(), Numeric(10, 3), Numeric(decimal_return_scale=4), sqltypes.Float()):
        if type_._effective_decimal_return_scale != _public_decimal_return_scale(type_):
            return f"{type_!r} keeps another scale than its public attributes say"
    return None


# -- SQLite DATETIME ("sqlite_datetime") ----------------------------------------------------


def default_sqlite_datetime(impl: typing.Any) -> bool:
    """SQLite's own DATETIME in its default storage format (no custom format or regexp)."""
    return (
        _on("sqlite_datetime")
        and type(impl) is sqlite_types.DATETIME
        and impl._storage_format == sqlite_types.DATETIME._storage_format
        and impl._reg is None
    )


def _probe_sqlite_datetime() -> str | None:
    dialect = _sample_dialect()
    moment = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456)
    plain = DateTime().dialect_impl(dialect)
    custom = sqlite_types.DATETIME(  # type: ignore[no-untyped-call]
        storage_format="%(year)04d%(month)02d%(day)02d"
    )
    if not default_sqlite_datetime(plain) or default_sqlite_datetime(custom):
        return "DATETIME keeps its storage format elsewhere"
    process = plain.bind_processor(dialect)
    if process is None or process(moment) != moment.isoformat(" ", "microseconds"):
        return "the default DATETIME format is not isoformat(' ', 'microseconds')"
    return None


# -- an INSERT of several rows ("multi_values") ---------------------------------------------


def multi_values_keys(compiled: SQLCompiler) -> tuple[str, ...] | None:
    """The value names of each row, for an INSERT of several rows (`.values([...])`); None
    for any other statement, or when off (column defaults then see all rows' values)."""
    if FAST_PATHS["multi_values"] is not None:
        return None
    state = compiled.compile_state
    if not compiled.isinsert or not getattr(state, "_has_multi_parameters", False):
        return None
    return tuple(getattr(state, "_dict_parameters", None) or ())


def later_row_column(column: typing.Any) -> bool:
    """Whether a column default belongs to the second or a later row of such an INSERT
    (SQLAlchemy's stand-in for the column: `.original` the column, `.index` the row - 1)."""
    return bool(getattr(column, "_is_multiparam_column", False))


def _probe_multi_values() -> str | None:
    table = _sample_table()
    rows = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    compiled: typing.Any = insert(table).values(rows).compile(dialect=_sample_dialect())
    if multi_values_keys(compiled) != ("id", "name"):
        return f"an INSERT of two rows names its values {multi_values_keys(compiled)}"
    later = [column for column in compiled.insert_prefetch if later_row_column(column)]
    if [(column.key, column.original.key, column.index) for column in later] != [
        ("stamp_m1", "stamp", 0),
        ("amount_m1", "amount", 0),
    ]:
        return "the second row's column defaults have another shape"
    return None


# -- PostgreSQL string literals ("pg_standard_strings") ------------------------------------


def assume_standard_conforming_strings(dialect: typing.Any) -> None:
    """Have a PostgreSQL dialect write literals (LIKE's ESCAPE '\\') for
    standard_conforming_strings=on, the server's default since 9.1, as 0.9 did: SQLAlchemy
    assumes off until it has asked the server, which a bare asyncpg pool never lets it."""
    if _on("pg_standard_strings"):
        dialect._backslash_escapes = False


def _probe_pg_standard_strings() -> str | None:
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

    dialect = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
    assume_standard_conforming_strings(dialect)
    escaped = column("x").like("a", escape="\\").compile(dialect=dialect)
    if not str(escaped).endswith("ESCAPE '\\'"):
        return f"LIKE's escape is written {str(escaped)!r}, not with one backslash"
    return None


# -- psycopg's adapters (not a fast path: the rows depend on it) -------------------------------


def psycopg_adapters(dialect: Dialect) -> typing.Any:
    """The psycopg adapters map SQLAlchemy's psycopg dialect sets up (JSON with the dialect's
    serializer, inet and cidr as text, ...): connections made with it decode rows as
    SQLAlchemy's own engine does. No public API hands it out, and rows could differ without
    it, so its absence is an error, never a fallback."""
    adapters = getattr(dialect, "_psycopg_adapters_map", None)
    if adapters is None:
        raise RuntimeError(
            f"SQLAlchemy {_sqlalchemy_version()}'s psycopg dialect has no adapters map, which "
            "postgresql+psycopg:// needs to return the rows SQLAlchemy returns: use "
            "postgresql:// (asyncpg), or a SQLAlchemy release this package admits."
        )
    return adapters


# -- probing --------------------------------------------------------------------------------


def _sample_dialect() -> Dialect:
    dialect: Dialect = pysqlite.dialect()
    return dialect


def _sample_table() -> Table:
    return Table(
        "probe",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("name", String(20)),
        Column("data", JSON),
        Column("stamp", DateTime, default=datetime.datetime.now),
        Column("amount", Numeric(10, 2), default=decimal.Decimal("0")),
    )


PROBES: dict[str, typing.Callable[[], str | None]] = {
    "statement_cache": _probe_statement_cache,
    "type_processors": _probe_type_processors,
    "compiled_parts": _probe_compiled_parts,
    "bind_plan": _probe_bind_plan,
    "simple_select": _probe_simple_select,
    "decimal_scale": _probe_decimal_scale,
    "sqlite_datetime": _probe_sqlite_datetime,
    "multi_values": _probe_multi_values,
    "pg_standard_strings": _probe_pg_standard_strings,
}


def probe(name: str) -> str | None:
    """Try one fast path against the installed SQLAlchemy and turn it on or off; the
    reason it is off, or None."""
    FAST_PATHS[name] = None  # probed through the fast path itself
    try:
        reason = PROBES[name]()
    except Exception as error:  # any failure of a private API means: off
        reason = f"{type(error).__name__}: {error}"
    FAST_PATHS[name] = reason
    if reason is not None:
        logger.debug(
            "SQLAlchemy %s: fast path %r is off, the public API serves instead: %s",
            _sqlalchemy_version(),
            name,
            reason,
        )
    return reason


def _sqlalchemy_version() -> str:
    import sqlalchemy

    return str(sqlalchemy.__version__)


for _name in PROBES:
    probe(_name)
