"""create_all()/drop_all(): tables, indexes, foreign keys and a PostgreSQL ENUM type.

The oracle is SQLAlchemy's inspector on a synchronous engine of its own (plain drivers:
psycopg, PyMySQL, sqlite3), outside this library.
"""

from __future__ import annotations

import enum
import os
import typing
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from databases import Database
from tests import admin

RUN_SYNC_BACKENDS = ("sqlite", "mysql", "postgresql+asyncpg", "postgresql+psycopg")
# Transactional DDL: MySQL commits a transaction implicitly at each DDL statement.
TRANSACTIONAL_DDL = ("sqlite", "postgresql+asyncpg", "postgresql+psycopg")

SUFFIX = f"h5_{os.getpid()}"


class Mood(enum.Enum):
    happy = "happy"
    sad = "sad"


def schema() -> tuple[sa.MetaData, sa.Table, sa.Table]:
    metadata = sa.MetaData()
    owners = sa.Table(
        f"owners_{SUFFIX}",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50), nullable=False, unique=True),
        sa.Column("mood", sa.Enum(Mood, name=f"mood_{SUFFIX}")),
    )
    pets = sa.Table(
        f"pets_{SUFFIX}",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("owner_id", sa.Integer, sa.ForeignKey(owners.c.id), nullable=False),
        sa.Column("name", sa.String(50)),
        sa.Index(f"ix_pets_name_{SUFFIX}", "name"),
    )
    return metadata, owners, pets


def sync_url(url: str) -> str:
    """The URL's database on a plain synchronous driver."""
    dialect = admin.dialect_name(url)
    parts = urlsplit(url)
    scheme = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}.get(dialect, "sqlite")
    return scheme + url[len(parts.scheme) :]


@pytest.fixture
def inspect_schema(database_url: str) -> Iterator[typing.Callable[[], sa.Inspector]]:
    """A fresh inspector each call (they cache); the test's tables dropped after it."""
    engine = sa.create_engine(sync_url(database_url), poolclass=sa.pool.NullPool)
    metadata, _, _ = schema()
    try:
        yield lambda: sa.inspect(engine)
    finally:
        with engine.begin() as connection:
            metadata.drop_all(connection)
        engine.dispose()


def assert_created(inspector: sa.Inspector, url: str) -> None:
    _, owners, pets = schema()
    names = set(inspector.get_table_names())
    assert {owners.name, pets.name} <= names
    assert [column["name"] for column in inspector.get_columns(pets.name)] == [
        "id",
        "owner_id",
        "name",
    ]
    (foreign_key,) = inspector.get_foreign_keys(pets.name)
    assert foreign_key["referred_table"] == owners.name
    assert foreign_key["constrained_columns"] == ["owner_id"]
    indexes = {index["name"]: index for index in inspector.get_indexes(pets.name)}
    assert indexes[f"ix_pets_name_{SUFFIX}"]["column_names"] == ["name"]
    unique = inspector.get_unique_constraints(owners.name) or [
        index for index in inspector.get_indexes(owners.name) if index["unique"]
    ]
    assert [constraint["column_names"] for constraint in unique] == [["name"]]
    if admin.dialect_name(url) == "postgresql":
        enums = {item["name"]: item["labels"] for item in inspector.get_enums()}  # type: ignore[attr-defined]
        assert enums[f"mood_{SUFFIX}"] == ["happy", "sad"]


def assert_dropped(inspector: sa.Inspector, url: str) -> None:
    _, owners, pets = schema()
    assert not {owners.name, pets.name} & set(inspector.get_table_names())
    if admin.dialect_name(url) == "postgresql":
        assert f"mood_{SUFFIX}" not in {item["name"] for item in inspector.get_enums()}  # type: ignore[attr-defined]


@pytest.mark.asyncio
@pytest.mark.dialects(*RUN_SYNC_BACKENDS)
async def test_create_all_and_drop_all(
    database_url: str, inspect_schema: typing.Callable[[], sa.Inspector]
) -> None:
    metadata, owners, pets = schema()
    async with Database(database_url) as database:
        await database.create_all(metadata)
        assert_created(inspect_schema(), database_url)
        # The tables work, foreign key included.
        owner = await database.execute(owners.insert(), {"name": "ann", "mood": Mood.happy})
        await database.execute(pets.insert(), {"owner_id": owner, "name": "rex"})
        row = await database.fetch_one(
            sa.select(owners.c.mood, pets.c.name).join(pets, pets.c.owner_id == owners.c.id)
        )
        assert row is not None and (row[0], row[1]) == (Mood.happy, "rex")

        await database.create_all(metadata)  # checkfirst: nothing to do
        with pytest.raises(sa.exc.DBAPIError):
            await database.create_all(metadata, checkfirst=False)

        await database.drop_all(metadata)
        assert_dropped(inspect_schema(), database_url)
        await database.drop_all(metadata)  # checkfirst: nothing to do
        with pytest.raises(sa.exc.DBAPIError):
            await database.drop_all(metadata, checkfirst=False)


@pytest.mark.asyncio
@pytest.mark.dialects(*RUN_SYNC_BACKENDS)
async def test_create_all_of_some_tables_on_a_connection(
    database_url: str, inspect_schema: typing.Callable[[], sa.Inspector]
) -> None:
    metadata, owners, pets = schema()
    async with Database(database_url) as database, database.connection() as connection:
        await connection.create_all(metadata, tables=[owners])
        names = set(inspect_schema().get_table_names())
        assert owners.name in names and pets.name not in names
        await connection.create_all(metadata)
        assert_created(inspect_schema(), database_url)
        await connection.drop_all(metadata, tables=[pets, owners])
    assert_dropped(inspect_schema(), database_url)


@pytest.mark.asyncio
@pytest.mark.dialects(*TRANSACTIONAL_DDL)
async def test_create_all_in_a_transaction_is_rolled_back_with_it(
    database_url: str, inspect_schema: typing.Callable[[], sa.Inspector]
) -> None:
    metadata, owners, _ = schema()
    async with Database(database_url) as database:
        async with database.transaction(force_rollback=True):
            await database.create_all(metadata)
            await database.execute(owners.insert(), {"name": "ann"})
            assert await database.fetch_val(sa.select(sa.func.count()).select_from(owners)) == 1
        assert_dropped(inspect_schema(), database_url)


@pytest.mark.asyncio
@pytest.mark.dialects(*TRANSACTIONAL_DDL)
async def test_create_all_under_force_rollback_is_rolled_back(
    database_url: str, inspect_schema: typing.Callable[[], sa.Inspector]
) -> None:
    metadata, owners, _ = schema()
    database = Database(database_url, force_rollback=True)
    async with database:
        await database.create_all(metadata)
        await database.execute(owners.insert(), {"name": "ann"})
        assert await database.fetch_val(sa.select(owners.c.name)) == "ann"
        await database.drop_all(metadata)
        await database.create_all(metadata)
    assert_dropped(inspect_schema(), database_url)


@pytest.mark.asyncio
@pytest.mark.dialects("mysql")
async def test_create_all_on_mysql_commits_as_its_ddl_does(
    database_url: str, inspect_schema: typing.Callable[[], sa.Inspector]
) -> None:
    # MySQL ends a transaction at each DDL statement: the tables stay (documented).
    metadata, _, _ = schema()
    async with Database(database_url) as database:
        async with database.transaction(force_rollback=True):
            await database.create_all(metadata)
        assert_created(inspect_schema(), database_url)
