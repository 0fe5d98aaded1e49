"""Returned rows: every `Record` access form, and values converted per column type."""

from __future__ import annotations

import collections.abc
import datetime
import decimal
import pickle
import typing

import pytest
import sqlalchemy as sa

from databases import Database, DatabaseURL
from tests.tables import (
    Point,
    PointType,
    Size,
    alarms,
    articles,
    blobs,
    days,
    documents,
    events,
    notes,
    prices,
    shapes,
    shirts,
    switches,
)

pytestmark = pytest.mark.usefixtures("shared_tables")


# -- Record access forms ---------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("force_rollback", [False, True])
async def test_record_access_forms(database_url: str, force_rollback: bool) -> None:
    async with Database(database_url, force_rollback=force_rollback) as database:
        await database.execute(notes.insert(), values={"text": "hello", "completed": True})
        note_id = await database.fetch_val(sa.select(notes.c.id))

        for row in [
            await database.fetch_one(sa.select(notes)),
            (await database.fetch_all(sa.select(notes.c.id, notes.c.text, notes.c.completed)))[0],
            [row async for row in database.iterate(sa.select(notes))][0],  # noqa: RUF015
        ]:
            assert row is not None
            # by name, by position, by Column, by attribute
            assert row["text"] == "hello"
            assert row["id"] == note_id
            assert row[0] == note_id
            assert row[1] == "hello"
            assert row[2] is True
            assert row[notes.c.text] == "hello"
            assert row[notes.c.completed] is True
            assert row.text == "hello"
            assert row.completed is True

            # the mapping view is read-only
            mapping = row._mapping
            assert isinstance(mapping, collections.abc.Mapping)
            assert mapping["text"] == "hello"
            assert dict(mapping) == {"id": note_id, "text": "hello", "completed": True}
            assert list(mapping.items())[1] == ("text", "hello")
            assert list(mapping.keys()) == ["id", "text", "completed"]
            assert "text" in mapping
            with pytest.raises(TypeError):
                mapping["text"] = "changed"  # type: ignore[index]

            # the mapping protocol on the record itself
            assert list(row.keys()) == ["id", "text", "completed"]
            assert list(row.values()) == [note_id, "hello", True]
            assert dict(row) == {"id": note_id, "text": "hello", "completed": True}
            assert len(row) == 3
            assert list(row) == ["id", "text", "completed"]  # iteration yields the keys
            assert "completed" in row

            with pytest.raises(KeyError):
                row["missing"]
            with pytest.raises(AttributeError):
                _ = row.missing


@pytest.mark.asyncio
async def test_record_of_raw_query(database_url: str) -> None:
    async with Database(database_url) as database:
        await database.execute(notes.insert(), values={"text": "raw", "completed": False})
        row = await database.fetch_one("SELECT id, text FROM notes WHERE text = :t", {"t": "raw"})
        assert row is not None
        assert list(row.keys()) == ["id", "text"]
        assert row["text"] == row[1] == row.text == row._mapping["text"] == "raw"
        assert dict(row) == {"id": row[0], "text": "raw"}
        assert len(row) == 2
        assert list(row) == ["id", "text"]


@pytest.mark.asyncio
async def test_record_labels(database_url: str) -> None:
    async with Database(database_url) as database:
        await database.execute(notes.insert(), values={"text": "labelled", "completed": True})
        row = await database.fetch_one(
            sa.select(notes.c.text.label("title"), notes.c.completed.label("done"))
        )
        assert row is not None
        assert list(row.keys()) == ["title", "done"]
        assert row["title"] == row.title == "labelled"
        assert row["done"] is True  # a label keeps the column type's processing
        count = await database.fetch_one(sa.select(sa.func.count().label("n")).select_from(notes))
        assert count is not None
        assert count["n"] == 1


