"""SELECT shapes about values and their types: NULLs, booleans, dates, Numeric and Float,
TypeDecorators, casts, literals, and the column types of `extras` (Enum, JSON, ...)."""

from __future__ import annotations

import datetime
import random

import sqlalchemy as sa

from tests.differential.case import (
    Case,
    SelectShape,
    any_case,
    rows_case,
    some_ids,
)
from tests.differential.schema import (
    NAMES,
    Mood,
    Tagged,
    a_blob,
    a_date,
    a_datetime,
    a_decimal,
    a_float,
    a_time,
    a_uuid,
    an_aware_datetime,
    blobs,
    extras,
    moments,
    people,
    teams,
)


def null_tests(rng: random.Random) -> Case:
    column = rng.choice(
        (people.c.name, people.c.score, people.c.active, people.c.born, people.c.nick)
    )
    condition = rng.choice(
        (
            column.is_(None),
            column.is_not(None),
            column == None,  # noqa: E711
            column != None,  # noqa: E711
            column.isnot(None),
        )
    )
    query = (
        sa.select(people.c.id, column)
        .where(condition)
        .where(people.c.id <= rng.randint(10, 60))
        .order_by(people.c.id)
    )
    return any_case(rng, query)


def booleans(rng: random.Random) -> Case:
    flag = rng.random() < 0.5
    condition = rng.choice(
        (
            people.c.active == flag,
            people.c.active.is_(flag),
            people.c.active if flag else sa.not_(people.c.active),
            people.c.active.is_not(flag),
        )
    )
    query = (
        sa.select(
            people.c.id,
            people.c.active,
            (people.c.score > a_float(rng)).label("high"),
            sa.literal(flag).label("constant"),
        )
        .where(condition)
        .order_by(people.c.id)
    )
    return rows_case(rng, query)


def dates_and_times(rng: random.Random) -> Case:
    query = (
        sa.select(people.c.id, people.c.born, people.c.seen)
        .where(people.c.born.between(a_date(rng), a_date(rng)) | (people.c.seen < a_datetime(rng)))
        .order_by(people.c.seen.desc(), people.c.id)
    )
    return rows_case(rng, query)


def date_aggregates(rng: random.Random) -> Case:
    query = sa.select(
        sa.func.max(people.c.seen).label("latest"),
        sa.func.min(people.c.born).label("earliest"),
        sa.func.count(people.c.seen).label("seen"),
    ).where(people.c.team_id == rng.randint(0, 9))
    return any_case(rng, query)


def numeric_and_float(rng: random.Random) -> Case:
    query = (
        sa.select(
            people.c.id,
            people.c.balance,
            people.c.score,
            (people.c.balance * 2).label("double"),
            (people.c.balance + a_decimal(rng)).label("shifted"),
            (people.c.score + a_float(rng)).label("moved"),
            sa.literal(a_decimal(rng, 2), sa.Numeric(10, 2)).label("price"),
            sa.literal(a_float(rng), sa.Float).label("ratio"),
        )
        .where(people.c.balance < a_decimal(rng))
        .order_by(people.c.id)
    )
    return rows_case(rng, query)


def numeric_aggregates(rng: random.Random) -> Case:
    query = sa.select(
        sa.func.sum(people.c.balance).label("total"),
        sa.func.max(people.c.balance).label("largest"),
        sa.func.sum(people.c.score).label("scores"),
        sa.func.count().label("n"),
    ).where(people.c.id > rng.randint(0, 70))
    return any_case(rng, query)


def type_decorator_cached(rng: random.Random) -> Case:
    """A `cache_ok` TypeDecorator in the WHERE and the columns, with its prefix in the key."""
    nick = rng.choice(NAMES)
    query = (
        sa.select(people.c.id, people.c.nick, teams.c.motto)
        .join_from(people, teams, people.c.team_id == teams.c.id, isouter=True)
        .where(sa.or_(people.c.nick == nick, people.c.nick.in_(rng.sample(NAMES, 3))))
        .order_by(people.c.id)
    )
    return rows_case(rng, query)


