"""Smoke test of an installed `databases`: one round trip of everything a user does first.

    python scripts/smoke.py sqlite:///smoke.sqlite
    python scripts/smoke.py postgresql://postgres@127.0.0.1:5432/test

Run by scripts/package-check with the built wheel installed in a fresh virtualenv, outside
the checkout, so it proves the wheel (not the source tree) works with one backend's extra.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import sqlalchemy

import databases

metadata = sqlalchemy.MetaData()
notes = sqlalchemy.Table(
    f"smoke_notes_{os.getpid()}",
    metadata,
    sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
    sqlalchemy.Column("text", sqlalchemy.String(100)),
)


async def main(url: str) -> None:
    checkout = Path(__file__).resolve().parent.parent
    if Path(databases.__file__).resolve().is_relative_to(checkout):
        raise SystemExit(f"smoke: imported {databases.__file__}, not the installed package")
    database = databases.Database(url)
    async with database:
        await database.execute(sqlalchemy.schema.CreateTable(notes))
        try:
            async with database.transaction():
                await database.execute_many(notes.insert(), [{"text": "one"}, {"text": "two"}])
            rows = await database.fetch_all(notes.select().order_by(notes.c.id))
            assert [row.text for row in rows] == ["one", "two"], rows
            async with database.transaction(force_rollback=True):
                await database.execute(notes.delete())
            count = sqlalchemy.select(sqlalchemy.func.count()).select_from(notes)
            assert await database.fetch_val(count) == 2
        finally:
            await database.execute(sqlalchemy.schema.DropTable(notes))
    speedups = "with" if databases_has_speedups() else "without"
    print(
        f"smoke: databases {databases.__version__} on Python {sys.version.split()[0]}, "
        f"{database.url.scheme}, {speedups} the C speedups: ok"
    )


def databases_has_speedups() -> bool:
    try:
        import databases._speedups  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
