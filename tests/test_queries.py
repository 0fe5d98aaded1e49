"""Query methods of `Database`: Core clauses and raw SQL, return values, lifecycle and logging."""

from __future__ import annotations

import asyncio
import decimal
import logging
import typing
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa

from databases import Database, DatabaseURL
from tests import admin
from tests.tables import Point, notes, shapes

pytestmark = pytest.mark.usefixtures("shared_tables")

SCRATCH_TABLE = "scratch_ddl"


# -- fetch_all / fetch_one / fetch_val / execute with Core clauses ------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("force_rollback", [False, True])
async def test_core_queries(database_url: str, force_rollback: bool) -> None:
    async with Database(database_url, force_rollback=force_rollback) as database:
        # insert through values= (applied as query.values(**values))
        await database.execute(notes.insert(), values={"text": "example1", "completed": True})
        # insert with the values on the clause itself
        await database.execute(notes.insert().values(text="example2", completed=False))
        await database.execute_many(
            notes.insert(),
            values=[
                {"text": "example3", "completed": False},
                {"text": "example4", "completed": True},
            ],
        )

        rows = await database.fetch_all(sa.select(notes).order_by(notes.c.id))
        assert [row["text"] for row in rows] == ["example1", "example2", "example3", "example4"]
        assert [row["completed"] for row in rows] == [True, False, False, True]

        row = await database.fetch_one(sa.select(notes).where(notes.c.text == "example3"))
        assert row is not None
        assert row["text"] == "example3"
        assert row["completed"] is False

        # fetch_one of a multi-row result returns the first row
        first = await database.fetch_one(sa.select(notes).order_by(notes.c.id))
        assert first is not None
        assert first["text"] == "example1"

        # fetch_val: first column by default, else by index or by name
        query = sa.select(notes.c.id, notes.c.text).where(notes.c.text == "example2")
        assert await database.fetch_val(query) == rows[1]["id"]
        assert await database.fetch_val(query, column=1) == "example2"
        assert await database.fetch_val(query, column="text") == "example2"
        count = await database.fetch_val(sa.select(sa.func.count()).select_from(notes))
        assert count == 4

        # update and delete
        await database.execute(
            notes.update().where(notes.c.text == "example1"),
            values={"text": "example1-updated", "completed": False},
        )
        await database.execute(notes.delete().where(notes.c.text == "example4"))
        rows = await database.fetch_all(
            sa.select(notes.c.text, notes.c.completed).order_by(notes.c.id)
        )
        assert [(row["text"], row["completed"]) for row in rows] == [
            ("example1-updated", False),
            ("example2", False),
            ("example3", False),
        ]

        # iterate
        texts = [
            row["text"] async for row in database.iterate(sa.select(notes).order_by(notes.c.id))
        ]
        assert texts == ["example1-updated", "example2", "example3"]

    expected = [] if force_rollback else ["example1-updated", "example2", "example3"]
    assert admin.committed_notes(database_url) == expected


@pytest.mark.asyncio
async def test_core_queries_with_bound_values(database_url: str) -> None:
    async with Database(database_url) as database:
        await database.execute_many(
            notes.insert(),
            values=[{"text": f"note {i}", "completed": i % 2 == 0} for i in range(6)],
        )
        completed = sa.select(notes.c.text).where(notes.c.completed == sa.bindparam("done"))
        rows = await database.fetch_all(
            completed.order_by(notes.c.id).params(done=True),
        )
        assert [row["text"] for row in rows] == ["note 0", "note 2", "note 4"]


@pytest.mark.asyncio
async def test_fetch_one_and_fetch_val_without_rows(database_url: str) -> None:
    async with Database(database_url) as database:
        query = sa.select(notes).where(notes.c.text == "absent")
        assert await database.fetch_one(query) is None
        assert await database.fetch_val(query) is None
        assert await database.fetch_all(query) == []
        assert [row async for row in database.iterate(query)] == []
        assert await database.fetch_one("SELECT * FROM notes WHERE text = :t", {"t": "x"}) is None