def type_decorator_prefixes(rng: random.Random) -> Case:
    """Literals of the same TypeDecorator class with other arguments (other cache keys)."""
    prefix = rng.choice(("n:", "t:", "x:"))
    value = rng.choice(NAMES)
    query = (
        sa.select(people.c.id, sa.literal(value, Tagged(prefix)).label("tagged"))
        .where(people.c.id < rng.randint(1, 8))
        .order_by(people.c.id)
    )
    return any_case(rng, query)


def type_decorator_uncached(rng: random.Random) -> Case:
    """A TypeDecorator without `cache_ok`: no cache key, compiled every time."""
    query = (
        sa.select(people.c.id, people.c.code)
        .where(people.c.code >= rng.randint(-5, 20))
        .where(people.c.id < rng.randint(10, 62))
        .order_by(people.c.code, people.c.id)
    )
    return any_case(rng, query)


def casts_and_coercions(rng: random.Random) -> Case:
    query = (
        sa.select(
            people.c.id,
            sa.cast(people.c.balance, sa.Integer).label("as_integer"),
            sa.type_coerce(people.c.balance, sa.Float).label("as_float"),
            sa.cast(people.c.score, sa.Numeric(10, 2)).label("as_numeric"),
            sa.cast(people.c.id, sa.String(10)).label("as_text"),
            sa.type_coerce(people.c.nick, sa.String(60)).label("raw_nick"),
            sa.type_coerce(people.c.name, Tagged("")).label("decorated"),
        )
        .where(people.c.id.between(rng.randint(0, 30), rng.randint(20, 62)))
        .order_by(people.c.id)
    )
    return rows_case(rng, query)


def literal_select(rng: random.Random) -> Case:
    """Columns that are only literals: no FROM, every type from the value."""
    query = sa.select(
        sa.literal(rng.randint(-99, 99)).label("number"),
        sa.literal(rng.choice(NAMES)).label("text"),
        sa.literal(a_decimal(rng, 2)).label("money"),
        sa.literal(a_date(rng)).label("day"),
        sa.literal(a_datetime(rng)).label("moment"),
        sa.literal(rng.random() < 0.5).label("flag"),
    )
    return any_case(rng, query)


def in_list_of_dates_and_decorated(rng: random.Random) -> Case:
    """IN lists whose values need converting (dates on SQLite, a TypeDecorator), beside
    literals that need converting too."""
    query = (
        sa.select(people.c.id, people.c.born, people.c.nick)
        .where(
            sa.or_(
                people.c.born.in_([a_date(rng) for _ in range(rng.randint(0, 3))]),
                people.c.nick.in_(rng.sample(NAMES, rng.randint(0, 4))),
                people.c.balance > a_decimal(rng),
            )
        )
        .where(people.c.code.is_not(None) | (people.c.seen < a_datetime(rng)))
        .order_by(people.c.id)
    )
    return rows_case(rng, query)


def coalesce_columns(rng: random.Random) -> Case:
    query = (
        sa.select(
            people.c.id,
            sa.func.coalesce(people.c.name, rng.choice(NAMES)).label("name"),
            sa.func.coalesce(people.c.balance, a_decimal(rng)).label("balance"),
            sa.func.coalesce(people.c.seen, a_datetime(rng)).label("seen"),
            sa.func.coalesce(people.c.active, False).label("active"),
        )
        .where(people.c.id <= rng.randint(0, 62))
        .order_by(people.c.id.desc())
    )
    return rows_case(rng, query)


def cross_typed_literals(rng: random.Random) -> Case:
    """Literals of another Python type than their column's: int for Float and Numeric,
    float for Numeric, Decimal for Float."""
    query = (
        sa.select(people.c.id, people.c.score, people.c.balance)
        .where(
            sa.or_(
                people.c.score > rng.randint(-400, 400),
                people.c.balance < rng.randint(-900, 900),
                people.c.balance == a_float(rng),
                people.c.score == a_decimal(rng, 1),
            )
        )
        .order_by(people.c.id)
    )
    return rows_case(rng, query)


def extras_whole_rows(rng: random.Random) -> Case:
    """Enum, JSON, Time, Interval, Uuid, Numeric as float, Float as Decimal,
    BigInteger, SmallInteger and Text columns as they come back."""
    query = (
        sa.select(extras)
        .where(extras.c.id.in_(some_ids(rng, 10)) | (extras.c.id > rng.randint(5, 35)))
        .order_by(extras.c.id)
    )
    return rows_case(rng, query)


