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

from sqlalchemy import Column, Integer, Table
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression, BindParameter, UnaryExpression
from sqlalchemy.sql.selectable import Select, _OffsetLimitParam

# What SQLAlchemy 2.0 traverses for these classes' cache keys. If a version traverses
# anything else, the attributes checked below may not be all that matters: turn off.
_KNOWN_TRAVERSALS: dict[typing.Any, tuple[str, ...]] = {
    Select: (
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
    ),
    BinaryExpression: ("left", "right", "operator", "negate", "modifiers", "type"),
    BindParameter: ("key", "type", "callable", "value", "literal_execute"),
    _OffsetLimitParam: ("key", "type", "callable", "value", "literal_execute"),
    UnaryExpression: ("element", "operator", "modifier"),
}
ENABLED = all(
    tuple(name for name, _ in cls._traverse_internals) == names
    for cls, names in _KNOWN_TRAVERSALS.items()
)

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
_COMPARISONS = frozenset(
    (operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge)
)
_DIRECTIONS = frozenset((operators.asc_op, operators.desc_op))

Key = tuple[typing.Any, ...]


def _plain_column(element: typing.Any) -> bool:
    """A `Column` of a `Table`, as `table.c.name` gives it (no alias, no annotations)."""
    return (
        type(element) is Column
        and not element._annotations
        and type(element.table) is Table
        and not element.table._annotations
    )


def _literal_bind(element: typing.Any, bind_type: type) -> bool:
    """An anonymous bind parameter holding a plain value (not a callable, not expanded)."""
    return (
        element._key_is_anon
        and type(element.type) is bind_type
        and element.callable is None
        and not element.expanding
        and not element.literal_execute
        and not element.isoutparam
    )


def simple_select_key(
    query: typing.Any,
) -> tuple[Key, list[BindParameter[typing.Any]], tuple[typing.Any, ...]] | None:
    """For a simple select: its key, its bind parameters in SQLAlchemy's order, and the
    objects whose identity the key holds (to keep alive with the cached entry)."""
    if not ENABLED or type(query) is not Select:
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
    anchors: list[typing.Any] = []
    for element in query._raw_columns:
        if type(element) is Table:
            if element._annotations:
                return None
        elif not _plain_column(element):
            return None
        anchors.append(element)
    columns_end = len(anchors)
    binds: list[BindParameter[typing.Any]] = []
    for criterion in query._where_criteria:
        if type(criterion) is not BinaryExpression or criterion.modifiers:
            return None
        left, right = criterion.left, criterion.right
        if (
            criterion.operator not in _COMPARISONS
            or not _plain_column(left)
            or type(right) is not BindParameter
            or right.type is not left.type
            or not _literal_bind(right, type(left.type))
        ):
            return None
        anchors += (left, criterion.operator, criterion.negate, criterion.type, left.type)
        binds.append(right)
    criteria_end = len(anchors)
    for clause in query._order_by_clauses:
        if type(clause) is UnaryExpression:
            if (
                clause.operator is not None
                or clause.modifier not in _DIRECTIONS
                or clause._propagate_attrs
                or not _plain_column(clause.element)
            ):
                return None
            anchors += (clause.modifier, clause.element)
        elif _plain_column(clause):
            anchors += (None, clause)
        else:
            return None
    # LIMIT, then OFFSET: the order SQLAlchemy extracts their values in, after WHERE's.
    limits = []
    for bound in (query._limit_clause, query._offset_clause):
        if bound is not None:
            if type(bound) is not _OffsetLimitParam or not _literal_bind(bound, Integer):
                return None
            binds.append(bound)
        limits.append(bound is not None)
    key = (
        "simple select",
        query._label_style,
        columns_end,
        criteria_end,
        tuple(limits),
        tuple(map(id, anchors)),
    )
    return key, binds, tuple(anchors)
