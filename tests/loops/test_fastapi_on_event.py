"""A FastAPI app whose `@app.on_event("startup")` / `("shutdown")` handlers connect and
disconnect a module-global `Database` (deprecated in FastAPI but still common, and still
there on Starlette 1.x), driven by `TestClient` and by `httpx.AsyncClient` with
`ASGITransport`, with force_rollback on and off.

The routes are FastAPI's own (path operations with pydantic bodies); the scenarios and what
they check are in `tests.loops.webapp`.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from databases import Database
from tests.loops import make_table, webapp
from tests.loops.support import database_url_with_table, web_case_fixture

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

    @app.post("/transaction")
    async def post_transaction(body: NewItems) -> dict[str, Any]:
        return await webapp.insert_in_transaction(database, items, body.tag, body.values)

    @app.post("/gather")
    async def post_gather(body: GatherItems) -> dict[str, Any]:
        return await webapp.gather_values(database, items, body.tag, body.count)

    @app.get("/items/{tag}")
    async def get_items(tag: str) -> dict[str, Any]:
        return await webapp.read_values(database, items, tag)

    return app


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
