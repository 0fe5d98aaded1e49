"""SELECT shapes: the structure of statements (limits, IN lists, LIKE, parameters, text,
raw SQL, joins, grouping, set operations, subqueries, labels)."""

from __future__ import annotations

import datetime
import decimal
import random

import sqlalchemy as sa

from tests.differential.case import (
    ANY,
    ROWS,
    Case,
    SelectShape,
    any_case,
    escaped,
    rows_case,
    some_ids,
)
from tests.differential.schema import (
    NAMES,
    Tagged,
    a_date,
    a_datetime,
    a_decimal,
    a_float,
    a_fragment,
    events,
    people,
    seed_rows,
    teams,
)


def simple_by_id(rng: random.Random) -> Case:
    """The simple-select fast key: whole table, one equality."""
    return rows_case(rng, sa.select(people).where(people.c.id == rng.randint(0, 62)))


def simple_columns_compared(rng: random.Random) -> Case:
    column = rng.choice((people.c.score, people.c.id, people.c.team_id))
    value = a_float(rng) if column is people.c.score else rng.randint(-1, 60)
    comparison = rng.choice(("__gt__", "__le__", "__ne__", "__ge__"))
    query = (
        sa.select(people.c.id, people.c.name, people.c.balance, people.c.seen)
        .where(getattr(column, comparison)(value))
        .order_by(people.c.id.desc() if rng.random() < 0.5 else people.c.id)
    )
    return rows_case(rng, query)


def limit_offset(rng: random.Random) -> Case:
    query = sa.select(people.c.id, people.c.score, people.c.active).where(
        people.c.id > rng.randint(-5, 50)
    )
    query = query.order_by(people.c.id.asc()).limit(rng.randint(0, 12))
    if rng.random() < 0.7:
        query = query.offset(rng.randint(0, 15))
    return rows_case(rng, query)


def order_by_mixed(rng: random.Random) -> Case:
    first = rng.choice((people.c.score, people.c.born, people.c.balance, people.c.team_id))
    direction = first.desc() if rng.random() < 0.5 else first.asc()
    query = (
        sa.select(people.c.id, first)
        .where(first.is_not(None))
        .order_by(direction, people.c.id.desc())
        .limit(rng.randint(1, 20))
    )
    return rows_case(rng, query)


def in_list(rng: random.Random) -> Case:
    """IN lists of every length, empty included, negated half the time."""
    ids = some_ids(rng)
    condition = people.c.id.in_(ids) if rng.random() < 0.6 else people.c.id.not_in(ids)
    query = sa.select(people.c.id, people.c.name).where(condition).order_by(people.c.id)
    return rows_case(rng, query)


def in_list_of_text(rng: random.Random) -> Case:
    names = rng.sample(NAMES, rng.randint(0, 5))
    query = (
        sa.select(people.c.id, people.c.nick)
        .where(people.c.name.in_(names))
        .where(people.c.id < rng.randint(10, 70))
        .order_by(people.c.id)
    )
    return rows_case(rng, query)


def in_expanding_bindparam(rng: random.Random) -> Case:
    query = (
        sa.select(people.c.id, people.c.score)
        .where(people.c.id.in_(sa.bindparam("wanted", expanding=True)))
        .order_by(people.c.id)
        .params(wanted=some_ids(rng))
    )
    return rows_case(rng, query)


def like_autoescape(rng: random.Random) -> Case:
    operator = rng.choice(("contains", "startswith", "endswith"))
    fragment = a_fragment(rng)
    column = rng.choice((people.c.name, people.c.nick))
    condition = getattr(column, operator)(fragment, autoescape=True)
    query = sa.select(people.c.id, column).where(condition).order_by(people.c.id)
    return rows_case(rng, query)


def like_explicit_escape(rng: random.Random) -> Case:
    escape = rng.choice(("#", "!", "^"))
    pattern = f"%{escaped(a_fragment(rng), escape)}%"
    column = people.c.name
    if rng.random() < 0.5:
        condition = column.like(pattern, escape=escape)
    else:
        condition = column.not_like(pattern, escape=escape)
    query = sa.select(people.c.id, column).where(condition).order_by(people.c.id)
    return rows_case(rng, query)


def like_plain(rng: random.Random) -> Case:
    pattern = rng.choice(("A%", "%a%", "_d_", "%\\%", "%#%", "%🎉", "%"))
    column = people.c.name
    condition = column.ilike(pattern) if rng.random() < 0.5 else column.like(pattern)
    query = sa.select(people.c.id, column).where(condition).order_by(people.c.id)
    return rows_case(rng, query)


