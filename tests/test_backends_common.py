"""Behaviour every backend shares, run against each URL, plus clear errors for bad input."""

from __future__ import annotations

import asyncio
import datetime
import gc
import importlib

import pytest
import sqlalchemy as sa

from databases import Database
from databases._loops import LoopRegistry
from databases.errors import (
    ConnectionLoopError,
    DatabaseNotConnectedError,
    UnsupportedDatabaseURLError,
)
from tests.settings import ITERATE_NEEDS_SESSION

metadata = sa.MetaData()
numbers = sa.Table(
    "common_numbers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("value", sa.Integer),
    sa.Column("label", sa.String(40)),
)
NUMBER_ROWS = 10_000


async def recreate(database: Database) -> None:
    await database.execute(sa.schema.DropTable(numbers, if_exists=True))
    await database.execute(sa.schema.CreateTable(numbers))


@pytest.mark.asyncio
async def test_execute_many_thousand_rows(database_url: str) -> None:
    async with Database(database_url) as database:
        await recreate(database)
        try:
            rows = [{"value": n, "label": f"row {n}"} for n in range(1000)]
            await database.execute_many(numbers.insert(), rows)
            count = sa.select(sa.func.count()).select_from(numbers)
            assert await database.fetch_val(count) == 1000
            total = await database.fetch_val(sa.select(sa.func.sum(numbers.c.value)))
            assert int(total) == sum(range(1000))
        finally:
            await database.execute(sa.schema.DropTable(numbers))


@pytest.mark.asyncio
async def test_execute_many_is_all_or_nothing(database_url: str) -> None:
    async with Database(database_url) as database:
        await recreate(database)
        try:
            rows = [{"id": 1, "value": 1}, {"id": 2, "value": 2}, {"id": 1, "value": 3}]
            with pytest.raises(Exception, match=r"(?i)duplicate|unique"):
                await database.execute_many(numbers.insert(), rows)
            count = sa.select(sa.func.count()).select_from(numbers)
            assert await database.fetch_val(count) == 0
        finally:
            await database.execute(sa.schema.DropTable(numbers))


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "force_rollback",
    [
        pytest.param(False, id="plain", marks=pytest.mark.needs_session(ITERATE_NEEDS_SESSION)),
        pytest.param(True, id="force_rollback"),
    ],
)
async def test_iterate_ten_thousand_rows_while_other_tasks_query(
    database_url: str, force_rollback: bool
) -> None:
    """A long scan does not starve or corrupt queries of other tasks (with force_rollback
    they all share the scan's connection)."""
    async with Database(database_url) as setup:
        await recreate(setup)
        await setup.execute_many(
            numbers.insert(), [{"value": n, "label": "x"} for n in range(NUMBER_ROWS)]
        )
    try:
        async with Database(database_url, force_rollback=force_rollback) as database:
            seen: list[int] = []

            async def scan() -> None:
                query = sa.select(numbers.c.value).order_by(numbers.c.id)
                async for row in database.iterate(query):
                    seen.append(row["value"])

            async def other(k: int) -> list[int]:
                results = []
                for n in range(5):
                    value = k * 100 + n
                    query = sa.select(numbers.c.value).where(numbers.c.value == value)
                    results.append(await database.fetch_val(query))
                return results

            done = await asyncio.gather(scan(), *(other(k) for k in range(20)))
            assert seen == list(range(NUMBER_ROWS))
            for k, results in enumerate(done[1:]):
                assert results == [k * 100 + n for n in range(5)]
    finally:
        async with Database(database_url) as cleanup:
            await cleanup.execute(sa.schema.DropTable(numbers))


def test_unknown_scheme_names_the_supported_ones() -> None:
    with pytest.raises(UnsupportedDatabaseURLError) as raised:
        Database("oracle://scott:tiger@localhost/db")
    message = str(raised.value)
    assert "'oracle'" in message
    assert "postgresql" in message and "sqlite" in message
    assert "SUPPORTED_BACKENDS" in message


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgres+asyncpg://localhost/db", "asyncpg"),
        ("postgres+psycopg://localhost/db", "psycopg"),
        ("postgres+aiopg://localhost/db", "psycopg2"),
    ],
)
def test_postgres_alias_takes_an_explicit_driver(url: str, driver: str) -> None:
    """0.9's `postgres` dialect name with a driver runs on that driver, not an error."""
    dialect = Database(url).dialect
    assert (dialect.name, dialect.driver) == ("postgresql", driver)


