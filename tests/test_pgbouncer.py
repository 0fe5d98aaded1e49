"""PostgreSQL through a real pgbouncer in transaction mode, with two server connections.

Each PostgreSQL driver runs many concurrent statements and transactions, from several event
loops, with the setting the docs recommend (asyncpg `statement_cache_size=0`, psycopg
`prepare_threshold=none`, nothing for aiopg, which never prepares): no prepared-statement
errors, though every statement may meet another server connection. Without the setting,
asyncpg and psycopg fail: it is what makes them work. The module starts its own pgbouncer
(`scripts/pgbouncer`, on a free port, stopped afterwards) in front of the test's server.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import threading
import typing
from pathlib import Path

import pytest

from databases import Database, DatabaseURL
from tests import admin
from tests.faults.servers import free_port

pytestmark = pytest.mark.dialects("postgresql")

ROOT = Path(__file__).resolve().parent.parent
# Server connections pgbouncer keeps per database and user: far fewer than the clients.
SERVER_CONNECTIONS = 2
LOOPS = 3
TASKS_PER_LOOP = 8
ROUNDS = 15
# The URL query that turns the driver's server-side prepared statements off.
DOCUMENTED_SETTING = {
    "asyncpg": "statement_cache_size=0",
    "psycopg": "prepare_threshold=none",
    "aiopg": "",
}
# What the drivers raise when a prepared statement meets another server connection.
PREPARED_STATEMENT_ERRORS = ("invalidsqlstatementname", "duplicatepreparedstatement")


def pgbouncer(command: str, env: dict[str, str]) -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "pgbouncer"), command],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def pgbouncer_port(database_url: str) -> typing.Iterator[int]:
    """A pgbouncer of this module's own in front of the test's PostgreSQL server."""
    url = DatabaseURL(database_url)
    directory = tempfile.mkdtemp(prefix="databases-pgbouncer-test-")
    port = free_port()
    env = {
        "PGBOUNCER_PORT": str(port),
        "PGBOUNCER_POOL_SIZE": str(SERVER_CONNECTIONS),
        "PGBOUNCER_UPSTREAM": f"{url.hostname or '127.0.0.1'}:{url.port or 5432}",
        "PGBOUNCER_DIR": directory,
        "PGBOUNCER_USERS": url.username or "postgres",
    }
    pgbouncer("start", env)
    try:
        yield port
    finally:
        pgbouncer("stop", env)
        shutil.rmtree(directory, ignore_errors=True)


def through(database_url: str, port: int, query: str) -> str:
    url = str(DatabaseURL(database_url).replace(hostname="127.0.0.1", port=port))
    return f"{url}{'&' if '?' in url else '?'}{query}" if query else url


class Outcome(typing.NamedTuple):
    errors: list[BaseException]
    server_pids: set[int]


def run_from_several_loops(url: str) -> Outcome:
    """Every loop's tasks run statements and transactions at once through one `Database`,
    whose pools (one per loop) share pgbouncer's few server connections."""
    database = Database(url, min_size=1, max_size=4)
    errors: list[BaseException] = []
    pids: set[int] = set()

    async def task(number: int) -> None:
        try:
            for round_ in range(ROUNDS):
                pids.add(await database.fetch_val("SELECT pg_backend_pid()"))
                value = await database.fetch_val("SELECT CAST(:x AS integer) + 1", {"x": number})
                assert value == number + 1
                async with database.transaction():
                    rows = await database.fetch_all(
                        "SELECT CAST(:x AS integer) AS x, CAST(:y AS text) AS y",
                        {"x": round_, "y": str(number)},
                    )
                    assert [(row[0], row[1]) for row in rows] == [(round_, str(number))]
                    pids.add(await database.fetch_val("SELECT pg_backend_pid()"))
        except Exception as error:
            errors.append(error)

    async def loop_main() -> None:
        async with database:
            await asyncio.wait_for(
                asyncio.gather(*(task(number) for number in range(TASKS_PER_LOOP))), 90
            )

    def in_thread() -> None:
        try:
            asyncio.run(loop_main())
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=in_thread) for _ in range(LOOPS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a loop did not finish in time"
    return Outcome(errors, pids)


def test_the_documented_setting_runs_through_transaction_mode(
    database_url: str, pgbouncer_port: int
) -> None:
    setting = DOCUMENTED_SETTING[admin.driver_name(database_url)]
    outcome = run_from_several_loops(through(database_url, pgbouncer_port, setting))
    assert outcome.errors == []
    # Up to LOOPS * 4 client connections were served by pgbouncer's two server connections.
    assert 1 <= len(outcome.server_pids) <= SERVER_CONNECTIONS


@pytest.mark.dialects("postgresql+asyncpg", "postgresql+psycopg")
def test_without_the_setting_prepared_statements_fail(
    database_url: str, pgbouncer_port: int
) -> None:
    """asyncpg (its statement cache) and psycopg (after five runs of a statement) prepare
    statements on the server connection they happen to have: another one lacks them."""
    outcome = run_from_several_loops(through(database_url, pgbouncer_port, ""))
    names = {type(error).__name__.lower() for error in outcome.errors}
    assert any(name.startswith(PREPARED_STATEMENT_ERRORS) for name in names), names
