"""The SQLite worker threads over stdlib sqlite3: raw connections with aiosqlite's public
API, 0.9's shared memory URI, and a process that exits without disconnect()."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from databases import Database
from databases.backends.sqlite import SQLiteRawConnection, SQLiteRawCursor

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_MEMORY_URL = "sqlite:///file::memory:?cache=shared"

metadata = sa.MetaData()
notes = sa.Table(
    "worker_notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", sa.String(50)),
)


@pytest.fixture
def file_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'worker.sqlite'}"


async def create_notes(database: Database) -> None:
    await database.execute(sa.schema.CreateTable(notes, if_not_exists=True))


@pytest.mark.asyncio
async def test_raw_connection_offers_aiosqlite_public_api(file_url: str) -> None:
    """0.9 users' code on `raw_connection` (an aiosqlite.Connection then) keeps working,
    in order with the library's own statements on the same connection."""
    async with Database(file_url, iter_chunk_size=2) as database:
        await create_notes(database)
        async with database.connection() as connection:
            raw = connection.raw_connection
            assert isinstance(raw, SQLiteRawConnection)
            assert connection.raw_connection is raw  # one per connection

            cursor = await raw.execute("INSERT INTO worker_notes (text) VALUES (?)", ("a",))
            assert isinstance(cursor, SQLiteRawCursor)
            assert cursor.rowcount == 1 and cursor.lastrowid == 1
            await cursor.close()
            assert await raw.execute_insert(
                "INSERT INTO worker_notes (text) VALUES (:text)", {"text": "b"}
            ) == (2,)
            await raw.executemany(
                "INSERT INTO worker_notes (text) VALUES (?)", [("c",), ("d",), ("e",)]
            )
            await raw.executescript("INSERT INTO worker_notes (text) VALUES ('f');")
            # The library's statements on this connection see what raw ones wrote.
            count = sa.select(sa.func.count()).select_from(notes)
            assert await connection.fetch_val(count) == 6

            # Iterating a cursor fetches `iter_chunk_size` rows per trip.
            async with raw.execute("SELECT text FROM worker_notes ORDER BY id") as rows:
                assert rows.description[0][0] == "text"
                assert [row[0] async for row in rows] == list("abcdef")
            async with raw.cursor() as cursor:
                await cursor.execute("SELECT id FROM worker_notes WHERE id > ?", (4,))
                assert await cursor.fetchone() == (5,)
                assert await cursor.fetchmany(5) == [(6,)]
                assert await cursor.fetchall() == []

            await raw.create_function("shout", 1, lambda text: text.upper() + "!")
            shouted = sa.select(sa.func.shout(notes.c.text)).where(notes.c.id == 1)
            assert await connection.fetch_val(shouted) == "A!"

            await raw.execute("BEGIN")
            await raw.execute("DELETE FROM worker_notes")
            assert raw.in_transaction
            await raw.rollback()
            assert not raw.in_transaction
            assert await connection.fetch_val(count) == 6
            assert raw.isolation_level is None  # autocommit: the library BEGINs itself
            assert raw.total_changes >= 7

            raw.row_factory = sqlite3.Row
            try:
                rows_as_dicts = await raw.execute_fetchall("SELECT id, text FROM worker_notes")
                assert dict(rows_as_dicts[0]) == {"id": 1, "text": "a"}
            finally:
                raw.row_factory = None

            dump = [line async for line in raw.iterdump()]
            assert any('INSERT INTO "worker_notes"' in line for line in dump)
            copy = sqlite3.connect(":memory:")
            await raw.backup(copy)
            assert copy.execute("SELECT count(*) FROM worker_notes").fetchone() == (6,)
            copy.close()


@pytest.mark.asyncio
async def test_raw_transaction_counts_for_the_file_gate(file_url: str) -> None:
    """A transaction opened through the raw connection counts as open on the file, so
    one-statement calls stop sharing the statement connection (which would wait for its lock)
    meanwhile,
    and share it again once it is committed."""
    async with Database(file_url, timeout=5) as database:
        await create_notes(database)
        pool = database._backend._pool  # type: ignore[attr-defined]
        async with database.connection() as connection:
            raw = connection.raw_connection
            await raw.execute("BEGIN IMMEDIATE")
            assert not pool.statement_connection_is_free()
            await raw.commit()
            assert pool.statement_connection_is_free()


