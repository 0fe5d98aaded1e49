"""Tables, seeded data and statement generators for `test_differential.py`.

Every generator takes a `random.Random` and builds one statement of its shape with fresh
literals, so one shape run with several seeds exercises the statement caches the way an
application does: the same structure again and again with other values. Built again from
an equal seed it gives a structurally equal, new statement object.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import random
import typing

import sqlalchemy as sa

metadata = sa.MetaData()


class Tagged(sa.types.TypeDecorator[str]):
    """Text stored with a prefix; the prefix is a constructor argument, part of the cache key."""

    impl = sa.String(60)
    cache_ok = True

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def process_bind_param(self, value: typing.Any, dialect: sa.Dialect) -> typing.Any:
        return None if value is None else f"{self.prefix}{value}"

    def process_result_value(self, value: typing.Any, dialect: sa.Dialect) -> typing.Any:
        if value is None:
            return None
        text = str(value)
        return text[len(self.prefix) :] if text.startswith(self.prefix) else f"?{text}"


class LegacyCode(sa.types.TypeDecorator[int]):
    """An integer stored times seven, without `cache_ok`: statements using it have no cache
    key, so SQLAlchemy (and `databases`) compile them on every execution."""

    impl = sa.Integer

    def process_bind_param(self, value: typing.Any, dialect: sa.Dialect) -> typing.Any:
        return None if value is None else int(value) * 7

    def process_result_value(self, value: typing.Any, dialect: sa.Dialect) -> typing.Any:
        return None if value is None else int(value) // 7


# MySQL tables in utf8mb4, so that every name below (emoji too) round-trips.
_MYSQL: dict[str, typing.Any] = {"mysql_charset": "utf8mb4"}

teams = sa.Table(
    "diff_teams",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(60)),
    sa.Column("budget", sa.Numeric(12, 2)),
    sa.Column("founded", sa.Date),
    sa.Column("motto", Tagged("t:")),
    **_MYSQL,
)

people = sa.Table(
    "diff_people",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("team_id", sa.Integer),
    sa.Column("name", sa.String(60)),
    sa.Column("nick", Tagged("n:")),
    sa.Column("code", LegacyCode),
    sa.Column("score", sa.Float),
    sa.Column("balance", sa.Numeric(10, 3)),
    sa.Column("active", sa.Boolean),
    sa.Column("born", sa.Date),
    sa.Column("seen", sa.DateTime),
    **_MYSQL,
)

events = sa.Table(
    "diff_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("person_id", sa.Integer),
    sa.Column("kind", sa.String(20)),
    sa.Column("points", sa.Integer),
    sa.Column("weight", sa.Float),
    sa.Column("at", sa.DateTime),
    **_MYSQL,
)

READ_TABLES = (teams, people, events)


def scratch_table(name: str) -> sa.Table:
    """A table that statements write to; `databases` and SQLAlchemy each get their own copy."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(60)),
        sa.Column("amount", sa.Numeric(10, 2)),
        sa.Column("ratio", sa.Float),
        sa.Column("flag", sa.Boolean),
        sa.Column("at", sa.DateTime),
        sa.Column("day", sa.Date),
        sa.Column("nick", Tagged("s:")),
        **_MYSQL,
    )


scratch_a = scratch_table("diff_scratch_a")
scratch_b = scratch_table("diff_scratch_b")

# Text that stresses LIKE (%, _ and \), quoting and character sets.
NAMES = (
    "Ada",
    "ada",
    "Zoë",
    "Ünïcödé",
    "日本語テキスト",
    "emoji 🎉",
    "50% off",
    "100%",
    "under_score",
    "underXscore",
    "back\\slash",
    "C:\\dir\\file",
    "it's",
    'say "hi"',
    "#hash",
    "a/b",
    "",
    "percent%_mix\\",
)
# Pieces of the names above (and some that match nothing), for LIKE patterns.
FRAGMENTS = ("%", "_", "\\", "50%", "under_", "back\\", "ü", "ë", "a", "'", '"', "#", "/", "", "zz")
KINDS = ("goal", "assist", "foul", "save", "own_goal")


def _maybe(rng: random.Random, value: typing.Any, none_share: float = 0.2) -> typing.Any:
    return None if rng.random() < none_share else value


def a_date(rng: random.Random) -> datetime.date:
    return datetime.date(1990, 1, 1) + datetime.timedelta(days=rng.randint(0, 12000))


