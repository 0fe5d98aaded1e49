"""One force-rollback session for every loop of the process.

- A suite shaped like a client library's (a session-loop fixture that creates a table inside
  the transaction, function-loop tests that write and read) passes, and leaves nothing.
- A forked child gets a fresh session of its own; the parent's goes on.
- A loop that ends with a transaction open: its savepoint is rolled back, the session's
  earlier rows stay.
- `disconnect()` in a loop that never connected, while another loop is connected: a
  logged no-op.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

import pytest
import sqlalchemy

from databases import Database, DatabaseURL
from tests import admin
from tests.loops import (
    committed_rows,
    count_all,
    count_tag,
    is_sqlite,
    make_table,
    run_in_bare_loop,
    write_probe,
)
from tests.loops.support import database_url_with_table
from tests.subprocesses import run_pytest

items = make_table("loops_session_items")
SUITE = Path(__file__).parent / "scripts" / "session_suite"


def absolute(database_url: str) -> str:
    """A SQLite file URL made absolute, so that a subprocess elsewhere finds the file."""
    if not is_sqlite(database_url):
        return database_url
    return "sqlite:///" + os.path.abspath(DatabaseURL(database_url).database)


database_url = database_url_with_table(items)


def table_exists(database_url: str, name: str) -> bool:
    dialect = DatabaseURL(database_url).dialect
    if dialect == "sqlite":
        sql = f"SELECT name FROM sqlite_master WHERE name = '{name}'"
    else:
        sql = f"SELECT table_name FROM information_schema.tables WHERE table_name = '{name}'"
    return bool(admin.raw_fetch_all(database_url, sql))


@pytest.mark.parametrize("memory", [False, True], ids=["file_or_server", "sqlite_memory"])
def test_session_fixture_with_ddl_and_function_loop_tests(
    database_url: str, memory: bool, tmp_path: Path
) -> None:
    """The suite in `scripts/session_suite`, in a pytest of its own. The table is created
    inside the force-rollback transaction (MySQL commits DDL at once, so there it is created
    beforehand and only its rows are checked); afterwards nothing of it is left."""
    if memory and not is_sqlite(database_url):
        pytest.skip("the in-memory variant is SQLite's ('sqlite://', as the client suite has)")
    session_url = "sqlite://" if memory else absolute(database_url)
    table = f"session_rules_{os.getpid()}"
    ddl_in_session = DatabaseURL(database_url).dialect != "mysql"
    if not ddl_in_session:
        admin.raw_execute(
            database_url,
            f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, ptype VARCHAR(255), "
            "v0 VARCHAR(255), v1 VARCHAR(255))",
        )
    # A copy outside this repository: no conftest of ours above it.
    suite = tmp_path / "suite"
    shutil.copytree(SUITE, suite)
    (suite / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    env = dict(
        os.environ,
        SESSION_URL=session_url,
        SESSION_TABLE=table,
        SESSION_DDL="1" if ddl_in_session else "0",
    )
    try:
        result = run_pytest(".", suite, env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "3 passed" in result.stdout, result.stdout
        if not memory:
            if ddl_in_session:
                assert not table_exists(database_url, table)  # the CREATE TABLE was rolled back
            else:
                assert admin.raw_fetch_all(database_url, f"SELECT * FROM {table}") == []
    finally:
        if not ddl_in_session:
            admin.raw_execute(database_url, f"DROP TABLE {table}")


def test_forked_child_gets_a_fresh_session(database_url: str) -> None:
    """The child must not use the parent's connection (its socket is the parent's too): it
    opens a session of its own, which does not see the parent's uncommitted row."""
    database = Database(database_url, force_rollback=True)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(database.connect())
    loop.run_until_complete(database.execute(items.insert(), {"tag": "parent", "value": 1}))

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        status = 1
        try:

            async def child() -> int:
                seen = await database.fetch_val(count_tag(items, "parent"))
                if not is_sqlite(database_url):  # SQLite: the parent's session holds the write lock
                    await database.execute(items.insert(), {"tag": "child", "value": 2})
                    assert await database.fetch_val(count_tag(items, "child")) == 1
                await database.disconnect()
                return int(seen)

            status = 10 + asyncio.run(child())
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 10  # the child saw no parent row

    # The parent's session goes on: its row, and none of the child's (rolled back).
    assert loop.run_until_complete(database.fetch_val(count_all(items))) == 1
    loop.run_until_complete(database.disconnect())
    loop.close()
    assert committed_rows(database_url, items) == []
    write_probe(database_url, items)