def test_shared_memory_uri_as_documented_by_0_9() -> None:
    """`Database("sqlite:///file::memory:?cache=shared", uri=True)`: every connection of
    every loop sees one memory database while connected; after disconnect() it is gone,
    and a new Database on the same URL finds it empty."""
    database = Database(SHARED_MEMORY_URL, uri=True)
    asyncio.run(database.connect())

    async def write() -> None:
        await create_notes(database)
        await database.execute(notes.insert(), {"text": "first loop"})

    async def read() -> list[str]:
        async def one_task() -> list[str]:
            async with database.connection() as connection:
                return [row.text for row in await connection.fetch_all(sa.select(notes))]

        results = await asyncio.gather(*(one_task() for _ in range(3)))
        assert all(result == results[0] for result in results)
        return results[0]

    seen_in_thread: list[list[str]] = []
    try:
        asyncio.run(write())
        assert asyncio.run(read()) == ["first loop"]
        thread = threading.Thread(target=lambda: seen_in_thread.append(asyncio.run(read())))
        thread.start()
        thread.join(30)
        assert seen_in_thread == [["first loop"]]
    finally:
        asyncio.run(database.disconnect())

    async def read_again(url_database: Database) -> None:
        async with url_database:
            with pytest.raises(sqlite3.OperationalError, match="no such table"):
                await url_database.fetch_all(sa.select(notes))

    asyncio.run(read_again(Database(SHARED_MEMORY_URL, uri=True)))
    asyncio.run(read_again(database))


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_plain_memory_database_is_released_at_disconnect(url: str) -> None:
    database = Database(url)

    async def write_and_read() -> list[str]:
        async with database:
            await create_notes(database)
            await database.execute(notes.insert(), {"text": "kept"})
            return [row.text for row in await database.fetch_all(sa.select(notes))]

    assert asyncio.run(write_and_read()) == ["kept"]

    async def read_again() -> None:
        async with database:
            with pytest.raises(sqlite3.OperationalError, match="no such table"):
                await database.fetch_all(sa.select(notes))

    asyncio.run(read_again())


def run_script(code: str, timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    finished = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return finished, time.monotonic() - started


def test_process_exits_promptly_without_disconnect(tmp_path: Path) -> None:
    """Connections never disconnected (pooled, the statement connection, an iteration, a raw
    cursor, in
    several loops, one closed bare) must not keep the process alive at exit."""
    code = f"""
        import asyncio
        from databases import Database

        database = Database("sqlite:///{tmp_path / "exit.sqlite"}")

        async def queries(tag: str) -> None:
            await database.execute("CREATE TABLE IF NOT EXISTS t (x TEXT)")
            for _ in range(3):
                await database.execute("INSERT INTO t VALUES (:x)", {{"x": tag}})
            await database.fetch_all("SELECT * FROM t")
            async with database.connection() as connection:
                async for _ in connection.iterate("SELECT * FROM t"):
                    pass
                await connection.raw_connection.execute("SELECT 1")
            async with database.transaction():
                await database.execute("INSERT INTO t VALUES ('in transaction')")

        asyncio.run(database.connect())
        asyncio.run(queries("first"))
        asyncio.run(queries("second"))
        loop = asyncio.new_event_loop()
        loop.run_until_complete(queries("bare"))
        loop.close()

        async def last() -> None:
            await queries("last")
            print(await database.fetch_val("SELECT count(*) FROM t"), flush=True)

        asyncio.run(last())
    """
    finished, elapsed = run_script(code, timeout=60)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.split() == ["16"]
    assert elapsed < 15


def test_backend_needs_no_aiosqlite(tmp_path: Path) -> None:
    """The backend drives sqlite3 itself: it works where aiosqlite cannot be imported."""
    code = f"""
        import asyncio, sys
        sys.modules["aiosqlite"] = None  # any import of it now fails
        from databases import Database

        async def main() -> None:
            async with Database("sqlite:///{tmp_path / "alone.sqlite"}") as database:
                await database.execute("CREATE TABLE t (x INTEGER)")
                await database.execute("INSERT INTO t VALUES (1)")
                async with database.connection() as connection:
                    rows = await connection.raw_connection.execute_fetchall("SELECT x FROM t")
                print(rows, await database.fetch_val("SELECT x FROM t"))

        asyncio.run(main())
    """
    finished, _ = run_script(code, timeout=60)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "[(1,)] 1"


def test_connections_serve_statement_after_statement_in_loop_after_loop(file_url: str) -> None:
    """aiosqlite 0.20 and 0.21 lost their worker thread after the first statement when
    driven through its private attributes; ours serve any number, in any loop."""
    database = Database(file_url)
    asyncio.run(database.connect())
    asyncio.run(create_notes(database))
    for number in range(5):

        async def insert_and_count(number: int = number) -> int:
            async with database.connection() as connection:
                for _ in range(10):
                    await connection.execute(notes.insert(), {"text": str(number)})
                count = sa.select(sa.func.count()).select_from(notes)
                return int(await connection.fetch_val(count))

        assert asyncio.run(insert_and_count()) == 10 * (number + 1)
    asyncio.run(database.disconnect())
