"""The memos API: create, list, read, and mark many memos done at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException

from databases.interfaces import Record
from memos.db import database, memos_table
from memos.models import Memo, MemoIn


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Connect at startup, disconnect at shutdown."""
    async with database:
        yield


app = FastAPI(title="memos", lifespan=lifespan)


def _memo(row: Record) -> Memo:
    return Memo.model_validate(dict(row._mapping))


@app.post("/memos", status_code=201)
async def create_memo(memo: MemoIn) -> Memo:
    memo_id = await database.execute(memos_table.insert().values(title=memo.title, done=memo.done))
    return Memo(id=memo_id, title=memo.title, done=memo.done)


@app.get("/memos")
async def list_memos() -> list[Memo]:
    rows = await database.fetch_all(memos_table.select().order_by(memos_table.c.id))
    return [_memo(row) for row in rows]


@app.get("/memos/{memo_id}")
async def read_memo(memo_id: int) -> Memo:
    row = await database.fetch_one(memos_table.select().where(memos_table.c.id == memo_id))
    if row is None:
        raise HTTPException(status_code=404, detail=f"no memo {memo_id}")
    return _memo(row)


@app.post("/memos/done")
async def mark_done(memo_ids: list[int]) -> list[Memo]:
    """Mark every given memo done, or none of them if one does not exist."""
    async with database.transaction():
        for memo_id in memo_ids:
            found = await database.fetch_one(
                memos_table.select().where(memos_table.c.id == memo_id)
            )
            if found is None:
                # Raising inside the block rolls back the memos marked so far.
                raise HTTPException(status_code=404, detail=f"no memo {memo_id}")
            await database.execute(
                memos_table.update().where(memos_table.c.id == memo_id).values(done=True)
            )
        rows = await database.fetch_all(
            memos_table.select().where(memos_table.c.id.in_(memo_ids)).order_by(memos_table.c.id)
        )
    return [_memo(row) for row in rows]