def extras_filters(rng: random.Random) -> Case:
    """Values of those types bound as parameters."""
    query = (
        sa.select(extras.c.id, extras.c.mood, extras.c.color, extras.c.span, extras.c.uid)
        .where(
            sa.or_(
                extras.c.mood == rng.choice(list(Mood)),
                extras.c.color.in_(rng.sample(("red", "green", "blue"), rng.randint(0, 2))),
                extras.c.ring > a_time(rng),
                extras.c.span < datetime.timedelta(seconds=rng.randint(0, 400_000)),
                extras.c.uid.in_([a_uuid(rng) for _ in range(rng.randint(0, 2))]),
                extras.c.ratio > rng.randint(-99999, 99999) / 16,
                extras.c.big < rng.randint(-(2**62), 2**62),
            )
        )
        .where(extras.c.mood.is_not(None))
        .order_by(extras.c.id)
    )
    return any_case(rng, query)


def json_elements(rng: random.Random) -> Case:
    query = (
        sa.select(
            extras.c.id,
            extras.c.doc["name"].label("name"),
            extras.c.doc["n"].label("n"),
            extras.c.doc[("nested", "x")].label("x"),
            extras.c.doc,
        )
        .where(extras.c.id <= rng.randint(1, 30))
        .order_by(extras.c.id)
    )
    return rows_case(rng, query)


def labels_and_names(rng: random.Random) -> Case:
    """Result names SQLAlchemy makes: mixed case and spaces, reserved words, names longer
    than the backend allows, anonymous expressions, one column twice."""
    long_name = "a_label_longer_than_any_backend_allows_for_an_identifier_" + "x" * 20
    query = (
        sa.select(
            people.c.id.label("Person ID"),
            people.c.name.label("select"),
            people.c.score.label(long_name),
            people.c.score + a_float(rng),
            sa.func.lower(people.c.name),
            people.c.id,
            people.c.id,
            sa.literal(rng.randint(0, 9)),
        )
        .where(people.c.id < rng.randint(1, 62))
        .order_by(people.c.id)
    )
    return rows_case(rng, query)


def text_partially_typed(rng: random.Random) -> Case:
    """`text().columns()` declaring some of the columns the query returns."""
    clause = (
        sa.text(
            "SELECT id, score, born, balance, active FROM diff_people WHERE id < :most ORDER BY id"
        )
        .bindparams(most=rng.randint(0, 62))
        .columns(born=sa.Date, active=sa.Boolean)
    )
    return any_case(rng, clause)


def binary_values(rng: random.Random) -> Case:
    """LargeBinary values back, and bound in a filter and an IN list."""
    query = (
        sa.select(blobs.c.id, blobs.c.data)
        .where(
            sa.or_(
                blobs.c.data == a_blob(rng),
                blobs.c.data.in_([a_blob(rng) for _ in range(rng.randint(0, 3))]),
                blobs.c.id > rng.randint(0, 15),
            )
        )
        .order_by(blobs.c.id)
    )
    return any_case(rng, query)


def aware_datetimes(rng: random.Random) -> Case:
    """Timezone-aware datetimes back, and bound in comparisons and an IN list."""
    query = (
        sa.select(moments.c.id, moments.c.at)
        .where(
            sa.or_(
                moments.c.at > an_aware_datetime(rng),
                moments.c.at.in_([an_aware_datetime(rng) for _ in range(rng.randint(0, 2))]),
                moments.c.at.is_(None),
            )
        )
        .order_by(moments.c.id)
    )
    return any_case(rng, query)


SHAPES: dict[str, SelectShape] = {
    shape.__name__: shape
    for shape in (
        null_tests,
        booleans,
        dates_and_times,
        date_aggregates,
        numeric_and_float,
        numeric_aggregates,
        type_decorator_cached,
        type_decorator_prefixes,
        type_decorator_uncached,
        casts_and_coercions,
        literal_select,
        in_list_of_dates_and_decorated,
        coalesce_columns,
        cross_typed_literals,
        extras_whole_rows,
        extras_filters,
        json_elements,
        labels_and_names,
        text_partially_typed,
        binary_values,
        aware_datetimes,
    )
}
