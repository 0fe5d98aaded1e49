"""A Starlette 1.x app whose `lifespan` connects and disconnects a module-global `Database`,
driven by `TestClient` (the app in a loop of its own, in a thread: one session, one client
entered twice, two clients at once, inside an async test that uses the database itself) and
by `httpx.AsyncClient` with `ASGITransport` (the app in the test's own loop), with
force_rollback on and off.

The scenarios and what they check are in `tests.loops.webapp`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette

from databases import Database
from tests.loops import make_table, webapp
from tests.loops.support import database_url_with_table, web_case_fixture

items = make_table("loops_web_lifespan")


def make_app(database: Database) -> Starlette:
    """The app as an application writes it, with the lifespan the README shows."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with database:
            yield

    return Starlette(routes=webapp.starlette_routes(database, items), lifespan=lifespan)


database_url = database_url_with_table(items)
# The databases and apps are created here, at import time.
case = web_case_fixture(make_app, items)


@pytest.mark.parametrize("scenario", list(webapp.SYNC_SCENARIOS))
def test_test_client(case: webapp.Case, scenario: str) -> None:
    webapp.run_scenario(scenario, case)


@pytest.mark.asyncio
@pytest.mark.parametrize("scenario", list(webapp.ASYNC_SCENARIOS))
async def test_in_async_test(case: webapp.Case, scenario: str) -> None:
    await webapp.run_async_scenario(scenario, case)


@pytest.mark.asyncio
async def test_async_test_queries_while_app_connected(case: webapp.Case) -> None:
    # The app's shutdown is the last disconnect(): it must not wait for the test's loop,
    # which is blocked in TestClient.__exit__ waiting for that shutdown.
    await webapp.run_async_scenario(webapp.QUERIES_WHILE_APP_CONNECTED, case)
