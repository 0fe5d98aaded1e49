"""The shape of a client library's own suite (casbin-databases-adapter's): a session-scoped
async fixture connects a force-rollback `Database` in pytest-asyncio's session loop and
creates a table inside the transaction; function-scoped tests, each in its own loop,
write and read. Run by `tests/loops/test_force_rollback_session.py` in a subprocess, with
SESSION_URL, SESSION_TABLE and SESSION_DDL (1: create the table in the session) set.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest_asyncio
import sqlalchemy
from sqlalchemy.schema import CreateTable

from databases import Database

URL = os.environ["SESSION_URL"]
rules = sqlalchemy.Table(
    os.environ["SESSION_TABLE"],
    sqlalchemy.MetaData(),
    sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
    sqlalchemy.Column("ptype", sqlalchemy.String(255)),
    sqlalchemy.Column("v0", sqlalchemy.String(255)),
    sqlalchemy.Column("v1", sqlalchemy.String(255)),
)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def database() -> AsyncIterator[Database]:
    database = Database(URL, force_rollback=True)
    await database.connect()
    if os.environ["SESSION_DDL"] == "1":
        await database.execute(str(CreateTable(rules).compile(dialect=database.dialect)))
    yield database
    await database.disconnect()