def params_named(rng: random.Random) -> Case:
    """`.params()` on named bind parameters, the same statement with other values."""
    query = (
        sa.select(people.c.id, people.c.team_id, people.c.balance)
        .where(people.c.team_id == sa.bindparam("team"))
        .where(people.c.balance > sa.bindparam("least", type_=people.c.balance.type))
        .order_by(people.c.id)
    )
    return rows_case(rng, query.params(team=rng.randint(0, 9), least=a_decimal(rng)))


def bindparam_with_value(rng: random.Random) -> Case:
    query = (
        sa.select(people.c.id, people.c.born)
        .where(people.c.born >= sa.bindparam("since", value=a_date(rng), type_=sa.Date))
        .where(people.c.active == sa.bindparam("flag", value=rng.random() < 0.5))
        .order_by(people.c.born, people.c.id)
    )
    return rows_case(rng, query)


def raw_string_values(rng: random.Random) -> Case:
    """A raw SQL string with values (`databases` binds them as `text().bindparams()`)."""
    sql = (
        "SELECT id, name, score, balance FROM diff_people "
        "WHERE id >= :low AND (name = :name OR score > :score) ORDER BY id"
    )
    values = {"low": rng.randint(0, 40), "name": rng.choice(NAMES), "score": a_float(rng)}
    return Case(sql, values=values, method=rng.choice(ANY))


def raw_string_typed_values(rng: random.Random) -> Case:
    """Values whose Python type picks the bind processing: dates, datetimes, Decimal, bool."""
    sql = (
        "SELECT id, born, seen, active FROM diff_people "
        "WHERE (born < :day OR seen > :moment OR balance > :amount) AND active = :flag "
        "ORDER BY id"
    )
    values = {
        "day": a_date(rng),
        "moment": a_datetime(rng),
        "amount": a_decimal(rng),
        "flag": rng.random() < 0.5,
    }
    return Case(sql, values=values, method=rng.choice(ANY))


def raw_string_mixed_types(rng: random.Random) -> Case:
    """One raw SQL text with values whose SQL type depends on the value, not only on its
    Python type (ASCII text or not, a 32-bit integer or not): bound per value."""
    sql = (
        "SELECT id, big, body FROM diff_extras "
        "WHERE big > :big OR body = :body OR body LIKE :start ORDER BY id"
    )
    values = {
        "big": rng.choice((rng.randint(-99, 99), rng.randint(-(2**62), 2**62))),
        "body": rng.choice(NAMES),
        "start": a_fragment(rng) + "%",
    }
    return Case(sql, values=values, method=rng.choice(ANY))


def raw_string_without_casts(rng: random.Random) -> Case:
    """Values PostgreSQL cannot type from the SQL alone: an aware datetime against a
    TIMESTAMP, a 64-bit integer against an INTEGER, a bare integer. `text().bindparams()`
    renders SQLAlchemy's casts (`$1::TIMESTAMP WITH TIME ZONE`, `$1::BIGINT`); `databases`
    sends raw SQL as it is, as 0.9 did, and PostgreSQL infers the type from the context."""
    choice = rng.randint(0, 2)
    if choice == 0:
        zone = datetime.timezone(datetime.timedelta(hours=rng.randint(-12, 12)))
        sql = "SELECT id, seen FROM diff_people WHERE seen < :moment ORDER BY id"
        values: dict[str, object] = {"moment": a_datetime(rng).replace(tzinfo=zone)}
    elif choice == 1:
        sql = "SELECT id FROM diff_people WHERE team_id < :team ORDER BY id"
        values = {"team": 2**40 + rng.randint(0, 9)}
    else:
        sql = "SELECT :number AS number"
        values = {"number": rng.randint(-99, 99)}
    return Case(sql, values=values, method=rng.choice(ANY))


def raw_string_literals(rng: random.Random) -> Case:
    """Raw SQL with its values written into it, no parameters."""
    sql = (
        f"SELECT id, team_id, score FROM diff_people WHERE id > {rng.randint(0, 55)} "
        f"AND (score IS NULL OR score < {a_float(rng)}) ORDER BY id"
    )
    return Case(sql, method=rng.choice(ANY))


def text_bindparams(rng: random.Random) -> Case:
    clause = sa.text(
        "SELECT id, name, nick FROM diff_people WHERE id <= :most AND id > :least ORDER BY id"
    ).bindparams(most=rng.randint(0, 60), least=rng.randint(-3, 30))
    return any_case(rng, clause)


