"""An app with a module-global `Database` built WITHOUT force_rollback, as in production.

The `databases` pytest plugin is pointed at it (`conftest.py`): under test its writes, from
whichever loop, must be rolled back after each test.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from databases import Database

database = Database(os.environ["PLUGIN_APP_URL"])

metadata = sqlalchemy.MetaData()
rows = sqlalchemy.Table(
    os.environ["PLUGIN_TABLE"],
    metadata,
    sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
    sqlalchemy.Column("label", sqlalchemy.String(100)),
)

# The session-scoped fixture's row, kept for the whole run: not counted.
SEED = "seed"


async def add(label: str) -> None:
    await database.execute(rows.insert().values(label=label))


async def count() -> int:
    """The rows written since the test began (everything but the seed)."""
    query = sqlalchemy.select(sqlalchemy.func.count()).select_from(rows)
    value = await database.fetch_val(query.where(rows.c.label != SEED))
    return int(value)


async def seeds() -> int:
    query = sqlalchemy.select(sqlalchemy.func.count()).select_from(rows)
    return int(await database.fetch_val(query.where(rows.c.label == SEED)))


async def add_route(request: Request) -> JSONResponse:
    await add(request.path_params["label"])
    return JSONResponse({"count": await count()})


async def count_route(request: Request) -> JSONResponse:
    return JSONResponse({"count": await count()})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with database:
        yield


app = Starlette(
    routes=[
        Route("/rows/{label}", add_route, methods=["POST"]),
        Route("/rows", count_route),
    ],
    lifespan=lifespan,
)
