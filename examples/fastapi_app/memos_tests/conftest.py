"""Test setup: the tables, the plugin pointed at the app's own `Database`, and clients.

`databases_db` (from the `databases` pytest plugin) puts each test in a savepoint that is
rolled back after it, so every test starts with empty tables, whatever loop the test runs
in and whichever loop the app serves requests from.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from fastapi.testclient import TestClient
from memos.app import app
from memos.db import DATABASE_URL, database, metadata

from databases import Database

pytest_plugins = ["databases.testing.pytest_plugin"]


async def _create_tables() -> None:
    async with Database(DATABASE_URL) as schema_database:
        await schema_database.create_all(metadata)


async def _drop_tables() -> None:
    async with Database(DATABASE_URL) as schema_database:
        await schema_database.drop_all(metadata)


@pytest.fixture(scope="session")
def memos_tables() -> Iterator[None]:
    """The tables, created outside the force-rollback session: MySQL would commit the
    session's transaction at a CREATE TABLE inside it."""
    asyncio.run(_create_tables())
    yield
    asyncio.run(_drop_tables())


@pytest.fixture(scope="session")
def databases_database(memos_tables: None) -> Database:
    """The plugin manages the app's own database (after the tables exist)."""
    return database


@pytest.fixture
def client(databases_db: Database) -> Iterator[TestClient]:
    """The app under `TestClient`, lifespan included (its own loop, in a thread)."""
    with TestClient(app) as test_client:
        yield test_client


@pytest_asyncio.fixture
async def async_client(databases_db: Database) -> AsyncIterator[httpx.AsyncClient]:
    """The app in the test's own loop, through `httpx.ASGITransport` (no lifespan: the
    plugin has connected the database)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://memos") as http:
        yield http
