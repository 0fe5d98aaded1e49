"""Query visibility on every backend: `database.events` listeners, `echo=True`, and the SQL
noted on driver errors (which keep their own types)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import typing

import pytest

from databases import Database, DatabaseURL
from databases.events import (
    PoolEvent,
    StatementFailed,
    StatementFinished,
    StatementStarted,
)
from tests import admin

TABLE = "vis_events"
PASSWORD = "vis-Pa55word"
# What the value of a parameter looks like: never in a note, nor in the echo by default.
SECRET = "s3cret-value-7q"


@pytest.fixture(scope="module")
def table(database_url: str) -> typing.Iterator[str]:
    admin.raw_execute(database_url, f"DROP TABLE IF EXISTS {TABLE}")
    admin.raw_execute(database_url, f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, note TEXT)")
    yield TABLE
    admin.raw_execute(database_url, f"DROP TABLE IF EXISTS {TABLE}")


@pytest.fixture
def empty_table(database_url: str, table: str) -> str:
    admin.raw_execute(database_url, f"DELETE FROM {table}")
    return table


def driver(url: str) -> str:
    """The driver that runs the URL's statements (SQLite's: sqlite3, also for
    `sqlite+aiosqlite://`, whose statements run on the package's own threads)."""
    return "sqlite3" if admin.dialect_name(url) == "sqlite" else admin.driver_name(url)


def first_word(sql: str) -> str:
    return sql.split(" ", 1)[0].upper()


class Recorder:
    """Every statement event, in order."""

    def __init__(self) -> None:
        self.events: list[StatementStarted | StatementFinished | StatementFailed] = []
        self.pool: list[PoolEvent] = []

    def listen(self, database: Database) -> None:
        database.events.on_statement_start(self.events.append)
        database.events.on_statement(self.events.append)
        database.events.on_statement_error(self.events.append)
        database.events.on_pool(self.pool.append)

    def kinds(self) -> list[str]:
        return [type(event).__name__ for event in self.events]

    def pool_actions(self) -> list[str]:
        return [event.action for event in self.pool]


# -- statement events -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_every_query_method_tells_start_and_end(database_url: str, empty_table: str) -> None:
    recorder = Recorder()
    async with Database(database_url) as database:
        recorder.listen(database)
        await database.execute(
            f"INSERT INTO {empty_table} VALUES (:id, :note)", {"id": 1, "note": "a"}
        )
        rows = [{"id": 2, "note": "b"}, {"id": 3, "note": "c"}]
        await database.execute_many(f"INSERT INTO {empty_table} VALUES (:id, :note)", rows)
        await database.fetch_all(f"SELECT * FROM {empty_table} WHERE id > :id", {"id": 0})
        await database.fetch_one(f"SELECT note FROM {empty_table} WHERE id = :id", {"id": 2})
        assert await database.fetch_val(f"SELECT COUNT(*) FROM {empty_table}") == 3
        assert [row[0] async for row in database.iterate(f"SELECT id FROM {empty_table}")]
    assert recorder.kinds() == ["StatementStarted", "StatementFinished"] * 6
    starts = typing.cast(list[StatementStarted], recorder.events[::2])
    ends = typing.cast(list[StatementFinished], recorder.events[1::2])
    assert [first_word(start.sql) for start in starts] == [
        "INSERT",
        "INSERT",
        *["SELECT"] * 4,
    ]
    assert [start.many for start in starts] == [False, True, False, False, False, False]
    # The values as bound for the driver, in its placeholders' order; rows for `many`.
    assert list(starts[0].parameters) == [1, "a"]
    assert [list(row) for row in starts[1].parameters] == [[2, "b"], [3, "c"]]
    assert starts[1].parameter_count == 2
    assert list(starts[2].parameters) == [0]
    for start, end in zip(starts, ends):
        assert end.started is start
        assert end.elapsed >= 0
        assert start.backend.dialect == admin.dialect_name(database_url)
        assert start.backend.driver == driver(database_url)
        assert start.backend.database == DatabaseURL(database_url).database
        assert isinstance(start.loop, asyncio.AbstractEventLoop)


@pytest.mark.asyncio
async def test_an_iteration_left_early_ends_its_statement(
    database_url: str, empty_table: str
) -> None:
    recorder = Recorder()
    async with Database(database_url) as database:
        await database.execute_many(
            f"INSERT INTO {empty_table} VALUES (:id, :note)",
            [{"id": n, "note": "x"} for n in range(5)],
        )
        recorder.listen(database)
        async with database.connection() as connection:
            rows = connection.iterate(f"SELECT id FROM {empty_table}")
            async for _ in rows:
                break
            await rows.aclose()  # type: ignore[attr-defined]
            assert recorder.kinds() == ["StatementStarted", "StatementFinished"]
            assert await connection.fetch_val("SELECT 1") == 1


