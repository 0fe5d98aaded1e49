"""Pool events against a real fault: a connection killed on the server while its holder is
inside a transaction is thrown away when given back, and listeners hear of it. Only where
the pool is ours (psycopg, aiopg): asyncpg's and aiomysql's own pools reset and drop such a
connection themselves, unseen (docs/observability.md)."""

from __future__ import annotations

import asyncio

import pytest

from databases import Database
from databases.events import PoolEvent
from tests.faults.servers import Server

STEP = 15.0


@pytest.mark.dialects("postgresql+psycopg", "postgresql+aiopg")
@pytest.mark.asyncio
async def test_a_connection_killed_in_a_transaction_is_discarded_on_return(
    fault_backend: str, fault_server: Server
) -> None:
    actions: list[str] = []

    def record(event: PoolEvent) -> None:
        actions.append(event.action)

    database = Database(fault_server.url(fault_backend), min_size=0, max_size=1)
    database.events.on_pool(record)
    async with database:
        async with database.connection() as connection:
            await asyncio.wait_for(connection.execute("BEGIN"), STEP)
            await asyncio.wait_for(connection.fetch_val("SELECT 1"), STEP)
            assert fault_server.kill_connections() >= 1
        # A new connection serves the next query.
        assert await asyncio.wait_for(database.fetch_val("SELECT 2"), STEP) == 2
    assert actions[:4] == ["connect", "acquire", "release", "discard"]
    assert actions[4:6] == ["connect", "acquire"]