def a_datetime(rng: random.Random) -> datetime.datetime:
    return datetime.datetime(2020, 1, 1) + datetime.timedelta(
        seconds=rng.randint(0, 150_000_000), microseconds=rng.choice((0, 0, 250_000, 123_456))
    )


def a_decimal(rng: random.Random, scale: int = 3) -> decimal.Decimal:
    return decimal.Decimal(rng.randint(-999_999, 999_999)).scaleb(-scale)


def a_float(rng: random.Random) -> float:
    """A float every backend stores exactly (MySQL's FLOAT is single precision)."""
    return rng.randint(-4000, 4000) / 8


def seed_rows(seed: str) -> dict[sa.Table, list[dict[str, typing.Any]]]:
    """The rows of the read tables, the same for every backend and run with this seed."""
    rng = random.Random(f"{seed}:data")
    team_rows = [
        {
            "id": index,
            "name": _maybe(rng, rng.choice(NAMES), 0.15),
            "budget": _maybe(rng, a_decimal(rng, 2)),
            "founded": _maybe(rng, a_date(rng)),
            "motto": _maybe(rng, rng.choice(NAMES)),
        }
        for index in range(1, 8)
    ]
    people_rows = [
        {
            "id": index,
            "team_id": _maybe(rng, rng.randint(1, 9), 0.15),
            "name": _maybe(rng, rng.choice(NAMES), 0.1),
            "nick": _maybe(rng, rng.choice(NAMES), 0.3),
            "code": _maybe(rng, rng.randint(-5, 20), 0.3),
            "score": _maybe(rng, a_float(rng)),
            "balance": _maybe(rng, a_decimal(rng)),
            "active": _maybe(rng, rng.random() < 0.5),
            "born": _maybe(rng, a_date(rng)),
            "seen": _maybe(rng, a_datetime(rng)),
        }
        for index in range(1, 61)
    ]
    event_rows = [
        {
            "id": index,
            "person_id": rng.randint(1, 65),
            "kind": _maybe(rng, rng.choice(KINDS), 0.1),
            "points": _maybe(rng, rng.randint(-3, 12), 0.1),
            "weight": _maybe(rng, a_float(rng), 0.1),
            "at": _maybe(rng, a_datetime(rng), 0.1),
        }
        for index in range(1, 201)
    ]
    return {teams: team_rows, people: people_rows, events: event_rows}


def scratch_rows(seed: str) -> list[dict[str, typing.Any]]:
    """The rows both scratch tables start with (no ids: both sequences count alike)."""
    rng = random.Random(f"{seed}:scratch")
    return [scratch_values(rng) for _ in range(12)]


def scratch_values(rng: random.Random) -> dict[str, typing.Any]:
    return {
        "name": _maybe(rng, rng.choice(NAMES)),
        "amount": _maybe(rng, a_decimal(rng, 2)),
        "ratio": _maybe(rng, a_float(rng)),
        "flag": _maybe(rng, rng.random() < 0.5),
        "at": _maybe(rng, a_datetime(rng)),
        "day": _maybe(rng, a_date(rng)),
        "nick": _maybe(rng, rng.choice(NAMES)),
    }


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


SelectShape = typing.Callable[[random.Random], Case]
WriteShape = typing.Callable[[random.Random, sa.Table], Case]

ROWS = ("fetch_all", "iterate", "fetch_one")
ANY = ("fetch_all", "iterate", "fetch_one", "fetch_val")


def _rows(rng: random.Random, query: typing.Any, **options: typing.Any) -> Case:
    return Case(query, method=rng.choice(ROWS), **options)


def _any(rng: random.Random, query: typing.Any, **options: typing.Any) -> Case:
    return Case(query, method=rng.choice(ANY), **options)


def _ids(rng: random.Random, most: int = 7) -> list[int]:
    return rng.sample(range(-2, 70), rng.randint(0, most))


def _escaped(fragment: str, escape: str) -> str:
    for special in (escape, "%", "_"):
        fragment = fragment.replace(special, escape + special)
    return fragment


# -- SELECT shapes ---------------------------------------------------------------------------


def simple_by_id(rng: random.Random) -> Case:
    """The simple-select fast key: whole table, one equality."""
    return _rows(rng, sa.select(people).where(people.c.id == rng.randint(0, 62)))


def simple_columns_compared(rng: random.Random) -> Case:
    column = rng.choice((people.c.score, people.c.id, people.c.team_id))
    value = a_float(rng) if column is people.c.score else rng.randint(-1, 60)
    comparison = rng.choice(("__gt__", "__le__", "__ne__", "__ge__"))
    query = (
        sa.select(people.c.id, people.c.name, people.c.balance, people.c.seen)
        .where(getattr(column, comparison)(value))
        .order_by(people.c.id.desc() if rng.random() < 0.5 else people.c.id)
    )
    return _rows(rng, query)


