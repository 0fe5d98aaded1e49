"""The tables of the differential test, their seeded rows, and random column values.

The read tables (`teams`, `people`, `events`) are filled once from the seed; write shapes
change the scratch tables, one copy per side. Text values stress LIKE (%, _ and \\), quoting
and character sets; every nullable column has NULLs.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import functools
import os
import random
import typing
import uuid

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


class Mood(enum.Enum):
    HAPPY = "h"
    SAD = "s"
    MEH = "m"


# Column types with their own bind and result processing on some backend.
extras = sa.Table(
    "diff_extras",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("mood", sa.Enum(Mood, name="diff_mood")),
    sa.Column("color", sa.Enum("red", "green", "blue", name="diff_color")),
    sa.Column("doc", sa.JSON),
    sa.Column("ring", sa.Time),
    sa.Column("span", sa.Interval),
    sa.Column("uid", sa.Uuid),
    sa.Column("ratio", sa.Numeric(8, 4, asdecimal=False)),
    sa.Column("exact", sa.Float(asdecimal=True)),
    sa.Column("big", sa.BigInteger),
    sa.Column("small", sa.SmallInteger),
    sa.Column("body", sa.Text),
    **_MYSQL,
)

# Binary values apart: a driver that cannot send them fails only the shapes using them.
blobs = sa.Table(
    "diff_blobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("data", sa.LargeBinary),
    **_MYSQL,
)

# Timezone-aware datetimes (TIMESTAMP WITH TIME ZONE on PostgreSQL; the others keep the
# wall-clock time only).
moments = sa.Table(
    "diff_moments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.DateTime(timezone=True)),
    **_MYSQL,
)

READ_TABLES = (teams, people, events, extras, blobs, moments)

# Byte strings that quoting and escaping could get wrong.
BYTES = (b"", b"\x00", b"\\", b"'", b"\x00\xff\x80'\"\\", "é".encode(), b"%_")


def _slug(context: typing.Any) -> str:
    """A column default computed from the row's other values."""
    name = context.get_current_parameters().get("name")
    return f"slug:{name if isinstance(name, str) else type(name).__name__}"


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
        # Python-side defaults, computed per execution: a scalar, one from the other
        # values of the row, and a scalar on UPDATE.
        sa.Column("note", sa.String(60), default="none"),
        sa.Column("slug", sa.String(80), default=_slug),
        sa.Column("version", sa.Integer, default=1, onupdate=2),
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


def maybe(rng: random.Random, value: typing.Any, none_share: float = 0.2) -> typing.Any:
    return None if rng.random() < none_share else value


def a_date(rng: random.Random) -> datetime.date:
    return datetime.date(1990, 1, 1) + datetime.timedelta(days=rng.randint(0, 12000))


def a_datetime(rng: random.Random) -> datetime.datetime:
    return datetime.datetime(2020, 1, 1) + datetime.timedelta(
        seconds=rng.randint(0, 150_000_000), microseconds=rng.choice((0, 0, 250_000, 123_456))
    )


def a_decimal(rng: random.Random, scale: int = 3) -> decimal.Decimal:
    return decimal.Decimal(rng.randint(-999_999, 999_999)).scaleb(-scale)


def a_fragment(rng: random.Random) -> str:
    """Mostly a piece of one of the names (so LIKE finds something), else any fragment."""
    if rng.random() < 0.25:
        return rng.choice(FRAGMENTS)
    name = rng.choice(NAMES)
    start = rng.randint(0, len(name))
    return name[start : rng.randint(start, len(name))]


def a_float(rng: random.Random) -> float:
    """A float every backend stores exactly (MySQL's FLOAT is single precision)."""
    return rng.randint(-4000, 4000) / 8


# Every random choice of a run derives from this seed; a failure prints it.
SEED = os.environ.get("DIFFERENTIAL_SEED", "20261206")


