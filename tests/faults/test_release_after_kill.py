"""A connection killed on the server while a task holds it is given back without an error,
whatever the driver's pool does on return (asyncpg's reset meets the dead connection)."""

from __future__ import annotations

import asyncio

import pytest

from databases import Database
from tests.faults.servers import Server

STEP = 15.0
# Drivers that learn of a killed connection only when they next use it: an idle one given
# back looks healthy, and the next query on it fails, as with SQLAlchemy's pool
# (`pool_pre_ping` checks connections idle for over a second; docs/production.md).
LEARN_ON_USE = ("postgresql+psycopg", "postgresql+aiopg")


@pytest.mark.parametrize("in_transaction", [False, True], ids=["idle", "in-transaction"])
@pytest.mark.asyncio
async def test_giving_back_a_killed_connection_raises_nothing(
    fault_backend: str, fault_server: Server, in_transaction: bool
) -> None:
    database = Database(fault_server.url(fault_backend), min_size=0, max_size=1)
    async with database:
        async with database.connection() as connection:
            if in_transaction:
                await asyncio.wait_for(connection.execute("BEGIN"), STEP)
            await asyncio.wait_for(connection.fetch_val("SELECT 1"), STEP)
            assert fault_server.kill_connections() >= 1
        # Given back above without an error; the pool serves a working connection next,
        # unless the driver could not have known (an idle libpq connection).
        if in_transaction or fault_backend not in LEARN_ON_USE:
            assert await asyncio.wait_for(database.fetch_val("SELECT 2"), STEP) == 2