def text_typed_columns(rng: random.Random) -> Case:
    """`text().columns()`: result processing from declared types, values from bindparams."""
    clause = (
        sa.text(
            "SELECT id, balance, born, seen, active, nick FROM diff_people "
            "WHERE id BETWEEN :low AND :high ORDER BY id"
        )
        .bindparams(low=rng.randint(0, 30), high=rng.randint(20, 62))
        .columns(
            id=sa.Integer,
            balance=sa.Numeric(10, 3),
            born=sa.Date,
            seen=sa.DateTime,
            active=sa.Boolean,
            nick=Tagged("n:"),
        )
    )
    return any_case(rng, clause)


def text_expanding(rng: random.Random) -> Case:
    clause = sa.text("SELECT id, score FROM diff_people WHERE id IN :ids ORDER BY id").bindparams(
        sa.bindparam("ids", value=some_ids(rng) or [-1], expanding=True)
    )
    return rows_case(rng, clause)


def text_literal(rng: random.Random) -> Case:
    """`text()` with its values written into the SQL."""
    clause = sa.text(
        f"SELECT id, active FROM diff_people WHERE team_id = {rng.randint(0, 9)} ORDER BY id"
    )
    return rows_case(rng, clause)


def limited_subquery_join(rng: random.Random) -> Case:
    """A subquery with a LIMIT joined to other tables."""
    sub = (
        sa.select(people.c.id, people.c.team_id, people.c.score)
        .where(people.c.score > a_float(rng))
        .order_by(people.c.id)
        .limit(rng.randint(1, 15))
        .offset(rng.randint(0, 5))
        .subquery("best")
    )
    query = (
        sa.select(sub.c.id, sub.c.score, teams.c.name, teams.c.budget, events.c.points)
        .join_from(sub, teams, sub.c.team_id == teams.c.id)
        .outerjoin(events, events.c.person_id == sub.c.id)
        .where(sa.or_(events.c.points.is_(None), events.c.points > rng.randint(-3, 8)))
        .order_by(sub.c.id, events.c.id)
    )
    return rows_case(rng, query)


def group_by_having(rng: random.Random) -> Case:
    query = (
        sa.select(
            people.c.team_id,
            sa.func.count().label("members"),
            sa.func.count(people.c.score).label("scored"),
            sa.func.sum(people.c.balance).label("total"),
            sa.func.max(people.c.seen).label("last_seen"),
            sa.func.min(people.c.born).label("oldest"),
            sa.func.max(people.c.score).label("top"),
        )
        .where(people.c.id > rng.randint(0, 20))
        .group_by(people.c.team_id)
        .having(sa.func.count() >= rng.randint(1, 5))
        .order_by(people.c.team_id)
    )
    return rows_case(rng, query)


def group_by_join(rng: random.Random) -> Case:
    query = (
        sa.select(
            events.c.kind,
            sa.func.count(events.c.id).label("n"),
            sa.func.sum(events.c.points).label("points"),
            sa.func.coalesce(sa.func.sum(people.c.balance), decimal.Decimal("0")).label("money"),
        )
        .join(people, people.c.id == events.c.person_id)
        .where(events.c.at > a_datetime(rng))
        .group_by(events.c.kind)
        .having(sa.func.sum(events.c.points) > rng.randint(-5, 30))
        .order_by(events.c.kind)
    )
    return rows_case(rng, query)


def case_and_labels(rng: random.Random) -> Case:
    high, low = a_float(rng), a_float(rng)
    band = sa.case(
        (people.c.score.is_(None), "none"),
        (people.c.score > max(high, low), "high"),
        (people.c.score > min(high, low), "middle"),
        else_="low",
    ).label("band")
    amount = sa.case((people.c.active.is_(True), people.c.balance), else_=a_decimal(rng)).label(
        "amount"
    )
    query = (
        sa.select(people.c.id.label("person"), band, amount)
        .where(people.c.id.in_(some_ids(rng, 12)))
        .order_by(people.c.id)
    )
    return rows_case(rng, query)


def distinct_values(rng: random.Random) -> Case:
    column = rng.choice((people.c.team_id, people.c.active, people.c.born))
    query = sa.select(column).distinct().where(people.c.id > rng.randint(0, 40)).order_by(column)
    return rows_case(rng, query)


