"""Async tests: the app through `httpx.ASGITransport` and `TestClient`, and the database
queried directly, all in one rolled-back savepoint per test."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy
from fastapi.testclient import TestClient
from memos.app import app
from memos.db import memos_table

from databases import Database

COUNT_MEMOS = sqlalchemy.select(sqlalchemy.func.count()).select_from(memos_table)


@pytest.mark.asyncio
async def test_api_writes_are_seen_by_the_test(
    async_client: httpx.AsyncClient, databases_db: Database
) -> None:
    response = await async_client.post("/memos", json={"title": "from the api"})
    assert response.status_code == 201
    titles = [row["title"] for row in await databases_db.fetch_all(memos_table.select())]
    assert titles == ["from the api"]


@pytest.mark.asyncio
async def test_test_writes_are_seen_by_the_api(
    async_client: httpx.AsyncClient, databases_db: Database
) -> None:
    await databases_db.execute(memos_table.insert().values(title="from the test", done=True))
    listed = (await async_client.get("/memos")).json()
    assert [(memo["title"], memo["done"]) for memo in listed] == [("from the test", True)]


@pytest.mark.asyncio
async def test_starts_empty(databases_db: Database) -> None:
    """The earlier tests' rows were rolled back."""
    assert await databases_db.fetch_val(COUNT_MEMOS) == 0


@pytest.mark.asyncio
async def test_test_client_inside_an_async_test(databases_db: Database) -> None:
    """The app in `TestClient`'s loop and the test in its own share one session."""
    await databases_db.execute(memos_table.insert().values(title="seen by the app"))
    with TestClient(app) as client:
        assert [memo["title"] for memo in client.get("/memos").json()] == ["seen by the app"]
        client.post("/memos", json={"title": "seen by the test"})
    assert await databases_db.fetch_val(COUNT_MEMOS) == 2


@pytest.mark.asyncio
async def test_transactions_nest_in_the_savepoint(databases_db: Database) -> None:
    async with databases_db.transaction():
        await databases_db.execute(memos_table.insert().values(title="committed to the savepoint"))
    transaction = await databases_db.transaction()
    await databases_db.execute(memos_table.insert().values(title="rolled back"))
    await transaction.rollback()
    titles = [row["title"] for row in await databases_db.fetch_all(memos_table.select())]
    assert titles == ["committed to the savepoint"]