@functools.lru_cache(maxsize=4)
def seed_rows(seed: str = SEED) -> dict[sa.Table, list[dict[str, typing.Any]]]:
    """The rows of the read tables, the same for every backend and run with this seed."""
    rng = random.Random(f"{seed}:data")
    team_rows = [
        {
            "id": index,
            "name": maybe(rng, rng.choice(NAMES), 0.15),
            "budget": maybe(rng, a_decimal(rng, 2)),
            "founded": maybe(rng, a_date(rng)),
            "motto": maybe(rng, rng.choice(NAMES)),
        }
        for index in range(1, 8)
    ]
    people_rows = [
        {
            "id": index,
            "team_id": maybe(rng, rng.randint(1, 9), 0.15),
            "name": maybe(rng, rng.choice(NAMES), 0.1),
            "nick": maybe(rng, rng.choice(NAMES), 0.3),
            "code": maybe(rng, rng.randint(-5, 20), 0.3),
            "score": maybe(rng, a_float(rng)),
            "balance": maybe(rng, a_decimal(rng)),
            "active": maybe(rng, rng.random() < 0.5),
            "born": maybe(rng, a_date(rng)),
            "seen": maybe(rng, a_datetime(rng)),
        }
        for index in range(1, 61)
    ]
    event_rows = [
        {
            "id": index,
            "person_id": rng.randint(1, 65),
            "kind": maybe(rng, rng.choice(KINDS), 0.1),
            "points": maybe(rng, rng.randint(-3, 12), 0.1),
            "weight": maybe(rng, a_float(rng), 0.1),
            "at": maybe(rng, a_datetime(rng), 0.1),
        }
        for index in range(1, 201)
    ]
    extra_rows = [extras_values(rng, index) for index in range(1, 31)]
    blob_rows = [{"id": index, "data": maybe(rng, a_blob(rng))} for index in range(1, 16)]
    moment_rows = [
        {"id": index, "at": maybe(rng, an_aware_datetime(rng))} for index in range(1, 21)
    ]
    return {
        teams: team_rows,
        people: people_rows,
        events: event_rows,
        extras: extra_rows,
        blobs: blob_rows,
        moments: moment_rows,
    }


def an_aware_datetime(rng: random.Random) -> datetime.datetime:
    """A datetime with a whole-hour offset and no fraction (MySQL keeps neither)."""
    zone = datetime.timezone(datetime.timedelta(hours=rng.randint(-11, 12)))
    return a_datetime(rng).replace(microsecond=0, tzinfo=zone)


def a_blob(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return rng.choice(BYTES)
    return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 12)))


def a_time(rng: random.Random) -> datetime.time:
    return datetime.time(rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59))


def a_uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def a_document(rng: random.Random) -> typing.Any:
    """JSON of every kind: objects, arrays, numbers, text with quotes, true/false/null."""
    return rng.choice(
        (
            {"name": rng.choice(NAMES), "n": rng.randint(-9, 9), "tags": ["a", "b"]},
            {"nested": {"x": a_float(rng), "ok": rng.random() < 0.5, "none": None}},
            [1, "two", 3.5, None, {"k": "v"}],
            rng.choice(NAMES),
            rng.randint(-1000, 1000),
            None,
        )
    )


def extras_values(rng: random.Random, index: int) -> dict[str, typing.Any]:
    return {
        "id": index,
        "mood": maybe(rng, rng.choice(list(Mood))),
        "color": maybe(rng, rng.choice(("red", "green", "blue"))),
        "doc": maybe(rng, a_document(rng)),
        "ring": maybe(rng, a_time(rng)),
        "span": maybe(rng, datetime.timedelta(seconds=rng.randint(0, 400_000))),
        "uid": maybe(rng, a_uuid(rng)),
        "ratio": maybe(rng, rng.randint(-99999, 99999) / 16),
        "exact": maybe(rng, a_float(rng)),
        "big": maybe(rng, rng.randint(-(2**62), 2**62)),
        "small": maybe(rng, rng.randint(-32768, 32767)),
        "body": maybe(rng, rng.choice(NAMES) * rng.randint(1, 50)),
    }


def scratch_rows(seed: str) -> list[dict[str, typing.Any]]:
    """The rows both scratch tables start with (no ids: both sequences count alike)."""
    rng = random.Random(f"{seed}:scratch")
    return [scratch_values(rng) for _ in range(12)]


def scratch_values(rng: random.Random) -> dict[str, typing.Any]:
    return {
        "name": maybe(rng, rng.choice(NAMES)),
        "amount": maybe(rng, a_decimal(rng, 2)),
        "ratio": maybe(rng, a_float(rng)),
        "flag": maybe(rng, rng.random() < 0.5),
        "at": maybe(rng, a_datetime(rng)),
        "day": maybe(rng, a_date(rng)),
        "nick": maybe(rng, rng.choice(NAMES)),
    }
