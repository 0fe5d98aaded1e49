"""Function-loop tests over the session fixture: each sees what the earlier ones wrote."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy
from conftest import rules

from databases import Database

pytestmark = pytest.mark.asyncio(loop_scope="function")


def count() -> sqlalchemy.Select[tuple[int]]:
    return sqlalchemy.select(sqlalchemy.func.count()).select_from(rules)


async def test_add_policy(database: Database) -> None:
    await database.execute(rules.insert(), {"id": 1, "ptype": "p", "v0": "alice", "v1": "data1"})
    row = await database.fetch_one(rules.select().where(rules.c.id == 1))
    assert row is not None and row["v0"] == "alice"


async def test_add_policies_sees_earlier_test(database: Database) -> None:
    assert await database.fetch_val(count()) == 1
    rows = [{"id": n, "ptype": "p", "v0": f"user{n}", "v1": "data2"} for n in range(2, 12)]
    await database.execute_many(rules.insert(), rows)
    counts = await asyncio.gather(*(database.fetch_val(count()) for _ in range(10)))
    assert counts == [11] * 10


async def test_remove_policy_in_transaction(database: Database) -> None:
    async with database.transaction():
        await database.execute(rules.delete().where(rules.c.id == 1))
    async with database.transaction(force_rollback=True):
        await database.execute(rules.delete())
        assert await database.fetch_val(count()) == 0
    names = [row["v0"] async for row in database.iterate(rules.select().order_by(rules.c.id))]
    assert names == [f"user{n}" for n in range(2, 12)]
