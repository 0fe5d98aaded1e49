"""A cheap cache key for the simplest, most common `select()`: no SQLAlchemy traversal.

Building a fresh `select(table).where(table.c.id == value)` per call is how most code
queries, and SQLAlchemy then computes its cache key from scratch: a walk over about thirty
attributes of the statement, which costs more than a SQLite query (35 to 95 us on the
development machine). For statements made only of the pieces below, `simple_select_key()`
builds an equivalent key from the identity of those pieces instead:

- an exact `Select` whose only structural attributes are its columns, its WHERE criteria
  and its label style (any other generative call, such as `order_by()`, `limit()` or
  `join()`, leaves an attribute behind and the statement is refused);
- columns that are plain `Table` or table-bound `Column` objects, without annotations;
- WHERE criteria that each compare such a column with an anonymous literal bind parameter
  of the column's own type (`table.c.id == 5`, `table.c.score > 1.5`);
- ORDER BY such columns, plain or with `.asc()`/`.desc()`, and a literal `limit()` and
  `offset()`.

Anything else returns `None` and takes SQLAlchemy's own cache key. The compiler also
checks, the first time it sees a key, that the bind parameters extracted here are the ones
SQLAlchemy extracts, in the same order, before it trusts the key. And if SQLAlchemy's
statement classes change shape (another version), the check below turns this off.
"""

from __future__ import annotations

import operator
import typing

from sqlalchemy import Integer
from sqlalchemy.sql.elements import BinaryExpression, BindParameter

from databases.backends.common._sqlalchemy_compat import (
    OffsetLimitParam,
    literal_bind,
    plain_column,
    plain_direction,
    plain_table,
    select_parts,
)

_COMPARISONS = frozenset(
    (operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge)
)

Key = tuple[typing.Any, ...]


def simple_select_key(
    query: typing.Any,
) -> tuple[Key, list[BindParameter[typing.Any]], tuple[typing.Any, ...]] | None:
    """For a simple select: its key, its bind parameters in SQLAlchemy's order, and the
    objects whose identity the key holds (to keep alive with the cached entry)."""
    parts = select_parts(query)
    if parts is None:
        return None
    columns, where, order_by, limit, offset, label_style = parts
    anchors: list[typing.Any] = []
    for element in columns:
        if not (plain_table(element) or plain_column(element)):
            return None
        anchors.append(element)
    columns_end = len(anchors)
    binds: list[BindParameter[typing.Any]] = []
    for criterion in where:
        if type(criterion) is not BinaryExpression or criterion.modifiers:
            return None
        left, right = criterion.left, criterion.right
        if (
            criterion.operator not in _COMPARISONS
            or not plain_column(left)
            or type(right) is not BindParameter
            or right.type is not left.type
            or not literal_bind(right, type(left.type))
        ):
            return None
        anchors += (left, criterion.operator, criterion.negate, criterion.type, left.type)
        binds.append(right)
    criteria_end = len(anchors)
    for clause in order_by:
        if plain_direction(clause):
            anchors += (clause.modifier, clause.element)
        elif plain_column(clause):
            anchors += (None, clause)
        else:
            return None
    # LIMIT, then OFFSET: the order SQLAlchemy extracts their values in, after WHERE's.
    limits = []
    for bound in (limit, offset):
        if bound is not None:
            if type(bound) is not OffsetLimitParam or not literal_bind(bound, Integer):
                return None
            binds.append(bound)
        limits.append(bound is not None)
    key = (
        "simple select",
        label_style,
        columns_end,
        criteria_end,
        tuple(limits),
        tuple(map(id, anchors)),
    )
    return key, binds, tuple(anchors)
