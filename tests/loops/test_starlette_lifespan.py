"""A Starlette 1.x app whose `lifespan` connects and disconnects a module-global `Database`,
driven by `TestClient` (the app in a loop of its own, in a thread: one session, one client
entered twice, two clients at once, inside an async test that uses the database itself) and
by `httpx.AsyncClient` with `ASGITransport` (the app in the test's own loop), with
force_rollback on and off.

The scenarios and what they check are in `tests.loops.webapp`.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Iterator

import pytest

pytest.register_assert_rewrite("tests.loops.webapp")

from starlette.applications import Starlette  # noqa: E402

from databases import Database  # noqa: E402
from tests.loops import (  # noqa: E402
    clear_table,
    create_table,
    drop_table,
    make_table,
    url_id,
    webapp,
)
from tests.settings import DATABASE_URLS  # noqa: E402

items = make_table("loops_web_lifespan")


def make_app(database: Database) -> Starlette:
    """The app as an application writes it, with the lifespan the README shows."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with database:
            yield

    return Starlette(routes=webapp.starlette_routes(database, items), lifespan=lifespan)


# Created at import time, outside any event loop, as applications do.
DATABASES = {
    (url, force_rollback): Database(url, force_rollback=force_rollback)
    for url in DATABASE_URLS
    for force_rollback in (False, True)
}
APPS = {key: make_app(database) for key, database in DATABASES.items()}


@pytest.fixture(scope="module", params=DATABASE_URLS, ids=url_id)
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    create_table(request.param, items)
    yield request.param
    drop_table(request.param, items)


@pytest.fixture(params=[False, True], ids=["commit", "force_rollback"])
def case(url: str, request: pytest.FixtureRequest) -> Iterator[webapp.Case]:
    key = (url, request.param)
    yield webapp.Case(APPS[key], DATABASES[key], url, items, request.param)
    # Cleanup only (the tests check): connections a failed test left behind are garbage.
    gc.collect()
    clear_table(url, items)


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