# -- raw SQL strings -----------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("force_rollback", [False, True])
async def test_raw_queries(database_url: str, force_rollback: bool) -> None:
    async with Database(database_url, force_rollback=force_rollback) as database:
        insert = "INSERT INTO notes(text, completed) VALUES (:text, :completed)"
        await database.execute(insert, values={"text": "raw1", "completed": True})
        await database.execute_many(
            insert,
            values=[{"text": "raw2", "completed": False}, {"text": "raw3", "completed": True}],
        )

        rows = await database.fetch_all("SELECT * FROM notes ORDER BY id")
        assert [row["text"] for row in rows] == ["raw1", "raw2", "raw3"]
        # no column types are known for a raw query: values are what the driver returns
        assert [bool(row["completed"]) for row in rows] == [True, False, True]

        row = await database.fetch_one(
            "SELECT * FROM notes WHERE text = :text", values={"text": "raw2"}
        )
        assert row is not None
        assert row["text"] == "raw2"
        assert row[1] == "raw2"

        query = "SELECT id, text FROM notes WHERE text = :text"
        assert await database.fetch_val(query, values={"text": "raw3"}) == rows[2]["id"]
        assert await database.fetch_val(query, values={"text": "raw3"}, column=1) == "raw3"
        assert await database.fetch_val(query, values={"text": "raw3"}, column="text") == "raw3"

        await database.execute(
            "UPDATE notes SET text = :new WHERE text = :old", values={"new": "raw1b", "old": "raw1"}
        )
        await database.execute("DELETE FROM notes WHERE text = :text", values={"text": "raw2"})

        texts = [
            row["text"]
            async for row in database.iterate(
                "SELECT text FROM notes WHERE text LIKE :prefix ORDER BY id",
                values={"prefix": "raw%"},
            )
        ]
        assert texts == ["raw1b", "raw3"]

        # raw queries without parameters
        assert await database.fetch_val("SELECT COUNT(*) FROM notes") == 2

    assert admin.committed_notes(database_url) == ([] if force_rollback else ["raw1b", "raw3"])


@pytest.mark.asyncio
async def test_text_clause_queries(database_url: str) -> None:
    async with Database(database_url) as database:
        await database.execute(
            sa.text("INSERT INTO notes(text, completed) VALUES (:text, :completed)").bindparams(
                text="from text()", completed=True
            )
        )
        row = await database.fetch_one(
            sa.text("SELECT text FROM notes WHERE text = :text").bindparams(text="from text()")
        )
        assert row is not None
        assert row["text"] == "from text()"


@pytest.mark.asyncio
async def test_like_with_literal_percent(database_url: str) -> None:
    async with Database(database_url) as database:
        await database.execute_many(
            notes.insert(),
            values=[
                {"text": "50% off", "completed": False},
                {"text": "50 percent", "completed": True},
                {"text": "other", "completed": False},
            ],
        )
        rows = await database.fetch_all("SELECT text FROM notes WHERE text LIKE '50%' ORDER BY id")
        assert [row["text"] for row in rows] == ["50% off", "50 percent"]

        # a literal % next to bound parameters
        rows = await database.fetch_all(
            "SELECT text FROM notes WHERE text LIKE '50%' AND completed = :completed",
            values={"completed": True},
        )
        assert [row["text"] for row in rows] == ["50 percent"]

        # a % inside a string literal that is selected back
        value = await database.fetch_val("SELECT '100%' AS literal")
        assert value == "100%"

        # the Core form
        rows = await database.fetch_all(
            sa.select(notes.c.text).where(notes.c.text.like("%/%%", escape="/"))
        )
        assert [row["text"] for row in rows] == ["50% off"]


