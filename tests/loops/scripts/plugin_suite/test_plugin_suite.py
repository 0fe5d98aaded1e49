"""Every test starts with no rows but the seed, writes some from its loop(s), and checks
the count: a row left by an earlier test would fail it. The outer test checks that nothing
was committed at the end."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from app import add, app, count, seeds
from starlette.testclient import TestClient

from databases import Database


async def write_and_count(label: str) -> int:
    await add(label)
    return await count()


@pytest.mark.asyncio
async def test_function_loop(databases_db: Database) -> None:
    assert await write_and_count("function") == 1
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        assert (await client.post("/rows/asgi")).json() == {"count": 2}


@pytest.mark.asyncio
async def test_function_loop_leaves_a_transaction_open(databases_db: Database) -> None:
    """Rolled back when its loop ends, before the savepoint: the next test sees nothing."""
    await databases_db.transaction()
    assert await write_and_count("left open") == 1


@pytest.mark.asyncio(loop_scope="session")
async def test_session_loop(databases_db: Database) -> None:
    assert await write_and_count("session") == 1


@pytest.mark.asyncio(loop_scope="session")
async def test_session_loop_again(databases_db: Database) -> None:
    assert await write_and_count("session") == 1


@pytest.mark.asyncio
async def test_session_loop_fixture_in_function_loop_test(
    written_by_session_loop_fixture: str,
) -> None:
    assert await write_and_count("function") == 2


@pytest.mark.anyio
async def test_anyio(databases_db: Database) -> None:
    assert await write_and_count("anyio") == 1


def test_sync_test_client(databases_db: Database) -> None:
    with TestClient(app) as client:
        assert client.post("/rows/app").json() == {"count": 1}
        assert client.post("/rows/app").json() == {"count": 2}
    assert asyncio.run(count()) == 2


def test_test_client_without_lifespan(databases_db: Database) -> None:
    client = TestClient(app)
    assert client.post("/rows/app").json() == {"count": 1}
    client.close()


@pytest.mark.asyncio
async def test_test_client_inside_async_test(databases_db: Database) -> None:
    assert await write_and_count("test") == 1
    with TestClient(app) as client:
        assert client.post("/rows/app").json() == {"count": 2}
    assert await count() == 2


def test_asyncio_run_workers(databases_db: Database) -> None:
    results: list[int] = []

    def worker() -> None:
        results.append(asyncio.run(write_and_count("thread")))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(30)
    assert results == [1]
    assert asyncio.run(write_and_count("main")) == 2


@pytest.mark.asyncio
async def test_transactions_nest_in_the_savepoint(databases_db: Database) -> None:
    async with databases_db.transaction():
        await add("committed")
    with pytest.raises(RuntimeError):
        async with databases_db.transaction():
            await add("rolled back")
            raise RuntimeError
    assert await count() == 1


@pytest.mark.asyncio
async def test_seed_stays_for_the_run(seeded: None, databases_db: Database) -> None:
    assert await seeds() == 1
    assert await write_and_count("after seed") == 1


def test_last_sees_only_the_seed(databases_db: Database) -> None:
    assert asyncio.run(count()) == 0
    assert asyncio.run(seeds()) == 1