@pytest.mark.parametrize("url", ["postgres+nosuch://localhost/db", "postgresql+nosuch://h/db"])
def test_unknown_driver_of_a_known_dialect_is_an_error(url: str) -> None:
    with pytest.raises(UnsupportedDatabaseURLError) as raised:
        Database(url)
    message = str(raised.value)
    assert "'nosuch'" in message
    assert "postgresql+asyncpg" in message and "postgresql+psycopg" in message
    assert "postgresql+aiopg" in message


@pytest.mark.parametrize("bad", ["localhost/db", "postgres//localhost/db", ""])
def test_malformed_url_says_what_a_url_looks_like(bad: str) -> None:
    with pytest.raises(UnsupportedDatabaseURLError, match="expected '<dialect>"):
        Database(bad)


def test_url_password_is_obscured_in_errors() -> None:
    with pytest.raises(UnsupportedDatabaseURLError) as raised:
        Database("nosuch://user:secret@host/db")
    assert "secret" not in str(raised.value)


def test_optional_upstream_drivers_import_and_explain_what_to_install() -> None:
    module = importlib.import_module("databases.backends.aiopg")
    assert module.AiopgBackend is not None
    try:
        import aiopg  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="aiopg"):
            Database("postgresql+aiopg://localhost/db")
    importlib.import_module("databases.backends.asyncmy")


@pytest.mark.asyncio
async def test_query_before_connect_says_to_connect(database_url: str) -> None:
    database = Database(database_url)
    with pytest.raises(DatabaseNotConnectedError, match=r"connect\(\)"):
        await database.fetch_all("SELECT 1")
    with pytest.raises(DatabaseNotConnectedError, match=r"connect\(\)"):
        async with database.connection():
            pass


def test_connection_used_in_another_loop_says_so(database_url: str) -> None:
    database = Database(database_url)

    async def make() -> object:
        await database.connect()
        return database.connection()

    connection = asyncio.run(make())

    async def use() -> None:
        async with connection:  # type: ignore[attr-defined]
            pass

    try:
        with pytest.raises(ConnectionLoopError, match="another event loop"):
            asyncio.run(use())
    finally:
        asyncio.run(database.disconnect())


def test_a_new_loop_reusing_a_dead_loops_id_gets_a_new_state() -> None:
    """States are found by id(loop) and checked against a weak reference."""
    registry = LoopRegistry()
    old_loop = asyncio.new_event_loop()
    old_state = registry.create(old_loop, lambda: None, _no_end)  # type: ignore[arg-type,return-value]
    old_state.end()
    old_loop.close()
    del old_loop
    gc.collect()
    new_loop = asyncio.new_event_loop()
    try:
        # Whatever id the new loop got, pretend it is the dead loop's.
        registry._states[id(new_loop)] = old_state
        assert registry.find(new_loop) is None
        new_state = registry.create(new_loop, lambda: None, _no_end)  # type: ignore[arg-type,return-value]
        assert new_state is not old_state
        assert registry.find(new_loop) is new_state
        new_state.end()
    finally:
        new_loop.close()


async def _no_end(state: object) -> None:
    return None


defaults = sa.Table(
    "common_defaults",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(40)),
    sa.Column("count", sa.Integer, default=5),
    sa.Column("created", sa.DateTime, default=lambda: datetime.datetime(2020, 1, 2, 3, 4, 5)),
    sa.Column(
        "name_length",
        sa.Integer,
        onupdate=lambda context: len(context.get_current_parameters()["name"]),
    ),
    sa.Column(
        "label",
        sa.String(50),
        default=lambda context: f"{context.get_current_parameters()['name']}!",
    ),
)


@pytest.mark.asyncio
async def test_python_side_column_defaults_are_applied(database_url: str) -> None:
    """`default=` and `onupdate=` run as SQLAlchemy's engine runs them."""
    async with Database(database_url) as database:
        await database.execute(sa.schema.DropTable(defaults, if_exists=True))
        await database.execute(sa.schema.CreateTable(defaults))
        try:
            await database.execute(defaults.insert(), {"name": "a"})
            await database.execute(defaults.insert().values(name="b", count=7))
            await database.execute_many(defaults.insert(), [{"name": "c"}, {"name": "d"}])
            await database.execute(
                defaults.update().where(defaults.c.name == "a").values(name="abcd")
            )
            rows = await database.fetch_all(sa.select(defaults).order_by(defaults.c.id))
            assert [(r["name"], r["count"], r["name_length"]) for r in rows] == [
                ("abcd", 5, 4),
                ("b", 7, None),
                ("c", 5, None),
                ("d", 5, None),
            ]
            assert {r["created"] for r in rows} == {datetime.datetime(2020, 1, 2, 3, 4, 5)}
        finally:
            await database.execute(sa.schema.DropTable(defaults))