@pytest.mark.asyncio
async def test_like_with_backslash_as_escape_character(database_url: str) -> None:
    texts = ["50% off", "50 percent", "back\\slash", "under_score", "underscore"]
    async with Database(database_url) as database:
        await database.execute_many(
            notes.insert(), values=[{"text": text, "completed": False} for text in texts]
        )

        async def matching(clause: typing.Any) -> list[str]:
            rows = await database.fetch_all(
                sa.select(notes.c.text).where(clause).order_by(notes.c.id)
            )
            return [row["text"] for row in rows]

        assert await matching(notes.c.text.like("50\\%%", escape="\\")) == ["50% off"]
        # How ORMs (ormar) set it: the escape character as a modifier of the clause.
        clause = notes.c.text.like("under\\_score")
        clause.modifiers["escape"] = "\\"
        assert await matching(clause) == ["under_score"]
        assert await matching(notes.c.text.contains("\\", autoescape=True)) == ["back\\slash"]
        assert await matching(notes.c.text.startswith("50%", autoescape=True)) == ["50% off"]


@pytest.mark.asyncio
async def test_in_with_expanding_list(database_url: str) -> None:
    async with Database(database_url) as database:
        for i in range(5):
            await database.execute(notes.insert(), values={"text": f"n{i}", "completed": False})
        ids = [
            row["id"]
            for row in await database.fetch_all(sa.select(notes.c.id).order_by(notes.c.id))
        ]

        query = sa.select(notes.c.text).where(notes.c.id.in_([ids[0], ids[2], ids[4]]))
        rows = await database.fetch_all(query.order_by(notes.c.id))
        assert [row["text"] for row in rows] == ["n0", "n2", "n4"]

        query = sa.select(notes.c.text).where(notes.c.text.in_(["n1", "n3", "missing"]))
        rows = await database.fetch_all(query.order_by(notes.c.id))
        assert [row["text"] for row in rows] == ["n1", "n3"]

        # an empty IN list matches nothing
        rows = await database.fetch_all(sa.select(notes).where(notes.c.id.in_([])))
        assert rows == []

        # an expanding bind parameter in a text() clause
        query = sa.text("SELECT text FROM notes WHERE text IN :texts ORDER BY id").bindparams(
            sa.bindparam("texts", value=["n0", "n3"], expanding=True)
        )
        rows = await database.fetch_all(query)
        assert [row["text"] for row in rows] == ["n0", "n3"]

        # the same list in an UPDATE and a DELETE
        await database.execute(notes.update().where(notes.c.id.in_(ids[:2])).values(completed=True))
        assert (
            await database.fetch_val(
                sa.select(sa.func.count()).select_from(notes).where(notes.c.completed == sa.true())
            )
            == 2
        )
        await database.execute(notes.delete().where(notes.c.id.in_(ids[3:])))
    assert admin.committed_notes(database_url) == ["n0", "n1", "n2"]


@pytest.mark.asyncio
async def test_in_list_beside_values_that_need_converting(database_url: str) -> None:
    """With an IN list expanded, the statement's other values still go through their
    types' bind processing (a TypeDecorator's value, a Decimal on SQLite); they used to
    reach the driver unconverted, and failed or matched the wrong rows."""
    async with Database(database_url) as database:
        for point in (Point(1, 2), Point(3, 4), Point(1, 2)):
            await database.execute(shapes.insert(), values={"point": point})
        ids = [row["id"] for row in await database.fetch_all(sa.select(shapes.c.id))]
        query = (
            sa.select(shapes.c.id, shapes.c.point)
            .where(shapes.c.point == Point(1, 2), shapes.c.id.in_(ids[1:]))
            .order_by(shapes.c.id)
        )
        rows = await database.fetch_all(query)
        assert [(row["id"], row["point"]) for row in rows] == [(ids[2], Point(1, 2))]

        price = sa.literal(decimal.Decimal("2.50"), sa.Numeric(10, 2))
        query = sa.select((price * 2).label("double")).where(sa.literal(1).in_([1, 2]))
        assert await database.fetch_val(query) == decimal.Decimal("5.00")


