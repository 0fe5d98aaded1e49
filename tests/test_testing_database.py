"""databases.testing: creating, finding and dropping a dedicated database.

The databases made here are named `test_h5_<pid>_...` on the test's server, or are files
in the test's temporary directory on SQLite; each test drops what it made.
"""

from __future__ import annotations

import os
import pathlib
import typing

import pytest
import sqlalchemy as sa

from databases import Database, DatabaseURL
from databases.errors import DatabaseExistsError
from databases.testing import TestDatabase, create_database, database_exists, drop_database
from tests import admin

NAME = f"test_h5_{os.getpid()}"


@pytest.fixture
def new_url(database_url: str, tmp_path: pathlib.Path) -> typing.Iterator[str]:
    """A URL on the test's server (SQLite: in its temporary directory) naming a database
    that does not exist; dropped after the test, with its `test_` twin."""
    url = DatabaseURL(database_url)
    if admin.dialect_name(database_url) == "sqlite":
        target = url.replace(database=str(tmp_path / f"{NAME}.sqlite"))
    else:
        target = url.replace(database=NAME)
    for leftover in (str(target), str(_prefixed(target))):
        admin_drop(leftover)
    yield str(target)
    for leftover in (str(target), str(_prefixed(target))):
        admin_drop(leftover)


def _prefixed(url: DatabaseURL) -> DatabaseURL:
    head, tail = os.path.split(url.database)
    return url.replace(database=os.path.join(head, "test_" + tail))


def admin_drop(url: str) -> None:
    """Drop a database outside the library (plain drivers)."""
    dialect = admin.dialect_name(url)
    name = DatabaseURL(url).database
    if dialect == "sqlite":
        if os.path.exists(name):
            os.remove(name)
        return
    server = str(DatabaseURL(url).replace(database="postgres" if dialect == "postgresql" else ""))
    force = " WITH (FORCE)" if dialect == "postgresql" else ""
    quote = '"' if dialect == "postgresql" else "`"
    admin.raw_execute(server, f"DROP DATABASE IF EXISTS {quote}{name}{quote}{force}")


def admin_exists(url: str) -> bool:
    dialect = admin.dialect_name(url)
    name = DatabaseURL(url).database
    if dialect == "sqlite":
        return os.path.exists(name)
    server = str(DatabaseURL(url).replace(database="postgres" if dialect == "postgresql" else ""))
    if dialect == "postgresql":
        sql = f"SELECT 1 FROM pg_database WHERE datname = '{name}'"
    else:
        sql = f"SELECT 1 FROM information_schema.schemata WHERE schema_name = '{name}'"
    return bool(admin.raw_fetch_all(server, sql))


async def table_names(url: str) -> list[str]:
    async with Database(url) as database:
        rows = await database.fetch_all(_tables_query(url))
    return sorted(row[0] for row in rows)


def _tables_query(url: str) -> str:
    dialect = admin.dialect_name(url)
    if dialect == "sqlite":
        return "SELECT name FROM sqlite_master WHERE type = 'table'"
    if dialect == "mysql":
        return "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
    return "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"


@pytest.mark.asyncio
async def test_create_find_and_drop_a_database(new_url: str) -> None:
    assert not await database_exists(new_url)
    assert await create_database(new_url) is True
    assert admin_exists(new_url)
    assert await database_exists(new_url)
    async with Database(new_url) as database:
        await database.execute("CREATE TABLE kept (id INTEGER)")

    with pytest.raises(DatabaseExistsError, match="existing='keep'"):
        await create_database(new_url)
    assert await create_database(new_url, existing="keep") is False
    assert await table_names(new_url) == ["kept"]
    assert await create_database(new_url, existing="drop") is True
    assert await table_names(new_url) == []

    assert await drop_database(new_url) is True
    assert not admin_exists(new_url)
    assert not await database_exists(new_url)
    assert await drop_database(new_url) is False


