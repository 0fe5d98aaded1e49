"""How a query and its values become one SQLAlchemy clause, as in `databases` 0.9."""

from __future__ import annotations

import typing

from sqlalchemy import text
from sqlalchemy.sql import ClauseElement


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
