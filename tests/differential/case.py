"""What a generated case is: a statement, how to run it, and what the oracle runs."""

from __future__ import annotations

import dataclasses
import random
import typing

import sqlalchemy as sa


@dataclasses.dataclass
class Case:
    """One statement to run through both, and how.

    `query` and `values` go to `databases` as they are. The oracle runs `oracle` when set,
    else `query` (a raw string as `text(query).bindparams(**values)`, which is what
    `databases` promises it is), passing `oracle_values` as execution parameters.
    """

    query: typing.Any
    values: typing.Any = None
    method: str = "fetch_all"
    column: int | str = 0
    ordered: bool = True
    oracle: typing.Any = None
    oracle_values: typing.Any = None
    # For `execute` of a clause INSERT without ids: compare the returned primary key.
    returns_key: bool = False


def rows_case(rng: random.Random, query: typing.Any, **options: typing.Any) -> Case:
    return Case(query, method=rng.choice(ROWS), **options)


def any_case(rng: random.Random, query: typing.Any, **options: typing.Any) -> Case:
    return Case(query, method=rng.choice(ANY), **options)


def some_ids(rng: random.Random, most: int = 7) -> list[int]:
    return rng.sample(range(-2, 70), rng.randint(0, most))


def escaped(fragment: str, escape: str) -> str:
    for special in (escape, "%", "_"):
        fragment = fragment.replace(special, escape + special)
    return fragment


SelectShape = typing.Callable[[random.Random], Case]
WriteShape = typing.Callable[[random.Random, sa.Table], Case]

# The methods a case can use: those giving rows, and all reads.
ROWS = ("fetch_all", "iterate", "fetch_one")
ANY = ("fetch_all", "iterate", "fetch_one", "fetch_val")