@pytest.mark.asyncio
@pytest.mark.dialects("postgresql", "mysql")
async def test_drop_database_while_it_is_in_use(new_url: str) -> None:
    await create_database(new_url)
    database = Database(new_url)
    await database.connect()
    try:
        assert await database.fetch_val("SELECT 1") == 1
        if admin.dialect_name(new_url) == "postgresql":
            # PostgreSQL refuses to drop a database with sessions: ours are ended.
            assert await drop_database(new_url) is True
        else:
            async with database.connection() as connection:
                assert await connection.fetch_val("SELECT 1") == 1
                assert await drop_database(new_url) is True
    finally:
        await database.disconnect()
    assert not admin_exists(new_url)


@pytest.mark.asyncio
async def test_test_database_creates_connects_and_drops(new_url: str) -> None:
    expected = _prefixed(DatabaseURL(new_url))
    async with TestDatabase(new_url, prefix="test_") as database:
        assert database.url == expected and database.is_connected
        await database.execute("CREATE TABLE scratch (id INTEGER)")
        assert admin_exists(str(expected))
    assert not database.is_connected
    assert not admin_exists(str(expected))
    assert not admin_exists(new_url)

    async with TestDatabase(new_url, drop=False) as database:
        await database.execute("CREATE TABLE scratch (id INTEGER)")
    assert admin_exists(new_url)
    # A left-over database is dropped and made again, empty.
    async with TestDatabase(new_url, drop=False) as database:
        assert await table_names(new_url) == []
    async with TestDatabase(new_url, existing="keep"):
        pass
    assert not admin_exists(new_url)


@pytest.mark.asyncio
@pytest.mark.dialects("sqlite", "mysql", "postgresql+asyncpg", "postgresql+psycopg")
async def test_test_database_with_force_rollback_and_create_all(new_url: str) -> None:
    metadata = sa.MetaData()
    items = sa.Table("items", metadata, sa.Column("id", sa.Integer, primary_key=True))
    async with TestDatabase(new_url, drop=False) as database:
        await database.create_all(metadata)
    async with TestDatabase(new_url, existing="keep", force_rollback=True) as database:
        await database.execute(items.insert(), {"id": 1})
        assert await database.fetch_val(sa.select(sa.func.count()).select_from(items)) == 1
    assert not admin_exists(new_url)


@pytest.mark.asyncio
async def test_a_sqlite_memory_database_needs_no_creating() -> None:
    for url in ("sqlite:///:memory:", "sqlite://", "sqlite:///file:h5?mode=memory&cache=shared"):
        assert await database_exists(url)
        assert await create_database(url) is True
        assert await drop_database(url) is False
    async with TestDatabase("sqlite:///:memory:", prefix="test_") as database:
        assert str(database.url) == "sqlite:///:memory:"
        assert await database.fetch_val("SELECT 1") == 1


@pytest.mark.asyncio
@pytest.mark.dialects("postgresql+asyncpg")
async def test_errors_name_no_password(new_url: str) -> None:
    # The server trusts the test user: the password is never checked.
    secret = str(DatabaseURL(new_url).replace(password="s3cret-h5"))
    await create_database(secret)
    with pytest.raises(DatabaseExistsError) as raised:
        await create_database(secret)
    assert "s3cret-h5" not in str(raised.value)
    assert await drop_database(secret)


@pytest.mark.asyncio
async def test_bad_arguments_say_what_to_give() -> None:
    with pytest.raises(ValueError, match="existing="):
        await create_database("sqlite:///h5-never.sqlite", existing="replace")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="existing="):
        TestDatabase("sqlite:///h5-never.sqlite", existing="overwrite")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="encoding"):
        await create_database("postgresql://localhost/h5_x", encoding="UTF8'; DROP")
    with pytest.raises(ValueError, match="names no database"):
        await create_database("postgresql://localhost/")
    with pytest.raises(ValueError, match="supported"):
        await drop_database("oracle://localhost/h5_x")
    assert not os.path.exists("h5-never.sqlite")


def test_the_helpers_are_exported() -> None:
    import databases.testing

    assert set(databases.testing.__all__) >= {
        "TestDatabase",
        "create_database",
        "database_exists",
        "drop_database",
    }
