"""The notes API: create, list, read, and mark many notes done at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException

from databases.interfaces import Record
from notes.db import database, notes
from notes.models import Note, NoteIn


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Connect at startup, disconnect at shutdown."""
    async with database:
        yield


app = FastAPI(title="notes", lifespan=lifespan)


def _note(row: Record) -> Note:
    return Note.model_validate(dict(row._mapping))


@app.post("/notes", status_code=201)
async def create_note(note: NoteIn) -> Note:
    note_id = await database.execute(notes.insert().values(title=note.title, done=note.done))
    return Note(id=note_id, title=note.title, done=note.done)


@app.get("/notes")
async def list_notes() -> list[Note]:
    rows = await database.fetch_all(notes.select().order_by(notes.c.id))
    return [_note(row) for row in rows]


@app.get("/notes/{note_id}")
async def read_note(note_id: int) -> Note:
    row = await database.fetch_one(notes.select().where(notes.c.id == note_id))
    if row is None:
        raise HTTPException(status_code=404, detail=f"no note {note_id}")
    return _note(row)


@app.post("/notes/done")
async def mark_done(note_ids: list[int]) -> list[Note]:
    """Mark every given note done, or none of them if one does not exist."""
    async with database.transaction():
        for note_id in note_ids:
            updated = await database.fetch_one(notes.select().where(notes.c.id == note_id))
            if updated is None:
                # Raising inside the block rolls back the notes marked so far.
                raise HTTPException(status_code=404, detail=f"no note {note_id}")
            await database.execute(notes.update().where(notes.c.id == note_id).values(done=True))
        rows = await database.fetch_all(
            notes.select().where(notes.c.id.in_(note_ids)).order_by(notes.c.id)
        )
    return [_note(row) for row in rows]
