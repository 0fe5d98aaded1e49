"""`pool_pre_ping` and `pool_recycle` on the suite's own databases: parsed the same way
everywhere, never passed to a driver, and working on every server backend. What they do
against real faults (kills, restarts, idle timeouts) is in tests/faults/test_healthy_pools.py.
"""

from __future__ import annotations

import asyncio
import typing

import pytest

from databases import Database
from databases.backends.common import _pool_health
from databases.backends.common._pool_health import HealthOptions
from tests import admin


def connection_id_sql(url: str) -> str:
    if admin.dialect_name(url) == "postgresql":
        return "SELECT pg_backend_pid()"
    return "SELECT CONNECTION_ID()"


# -- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "options", "expected"),
    [
        ("", {}, HealthOptions(pre_ping=False, recycle=None)),
        ("?pool_pre_ping=true&pool_recycle=3600", {}, HealthOptions(True, 3600.0)),
        ("?pool_pre_ping=False&pool_recycle=1.5", {}, HealthOptions(False, 1.5)),
        ("?pool_pre_ping=true", {"pool_pre_ping": False}, HealthOptions(False, None)),
        ("", {"pool_pre_ping": True, "pool_recycle": 30}, HealthOptions(True, 30.0)),
        # SQLAlchemy's "never": -1 (any negative number), or None.
        ("?pool_recycle=-1", {}, HealthOptions(False, None)),
        ("?pool_recycle=20", {"pool_recycle": None}, HealthOptions(False, None)),
    ],
)
def test_options_from_the_url_and_keywords(
    database_url: str, query: str, options: dict[str, typing.Any], expected: HealthOptions
) -> None:
    base = database_url.split("?", 1)[0]
    database = Database(base + query, **options)
    assert database._backend._setup.health == expected


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"pool_pre_ping": "sometimes"}, "pool_pre_ping"),
        ({"pool_pre_ping": 1}, "pool_pre_ping"),
        ({"pool_recycle": "hourly"}, "pool_recycle"),
        ({"pool_recycle": True}, "pool_recycle"),
        ({"pool_recycle": float("nan")}, "pool_recycle"),
    ],
)
def test_a_bad_value_names_its_option(
    database_url: str, options: dict[str, typing.Any], name: str
) -> None:
    with pytest.raises(ValueError, match=f"'{name}' option"):
        Database(database_url, **options)


@pytest.mark.dialects("postgresql", "mysql")
def test_the_options_never_reach_the_driver(database_url: str) -> None:
    base = database_url.split("?", 1)[0]
    database = Database(f"{base}?pool_recycle=20&pool_pre_ping=true", pool_recycle=5)
    kwargs = database._backend._get_connection_kwargs()
    assert not {"pool_recycle", "pool_pre_ping"} & set(kwargs)


@pytest.mark.asyncio
async def test_every_backend_runs_with_both_options(database_url: str) -> None:
    """SQLite accepts them too, so one configuration serves every URL; there they change
    nothing (no server can drop a connection)."""
    async with Database(database_url, pool_pre_ping=True, pool_recycle=3600) as database:
        assert await database.fetch_val("SELECT 1") == 1
        async with database.connection() as connection:
            assert await connection.fetch_val("SELECT 2") == 2
        assert await database.fetch_val("SELECT 3") == 3


# -- behaviour on a healthy server --------------------------------------------------------------


@pytest.mark.dialects("postgresql", "mysql")
@pytest.mark.asyncio
async def test_recycle_replaces_an_old_connection_when_taken(database_url: str) -> None:
    sql = connection_id_sql(database_url)
    async with Database(database_url, max_size=1, pool_recycle=0.3) as database:
        first = await database.fetch_val(sql)
        assert await database.fetch_val(sql) == first  # young: reused
        await asyncio.sleep(0.5)
        second = await database.fetch_val(sql)
        assert second != first
        assert await database.fetch_val(sql) == second


@pytest.mark.dialects("postgresql", "mysql")
@pytest.mark.asyncio
async def test_pre_ping_keeps_a_live_idle_connection(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A short idle threshold keeps the test quick; the rule is the same at one second.
    monkeypatch.setattr(_pool_health, "PRE_PING_IDLE", 0.05)
    sql = connection_id_sql(database_url)
    async with Database(database_url, max_size=1, pool_pre_ping=True) as database:
        first = await database.fetch_val(sql)
        await asyncio.sleep(0.2)  # idle past the threshold: pinged, answers, kept
        assert await database.fetch_val(sql) == first
        async with database.transaction():
            assert await database.fetch_val(sql) == first


@pytest.mark.dialects("postgresql", "mysql")
@pytest.mark.asyncio
async def test_a_connection_lost_under_a_statement_is_not_pooled_again(database_url: str) -> None:
    """Its own session killed (the only way to lose a connection without disturbing the
    shared server): the statement fails, the next query gets a new connection."""
    sql = connection_id_sql(database_url)
    if admin.dialect_name(database_url) == "postgresql":
        suicide = "SELECT pg_terminate_backend(pg_backend_pid())"
    else:
        suicide = "KILL CONNECTION_ID()"
    async with Database(database_url, max_size=1) as database:
        first = await database.fetch_val(sql)
        with pytest.raises(Exception):  # noqa: B017 - each driver's own error
            await database.execute(suicide)
        second = await asyncio.wait_for(database.fetch_val(sql), 10)
        assert second != first