def count_distinct(rng: random.Random) -> Case:
    query = sa.select(
        sa.func.count(sa.distinct(people.c.team_id)).label("teams"),
        sa.func.count(people.c.id).label("people"),
    ).where(people.c.score < a_float(rng))
    return any_case(rng, query)


def union_unordered(rng: random.Random) -> Case:
    query = sa.union(
        sa.select(people.c.id, people.c.name).where(people.c.id < rng.randint(0, 20)),
        sa.select(teams.c.id, teams.c.name).where(teams.c.budget > a_decimal(rng, 2)),
    )
    return rows_case(rng, query, ordered=False)


def union_all_ordered(rng: random.Random) -> Case:
    both = sa.union_all(
        sa.select(people.c.id.label("key"), people.c.born.label("day")).where(
            people.c.id.in_(some_ids(rng))
        ),
        sa.select(teams.c.id, teams.c.founded).where(teams.c.id > rng.randint(0, 7)),
    ).subquery("both_")
    query = sa.select(both.c.key, both.c.day).order_by(both.c.key, both.c.day)
    return rows_case(rng, query)


def exists_filter(rng: random.Random) -> Case:
    members = sa.exists().where(people.c.team_id == teams.c.id).where(people.c.score > a_float(rng))
    condition = members if rng.random() < 0.6 else ~members
    query = sa.select(teams.c.id, teams.c.name, teams.c.founded).where(condition)
    return rows_case(rng, query.order_by(teams.c.id))


def exists_scalar(rng: random.Random) -> Case:
    """`SELECT EXISTS (...)`: a boolean result column."""
    query = sa.select(
        sa.exists().where(people.c.team_id == rng.randint(0, 9)).where(people.c.active.is_(True))
    )
    return any_case(rng, query)


def scalar_subqueries(rng: random.Random) -> Case:
    members = (
        sa.select(sa.func.count(people.c.id))
        .where(people.c.team_id == teams.c.id)
        .where(people.c.score > a_float(rng))
        .scalar_subquery()
    )
    richest = (
        sa.select(sa.func.max(people.c.balance))
        .where(people.c.team_id == teams.c.id)
        .scalar_subquery()
    )
    query = sa.select(teams.c.id, members.label("members"), richest.label("richest")).order_by(
        teams.c.id
    )
    return rows_case(rng, query)


def scalar_subquery_filter(rng: random.Random) -> Case:
    average = (
        sa.select(sa.func.avg(people.c.score))
        .where(people.c.team_id == rng.randint(0, 9))
        .scalar_subquery()
    )
    query = (
        sa.select(people.c.id, people.c.score)
        .where(people.c.score > average)
        .order_by(people.c.score, people.c.id)
    )
    return rows_case(rng, query)


def count_and_coalesce(rng: random.Random) -> Case:
    """`func.count()` as a value, by position or by name."""
    query = (
        sa.select(sa.func.count().label("n"), sa.func.coalesce(sa.func.max(people.c.id), -1))
        .select_from(people)
        .where(people.c.name.like(f"%{rng.choice('aeiouü')}%"))
    )
    return Case(query, method="fetch_val", column=rng.choice((0, "n")))


def self_join_aliases(rng: random.Random) -> Case:
    left, right = people.alias("a"), people.alias("b")
    query = (
        sa.select(left.c.id, right.c.id, left.c.name, right.c.score)
        .join_from(left, right, left.c.team_id == right.c.team_id)
        .where(left.c.id < right.c.id, left.c.id < rng.randint(1, 20))
        .order_by(left.c.id, right.c.id)
        .limit(rng.randint(1, 40))
    )
    return rows_case(rng, query)


def string_functions(rng: random.Random) -> Case:
    query = (
        sa.select(
            people.c.id,
            sa.func.lower(people.c.name).label("lowered"),
            (people.c.name + rng.choice(("!", "%", "_", "\\"))).label("shout"),
            sa.func.length(people.c.name).label("size"),
        )
        .where(people.c.name.is_not(None))
        .where(people.c.id > rng.randint(0, 55))
        .order_by(people.c.id)
    )
    return rows_case(rng, query)


def tuple_in(rng: random.Random) -> Case:
    """A row-value IN list: each element of each tuple converted by its column's type."""
    pairs = [(rng.randint(0, 9), a_date(rng)) for _ in range(rng.randint(1, 4))]
    pairs += [
        (row["team_id"], row["born"])
        for row in rng.sample(seed_rows()[people], 3)
        if row["team_id"] is not None
    ]
    query = (
        sa.select(people.c.id, people.c.team_id, people.c.born)
        .where(sa.tuple_(people.c.team_id, people.c.born).in_(pairs))
        .order_by(people.c.id)
    )
    return rows_case(rng, query)