@pytest.mark.asyncio
async def test_a_failing_statement_tells_its_error_of_the_drivers_type(
    database_url: str, empty_table: str
) -> None:
    recorder = Recorder()
    async with Database(database_url) as database:
        recorder.listen(database)
        insert = f"INSERT INTO {empty_table} VALUES (:id, :note)"
        await database.execute(insert, {"id": 1, "note": SECRET})
        with pytest.raises(Exception) as caught:
            await database.execute(insert, {"id": 1, "note": SECRET})
    failed = recorder.events[-1]
    assert isinstance(failed, StatementFailed)
    assert failed.exception is caught.value
    assert failed.started is recorder.events[-2]
    assert type(caught.value).__module__.split(".")[0] in {
        "asyncpg",
        "psycopg",
        "psycopg2",
        "pymysql",
        "asyncmy",
        "sqlite3",
    }


@pytest.mark.asyncio
async def test_a_raising_listener_is_logged_and_the_query_goes_on(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: object) -> None:
        raise RuntimeError("listener bug")

    seen: list[StatementFinished] = []
    async with Database(database_url) as database:
        database.events.on_statement_start(broken)
        database.events.on_statement(broken)
        database.events.on_statement(seen.append)
        database.events.on_pool(broken)
        with caplog.at_level(logging.WARNING, logger="databases"):
            assert await database.fetch_val("SELECT 1") == 1
        database.events.remove(broken)
        assert database.events.watching_statements  # seen.append is still there
        assert not database.events.watching_pool
        with pytest.raises(ValueError, match="is not a listener"):
            database.events.remove(broken)
    assert len(seen) == 1
    assert "listener bug" in caplog.text
    assert "the statement goes on" in caplog.text


@pytest.mark.asyncio
async def test_force_rollback_statements_are_told_too(database_url: str) -> None:
    recorder = Recorder()
    async with Database(database_url, force_rollback=True) as database:
        recorder.listen(database)
        assert await database.fetch_val("SELECT 1") == 1
        async with database.transaction():
            assert await database.fetch_val("SELECT 2") == 2
    assert recorder.kinds() == ["StatementStarted", "StatementFinished"] * 2


# -- pool events --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_pool_events_acquire_release_and_connect(database_url: str) -> None:
    recorder = Recorder()
    database = Database(database_url, min_size=0, max_size=1)
    recorder.listen(database)
    async with database:
        async with database.connection() as connection:
            await connection.fetch_val("SELECT 1")
            assert recorder.pool_actions()[-1] == "acquire"
            raw = connection.raw_connection
        actions = recorder.pool_actions()
    assert actions[-1] == "release"
    assert actions.count("acquire") == actions.count("release") >= 1
    if admin.dialect_name(database_url) == "mysql":
        # aiomysql's and asyncmy's pools open connections themselves, with no hook.
        assert "connect" not in actions
    else:
        assert actions[0] == "connect"
    event = recorder.pool[-1]
    assert event.backend.driver == driver(database_url)
    if admin.dialect_name(database_url) != "sqlite":
        # The driver's connection (SQLite's is our worker, raw_connection wraps it).
        assert event.connection is raw or getattr(raw, "_con", None) is event.connection


@pytest.mark.asyncio
async def test_a_recycled_connection_is_told_as_discarded(database_url: str) -> None:
    if admin.dialect_name(database_url) == "sqlite":
        # No server can drop a SQLite connection: pool_recycle changes nothing there.
        database = Database(database_url, pool_recycle=0.01)
    else:
        database = Database(database_url, max_size=1, pool_recycle=0.01)
    recorder = Recorder()
    recorder.listen(database)
    async with database:
        await database.fetch_val("SELECT 1")
        await asyncio.sleep(0.05)
        await database.fetch_val("SELECT 1")
    discarded = recorder.pool_actions().count("discard")
    assert discarded == (0 if admin.dialect_name(database_url) == "sqlite" else 1)


# -- echo ---------------------------------------------------------------------------------------


def echo_url(database_url: str, query: str) -> str:
    url = database_url
    if admin.dialect_name(database_url) != "mysql":
        # The servers trust the suite's user; MySQL's root would refuse a password.
        url = str(DatabaseURL(url).replace(password=PASSWORD))
    return f"{url}{'&' if '?' in url else '?'}{query}"


@pytest.mark.asyncio
@pytest.mark.parametrize("spelling", ["keyword", "url"])
async def test_echo_logs_statement_count_and_time_but_no_values(
    database_url: str, empty_table: str, caplog: pytest.LogCaptureFixture, spelling: str
) -> None:
    if spelling == "keyword":
        database = Database(echo_url(database_url, ""), echo=True)
    else:
        database = Database(echo_url(database_url, "echo=true"))
    insert = f"INSERT INTO {empty_table} VALUES (:id, :note)"
    with caplog.at_level(logging.INFO, logger="databases"):
        async with database:
            await database.execute(insert, {"id": 1, "note": SECRET})
            with pytest.raises(Exception) as caught:
                await database.execute(insert, {"id": 1, "note": SECRET})
    echoed = [r for r in caplog.records if getattr(r, "db_statement", None)]
    assert len(echoed) == 2
    ran, failed = (record.getMessage() for record in echoed)
    assert ran.startswith("INSERT INTO vis_events VALUES (")
    assert "[2 parameters, " in ran and ran.endswith(" ms]")
    assert "failed after " in failed and f"{type(caught.value).__name__}]" in failed
    assert echoed[0].db_parameter_count == 2  # type: ignore[attr-defined]
    assert echoed[0].db_elapsed >= 0  # type: ignore[attr-defined]
    assert SECRET not in caplog.text
    assert PASSWORD not in caplog.text