# -- execute() return values ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_execute_insert_returns_new_primary_key(database_url: str) -> None:
    dialect = DatabaseURL(database_url).dialect
    async with Database(database_url) as database:
        # PostgreSQL: the first column of the returned row (SQLAlchemy compiles an INSERT into
        # a table with a primary key as INSERT ... RETURNING id); MySQL: the last inserted id;
        # SQLite: the last row id.
        first = await database.execute(notes.insert(), values={"text": "one", "completed": True})
        second = await database.execute(notes.insert().values(text="two", completed=False))
        raw_insert = "INSERT INTO notes(text, completed) VALUES (:text, :completed)"
        if dialect == "postgresql":
            raw_insert += " RETURNING id"
        third = await database.execute(raw_insert, values={"text": "three", "completed": False})
        rows = await database.fetch_all(sa.select(notes.c.id, notes.c.text).order_by(notes.c.id))
        ids = {row["text"]: row["id"] for row in rows}
        assert (first, second, third) == (ids["one"], ids["two"], ids["three"])
        assert len(set(ids.values())) == 3


@pytest.mark.asyncio
async def test_execute_return_value_of_delete(database_url: str) -> None:
    admin.raw_execute(
        database_url, "INSERT INTO notes (text, completed) VALUES ('a', false), ('b', false)"
    )
    async with Database(database_url) as database:
        # A row id of an earlier INSERT on the same connection does not count.
        await database.execute(notes.insert(), values={"text": "c", "completed": True})
        result = await database.execute(notes.delete().where(notes.c.completed == sa.false()))
        if DatabaseURL(database_url).dialect == "postgresql":
            assert result is None  # the first column of no row, as in 0.9
        else:
            assert result == 2
    assert admin.raw_fetch_all(database_url, "SELECT text FROM notes") == [("c",)]


@pytest.mark.asyncio
async def test_execute_return_value_of_update(database_url: str) -> None:
    admin.raw_execute(
        database_url, "INSERT INTO notes (text, completed) VALUES ('a', false), ('b', false)"
    )
    dialect = DatabaseURL(database_url).dialect
    async with Database(database_url) as database:
        # the first statement on a fresh connection, so SQLite has no last row id yet
        result = await database.execute(notes.update().values(completed=True))
        if dialect == "postgresql":
            assert result is None  # no row returned
            returned = await database.execute(
                notes.update().where(notes.c.text == "a").values(text="a2").returning(notes.c.text)
            )
            assert returned == "a2"
        else:
            # SQLite and MySQL (as 0.9): no new row id, so the number of rows changed.
            assert result == 2
            unmatched = notes.update().where(notes.c.text == "x").values(text="y")
            assert await database.execute(unmatched) == 0
    assert sorted(admin.raw_fetch_all(database_url, "SELECT text FROM notes")) == (
        [("a2",), ("b",)] if dialect == "postgresql" else [("a",), ("b",)]
    )


@pytest.mark.asyncio
async def test_execute_many_with_raw_sql_and_core(database_url: str) -> None:
    async with Database(database_url) as database:
        values = [{"text": f"many {i}", "completed": bool(i % 2)} for i in range(10)]
        await database.execute_many(notes.insert(), values=values[:5])
        await database.execute_many(
            "INSERT INTO notes(text, completed) VALUES (:text, :completed)", values=values[5:]
        )
        rows = await database.fetch_all(sa.select(notes).order_by(notes.c.id))
        assert [(row["text"], row["completed"]) for row in rows] == [
            (value["text"], value["completed"]) for value in values
        ]
    assert admin.committed_notes(database_url) == [value["text"] for value in values]


# -- iterate ---------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("force_rollback", [False, True])
async def test_iterate(database_url: str, force_rollback: bool) -> None:
    async with Database(database_url, force_rollback=force_rollback) as database:
        await database.execute_many(
            notes.insert(), values=[{"text": f"it {i}", "completed": False} for i in range(20)]
        )
        seen = []
        async for row in database.iterate(sa.select(notes).order_by(notes.c.id)):
            seen.append(row["text"])
            # other queries of the same task may run while iterating
        assert seen == [f"it {i}" for i in range(20)]

        raw = [
            row[0]
            async for row in database.iterate(
                "SELECT text FROM notes WHERE text != :skip ORDER BY id", values={"skip": "it 0"}
            )
        ]
        assert raw == [f"it {i}" for i in range(1, 20)]

        # an iteration closed early leaves the database usable
        iterator = database.iterate(sa.select(notes).order_by(notes.c.id))
        try:
            async for row in iterator:
                assert row["text"] == "it 0"
                break
        finally:
            await iterator.aclose()
        assert await database.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 20