@pytest.mark.asyncio
async def test_defaults_of_a_multi_row_insert_see_their_own_row(database_url: str) -> None:
    """In `insert().values([...])` a default's `get_current_parameters()` gives the values
    of the default's own row under their column names, as SQLAlchemy's engine does."""
    async with Database(database_url) as database:
        await database.execute(sa.schema.DropTable(defaults, if_exists=True))
        await database.execute(sa.schema.CreateTable(defaults))
        try:
            rows = [{"name": "x"}, {"name": "yy", "count": 2}, {"name": "zzz"}]
            await database.execute(defaults.insert().values(rows))
            query = sa.select(defaults.c.name, defaults.c.label).order_by(defaults.c.id)
            assert [tuple(row.values()) for row in await database.fetch_all(query)] == [
                ("x", "x!"),
                ("yy", "yy!"),
                ("zzz", "zzz!"),
            ]
        finally:
            await database.execute(sa.schema.DropTable(defaults))


@pytest.mark.asyncio
async def test_raw_sql_values_must_match_the_parameters(database_url: str) -> None:
    async with Database(database_url) as database:
        with pytest.raises(sa.exc.ArgumentError, match="bound parameter named 'other'"):
            await database.fetch_val("SELECT :value", {"value": "x", "other": 2})
        with pytest.raises(sa.exc.InvalidRequestError, match="value is required"):
            await database.fetch_val("SELECT :value", {})
        # Raw SQL is sent without casts: PostgreSQL infers text for a bare parameter.
        assert await database.fetch_val("SELECT :value", {"value": "x"}) == "x"


@pytest.mark.asyncio
async def test_raw_execute_many(database_url: str) -> None:
    async with Database(database_url) as database:
        await recreate(database)
        try:
            await database.execute_many(
                "INSERT INTO common_numbers (value, label) VALUES (:value, :label)",
                [{"value": n, "label": f"l{n}"} for n in range(50)],
            )
            total = await database.fetch_val("SELECT SUM(value) FROM common_numbers")
            assert int(total) == sum(range(50))
        finally:
            await database.execute(sa.schema.DropTable(numbers))


@pytest.mark.asyncio
async def test_values_with_a_statement_that_takes_none_fail_and_change_nothing(
    database_url: str,
) -> None:
    """`values` go to `.values()`: a DELETE or SELECT given values fails as in 0.9, and a
    DELETE must never run with its values dropped (that would delete every row)."""
    async with Database(database_url) as database:
        await recreate(database)
        try:
            await database.execute_many(numbers.insert(), [{"value": n} for n in range(3)])
            with pytest.raises(AttributeError):
                await database.execute(numbers.delete(), {"id": 1})
            with pytest.raises(AttributeError):
                await database.execute_many(numbers.delete(), [{"id": 1}, {"id": 2}])
            with pytest.raises(AttributeError):
                await database.fetch_all(sa.select(numbers), {"id": 1})
            count = sa.select(sa.func.count()).select_from(numbers)
            assert await database.fetch_val(count) == 3
        finally:
            await database.execute(sa.schema.DropTable(numbers))


@pytest.mark.asyncio
async def test_insert_values_are_checked_and_may_be_sql_expressions(database_url: str) -> None:
    """As with `.values(**values)`: unknown names are refused, SQL expressions rendered."""
    async with Database(database_url) as database:
        await recreate(database)
        try:
            with pytest.raises(sa.exc.CompileError, match="Unconsumed column names: bogus"):
                await database.execute(numbers.insert(), {"value": 1, "bogus": 2})
            with pytest.raises(sa.exc.CompileError, match="Unconsumed column names: bogus"):
                await database.execute_many(numbers.insert(), [{"value": 1, "bogus": 2}])
            upper = sa.func.upper(sa.literal("abc"))
            await database.execute(numbers.insert(), {"value": 1, "label": upper})
            await database.execute_many(
                numbers.insert(), [{"value": 2, "label": upper}, {"value": 3, "label": "x"}]
            )
            rows = await database.fetch_all(
                sa.select(numbers.c.value, numbers.c.label).order_by(numbers.c.value)
            )
            assert [tuple(row.values()) for row in rows] == [(1, "ABC"), (2, "ABC"), (3, "x")]
        finally:
            await database.execute(sa.schema.DropTable(numbers))