def assert_every_column_kept(row: typing.Any, keys: list[str], values: list[typing.Any]) -> None:
    """Every column in order in every view, as in databases 0.9; a duplicated name gives
    its last column, as `row[name]` did in 0.9."""
    last = dict(zip(keys, values))
    assert list(row._mapping.keys()) == list(row.keys()) == list(row) == keys
    assert list(row._mapping.values()) == list(row.values()) == values
    assert list(row._mapping.items()) == list(row.items()) == list(zip(keys, values))
    assert list(row._mapping) == keys
    assert len(row._mapping) == len(row) == len(keys)
    assert [row[position] for position in range(len(keys))] == values
    assert dict(row) == dict(row._mapping) == last
    for name, value in last.items():
        assert row[name] == row._mapping[name] == getattr(row, name) == value
    clone = pickle.loads(pickle.dumps(row))
    assert list(clone.items()) == list(zip(keys, values)) and dict(clone) == last


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1 AS id, 2 AS id, 3 AS b",
        sa.text("SELECT 1 AS id, 2 AS id, 3 AS b"),
        sa.text("SELECT 1 AS id, 2 AS id, 3 AS b").columns(
            sa.column("id", sa.Integer), sa.column("id", sa.Integer), sa.column("b", sa.Integer)
        ),
        sa.select(
            sa.literal_column("1").label("id"),
            sa.literal_column("2").label("id"),
            sa.literal_column("3").label("b"),
        ),
    ],
    ids=["raw", "text", "text with columns", "select"],
)
async def test_duplicate_column_names(database_url: str, query: typing.Any) -> None:
    async with Database(database_url) as database:
        row = await database.fetch_one(query)
        assert row is not None
        assert_every_column_kept(row, ["id", "id", "b"], [1, 2, 3])
        assert row["id"] == 2
        assert (await database.fetch_all(query))[0] == row
        assert [r async for r in database.iterate(query)] == [row]


@pytest.mark.asyncio
async def test_duplicate_column_names_of_a_join(database_url: str) -> None:
    """A join of two tables with an `id` each: SQLAlchemy labels the second `id_1` (0.9
    did the same); without labels, or in raw SQL, both are `id`. Columns find their own."""
    async with Database(database_url) as database:
        await database.execute(notes.insert(), values={"text": "n", "completed": False})
        await database.execute(articles.insert(), values={"title": "a", "published": None})
        note_id = await database.fetch_val(sa.select(notes.c.id))
        article_id = await database.fetch_val(sa.select(articles.c.id))
        assert note_id is not None and article_id is not None
        joined = sa.select(notes.c.id, notes.c.text, articles.c.id, articles.c.title).select_from(
            notes.join(articles, sa.true())
        )
        values = [note_id, "n", article_id, "a"]

        row = await database.fetch_one(joined)
        assert row is not None
        assert_every_column_kept(row, ["id", "text", "id_1", "title"], values)

        unlabelled = joined.set_label_style(sa.LABEL_STYLE_NONE)
        raw = "SELECT notes.id, notes.text, articles.id, articles.title FROM notes, articles"
        for query in [joined, unlabelled, raw]:
            row = await database.fetch_one(query)
            assert row is not None
            if query is not joined:
                assert_every_column_kept(row, ["id", "text", "id", "title"], values)
                assert row["id"] == article_id
            if query is not raw:
                assert row[notes.c.id] == row._mapping[notes.c.id] == note_id
                assert row[articles.c.id] == row._mapping[articles.c.id] == article_id


# -- value conversion per column type --------------------------------------------------------


async def store_and_read_back(
    database: Database, table: sa.Table, column: str, values: list[typing.Any]
) -> list[typing.Any]:
    """Insert `values` (the first with execute(), the rest with execute_many()), read them
    back with every query method, check that all methods agree and return the values."""
    await database.execute(table.insert(), values={column: values[0]})
    if len(values) > 1:
        await database.execute_many(table.insert(), values=[{column: v} for v in values[1:]])

    query = sa.select(table.c.id, table.c[column]).order_by(table.c.id)
    rows = await database.fetch_all(query)
    ids = [row["id"] for row in rows]
    assert len(ids) == len(values)
    by_fetch_all = [row[column] for row in rows]
    by_iterate = [row[column] async for row in database.iterate(query)]
    by_fetch_one = []
    by_fetch_val = []
    for row_id in ids:
        one = await database.fetch_one(sa.select(table).where(table.c.id == row_id))
        assert one is not None
        by_fetch_one.append(one[column])
        by_fetch_val.append(
            await database.fetch_val(sa.select(table.c[column]).where(table.c.id == row_id))
        )
    for other in (by_iterate, by_fetch_one, by_fetch_val):
        assert other == by_fetch_all
        assert [type(v) for v in other] == [type(v) for v in by_fetch_all]
    return by_fetch_all


def dialect_of(url: str) -> str:
    return DatabaseURL(url).dialect


@pytest.mark.asyncio
async def test_datetime_naive(database_url: str) -> None:
    # MySQL's DATETIME keeps whole seconds only
    micro = 0 if dialect_of(database_url) == "mysql" else 123456
    values = [
        datetime.datetime(2024, 5, 17, 13, 45, 30, micro),
        datetime.datetime(1999, 12, 31, 23, 59, 59),
        None,
    ]
    async with Database(database_url) as database:
        results = await store_and_read_back(database, articles, "published", values)
    assert results == values
    assert all(isinstance(v, datetime.datetime) and v.tzinfo is None for v in results[:2])


