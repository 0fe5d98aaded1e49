"""The drivers' private attributes: declared by the installed asyncpg, aiomysql and aiopg, used to
release a closed loop's connections, and a class without them only logs once."""

from __future__ import annotations

import asyncio
import logging

import aiomysql
import aiopg
import asyncpg
import asyncpg.pool
import pytest
import sqlalchemy as sa

from databases import Database, DatabaseURL
from databases.backends.common import _driver_compat as driver
from tests.loops import run_in_bare_loop
from tests.tables import notes

DRIVER_CLASSES: list[tuple[type, tuple[str, ...]]] = [
    (asyncpg.pool.Pool, driver.ASYNCPG_POOL),
    (asyncpg.pool.PoolConnectionHolder, driver.ASYNCPG_HOLDER),
    (asyncpg.pool.PoolConnectionProxy, driver.ASYNCPG_PROXY),
    (asyncpg.connection.Connection, driver.ASYNCPG_CONNECTION),
    (aiomysql.Pool, driver.MYSQL_POOL),
    (aiomysql.Connection, driver.AIOMYSQL_CONNECTION),
    (aiopg.Connection, driver.AIOPG_CONNECTION),
]


@pytest.fixture
def unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver, "_checked", set())
    monkeypatch.setattr(driver, "DRIVER_GAPS", {})


@pytest.mark.parametrize(
    ("cls", "names"), DRIVER_CLASSES, ids=[cls.__qualname__ for cls, _ in DRIVER_CLASSES]
)
def test_the_installed_drivers_declare_what_is_read(
    cls: type, names: tuple[str, ...], unchecked: None
) -> None:
    assert driver.check_class(cls, names)
    assert driver.DRIVER_GAPS == {}


def test_our_aiomysql_cursors_are_used_with_the_installed_aiomysql() -> None:
    # Without them a bytes parameter fails on PyMySQL 1.2: a canary for an aiomysql release
    # whose Cursor no longer escapes through `_escape_args(args, conn)`.
    assert driver.AIOMYSQL_CURSORS_PROBLEM is None
    assert issubclass(driver.AIOMYSQL_CURSOR, aiomysql.Cursor)
    assert issubclass(driver.AIOMYSQL_SSCURSOR, aiomysql.SSCursor)


def test_bytes_are_written_as_binary_hex_literals() -> None:
    assert driver.escape_bytes(b"\x00'\\") == "_binary X'00275c'"
    assert driver.escape_bytes(bytearray()) == "_binary X''"


def test_a_class_without_them_is_named_once_and_skipped(
    unchecked: None, caplog: pytest.LogCaptureFixture
) -> None:
    names = (*driver.MYSQL_POOL, "_no_such_attribute")
    with caplog.at_level(logging.DEBUG, logger="databases"):
        assert not driver.check_class(aiomysql.Pool, names)
        assert not driver.check_class(aiomysql.Pool, names)
    assert driver.DRIVER_GAPS == {"aiomysql.pool.Pool": ("_no_such_attribute",)}
    lines = [record.getMessage() for record in caplog.records if record.name == "databases"]
    assert len(lines) == 1 and "aiomysql.pool.Pool has no _no_such_attribute" in lines[0]
    # Every step needing the class is skipped, without an error.
    pool = aiomysql.Pool(
        minsize=0, maxsize=1, echo=False, pool_recycle=-1, loop=asyncio.new_event_loop()
    )
    assert driver.mysql_pool_cut_all(pool) == []
    assert driver.mysql_pool_idle(pool) is None
    assert driver.mysql_pool_loop(pool) is None
    pool._loop.close()


@pytest.mark.dialects("postgresql", "mysql")
@pytest.mark.usefixtures("shared_tables")
def test_a_closed_loops_connections_are_released_through_them(
    database_url: str, unchecked: None
) -> None:
    if DatabaseURL(database_url).driver in ("psycopg", "aiopg"):
        pytest.skip(
            "psycopg and aiopg close without private attributes: tests/test_libpq_backends.py"
        )
    database = Database(database_url)
    asyncio.run(database.connect())

    async def query() -> None:
        assert await database.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 0

    run_in_bare_loop(query())
    assert [state["alive"] for state in database.loop_states()] == [False]
    asyncio.run(database.disconnect())
    assert database.loop_states() == []
    assert driver._checked, "no driver object was released through _driver_compat"
    assert driver.DRIVER_GAPS == {}