@pytest.mark.asyncio
@pytest.mark.parametrize("force_rollback", [False, True])
async def test_batched_iterate(database_url: str, force_rollback: bool) -> None:
    """databasez's `batched_iterate()`: lists of `batch_size` rows, the last one shorter,
    on `Database` and on a connection; a batch loop left early leaves the database usable."""
    async with Database(database_url, force_rollback=force_rollback) as database:
        await database.execute_many(
            notes.insert(), values=[{"text": f"b {i}", "completed": False} for i in range(25)]
        )
        query = sa.select(notes.c.text).order_by(notes.c.id)
        sizes = [len(batch) async for batch in database.batched_iterate(query, batch_size=10)]
        assert sizes == [10, 10, 5]
        async with database.connection() as connection:
            texts = [
                row[0]
                async for batch in connection.batched_iterate(query, batch_size=7, timeout=30)
                for row in batch
            ]
        assert texts == [f"b {i}" for i in range(25)]
        batches = database.batched_iterate(query, batch_size=25)
        try:
            async for batch in batches:
                assert [row[0] for row in batch] == texts
                break
        finally:
            await batches.aclose()
        assert await database.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 25
        for bad in (0, -1, 2.5, True):
            with pytest.raises(ValueError, match="batch_size"):
                database.batched_iterate(query, batch_size=bad)  # type: ignore[arg-type]


# -- DDL -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_ddl_through_execute(database_url: str) -> None:
    scratch = sa.Table(
        SCRATCH_TABLE,
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(20)),
    )
    admin.raw_execute(database_url, f"DROP TABLE IF EXISTS {SCRATCH_TABLE}")
    try:
        async with Database(database_url) as database:
            await database.execute(sa.schema.CreateTable(scratch))
            await database.execute(scratch.insert(), values={"id": 1, "name": "created"})
            assert await database.fetch_val(sa.select(scratch.c.name)) == "created"
            await database.execute(sa.schema.DropTable(scratch))

            await database.execute(
                f"CREATE TABLE {SCRATCH_TABLE} (id INTEGER PRIMARY KEY, name VARCHAR(20))"
            )
            await database.execute(
                f"INSERT INTO {SCRATCH_TABLE} (id, name) VALUES (:id, :name)",
                values={"id": 7, "name": "raw"},
            )
            assert admin.raw_fetch_all(database_url, f"SELECT id, name FROM {SCRATCH_TABLE}") == [
                (7, "raw")
            ]
            await database.execute(f"DROP TABLE {SCRATCH_TABLE}")
    finally:
        admin.raw_execute(database_url, f"DROP TABLE IF EXISTS {SCRATCH_TABLE}")


# -- lifecycle -------------------------------------------------------------------------------


async def _run_every_query_method(database: Database) -> None:
    """Each query method must raise the not-connected error."""
    query = sa.select(notes)
    calls = [
        lambda: database.fetch_all(query),
        lambda: database.fetch_one(query),
        lambda: database.fetch_val(query),
        lambda: database.execute(notes.insert(), values={"text": "x", "completed": False}),
        lambda: database.execute_many(notes.insert(), values=[{"text": "x", "completed": False}]),
        lambda: database.fetch_all("SELECT * FROM notes"),
    ]
    for call in calls:
        with pytest.raises(RuntimeError, match=r"connect\(\)"):
            await call()
    with pytest.raises(RuntimeError, match=r"connect\(\)"):
        async for _ in database.iterate(query):
            pass


@pytest.mark.asyncio
async def test_queries_before_connect_raise(database_url: str) -> None:
    database = Database(database_url)
    assert database.is_connected is False
    await _run_every_query_method(database)


@pytest.mark.asyncio
@pytest.mark.parametrize("force_rollback", [False, True])
async def test_queries_after_disconnect_raise(database_url: str, force_rollback: bool) -> None:
    database = Database(database_url, force_rollback=force_rollback)
    async with database:
        assert await database.fetch_val("SELECT 1") == 1
    assert database.is_connected is False
    await _run_every_query_method(database)


