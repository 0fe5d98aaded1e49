"""The identity-based cache key of simple selects gives exactly SQLAlchemy's SQL and values.

Each statement is compiled by a compiler that has already seen a structurally equal one
(so the second goes through `simple_select_key` when it qualifies), and compared with the
statement compiled on its own under SQLAlchemy's cache key.
"""

from __future__ import annotations

import gc
import typing
import weakref

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from databases.backends.common import simple_select
from databases.backends.common.compiler import CompiledStatement, QueryCompiler
from tests.settings import backend_dialects, needs_fast_path

metadata = sa.MetaData()
people = sa.Table(
    "people",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50)),
    sa.Column("score", sa.Float),
    sa.Column("joined", sa.DateTime),
)
pets = sa.Table(
    "pets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("owner_id", sa.Integer),
    sa.Column("name", sa.String(50)),
)

DIALECTS = backend_dialects()

Build = typing.Callable[[typing.Any], typing.Any]

# Statements the simple key accepts, each built from a value (two values: two statements).
SIMPLE: dict[str, Build] = {
    "table by id": lambda v: sa.select(people).where(people.c.id == v),
    "table.select()": lambda v: people.select().where(people.c.id == v),
    "one column": lambda v: sa.select(people.c.score).where(people.c.id == v),
    "columns, two criteria": lambda v: (
        sa.select(people.c.id, people.c.name).where(people.c.id > v).where(people.c.name != "x")
    ),
    "one where with two criteria": lambda v: (
        sa.select(people).where(people.c.id >= v, people.c.score < v * 1.5)
    ),
    "no where": lambda v: sa.select(people),
    "two tables' columns": lambda v: sa.select(people.c.id, pets.c.name).where(pets.c.id == v),
    "string value": lambda v: sa.select(people).where(people.c.name == f"name {v}"),
    "reversed comparison": lambda v: sa.select(people).where(v == people.c.id),
    "order_by": lambda v: sa.select(people).where(people.c.id == v).order_by(people.c.id),
    "order_by desc, asc": lambda v: (
        sa.select(people).order_by(people.c.score.desc(), people.c.name.asc()).limit(v)
    ),
    "limit": lambda v: sa.select(people).where(people.c.id > v).limit(3),
    "offset": lambda v: sa.select(people).offset(v),
    "limit and offset": lambda v: (
        sa.select(people.c.name).where(people.c.id > v).order_by(people.c.id).limit(v).offset(v)
    ),
    "label style": lambda v: (
        sa.select(people).where(people.c.id == v).set_label_style(sa.LABEL_STYLE_TABLENAME_PLUS_COL)
    ),
}

# Statements it refuses (SQLAlchemy's own cache key then applies).
NOT_SIMPLE: dict[str, Build] = {
    "order_by nulls_last": lambda v: (
        sa.select(people).where(people.c.id > v).order_by(people.c.name.desc().nulls_last())
    ),
    "order_by a label": lambda v: (
        sa.select(people.c.name.label("who")).where(people.c.id > v).order_by("who")
    ),
    "order_by an expression": lambda v: sa.select(people).order_by(people.c.id + v),
    "fetch": lambda v: sa.select(people).order_by(people.c.id).fetch(v),
    "limit from an expression": lambda v: sa.select(people).limit(sa.literal(v) + 1),
    "distinct": lambda v: sa.select(people.c.name).where(people.c.id == v).distinct(),
    "join": lambda v: (
        sa.select(people).join(pets, pets.c.owner_id == people.c.id).where(pets.c.id == v)
    ),
    "group_by": lambda v: sa.select(people.c.name).where(people.c.id > v).group_by(people.c.name),
    "and_": lambda v: sa.select(people).where(sa.and_(people.c.id == v, people.c.name == "x")),
    "or_": lambda v: sa.select(people).where(sa.or_(people.c.id == v, people.c.name == "x")),
    "in_": lambda v: sa.select(people).where(people.c.id.in_([v, v + 1])),
    "like": lambda v: sa.select(people).where(people.c.name.like(f"{v}%")),
    "is None": lambda v: sa.select(people).where(people.c.name == None),  # noqa: E711
    "named bindparam": lambda v: sa.select(people).where(
        people.c.id == sa.bindparam("wanted", value=v)
    ),
    "literal of another type": lambda v: sa.select(people).where(
        people.c.name == sa.literal(v, sa.Integer)
    ),
    "int compared with a float column": lambda v: sa.select(people).where(people.c.score == v),
    "column against column": lambda v: sa.select(people).where(people.c.id == people.c.score),
    "alias": lambda v: sa.select(people.alias("p")).where(people.alias("p").c.id == v),
    "lightweight table": lambda v: sa.select(sa.table("people", sa.column("id"))).where(
        sa.column("id") == v
    ),
    "function column": lambda v: sa.select(sa.func.count()).select_from(people),
    "label": lambda v: sa.select(people.c.name.label("who")).where(people.c.id == v),
    "for update": lambda v: sa.select(people).where(people.c.id == v).with_for_update(),
}


def reference(dialect: typing.Any, query: typing.Any) -> tuple[str, tuple[typing.Any, ...]]:
    """The statement compiled on its own under SQLAlchemy's cache key."""
    cache_key = query._generate_cache_key()
    compiled = query.compile(dialect=dialect, cache_key=cache_key)
    return CompiledStatement(compiled, dialect).bind(cache_key.bindparams)


def prepared(compiler: QueryCompiler, query: typing.Any) -> tuple[str, tuple[typing.Any, ...]]:
    _, sql, args = compiler.prepare(query)
    return sql, args


