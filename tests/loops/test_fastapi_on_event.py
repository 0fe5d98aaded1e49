"""A FastAPI app whose `@app.on_event("startup")` / `("shutdown")` handlers connect and
disconnect a module-global `Database` (deprecated in FastAPI but still common, and still
there on Starlette 1.x), driven by `TestClient` and by `httpx.AsyncClient` with
`ASGITransport`, with force_rollback on and off.

The routes are FastAPI's own (path operations with pydantic bodies); the scenarios and what
they check are in `tests.loops.webapp`.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.loops.webapp")

from fastapi import FastAPI  # noqa: E402
from pydantic import BaseModel  # noqa: E402

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

items = make_table("loops_web_fastapi")


class NewItems(BaseModel):
    tag: str
    values: list[int]


class GatherItems(BaseModel):
    tag: str
    count: int


def make_app(database: Database) -> FastAPI:
    """The app as applications wrote it for `databases` 0.9, with `on_event` handlers."""
    app = FastAPI()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # on_event is deprecated

        @app.on_event("startup")
        async def startup() -> None:
            await database.connect()

        @app.on_event("shutdown")
        async def shutdown() -> None:
            await database.disconnect()

    @app.get("/where")
    async def get_where() -> dict[str, Any]:
        return await webapp.where(database)

    @app.post("/items")
    async def post_items(body: NewItems) -> dict[str, Any]:
        return await webapp.insert_values(database, items, body.tag, body.values)

    @app.post("/gather")
    async def post_gather(body: GatherItems) -> dict[str, Any]:
        return await webapp.gather_values(database, items, body.tag, body.count)

    @app.get("/items/{tag}")
    async def get_items(tag: str) -> dict[str, Any]:
        return await webapp.read_values(database, items, tag)

    return app


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
