"""Binding from the cache key's bind parameters gives what `construct_params()` gives.

`CompiledStatement.bind()` reads the values of a cached statement straight from the bind
parameters of the statement being run, where SQLAlchemy's `construct_params()` would take
them. Each statement below is built twice with different values; the second is compiled by
a compiler that already holds the first, so its values must come from its own parameters.
"""

from __future__ import annotations

import datetime
import decimal
import typing

import pytest
import sqlalchemy as sa
from sqlalchemy import exc

from databases.backends.common.compiler import QueryCompiler
from tests.settings import backend_dialects, needs_fast_path

metadata = sa.MetaData()
items = sa.Table(
    "items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50)),
    sa.Column("price", sa.Numeric(10, 2)),
    sa.Column("active", sa.Boolean),
    sa.Column("added", sa.DateTime),
    sa.Column("note", sa.String(50), default="none"),
)

DIALECTS = backend_dialects()

Build = typing.Callable[[int], typing.Any]


def _when(v: int) -> datetime.datetime:
    return datetime.datetime(2024, 1, 1, 12, 0, 0, 1000 + v)


# Statements whose values are all literals in the statement: bound from the plan.
PLANNED: dict[str, Build] = {
    "select by id": lambda v: sa.select(items).where(items.c.id == v),
    "several criteria, order, limit": lambda v: (
        sa.select(items)
        .where(items.c.id > v, items.c.name != f"n{v}")
        .order_by(items.c.id)
        .limit(v + 1)
        .offset(v)
    ),
    "typed values": lambda v: sa.select(items.c.id).where(
        items.c.added == _when(v),
        items.c.active == bool(v % 2),
        items.c.price == decimal.Decimal(v) / 4,
    ),
    "like and a function": lambda v: sa.select(sa.func.count())
    .select_from(items)
    .where(items.c.name.like(f"{v}%"), sa.func.lower(items.c.name) != f"x{v}"),
    "one literal used twice": lambda v: (
        lambda b: sa.select(items).where(sa.or_(items.c.id == b, items.c.price == b))
    )(sa.literal(v)),
    "update": lambda v: items.update().where(items.c.id == v).values(name=f"n{v}", note="x"),
    "delete": lambda v: items.delete().where(items.c.id == v),
    "join of aliases": lambda v: (
        lambda a, b: sa.select(a.c.id, b.c.name)
        .join_from(a, b, a.c.id == b.c.id)
        .where(a.c.id < v, b.c.name == f"n{v}")
    )(items.alias("a"), items.alias("b")),
}

# Statements SQLAlchemy assembles itself (defaults, expanding lists, callables, values
# that are not literals of the statement): bound by `construct_params()` as before.
CONSTRUCTED: dict[str, Build] = {
    "insert with a Python default": lambda v: items.insert().values(id=v, name=f"n{v}"),
    "in_ list": lambda v: sa.select(items).where(items.c.id.in_([v, v + 1, v + 2])),
    "callable bind": lambda v: sa.select(items).where(
        items.c.id == sa.bindparam("x", callable_=lambda: v)
    ),
}


def _compiled_twice(dialect: typing.Any, build: Build) -> tuple[typing.Any, typing.Any, typing.Any]:
    compiler = QueryCompiler(dialect)
    compiler.compile(build(3))
    statement, extracted, _ = compiler.compile(build(7))
    return compiler, statement, extracted


@needs_fast_path("bind_plan")
@pytest.mark.parametrize("name", sorted(PLANNED))
@pytest.mark.parametrize("dialect_name", sorted(DIALECTS))
def test_planned_statements_bind_as_construct_params(dialect_name: str, name: str) -> None:
    compiler, statement, extracted = _compiled_twice(DIALECTS[dialect_name], PLANNED[name])
    assert statement._extracted_plan is not None
    assert statement.bind(extracted) == statement._bind_constructed(extracted)
    # The values are this statement's own, not those of the one compiled first.
    first_statement, first_extracted, _ = compiler.compile(PLANNED[name](3))
    assert first_statement is statement
    assert statement.bind(extracted) != statement.bind(first_extracted)


@pytest.mark.parametrize("name", sorted(CONSTRUCTED))
@pytest.mark.parametrize("dialect_name", sorted(DIALECTS))
def test_other_statements_keep_construct_params(dialect_name: str, name: str) -> None:
    compiler, statement, extracted = _compiled_twice(DIALECTS[dialect_name], CONSTRUCTED[name])
    assert statement._extracted_plan is None
    # The values are this statement's own: what a compiler that never saw the first
    # statement binds, and not what the first statement binds.
    fresh_statement, fresh_extracted, _ = QueryCompiler(DIALECTS[dialect_name]).compile(
        CONSTRUCTED[name](7)
    )
    assert fresh_statement is not statement
    assert statement.bind(extracted) == fresh_statement.bind(fresh_extracted)
    first_statement, first_extracted, _ = compiler.compile(CONSTRUCTED[name](3))
    assert first_statement is statement
    assert statement.bind(extracted) != statement.bind(first_extracted)


def test_a_missing_value_still_raises() -> None:
    compiler = QueryCompiler(DIALECTS["sqlite"])
    query = sa.select(items).where(items.c.id == sa.bindparam("wanted"))
    statement, extracted, _ = compiler.compile(query)
    assert statement._extracted_plan is None
    with pytest.raises(exc.InvalidRequestError, match="wanted"):
        statement.bind(extracted)


@pytest.mark.parametrize("dialect_name", sorted(DIALECTS))
def test_prepare_gives_each_statement_its_own_values(dialect_name: str) -> None:
    compiler = QueryCompiler(DIALECTS[dialect_name])
    for value in range(5):
        _, _, args = compiler.prepare(sa.select(items).where(items.c.id == value))
        assert args == (value,)


@pytest.mark.parametrize("dialect_name", sorted(DIALECTS))
def test_values_set_by_params_are_bound(dialect_name: str) -> None:
    """`.params()` values, which SQLAlchemy 2.1 keeps with the cache key rather than in the
    bind parameters, are bound as SQLAlchemy binds them, also by a cached statement."""
    dialect = DIALECTS[dialect_name]
    compiler = QueryCompiler(dialect)
    wanted = sa.select(items.c.id).where(items.c.id == sa.bindparam("wanted"))
    for value in (3, 4):
        query = wanted.params(wanted=value)
        compiled = query.compile(dialect=dialect)
        expected = tuple(compiled.construct_params()[name] for name in compiled.positiontup or ())
        assert (
            compiler.prepare(query)[1:]
            == (compiled.string, expected)
            == (compiled.string, (value,))
        )


class _Marked(sa.types.TypeDecorator[str]):
    """Text bound with a mark, so a value that skipped its bind processor shows."""

    impl = sa.String(50)
    cache_ok = True

    def process_bind_param(self, value: typing.Any, dialect: sa.Dialect) -> typing.Any:
        return f"marked:{value}"


@pytest.mark.parametrize("dialect_name", sorted(DIALECTS))
def test_an_expanded_statement_converts_its_other_parameters(dialect_name: str) -> None:
    """Expanding an IN list converts the list's values and also every other parameter,
    each by its own type, as SQLAlchemy's execution context does."""
    compiler = QueryCompiler(DIALECTS[dialect_name])
    query = sa.select(items.c.id).where(
        items.c.name == sa.literal("x", _Marked()), items.c.id.in_([1, 2])
    )
    for _ in range(2):  # compiled, then from the cache
        _, _, args = compiler.prepare(query)
        assert args == ("marked:x", 1, 2)