@pytest.mark.asyncio
@pytest.mark.parametrize("spelling", ["keyword", "url"])
async def test_echo_parameters_logs_the_values(
    database_url: str, caplog: pytest.LogCaptureFixture, spelling: str
) -> None:
    if spelling == "keyword":
        database = Database(echo_url(database_url, ""), echo=True, echo_parameters=True)
    else:
        database = Database(echo_url(database_url, "echo=true&echo_parameters=true"))
    with caplog.at_level(logging.INFO, logger="databases"):
        async with database:
            await database.fetch_val("SELECT :value", {"value": SECRET})
    assert f"parameters: [{SECRET!r}]" in caplog.text
    assert PASSWORD not in caplog.text


@pytest.mark.asyncio
@pytest.mark.parametrize("spelling", ["keyword", "url"])
async def test_echo_parameters_alone_turns_echo_on(
    database_url: str, caplog: pytest.LogCaptureFixture, spelling: str
) -> None:
    if spelling == "keyword":
        database = Database(echo_url(database_url, ""), echo_parameters=True)
    else:
        database = Database(echo_url(database_url, "echo_parameters=true"))
    with caplog.at_level(logging.INFO, logger="databases"):
        async with database:
            await database.fetch_val("SELECT :value", {"value": SECRET})
    echoed = [r.getMessage() for r in caplog.records if getattr(r, "db_statement", None)]
    assert len(echoed) == 1
    assert f"parameters: [{SECRET!r}]" in echoed[0]


# -- the SQL noted on driver errors -------------------------------------------------------------


def notes(error: BaseException) -> list[str]:
    return list(getattr(error, "__notes__", ()))


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes are Python 3.11+")
@pytest.mark.asyncio
async def test_driver_errors_keep_their_type_and_note_the_sql(
    database_url: str, empty_table: str
) -> None:
    insert = f"INSERT INTO {empty_table} VALUES (:id, :note)"
    async with Database(database_url) as database:
        await database.execute(insert, {"id": 1, "note": "first"})
        with pytest.raises(Exception) as single:
            await database.execute(insert, {"id": 1, "note": SECRET})
        with pytest.raises(Exception) as many:
            await database.execute_many(insert, [{"id": 2, "note": "x"}, {"id": 2, "note": SECRET}])
        with pytest.raises(Exception) as fetch:
            await database.fetch_all("SELECT nothing FROM vis_no_such_table")
        with pytest.raises(Exception) as iterate:
            async for _ in database.iterate("SELECT nothing FROM vis_no_such_table"):
                pass
    uniques = {
        "asyncpg": "asyncpg.exceptions.UniqueViolationError",
        "psycopg": "psycopg.errors.UniqueViolation",
        "aiopg": "psycopg2.errors.UniqueViolation",
        "aiomysql": "pymysql.err.IntegrityError",
        "asyncmy": "asyncmy.errors.IntegrityError",
        "sqlite3": "sqlite3.IntegrityError",
    }
    kind = type(single.value)
    assert f"{kind.__module__}.{kind.__qualname__}" == uniques[driver(database_url)]
    for caught, sql in [
        (single, "INSERT INTO vis_events VALUES ("),
        (many, "INSERT INTO vis_events VALUES ("),
        (fetch, "SELECT nothing FROM vis_no_such_table"),
        (iterate, "SELECT nothing FROM vis_no_such_table"),
    ]:
        noted = notes(caught.value)
        assert len(noted) == 1, noted
        assert noted[0].startswith(f"SQL: {sql}")
        assert SECRET not in noted[0]


# What a program without a logging set-up of its own sees: echo writes to stderr, once per
# statement also when logging is set up after the Database is built (module-global).
ECHO_PROGRAM = """
import asyncio, logging, sys
from databases import Database

database = Database("sqlite:///:memory:", echo=True)
if sys.argv[1] == "configured-later":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

async def main() -> None:
    async with database:
        await database.fetch_val("SELECT :v", {"v": 7})

asyncio.run(main())
"""


@pytest.mark.parametrize("logging_setup", ["none", "configured-later"])
def test_echo_shows_without_logging_set_up_and_never_twice(logging_setup: str) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", ECHO_PROGRAM, logging_setup],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [line for line in finished.stderr.splitlines() if "SELECT ?" in line]
    assert len(lines) == 1, finished.stderr
    assert "[1 parameter, " in lines[0]
    assert lines[0].startswith("INFO " if logging_setup == "configured-later" else "SELECT ?")