def limit_offset(rng: random.Random) -> Case:
    query = sa.select(people.c.id, people.c.score, people.c.active).where(
        people.c.id > rng.randint(-5, 50)
    )
    query = query.order_by(people.c.id.asc()).limit(rng.randint(0, 12))
    if rng.random() < 0.7:
        query = query.offset(rng.randint(0, 15))
    return _rows(rng, query)


def order_by_mixed(rng: random.Random) -> Case:
    first = rng.choice((people.c.score, people.c.born, people.c.balance, people.c.team_id))
    direction = first.desc() if rng.random() < 0.5 else first.asc()
    query = (
        sa.select(people.c.id, first)
        .where(first.is_not(None))
        .order_by(direction, people.c.id.desc())
        .limit(rng.randint(1, 20))
    )
    return _rows(rng, query)


def in_list(rng: random.Random) -> Case:
    """IN lists of every length, empty included, negated half the time."""
    ids = _ids(rng)
    condition = people.c.id.in_(ids) if rng.random() < 0.6 else people.c.id.not_in(ids)
    query = sa.select(people.c.id, people.c.name).where(condition).order_by(people.c.id)
    return _rows(rng, query)


def in_list_of_text(rng: random.Random) -> Case:
    names = rng.sample(NAMES, rng.randint(0, 5))
    query = (
        sa.select(people.c.id, people.c.nick)
        .where(people.c.name.in_(names))
        .where(people.c.id < rng.randint(10, 70))
        .order_by(people.c.id)
    )
    return _rows(rng, query)


def in_expanding_bindparam(rng: random.Random) -> Case:
    query = (
        sa.select(people.c.id, people.c.score)
        .where(people.c.id.in_(sa.bindparam("wanted", expanding=True)))
        .order_by(people.c.id)
        .params(wanted=_ids(rng))
    )
    return _rows(rng, query)


def like_autoescape(rng: random.Random) -> Case:
    operator = rng.choice(("contains", "startswith", "endswith"))
    fragment = rng.choice(FRAGMENTS)
    column = rng.choice((people.c.name, people.c.nick))
    condition = getattr(column, operator)(fragment, autoescape=True)
    query = sa.select(people.c.id, column).where(condition).order_by(people.c.id)
    return _rows(rng, query)


def like_explicit_escape(rng: random.Random) -> Case:
    escape = rng.choice(("#", "!", "^"))
    pattern = f"%{_escaped(rng.choice(FRAGMENTS), escape)}%"
    column = people.c.name
    if rng.random() < 0.5:
        condition = column.like(pattern, escape=escape)
    else:
        condition = column.not_like(pattern, escape=escape)
    query = sa.select(people.c.id, column).where(condition).order_by(people.c.id)
    return _rows(rng, query)


def like_plain(rng: random.Random) -> Case:
    pattern = rng.choice(("A%", "%a%", "_d_", "%\\%", "%#%", "%🎉", "%"))
    column = people.c.name
    condition = column.ilike(pattern) if rng.random() < 0.5 else column.like(pattern)
    query = sa.select(people.c.id, column).where(condition).order_by(people.c.id)
    return _rows(rng, query)


def params_named(rng: random.Random) -> Case:
    """`.params()` on named bind parameters, the same statement with other values."""
    query = (
        sa.select(people.c.id, people.c.team_id, people.c.balance)
        .where(people.c.team_id == sa.bindparam("team"))
        .where(people.c.balance > sa.bindparam("least", type_=people.c.balance.type))
        .order_by(people.c.id)
    )
    return _rows(rng, query.params(team=rng.randint(0, 9), least=a_decimal(rng)))


def bindparam_with_value(rng: random.Random) -> Case:
    query = (
        sa.select(people.c.id, people.c.born)
        .where(people.c.born >= sa.bindparam("since", value=a_date(rng), type_=sa.Date))
        .where(people.c.active == sa.bindparam("flag", value=rng.random() < 0.5))
        .order_by(people.c.born, people.c.id)
    )
    return _rows(rng, query)


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
    return _any(rng, clause)


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
    return _any(rng, clause)


