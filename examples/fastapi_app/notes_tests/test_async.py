"""Async tests: the app through `httpx.ASGITransport` and `TestClient`, and the database
queried directly, all in one rolled-back savepoint per test."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy
from fastapi.testclient import TestClient
from notes.app import app
from notes.db import notes

from databases import Database

COUNT_NOTES = sqlalchemy.select(sqlalchemy.func.count()).select_from(notes)


@pytest.mark.asyncio
async def test_api_writes_are_seen_by_the_test(
    async_client: httpx.AsyncClient, databases_db: Database
) -> None:
    response = await async_client.post("/notes", json={"title": "from the api"})
    assert response.status_code == 201
    titles = [row["title"] for row in await databases_db.fetch_all(notes.select())]
    assert titles == ["from the api"]


@pytest.mark.asyncio
async def test_test_writes_are_seen_by_the_api(
    async_client: httpx.AsyncClient, databases_db: Database
) -> None:
    await databases_db.execute(notes.insert().values(title="from the test", done=True))
    listed = (await async_client.get("/notes")).json()
    assert [(note["title"], note["done"]) for note in listed] == [("from the test", True)]


@pytest.mark.asyncio
async def test_starts_empty(databases_db: Database) -> None:
    """The earlier tests' rows were rolled back."""
    assert await databases_db.fetch_val(COUNT_NOTES) == 0


@pytest.mark.asyncio
async def test_test_client_inside_an_async_test(databases_db: Database) -> None:
    """The app in `TestClient`'s loop and the test in its own share one session."""
    await databases_db.execute(notes.insert().values(title="seen by the app"))
    with TestClient(app) as client:
        assert [note["title"] for note in client.get("/notes").json()] == ["seen by the app"]
        client.post("/notes", json={"title": "seen by the test"})
    assert await databases_db.fetch_val(COUNT_NOTES) == 2


@pytest.mark.asyncio
async def test_transactions_nest_in_the_savepoint(databases_db: Database) -> None:
    async with databases_db.transaction():
        await databases_db.execute(notes.insert().values(title="committed to the savepoint"))
    transaction = await databases_db.transaction()
    await databases_db.execute(notes.insert().values(title="rolled back"))
    await transaction.rollback()
    titles = [row["title"] for row in await databases_db.fetch_all(notes.select())]
    assert titles == ["committed to the savepoint"]