@needs_fast_path("simple_select")
@pytest.mark.parametrize("dialect_name", sorted(DIALECTS))
@pytest.mark.parametrize("name", sorted(SIMPLE))
def test_simple_selects_compile_as_sqlalchemy_does(dialect_name: str, name: str) -> None:
    dialect = DIALECTS[dialect_name]
    build = SIMPLE[name]
    first, second = build(1), build(2)
    assert simple_select.simple_select_key(first) is not None
    compiler = QueryCompiler(dialect)
    assert prepared(compiler, first) == reference(dialect, build(1))
    assert len(compiler._simple) == 1
    assert prepared(compiler, second) == reference(dialect, build(2))
    # The second was found by its simple key: SQLAlchemy's was never computed for it.
    assert "_generate_cache_key" not in second.__dict__


@pytest.mark.parametrize("dialect_name", sorted(DIALECTS))
@pytest.mark.parametrize("name", sorted(NOT_SIMPLE))
def test_other_selects_take_sqlalchemys_cache_key(dialect_name: str, name: str) -> None:
    dialect = DIALECTS[dialect_name]
    build = NOT_SIMPLE[name]
    first, second = build(1), build(2)
    assert simple_select.simple_select_key(first) is None
    compiler = QueryCompiler(dialect)
    assert prepared(compiler, first) == reference(dialect, build(1))
    assert prepared(compiler, second) == reference(dialect, build(2))
    assert compiler._simple == {}


@needs_fast_path("simple_select")
@pytest.mark.parametrize("dialect_name", sorted(DIALECTS))
def test_statements_differing_in_any_accepted_part_get_their_own_sql(dialect_name: str) -> None:
    """Every part the key is made of: columns, table, compared column, operator, label
    style, number of criteria, ordering, limit and offset. One compiler sees them all;
    each gets its own SQL (and values)."""
    dialect = DIALECTS[dialect_name]
    variants = [
        sa.select(people).where(people.c.id == 1),
        sa.select(pets).where(pets.c.id == 1),
        sa.select(people.c.id).where(people.c.id == 1),
        sa.select(people.c.name).where(people.c.id == 1),
        sa.select(people).where(people.c.score == 1.5),
        sa.select(people).where(people.c.id != 1),
        sa.select(people).where(people.c.id < 1),
        sa.select(people).where(people.c.id <= 1),
        sa.select(people).where(people.c.id > 1),
        sa.select(people).where(people.c.id >= 1),
        sa.select(people).where(people.c.id == 1).where(people.c.id == 2),
        sa.select(people),
        sa.select(people.c.id, people.c.name),
        sa.select(people.c.name, people.c.id),
        sa.select(people).set_label_style(sa.LABEL_STYLE_TABLENAME_PLUS_COL),
        sa.select(people).order_by(people.c.id),
        sa.select(people).order_by(people.c.id.desc()),
        sa.select(people).order_by(people.c.id.asc()),
        sa.select(people).order_by(people.c.name),
        sa.select(people).order_by(people.c.id, people.c.name),
        sa.select(people).limit(1),
        sa.select(people).offset(1),
        sa.select(people).limit(1).offset(1),
        sa.select(people).where(people.c.id == 1).limit(1),
    ]
    compiler = QueryCompiler(dialect)
    for query in variants:
        prepared(compiler, query)
    seen = set()
    for query in variants:
        result = prepared(compiler, query)
        assert result == reference(dialect, query)
        # SQLite writes OFFSET alone as `LIMIT ? OFFSET ?`: compare SQL with values.
        seen.add(result)
    assert len(seen) == len(variants)
    assert len(compiler._simple) == len(variants)


@needs_fast_path("simple_select")
@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect(), mysql.dialect()])
def test_cached_entries_keep_the_objects_of_their_key_alive(dialect: typing.Any) -> None:
    """The key holds object ids: the entry must keep those objects alive, or another
    object could take a dead one's id and find its SQL."""
    compiler = QueryCompiler(dialect)

    def compile_with_a_short_lived_table() -> weakref.ref[sa.Table]:
        table = sa.Table("short", sa.MetaData(), sa.Column("id", sa.Integer))
        compiler.prepare(sa.select(table).where(table.c.id == 1))
        return weakref.ref(table)

    table_ref = compile_with_a_short_lived_table()
    gc.collect()
    assert table_ref() is not None
    compiler._simple.clear()
    compiler._cache.clear()
    gc.collect()
    assert table_ref() is None


@needs_fast_path("simple_select")
def test_a_key_is_trusted_only_when_sqlalchemy_extracts_the_same_parameters() -> None:
    compiler = QueryCompiler(sqlite.dialect())
    query = sa.select(people).where(people.c.id == 1)
    simple = simple_select.simple_select_key(query)
    assert simple is not None
    statement, extracted, _ = compiler.compile(query)
    compiler._simple.clear()
    compiler._remember_simple(simple, statement, list(reversed([*extracted, query])))
    assert compiler._simple == {}
    compiler._remember_simple(simple, statement, extracted)
    assert list(compiler._simple) == [simple[0]]


@needs_fast_path("simple_select")
def test_the_simple_cache_is_bounded() -> None:
    compiler = QueryCompiler(sqlite.dialect(), max_size=4)
    tables = [sa.Table(f"t{n}", sa.MetaData(), sa.Column("id", sa.Integer)) for n in range(10)]
    for table in tables:
        compiler.prepare(sa.select(table).where(table.c.id == 1))
    assert len(compiler._simple) == 4
