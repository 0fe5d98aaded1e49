"""Write shapes: each builds its statement for the table it is given, so `databases` and
SQLAlchemy each change their own copy of the same rows."""

from __future__ import annotations

import random

import sqlalchemy as sa

from tests.differential.case import (
    Case,
    WriteShape,
    some_ids,
)
from tests.differential.schema import (
    FRAGMENTS,
    NAMES,
    a_date,
    a_datetime,
    a_decimal,
    a_float,
    people,
    scratch_values,
)


def insert_clause_values(rng: random.Random, table: sa.Table) -> Case:
    return Case(table.insert().values(**scratch_values(rng)), method="execute", returns_key=True)


def insert_execute_values(rng: random.Random, table: sa.Table) -> Case:
    """`execute(table.insert(), values)`; SQLAlchemy gets the values as parameters."""
    values = scratch_values(rng)
    return Case(
        table.insert(), values=values, method="execute", oracle_values=values, returns_key=True
    )


def insert_many(rng: random.Random, table: sa.Table) -> Case:
    rows = [scratch_values(rng) for _ in range(rng.randint(1, 4))]
    return Case(table.insert(), values=rows, method="execute_many", oracle_values=rows)


def update_expression(rng: random.Random, table: sa.Table) -> Case:
    query = (
        table.update()
        .where(table.c.id.in_(some_ids(rng, 5)))
        .values(amount=table.c.amount + a_decimal(rng, 2), flag=sa.not_(table.c.flag))
    )
    return Case(query, method="execute")


def update_execute_values(rng: random.Random, table: sa.Table) -> Case:
    values = {"name": rng.choice(NAMES), "at": a_datetime(rng), "nick": rng.choice(NAMES)}
    query = table.update().where(table.c.id == rng.randint(1, 15))
    return Case(query, values=values, method="execute", oracle=query.values(**values))


def update_bindparam_value(rng: random.Random, table: sa.Table) -> Case:
    query = (
        table.update()
        .where(table.c.ratio > sa.bindparam("over", value=a_float(rng)))
        .values(day=a_date(rng), ratio=table.c.ratio / 2)
    )
    return Case(query, method="execute")


def delete_like(rng: random.Random, table: sa.Table) -> Case:
    fragment = rng.choice(FRAGMENTS[:8])
    query = table.delete().where(table.c.name.contains(fragment, autoescape=True))
    return Case(query, method="execute")


def raw_update_values(rng: random.Random, table: sa.Table) -> Case:
    sql = f"UPDATE {table.name} SET name = :name, amount = :amount WHERE id <= :most"
    values = {"name": rng.choice(NAMES), "amount": a_decimal(rng, 2), "most": rng.randint(0, 15)}
    return Case(sql, values=values, method="execute")


def text_delete_bindparams(rng: random.Random, table: sa.Table) -> Case:
    clause = sa.text(f"DELETE FROM {table.name} WHERE at < :before").bindparams(
        before=a_datetime(rng)
    )
    return Case(clause, method="execute")


def insert_expression_values(rng: random.Random, table: sa.Table) -> Case:
    """Values that are SQL expressions (rendered into the statement, not bound)."""
    values = scratch_values(rng)
    values["name"] = sa.func.upper(rng.choice(NAMES))
    values["amount"] = sa.literal(a_decimal(rng, 2), sa.Numeric(10, 2)) * 2
    oracle = table.insert().values(**values)
    return Case(table.insert(), values=values, method="execute", oracle=oracle, returns_key=True)


def insert_many_raw(rng: random.Random, table: sa.Table) -> Case:
    sql = f"INSERT INTO {table.name} (name, amount, flag) VALUES (:name, :amount, :flag)"
    rows = [
        {"name": rng.choice(NAMES), "amount": a_decimal(rng, 2), "flag": rng.random() < 0.5}
        for _ in range(rng.randint(1, 4))
    ]
    # `databases` binds each row as `text(sql).bindparams(**row)`, types from the values.
    oracle = [sa.text(sql).bindparams(**row) for row in rows]
    return Case(sql, values=rows, method="execute_many", oracle=oracle)


def insert_multi_values(rng: random.Random, table: sa.Table) -> Case:
    rows = [scratch_values(rng) for _ in range(rng.randint(1, 3))]
    return Case(table.insert().values(rows), method="execute")


def insert_from_select(rng: random.Random, table: sa.Table) -> Case:
    source = sa.select(
        sa.func.lower(people.c.name), sa.func.round(people.c.balance, 2), people.c.born
    ).where(people.c.id.in_(some_ids(rng, 4)))
    query = table.insert().from_select(["name", "amount", "day"], source)
    return Case(query, method="execute")


def insert_partial_values(rng: random.Random, table: sa.Table) -> Case:
    """A clause with some values of its own, given the others on execution."""
    values = {"name": rng.choice(NAMES), "amount": a_decimal(rng, 2)}
    query = table.insert().values(flag=rng.random() < 0.5, note=rng.choice(NAMES))
    return Case(query, values=values, method="execute", oracle_values=values, returns_key=True)


def update_partial_values(rng: random.Random, table: sa.Table) -> Case:
    values = {"ratio": a_float(rng), "version": rng.randint(5, 9)}
    query = table.update().where(table.c.id > rng.randint(0, 14)).values(name=rng.choice(NAMES))
    return Case(query, values=values, method="execute", oracle=query.values(**values))


def insert_many_mixed_keys(rng: random.Random, table: sa.Table) -> Case:
    """`execute_many` of rows with different keys (each run of equal keys is one
    statement; missing columns take their defaults); SQLAlchemy inserts row by row."""
    rows = []
    for _ in range(rng.randint(1, 6)):
        values = scratch_values(rng)
        keep = rng.sample(sorted(values), rng.randint(1, len(values)))
        rows.append({key: values[key] for key in sorted(keep)})
    oracle = [table.insert().values(**row) for row in rows]
    return Case(table.insert(), values=rows, method="execute_many", oracle=oracle)


SHAPES: dict[str, WriteShape] = {
    shape.__name__: shape
    for shape in (
        insert_clause_values,
        insert_execute_values,
        insert_many,
        update_expression,
        update_execute_values,
        update_bindparam_value,
        delete_like,
        raw_update_values,
        text_delete_bindparams,
        insert_expression_values,
        insert_many_raw,
        insert_multi_values,
        insert_from_select,
        insert_partial_values,
        update_partial_values,
        insert_many_mixed_keys,
    )
}
