"""The tables the test suite works on, one per column type that needs result processing.

`admin.create_tables()` builds them on every database in `settings.DATABASE_URLS` before the
session and `conftest` empties them after each test, so no test may rely on leftover rows.
"""

from __future__ import annotations

import enum
import typing

import sqlalchemy as sa

metadata = sa.MetaData()


class Size(enum.Enum):
    SMALL = "S"
    MEDIUM = "M"
    LARGE = "L"


class Point:
    """A value stored by `PointType` as the text ``"x;y"``.

    `conversions` counts how many times a result value went through
    `PointType.process_result_value`: it is 1 when the type's result processing ran exactly once.
    """

    __slots__ = ("conversions", "x", "y")

    def __init__(self, x: int, y: int, conversions: int = 0) -> None:
        self.x = x
        self.y = y
        self.conversions = conversions

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Point):
            return NotImplemented
        return (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))

    def __repr__(self) -> str:
        return f"Point({self.x}, {self.y}, conversions={self.conversions})"


class PointType(sa.types.TypeDecorator[Point]):
    """A custom type: `Point` in Python, ``"x;y"`` text in the database.

    Binding refuses anything but a `Point`, so a value bound twice fails loudly. A result value
    processed twice comes back with `conversions == 2` instead of 1, and `result_calls` counts
    every call so a test can check there is one call per fetched value.
    """

    impl = sa.String(40)
    cache_ok = True

    result_calls: typing.ClassVar[int] = 0
    bind_calls: typing.ClassVar[int] = 0

    def process_bind_param(self, value: typing.Any, dialect: sa.Dialect) -> typing.Any:
        type(self).bind_calls += 1
        if value is None:
            return None
        if not isinstance(value, Point):
            raise TypeError(f"PointType binds Point objects only, got {value!r}")
        return f"{value.x};{value.y}"

    def process_result_value(self, value: typing.Any, dialect: sa.Dialect) -> typing.Any:
        type(self).result_calls += 1
        if value is None:
            return None
        if isinstance(value, Point):
            # Processed a second time: keep the value but make the repetition visible.
            return Point(value.x, value.y, conversions=value.conversions + 1)
        x, y = str(value).split(";")
        return Point(int(x), int(y), conversions=1)

    @classmethod
    def reset_counters(cls) -> None:
        cls.result_calls = 0
        cls.bind_calls = 0


notes = sa.Table(
    "notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("text", sa.String(100)),
    sa.Column("completed", sa.Boolean),
)

# DateTime without a time zone.
articles = sa.Table(
    "articles",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("title", sa.String(100)),
    sa.Column("published", sa.DateTime),
)

# DateTime with a time zone.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("happened", sa.DateTime(timezone=True)),
)

days = sa.Table(
    "days",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("day", sa.Date),
)

alarms = sa.Table(
    "alarms",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ring_at", sa.Time),
)

documents = sa.Table(
    "documents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("data", sa.JSON),
)

prices = sa.Table(
    "prices",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("amount", sa.Numeric(precision=30, scale=20)),
)

shirts = sa.Table(
    "shirts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("size", sa.Enum(Size, name="shirt_size")),
)

shapes = sa.Table(
    "shapes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("point", PointType),
)

blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("data", sa.LargeBinary),
)

switches = sa.Table(
    "switches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(40)),
    sa.Column("is_on", sa.Boolean),
)