def one_bindparam_twice(rng: random.Random) -> Case:
    value: sa.BindParameter[int] = sa.bindparam("pivot", value=rng.randint(0, 60))
    query = (
        sa.select(people.c.id, (people.c.id - value).label("distance"))
        .where(sa.or_(people.c.id == value, people.c.team_id == value))
        .order_by(people.c.id)
    )
    return rows_case(rng, query)


def tables_joined_whole(rng: random.Random) -> Case:
    """Whole tables joined: the second `id` and `name` get SQLAlchemy's deduplicated labels,
    or table-prefixed ones in LABEL_STYLE_TABLENAME_PLUS_COL."""
    query = (
        sa.select(people, teams)
        .join_from(people, teams, people.c.team_id == teams.c.id)
        .where(people.c.id < rng.randint(1, 62))
        .order_by(people.c.id)
    )
    if rng.random() < 0.5:
        query = query.set_label_style(sa.LABEL_STYLE_TABLENAME_PLUS_COL)
    return rows_case(rng, query)


def aggregate_of_subquery(rng: random.Random) -> Case:
    recent = (
        sa.select(events.c.person_id, events.c.points)
        .where(events.c.at > a_datetime(rng))
        .order_by(events.c.at.desc(), events.c.id)
        .limit(rng.randint(0, 50))
        .subquery()
    )
    query = sa.select(
        sa.func.count().label("n"),
        sa.func.coalesce(sa.func.sum(recent.c.points), 0).label("points"),
        sa.func.count(sa.distinct(recent.c.person_id)).label("people"),
    ).select_from(recent)
    return Case(query, method="fetch_val", column=rng.choice((0, 1, 2, "points", "people")))


def cte_join(rng: random.Random) -> Case:
    active = (
        sa.select(people.c.id, people.c.team_id)
        .where(people.c.active.is_(rng.random() < 0.5))
        .cte("active_people")
    )
    query = (
        sa.select(teams.c.name, sa.func.count(active.c.id).label("n"))
        .join_from(teams, active, active.c.team_id == teams.c.id, isouter=True)
        .where(teams.c.founded > a_date(rng))
        .group_by(teams.c.id, teams.c.name)
        .order_by(teams.c.id)
    )
    return rows_case(rng, query)


def large_result(rng: random.Random) -> Case:
    """More rows than one batch of a PostgreSQL server-side cursor (500) or of the row
    converters' column-wise path."""
    query = (
        sa.select(events.c.id, teams.c.id.label("team"), events.c.weight, events.c.at)
        .join_from(events, teams, events.c.person_id > teams.c.id * rng.randint(1, 3))
        .order_by(events.c.id, teams.c.id)
    )
    return Case(query, method=rng.choice(("fetch_all", "iterate")))


def duplicate_names(rng: random.Random) -> Case:
    """Two result columns with one name (raw SQL); SQLAlchemy keeps both."""
    sql = f"SELECT id, name AS id FROM diff_people WHERE id = {rng.randint(1, 60)}"
    return Case(sql, method=rng.choice(ROWS))


SHAPES: dict[str, SelectShape] = {
    shape.__name__: shape
    for shape in (
        simple_by_id,
        simple_columns_compared,
        limit_offset,
        order_by_mixed,
        in_list,
        in_list_of_text,
        in_expanding_bindparam,
        like_autoescape,
        like_explicit_escape,
        like_plain,
        params_named,
        bindparam_with_value,
        raw_string_values,
        raw_string_typed_values,
        raw_string_mixed_types,
        raw_string_without_casts,
        raw_string_literals,
        text_bindparams,
        text_typed_columns,
        text_expanding,
        text_literal,
        limited_subquery_join,
        group_by_having,
        group_by_join,
        case_and_labels,
        distinct_values,
        count_distinct,
        union_unordered,
        union_all_ordered,
        exists_filter,
        exists_scalar,
        scalar_subqueries,
        scalar_subquery_filter,
        count_and_coalesce,
        self_join_aliases,
        string_functions,
        tuple_in,
        one_bindparam_twice,
        tables_joined_whole,
        aggregate_of_subquery,
        cte_join,
        large_result,
        duplicate_names,
    )
}
