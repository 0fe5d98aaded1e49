"""One `Database` used from more than one event loop.

The modules of this package each cover one arrangement of loops: pytest-asyncio's
function-scoped loops (with and without a wider-scoped loop that connected first),
`asyncio.run()` per job or per thread, and loops running in background threads that connect
and disconnect independently.

This module holds the helpers they share. Every table is created, emptied and dropped
through `tests.admin`, and checked through connections of its own, never through the
`Database` under test: "nothing was committed" is read from a separate plain `Database` (or,
for SQLite, straight through `sqlite3`).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Coroutine
from typing import Any, TypeVar

import sqlalchemy

from databases import Database, DatabaseURL

T = TypeVar("T")


def run_in_bare_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` in a new loop closed with a bare `loop.close()`: no `shutdown_asyncgens()`,
    so the library gets no chance to close its state on that loop."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def is_sqlite(url: str) -> bool:
    return DatabaseURL(url).dialect == "sqlite"


def make_table(name: str) -> sqlalchemy.Table:
    """A table of tagged integer values with an autoincrement key (`table_named()`).

    The process id is appended to `name`, so that test runs sharing a database server (or
    a SQLite file) at the same time do not empty or drop each other's tables.
    """
    return table_named(f"{name}_{os.getpid()}")


def table_named(name: str) -> sqlalchemy.Table:
    """A table `name` of tagged integer values with an autoincrement key."""
    return sqlalchemy.Table(
        name,
        sqlalchemy.MetaData(),
        sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True, autoincrement=True),
        sqlalchemy.Column("tag", sqlalchemy.String(length=64), nullable=False),
        sqlalchemy.Column("value", sqlalchemy.Integer, nullable=False),
    )


def count_all(table: sqlalchemy.Table) -> Any:
    return sqlalchemy.select(sqlalchemy.func.count()).select_from(table)


def count_tag(table: sqlalchemy.Table, tag: str) -> Any:
    return sqlalchemy.select(sqlalchemy.func.count()).select_from(table).where(table.c.tag == tag)


def values_of(table: sqlalchemy.Table, tag: str) -> Any:
    return sqlalchemy.select(table.c.value).where(table.c.tag == tag)


def sqlite_committed_rows(url: str, table: sqlalchemy.Table) -> list[tuple[str, int]]:
    """The committed `(tag, value)` rows of `table` on a SQLite database, sorted, read
    through `sqlite3` itself, independently of the library (no event loop needed)."""
    conn = sqlite3.connect(DatabaseURL(url).database, timeout=10)
    try:
        rows = conn.execute(f"SELECT tag, value FROM {table.name}").fetchall()
    finally:
        conn.close()
    return sorted((tag, value) for tag, value in rows)


def committed_rows(url: str, table: sqlalchemy.Table) -> list[tuple[str, int]]:
    """The committed `(tag, value)` rows of `table`, sorted, read through a separate
    connection (for SQLite through `sqlite3` itself, independently of the library)."""
    if is_sqlite(url):
        return sqlite_committed_rows(url, table)

    async def read() -> list[tuple[str, int]]:
        async with Database(url) as database:
            rows = await database.fetch_all(sqlalchemy.select(table.c.tag, table.c.value))
        return sorted((row[0], row[1]) for row in rows)

    return asyncio.run(read())


def write_probe(url: str, table: sqlalchemy.Table) -> None:
    """Commit an insert and a delete through a separate connection.

    On SQLite this only succeeds when no connection of the database under test still holds
    a lock, so it shows that the states of closed loops were really released.
    """
    if is_sqlite(url):
        conn = sqlite3.connect(DatabaseURL(url).database, timeout=10)
        try:
            conn.execute(f"INSERT INTO {table.name} (tag, value) VALUES ('probe', -1)")
            conn.commit()
            conn.execute(f"DELETE FROM {table.name} WHERE tag = 'probe'")
            conn.commit()
        finally:
            conn.close()
        return

    async def probe() -> None:
        async with Database(url) as database:
            await database.execute(table.insert(), {"tag": "probe", "value": -1})
            await database.execute(table.delete().where(table.c.tag == "probe"))

    asyncio.run(probe())


async def insert_and_select(
    database: Any, table: sqlalchemy.Table, tag: str, count: int
) -> list[int]:
    """`asyncio.gather()` `count` inserts of `tag` interleaved with `count` selects of it
    (2 * `count` queries in all), check what the selects saw, and return the sorted values
    of `tag` read afterwards.

    `database` is a `Database` or a `Connection`.
    """
    by_value = sqlalchemy.select(table.c.value).where(table.c.tag == tag)
    coros = []
    for i in range(count):
        coros.append(database.execute(table.insert(), {"tag": tag, "value": i}))
        if i % 3 == 0:
            coros.append(database.fetch_all(values_of(table, tag)))
        elif i % 3 == 1:
            coros.append(database.fetch_val(count_tag(table, tag)))
        else:
            coros.append(database.fetch_one(by_value.where(table.c.value == i)))
    results = await asyncio.gather(*coros)

    inserted_ids = results[0::2]
    assert all(isinstance(key, int) and key > 0 for key in inserted_ids), inserted_ids
    assert len(set(inserted_ids)) == count, inserted_ids
    for i, seen in enumerate(results[1::2]):
        if i % 3 == 0:
            seen_values = [row[0] for row in seen]
            assert len(seen_values) == len(set(seen_values))
            assert set(seen_values) <= set(range(count))
        elif i % 3 == 1:
            assert 0 <= seen <= count
        else:
            assert seen is None or seen[0] == i

    return sorted(row[0] for row in await database.fetch_all(values_of(table, tag)))