@pytest.mark.parametrize("graceful", [True, False], ids=["asyncio_run", "bare_close"])
def test_loop_ending_mid_transaction_rolls_back_its_savepoint(
    database_url: str, graceful: bool
) -> None:
    database = Database(database_url, force_rollback=True)
    asyncio.run(database.connect())
    asyncio.run(database.execute(items.insert(), {"tag": "kept", "value": 1}))

    async def leave_open() -> None:
        await database.transaction().start()
        await database.execute(items.insert(), {"tag": "orphan", "value": 2})
        assert await database.fetch_val(count_all(items)) == 2

    if graceful:
        asyncio.run(leave_open())
    else:
        run_in_bare_loop(leave_open())

    async def next_loop() -> tuple[int, int]:
        async with database.transaction():
            await database.execute(items.insert(), {"tag": "next", "value": 3})
        return (
            await database.fetch_val(count_tag(items, "orphan")),
            await database.fetch_val(count_all(items)),
        )

    assert asyncio.run(next_loop()) == (0, 2)
    asyncio.run(database.disconnect())
    assert committed_rows(database_url, items) == []
    write_probe(database_url, items)


def test_disconnect_in_a_loop_that_never_connected(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    database = Database(database_url, force_rollback=True)
    connected_in = asyncio.new_event_loop()
    connected_in.run_until_complete(database.connect())
    connected_in.run_until_complete(database.execute(items.insert(), {"tag": "a", "value": 1}))
    with caplog.at_level(logging.WARNING, logger="databases"):
        asyncio.run(database.disconnect())  # this loop never connected
    assert "did not connect" in caplog.text
    assert database.is_connected
    assert connected_in.run_until_complete(database.fetch_val(count_all(items))) == 1
    connected_in.run_until_complete(database.disconnect())
    connected_in.close()
    assert not database.is_connected
    assert committed_rows(database_url, items) == []


def test_outside_connection_sees_nothing_while_connected(database_url: str) -> None:
    database = Database(database_url, force_rollback=True)
    asyncio.run(database.connect())
    asyncio.run(database.execute_many(items.insert(), [{"tag": "x", "value": v} for v in range(5)]))
    assert (
        asyncio.run(database.fetch_val(sqlalchemy.select(sqlalchemy.func.sum(items.c.value)))) == 10
    )
    assert committed_rows(database_url, items) == []
    asyncio.run(database.disconnect())
    assert committed_rows(database_url, items) == []
    write_probe(database_url, items)


def test_force_rollback_block_on_a_pooled_database(database_url: str) -> None:
    """`database.force_rollback()` on a database connected without it: the session starts
    on first use inside the block, every loop sees it there, the pooled connections outside
    the block do not, and the last disconnect rolls it back."""
    database = Database(database_url)
    connected_in = asyncio.new_event_loop()
    connected_in.run_until_complete(database.connect())
    with database.force_rollback():
        connected_in.run_until_complete(
            database.execute(items.insert(), {"tag": "session", "value": 1})
        )
        assert asyncio.run(database.fetch_val(count_tag(items, "session"))) == 1
    if not is_sqlite(database_url):  # SQLite: the session holds the file's write lock
        connected_in.run_until_complete(
            database.execute(items.insert(), {"tag": "pooled", "value": 2})
        )
    # Outside the block: pooled connections, which do not see the session's row.
    assert connected_in.run_until_complete(database.fetch_val(count_tag(items, "session"))) == 0
    connected_in.run_until_complete(database.disconnect())
    connected_in.close()
    assert committed_rows(database_url, items) == (
        [] if is_sqlite(database_url) else [("pooled", 2)]
    )
    admin.clear_tables(database_url, items)
    write_probe(database_url, items)
