"""The plugin, enabled by `pytest_plugins`, pointed at the app's own `Database`.

With PLUGIN_APP_STARTED_FIRST=1 the app's lifespan connects its database (without
force_rollback, so with a pool in the app's loop) before the plugin takes it over.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from app import SEED, add, app, database
from starlette.testclient import TestClient

from databases import Database

pytest_plugins = ["databases.testing.pytest_plugin"]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


if os.environ.get("PLUGIN_APP_STARTED_FIRST") == "1":

    @pytest.fixture(scope="session", autouse=True)
    def app_started_first() -> Iterator[TestClient]:
        """Autouse and session-scoped: set up before the plugin's session fixture."""
        with TestClient(app) as client:
            assert database.is_connected
            yield client


@pytest.fixture(scope="session")
def databases_database() -> Database:
    return database


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def seeded(databases_session: Database) -> AsyncIterator[None]:
    """A row written once for the run, outside every test's savepoint."""
    await add(SEED)
    yield


@pytest_asyncio.fixture(loop_scope="session")
async def written_by_session_loop_fixture(databases_db: Database) -> AsyncIterator[str]:
    """A function-scoped fixture in the session loop: inside the test's savepoint."""
    await add("fixture")
    yield "fixture"