@pytest.mark.asyncio
async def test_datetime_with_timezone(database_url: str) -> None:
    dialect = dialect_of(database_url)
    micro = 0 if dialect == "mysql" else 654321
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    values = [
        datetime.datetime(2024, 5, 17, 13, 45, 30, micro, tzinfo=plus_two),
        datetime.datetime(2021, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
    ]
    async with Database(database_url) as database:
        results = await store_and_read_back(database, events, "happened", values)
    for value, result in zip(values, results):
        assert isinstance(result, datetime.datetime)
        if dialect == "postgresql":
            # TIMESTAMP WITH TIME ZONE: an aware value for the same instant
            assert result.tzinfo is not None
            assert result == value
        elif result.tzinfo is None:
            # no time zone storage: the wall-clock time is kept
            assert result == value.replace(tzinfo=None)
        else:
            assert result == value


@pytest.mark.asyncio
async def test_date(database_url: str) -> None:
    values = [datetime.date(2024, 2, 29), datetime.date(1970, 1, 1), None]
    async with Database(database_url) as database:
        results = await store_and_read_back(database, days, "day", values)
        # a date bound in a raw query is converted too
        await database.execute(
            "INSERT INTO days (day) VALUES (:day)", values={"day": datetime.date(2000, 6, 15)}
        )
        raw_inserted = await database.fetch_val(
            sa.select(days.c.day).where(days.c.day == datetime.date(2000, 6, 15))
        )
    assert results == values
    assert all(type(v) is datetime.date for v in results[:2])
    assert raw_inserted == datetime.date(2000, 6, 15)


@pytest.mark.asyncio
async def test_time(database_url: str) -> None:
    micro = 0 if dialect_of(database_url) == "mysql" else 250000
    values = [datetime.time(13, 45, 30, micro), datetime.time(0, 0), datetime.time(23, 59, 59)]
    async with Database(database_url) as database:
        results = await store_and_read_back(database, alarms, "ring_at", values)
    assert results == values
    assert all(type(v) is datetime.time for v in results)


@pytest.mark.asyncio
async def test_json(database_url: str) -> None:
    values: list[typing.Any] = [
        {"text": "hello", "number": 42, "nested": {"list": [1, 2, 3], "flag": True}},
        [1, "two", None, False, {"x": 1.5}],
        {"empty": {}, "unicode": "h\u00e9llo \u2603"},
        [],
    ]
    async with Database(database_url) as database:
        results = await store_and_read_back(database, documents, "data", values)
    assert results == values
    assert [type(v) for v in results] == [dict, list, dict, list]


@pytest.mark.asyncio
async def test_numeric_decimal(database_url: str) -> None:
    # binary-exact values come back exact everywhere
    exact = [decimal.Decimal("0.5"), decimal.Decimal("-3.25"), decimal.Decimal("1024")]
    async with Database(database_url) as database:
        results = await store_and_read_back(database, prices, "amount", exact)
    assert all(type(v) is decimal.Decimal for v in results)
    assert results == exact


@pytest.mark.asyncio
async def test_numeric_decimal_precision(database_url: str) -> None:
    dialect = dialect_of(database_url)
    values = [
        decimal.Decimal("1234567890.12345678901234567890"),
        decimal.Decimal("0.00000000000000000001"),
        decimal.Decimal("700.001"),
    ]
    async with Database(database_url) as database:
        results = await store_and_read_back(database, prices, "amount", values)
    assert all(type(v) is decimal.Decimal for v in results)
    if dialect == "sqlite":
        # SQLite has no decimal storage: SQLAlchemy goes through a float, so only the
        # float's precision survives
        for value, result in zip(values, results):
            assert abs(result - value) <= abs(value) * decimal.Decimal("1e-15")
    else:
        assert results == values  # exact to the last of the 20 decimal places


@pytest.mark.asyncio
async def test_enum(database_url: str) -> None:
    values = [Size.MEDIUM, Size.SMALL, Size.LARGE, None]
    async with Database(database_url) as database:
        results = await store_and_read_back(database, shirts, "size", values)
        small = await database.fetch_all(sa.select(shirts).where(shirts.c.size == Size.SMALL))
    for value, result in zip(values, results):
        assert result is value
    assert [row["size"] for row in small] == [Size.SMALL]


@pytest.mark.asyncio
async def test_large_binary(database_url: str) -> None:
    values = [b"\x00\x01\x02\xff\xfe binary \x00 data", bytes(range(256)) * 4, b""]
    async with Database(database_url) as database:
        results = await store_and_read_back(database, blobs, "data", values)
    assert results == values
    assert all(type(v) is bytes for v in results)


@pytest.mark.asyncio
async def test_bytes_as_parameters_of_every_kind(database_url: str) -> None:
    # Bytes values in WHERE clauses, raw SQL and a streamed query's parameters (MySQL:
    # aiomysql 0.3.2's own escaping of bytes fails with PyMySQL 1.2).
    tricky = b"\x00'\"\\%s%%\xff"
    async with Database(database_url) as database:
        await database.execute(blobs.insert(), values={"data": tricky})
        await database.execute(
            "INSERT INTO blobs (data) VALUES (:data)", values={"data": bytearray(b"\x01\x02")}
        )
        await database.execute_many(
            "INSERT INTO blobs (data) VALUES (:data)", values=[{"data": b"\x03"}, {"data": b""}]
        )
        where = sa.select(blobs.c.data).where(blobs.c.data == tricky)
        assert await database.fetch_val(where) == tricky
        assert [row[0] async for row in database.iterate(where)] == [tricky]
        raw = await database.fetch_all(
            "SELECT data FROM blobs WHERE data = :a OR data = :b ORDER BY id",
            values={"a": b"\x01\x02", "b": b"\x03"},
        )
        assert [bytes(row[0]) for row in raw] == [b"\x01\x02", b"\x03"]
        assert await database.fetch_val(sa.select(sa.func.count()).select_from(blobs)) == 4


@pytest.mark.asyncio
async def test_boolean(database_url: str) -> None:
    values = [True, False, None]
    async with Database(database_url) as database:
        results = await store_and_read_back(database, switches, "is_on", values)
        on = await database.fetch_all(sa.select(switches.c.id).where(switches.c.is_on == sa.true()))
    assert results[0] is True
    assert results[1] is False
    assert results[2] is None
    assert len(on) == 1


# -- a custom TypeDecorator is applied exactly once -----------------------------------------


def assert_once(value: typing.Any, expected: Point) -> None:
    assert isinstance(value, Point), f"result processing did not run: {value!r}"
    assert value == expected
    assert value.conversions == 1, f"result processing ran {value.conversions} times"


@pytest.mark.asyncio
@pytest.mark.parametrize("force_rollback", [False, True])
async def test_type_decorator_applied_exactly_once(database_url: str, force_rollback: bool) -> None:
    expected = [Point(1, 2), Point(3, 4), Point(-5, 6)]
    async with Database(database_url, force_rollback=force_rollback) as database:
        # binding: PointType refuses anything but Point, so a second bind would fail
        await database.execute(shapes.insert(), values={"point": expected[0]})
        await database.execute_many(
            shapes.insert(), values=[{"point": expected[1]}, {"point": expected[2]}]
        )
        query = sa.select(shapes.c.id, shapes.c.point).order_by(shapes.c.id)

        # fetch_all, each value read once
        PointType.reset_counters()
        rows = await database.fetch_all(query)
        for row, point in zip(rows, expected):
            assert_once(row["point"], point)
        assert PointType.result_calls == 3

        # every access form of one record
        row = rows[0]
        for value in (
            row["point"],
            row[1],
            row[shapes.c.point],
            row.point,
            row._mapping["point"],
            dict(row)["point"],
            list(row.values())[1],
        ):
            assert_once(value, expected[0])

        # fetch_one
        PointType.reset_counters()
        one = await database.fetch_one(sa.select(shapes).where(shapes.c.point == expected[1]))
        assert one is not None
        assert_once(one["point"], expected[1])
        assert PointType.result_calls == 1

        # fetch_val, by index and by name
        PointType.reset_counters()
        assert_once(await database.fetch_val(query, column=1), expected[0])
        assert_once(await database.fetch_val(query, column="point"), expected[0])
        assert PointType.result_calls == 2

        # iterate
        PointType.reset_counters()
        iterated = [row["point"] async for row in database.iterate(query)]
        for value, point in zip(iterated, expected):
            assert_once(value, point)
        assert PointType.result_calls == 3

        # raw SQL given the table's columns through Core
        PointType.reset_counters()
        textual = sa.text("SELECT id, point FROM shapes ORDER BY id").columns(
            shapes.c.id, shapes.c.point
        )
        for value, point in zip([r["point"] for r in await database.fetch_all(textual)], expected):
            assert_once(value, point)
        assert PointType.result_calls == 3

        # a label keeps the type
        PointType.reset_counters()
        labelled = await database.fetch_one(
            sa.select(shapes.c.point.label("p")).order_by(shapes.c.id)
        )
        assert labelled is not None
        assert_once(labelled["p"], expected[0])
        assert PointType.result_calls == 1

        # a plain raw string has no column types: the stored text comes back unprocessed
        PointType.reset_counters()
        stored = await database.fetch_val(
            "SELECT point FROM shapes WHERE id = :id", values={"id": rows[0]["id"]}
        )
        assert stored == "1;2"
        assert PointType.result_calls == 0
