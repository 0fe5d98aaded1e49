"""Healthy pools against real faults on disposable servers: connections killed while idle or
in flight, servers restarted under load, idle timeouts expiring while the event loop was
blocked. The next query after the fault succeeds, with no code of the application's.

Each test runs once per server backend of `TEST_DATABASE_URLS` (`fault_backend`).
"""

from __future__ import annotations

import asyncio
import time
import typing

import pytest

from databases import Database
from databases.backends.common._pool_health import PING_TIMEOUT, PRE_PING_IDLE
from tests.faults.proxy import TcpProxy
from tests.faults.servers import Server

# Seconds any single query below may take before the test fails.
STEP = 15.0


async def query(database: Database, sql: str = "SELECT 1") -> typing.Any:
    return await asyncio.wait_for(database.fetch_val(sql), STEP)


async def fill_pool(database: Database, server: Server, size: int) -> None:
    """Make the pool hold `size` connections (each opened by a query of its own)."""
    sleep = server.sleep_sql(0.2)
    await asyncio.wait_for(asyncio.gather(*(database.fetch_val(sleep) for _ in range(size))), STEP)


async def connection_ids(database: Database, server: Server, count: int) -> list[int]:
    return [int(await query(database, server.connection_id_sql)) for _ in range(count)]


def block_the_loop(seconds: float) -> None:
    """Keep the event loop from running (a blocking call in a coroutine): connections die
    meanwhile without the drivers noticing."""
    time.sleep(seconds)


# -- pool_pre_ping ------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["kill", "restart"])
@pytest.mark.asyncio
async def test_pre_ping_replaces_connections_that_died_while_the_loop_was_blocked(
    fault_backend: str, fault_server: Server, fault: str
) -> None:
    async with Database(fault_server.url(fault_backend), pool_pre_ping=True) as database:
        await fill_pool(database, fault_server, 3)
        if fault == "kill":
            assert fault_server.kill_connections() >= 3
        else:
            fault_server.restart()
        block_the_loop(PRE_PING_IDLE + 0.5)
        # Without pre-ping the first of these fails ("connection was closed in the middle
        # of operation", MySQL's 2013 "Lost connection").
        for _ in range(5):
            assert await query(database) == 1


@pytest.mark.asyncio
async def test_pre_ping_survives_an_idle_timeout_that_expired_while_the_loop_was_blocked(
    fault_backend: str, fault_server: Server
) -> None:
    # MariaDB's wait_timeout, PostgreSQL's idle_session_timeout: one second.
    fault_server.set_idle_timeout(1)
    async with Database(fault_server.url(fault_backend), pool_pre_ping=True) as database:
        await fill_pool(database, fault_server, 3)
        block_the_loop(2.5)
        for _ in range(5):
            assert await query(database) == 1


@pytest.mark.asyncio
async def test_pre_ping_replaces_connections_whose_idle_flows_were_silently_dropped(
    fault_backend: str, fault_server: Server, tcp_proxy: typing.Callable[[int], TcpProxy]
) -> None:
    """A NAT or load balancer that forgot the idle flows: their connections hang without a
    word while new ones work. One ping times out; the other idle connections are then
    replaced without waiting for a ping of each."""
    proxy = tcp_proxy(fault_server.port)
    url = fault_server.url(fault_backend, port=proxy.port)
    async with Database(url, pool_pre_ping=True) as database:
        await fill_pool(database, fault_server, 3)
        proxy.stall(existing_only=True)
        await asyncio.sleep(PRE_PING_IDLE + 0.2)
        started = time.monotonic()
        assert await query(database) == 1
        assert time.monotonic() - started < 2 * PING_TIMEOUT
        for _ in range(3):
            assert await query(database) == 1


# -- pool_recycle -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_recycle_replaces_a_connection_older_than_pool_recycle_even_when_busy(
    fault_backend: str, fault_server: Server
) -> None:
    url = fault_server.url(fault_backend, max_size=1)
    async with Database(url, pool_recycle=1) as database:
        first = await connection_ids(database, fault_server, 3)
        assert len(set(first)) == 1  # one connection, reused
        # Used every 0.2 s, so never idle for a second (aiomysql's own pool_recycle counted
        # idle time): only its age makes it go.
        seen = []
        deadline = time.monotonic() + 1.6
        while time.monotonic() < deadline:
            seen += await connection_ids(database, fault_server, 1)
            await asyncio.sleep(0.2)
        assert seen[-1] != first[0]
        # Recycled politely: the old session is gone from the server, not left behind.
        ids = {row[0] for row in fault_server.fetch_all(_session_ids_sql(fault_server))}
        assert first[0] not in ids


def _session_ids_sql(server: Server) -> str:
    if server.dialect == "postgresql":
        return "SELECT pid FROM pg_stat_activity"
    return "SELECT id FROM information_schema.processlist"


@pytest.mark.asyncio
async def test_recycle_survives_an_idle_timeout_shorter_than_it_would_allow(
    fault_backend: str, fault_server: Server
) -> None:
    """`pool_recycle` below the server's idle timeout, as MySQL users set it: a connection
    whose idle timeout expired while the loop was blocked is older than `pool_recycle` too."""
    fault_server.set_idle_timeout(2)
    async with Database(fault_server.url(fault_backend), pool_recycle=1) as database:
        await fill_pool(database, fault_server, 3)
        block_the_loop(3)
        for _ in range(5):
            assert await query(database) == 1


# -- connections lost with a statement in flight ------------------------------------------------


@pytest.mark.asyncio
async def test_after_a_kill_in_flight_the_next_query_succeeds(
    fault_backend: str, fault_server: Server
) -> None:
    """No option: the connection lost under a statement is discarded, and the idle ones,
    killed with it, are checked before use."""
    async with Database(fault_server.url(fault_backend)) as database:
        await fill_pool(database, fault_server, 4)
        in_flight = asyncio.ensure_future(query(database, fault_server.sleep_sql(5)))
        await asyncio.sleep(0.5)
        assert fault_server.kill_connections() >= 4
        with pytest.raises(Exception):  # noqa: B017 - each driver's own error
            await in_flight
        for _ in range(6):
            assert await query(database) == 1


@pytest.mark.asyncio
async def test_a_restart_under_load_leaves_every_later_query_working(
    fault_backend: str, fault_server: Server
) -> None:
    """Two tasks keep querying while the server restarts: queries fail while it is down,
    and none once it is back, though most of the pool's connections sat idle through the
    restart (psycopg does not notice an idle connection die: each would fail once)."""
    async with Database(fault_server.url(fault_backend)) as database:
        await fill_pool(database, fault_server, 10)
        restarted = asyncio.Event()
        failures_after_restart: list[BaseException] = []
        ran_after_restart = 0

        async def load() -> None:
            nonlocal ran_after_restart
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and ran_after_restart < 20:
                after = restarted.is_set()
                try:
                    await query(database)
                except Exception as exc:
                    if after:
                        failures_after_restart.append(exc)
                if after:
                    ran_after_restart += 1
                await asyncio.sleep(0.25)

        workers = [asyncio.ensure_future(load()) for _ in range(2)]
        await asyncio.sleep(0.3)
        await asyncio.get_running_loop().run_in_executor(None, fault_server.restart)
        restarted.set()
        await asyncio.wait_for(asyncio.gather(*workers), 40)
        assert ran_after_restart >= 20
        assert failures_after_restart == []