def text_expanding(rng: random.Random) -> Case:
    clause = sa.text("SELECT id, score FROM diff_people WHERE id IN :ids ORDER BY id").bindparams(
        sa.bindparam("ids", value=_ids(rng) or [-1], expanding=True)
    )
    return _rows(rng, clause)


def text_literal(rng: random.Random) -> Case:
    """`text()` with its values written into the SQL."""
    clause = sa.text(
        f"SELECT id, active FROM diff_people WHERE team_id = {rng.randint(0, 9)} ORDER BY id"
    )
    return _rows(rng, clause)


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
    return _rows(rng, query)


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
    return _rows(rng, query)


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
    return _rows(rng, query)


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
    return _any(rng, query)


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
    return _rows(rng, query)


def dates_and_times(rng: random.Random) -> Case:
    query = (
        sa.select(people.c.id, people.c.born, people.c.seen)
        .where(people.c.born.between(a_date(rng), a_date(rng)) | (people.c.seen < a_datetime(rng)))
        .order_by(people.c.seen.desc(), people.c.id)
    )
    return _rows(rng, query)


def date_aggregates(rng: random.Random) -> Case:
    query = sa.select(
        sa.func.max(people.c.seen).label("latest"),
        sa.func.min(people.c.born).label("earliest"),
        sa.func.count(people.c.seen).label("seen"),
    ).where(people.c.team_id == rng.randint(0, 9))
    return _any(rng, query)


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
    return _rows(rng, query)


def numeric_aggregates(rng: random.Random) -> Case:
    query = sa.select(
        sa.func.sum(people.c.balance).label("total"),
        sa.func.max(people.c.balance).label("largest"),
        sa.func.sum(people.c.score).label("scores"),
        sa.func.count().label("n"),
    ).where(people.c.id > rng.randint(0, 70))
    return _any(rng, query)


def type_decorator_cached(rng: random.Random) -> Case:
    """A `cache_ok` TypeDecorator in the WHERE and the columns, with its prefix in the key."""
    nick = rng.choice(NAMES)
    query = (
        sa.select(people.c.id, people.c.nick, teams.c.motto)
        .join_from(people, teams, people.c.team_id == teams.c.id, isouter=True)
        .where(sa.or_(people.c.nick == nick, people.c.nick.in_(rng.sample(NAMES, 3))))
        .order_by(people.c.id)
    )
    return _rows(rng, query)


def type_decorator_prefixes(rng: random.Random) -> Case:
    """Literals of the same TypeDecorator class with other arguments (other cache keys)."""
    prefix = rng.choice(("n:", "t:", "x:"))
    value = rng.choice(NAMES)
    query = (
        sa.select(people.c.id, sa.literal(value, Tagged(prefix)).label("tagged"))
        .where(people.c.id < rng.randint(1, 8))
        .order_by(people.c.id)
    )
    return _any(rng, query)


def type_decorator_uncached(rng: random.Random) -> Case:
    """A TypeDecorator without `cache_ok`: no cache key, compiled every time."""
    query = (
        sa.select(people.c.id, people.c.code)
        .where(people.c.code >= rng.randint(-5, 20))
        .where(people.c.id < rng.randint(10, 62))
        .order_by(people.c.code, people.c.id)
    )
    return _any(rng, query)


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
        .where(people.c.id.in_(_ids(rng, 12)))
        .order_by(people.c.id)
    )
    return _rows(rng, query)


def distinct_values(rng: random.Random) -> Case:
    column = rng.choice((people.c.team_id, people.c.active, people.c.born))
    query = sa.select(column).distinct().where(people.c.id > rng.randint(0, 40)).order_by(column)
    return _rows(rng, query)


def count_distinct(rng: random.Random) -> Case:
    query = sa.select(
        sa.func.count(sa.distinct(people.c.team_id)).label("teams"),
        sa.func.count(people.c.id).label("people"),
    ).where(people.c.score < a_float(rng))
    return _any(rng, query)


def union_unordered(rng: random.Random) -> Case:
    query = sa.union(
        sa.select(people.c.id, people.c.name).where(people.c.id < rng.randint(0, 20)),
        sa.select(teams.c.id, teams.c.name).where(teams.c.budget > a_decimal(rng, 2)),
    )
    return _rows(rng, query, ordered=False)


def union_all_ordered(rng: random.Random) -> Case:
    both = sa.union_all(
        sa.select(people.c.id.label("key"), people.c.born.label("day")).where(
            people.c.id.in_(_ids(rng))
        ),
        sa.select(teams.c.id, teams.c.founded).where(teams.c.id > rng.randint(0, 7)),
    ).subquery("both_")
    query = sa.select(both.c.key, both.c.day).order_by(both.c.key, both.c.day)
    return _rows(rng, query)


