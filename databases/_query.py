"""How a query and its values become one SQLAlchemy clause, as in `databases` 0.9."""

from __future__ import annotations

import itertools
import operator
import typing

from sqlalchemy import text
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.dml import ValuesBase


def takes_values(query: ClauseElement | str) -> bool:
    """Whether `values` can go with this query: raw SQL, or an INSERT/UPDATE (`.values()`).

    Anything else given values fails in `build_query`, as it did in 0.9 (a DELETE must
    never run with its values silently dropped).
    """
    return isinstance(query, (str, ValuesBase))


def has_expression(values: typing.Mapping[str, typing.Any]) -> bool:
    """Whether any value is a SQL expression (`func.now()`), which `.values()` renders
    into the statement instead of binding it as a parameter."""
    return any(map(isinstance, values.values(), itertools.repeat(ClauseElement)))


def has_expressions(rows: typing.Iterable[typing.Mapping[str, typing.Any]]) -> bool:
    """`has_expression` for many rows, looking at each distinct value type once."""
    values = itertools.chain.from_iterable(map(operator.methodcaller("values"), rows))
    return any(issubclass(kind, ClauseElement) for kind in set(map(type, values)))


def build_query(
    query: ClauseElement | str, values: typing.Mapping[str, typing.Any] | None = None
) -> ClauseElement:
    """A raw string becomes `text(query).bindparams(**values)`; a clause gets `.values()`."""
    if isinstance(query, str):
        clause = text(query)
        return clause.bindparams(**values) if values is not None else clause
    if values:
        return query.values(**values)  # type: ignore[attr-defined,no-any-return]
    return query