@pytest.mark.asyncio
async def test_async_with_returns_database_and_tracks_is_connected(database_url: str) -> None:
    database = Database(database_url)
    assert database.is_connected is False
    async with database as entered:
        assert entered is database
        assert database.is_connected is True
    assert database.is_connected is False

    # explicit connect / disconnect
    await database.connect()
    try:
        assert database.is_connected is True
    finally:
        await database.disconnect()
    assert database.is_connected is False


@pytest.mark.asyncio
@pytest.mark.parametrize("force_rollback", [False, True])
async def test_connect_and_disconnect_twice_are_no_ops(
    database_url: str, force_rollback: bool
) -> None:
    database = Database(database_url, force_rollback=force_rollback)
    await database.connect()
    try:
        await database.execute(notes.insert(), values={"text": "kept", "completed": False})
        await database.connect()  # no-op: nothing is lost, nothing restarted
        assert database.is_connected is True
        assert await database.fetch_val(sa.select(notes.c.text)) == "kept"
    finally:
        await database.disconnect()
    assert database.is_connected is False
    await database.disconnect()  # no-op
    assert database.is_connected is False
    assert admin.committed_notes(database_url) == ([] if force_rollback else ["kept"])

    # and the database can connect again afterwards
    async with database:
        assert await database.fetch_val("SELECT 1") == 1


@pytest.mark.asyncio
async def test_connect_again_after_disconnect(database_url: str) -> None:
    database = Database(database_url)
    for round_ in range(3):
        async with database:
            await database.execute(
                notes.insert(), values={"text": f"r{round_}", "completed": False}
            )
    assert admin.committed_notes(database_url) == ["r0", "r1", "r2"]


# -- logging ---------------------------------------------------------------------------------


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}{port}"))


async def check_logging(url: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    """connect() and disconnect() log at INFO, each query at DEBUG with its SQL and
    arguments, all on the 'databases' logger. Returns every message logged."""
    caplog.set_level(logging.DEBUG, logger="databases")
    messages: list[str] = []

    database = Database(url)
    await database.connect()
    try:
        connect_records = [
            r
            for r in caplog.records
            if r.name.startswith("databases") and r.levelno == logging.INFO
        ]
        assert connect_records, "connect() logs at INFO on the 'databases' logger"
        messages += [r.getMessage() for r in caplog.records]
        caplog.clear()

        marker = "log-marker-4711"
        await database.fetch_all("SELECT * FROM notes WHERE text = :text", values={"text": marker})
        debug_records = [
            r
            for r in caplog.records
            if r.name.startswith("databases") and r.levelno == logging.DEBUG
        ]
        assert any("notes" in r.getMessage() and marker in r.getMessage() for r in debug_records), (
            "each query is logged at DEBUG with its SQL and arguments"
        )
        messages += [r.getMessage() for r in caplog.records]
        caplog.clear()
    finally:
        await database.disconnect()

    disconnect_records = [
        r for r in caplog.records if r.name.startswith("databases") and r.levelno == logging.INFO
    ]
    assert disconnect_records, "disconnect() logs at INFO on the 'databases' logger"
    return messages + [r.getMessage() for r in caplog.records]


@pytest.mark.asyncio
async def test_logging_of_connect_disconnect_and_queries(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await check_logging(database_url, caplog)


@pytest.mark.dialects("postgresql")
@pytest.mark.asyncio
async def test_logging_hides_the_password(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL only: the test server trusts every connection, so a URL with a made-up
    password connects (the SQLite URL has none, and MySQL's root refuses a wrong one)."""
    secret = "s3cret-Pa55word"
    messages = await check_logging(_with_password(database_url, secret), caplog)
    assert [message for message in messages if secret in message] == []


@pytest.mark.asyncio
async def test_queries_from_many_tasks(database_url: str) -> None:
    async with Database(database_url) as database:
        await database.execute(notes.insert(), values={"text": "shared", "completed": True})

        async def read() -> str:
            return await database.fetch_val(sa.select(notes.c.text))

        results = await asyncio.gather(*(read() for _ in range(10)))
        assert results == ["shared"] * 10