def exists_filter(rng: random.Random) -> Case:
    members = sa.exists().where(people.c.team_id == teams.c.id).where(people.c.score > a_float(rng))
    condition = members if rng.random() < 0.6 else ~members
    query = sa.select(teams.c.id, teams.c.name, teams.c.founded).where(condition)
    return _rows(rng, query.order_by(teams.c.id))


def exists_scalar(rng: random.Random) -> Case:
    """`SELECT EXISTS (...)`: a boolean result column."""
    query = sa.select(
        sa.exists().where(people.c.team_id == rng.randint(0, 9)).where(people.c.active.is_(True))
    )
    return _any(rng, query)


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
    return _rows(rng, query)


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
    return _rows(rng, query)


def count_and_coalesce(rng: random.Random) -> Case:
    """`func.count()` as a value, by position or by name."""
    query = (
        sa.select(sa.func.count().label("n"), sa.func.coalesce(sa.func.max(people.c.id), -1))
        .select_from(people)
        .where(people.c.name.like(f"%{rng.choice('aeiouü')}%"))
    )
    return Case(query, method="fetch_val", column=rng.choice((0, "n")))


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
    return _rows(rng, query)


def self_join_aliases(rng: random.Random) -> Case:
    left, right = people.alias("a"), people.alias("b")
    query = (
        sa.select(left.c.id, right.c.id, left.c.name, right.c.score)
        .join_from(left, right, left.c.team_id == right.c.team_id)
        .where(left.c.id < right.c.id, left.c.id < rng.randint(1, 20))
        .order_by(left.c.id, right.c.id)
        .limit(rng.randint(1, 40))
    )
    return _rows(rng, query)


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
    return _any(rng, query)


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
    return _rows(rng, query)


def tuple_in(rng: random.Random) -> Case:
    """A row-value IN list: each element of each tuple converted by its column's type."""
    pairs = [(rng.randint(0, 9), a_date(rng)) for _ in range(rng.randint(1, 4))]
    pairs += [
        (row["team_id"], row["born"])
        for row in rng.sample(seed_rows("pairs")[people], 2)
        if row["team_id"] is not None
    ]
    query = (
        sa.select(people.c.id, people.c.team_id, people.c.born)
        .where(sa.tuple_(people.c.team_id, people.c.born).in_(pairs))
        .order_by(people.c.id)
    )
    return _rows(rng, query)


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
    return _rows(rng, query)


def one_bindparam_twice(rng: random.Random) -> Case:
    value = sa.bindparam("pivot", value=rng.randint(0, 60))
    query = (
        sa.select(people.c.id, (people.c.id - value).label("distance"))
        .where(sa.or_(people.c.id == value, people.c.team_id == value))
        .order_by(people.c.id)
    )
    return _rows(rng, query)


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
    return _rows(rng, query)


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
    return _rows(rng, query)


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
    return _rows(rng, query)


def duplicate_names(rng: random.Random) -> Case:
    """Two result columns with one name (raw SQL); SQLAlchemy keeps both."""
    sql = f"SELECT id, name AS id FROM diff_people WHERE id = {rng.randint(1, 60)}"
    return Case(sql, method=rng.choice(ROWS))


SELECT_SHAPES: dict[str, SelectShape] = {
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
        raw_string_literals,
        text_bindparams,
        text_typed_columns,
        text_expanding,
        text_literal,
        limited_subquery_join,
        group_by_having,
        group_by_join,
        null_tests,
        booleans,
        dates_and_times,
        date_aggregates,
        numeric_and_float,
        numeric_aggregates,
        type_decorator_cached,
        type_decorator_prefixes,
        type_decorator_uncached,
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
        coalesce_columns,
        self_join_aliases,
        literal_select,
        string_functions,
        tuple_in,
        in_list_of_dates_and_decorated,
        one_bindparam_twice,
        tables_joined_whole,
        casts_and_coercions,
        aggregate_of_subquery,
        cte_join,
        duplicate_names,
    )
}


# -- write shapes: each builds its statement for the table it is given -----------------------


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
        .where(table.c.id.in_(_ids(rng, 5)))
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
    ).where(people.c.id.in_(_ids(rng, 4)))
    query = table.insert().from_select(["name", "amount", "day"], source)
    return Case(query, method="execute")


WRITE_SHAPES: dict[str, WriteShape] = {
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
    )
}
