"""What a `Database` leaves behind: connections of dead loops are let go, and after
`disconnect()` nothing is left, neither on the server nor in the process.

Without force_rollback every loop has a pool of its own, closed when the loop ends (or
released when a later loop finds the loop dead). With force_rollback there is one session
for the whole process: one connection in one transaction on the session loop, which every
loop uses. It outlives the loops that end and is closed (and rolled back) only by the last
`disconnect()`, so while connected exactly that one connection is held, and every loop
sees what the others wrote.

Connections are counted from outside, never through the `Database` under test: PostgreSQL's
`pg_stat_activity` (our pools set an `application_name` of their own), MariaDB/MySQL's
`information_schema.processlist` (by database, against a baseline taken when the test
starts) and, for SQLite, the worker threads of the process (one per connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from databases import Database
from databases.backends._sqlite_worker import THREAD_NAME as SQLITE_WORKER
from tests import admin
from tests.loops import (
    committed_rows,
    count_all,
    count_tag,
    is_sqlite,
    make_table,
    run_in_bare_loop,
    support,
    write_probe,
)
from tests.loops.support import database_url_with_table
from tests.settings import application_name_options

items = make_table("loops_life_items")

# Connections per loop: every loop's pool may grow to this many.
POOL = 2
# How long the server (or a worker thread) may take to notice a closed connection.
SETTLE_TIMEOUT = 1.5
TIMEOUT = 60

SCRIPTS = Path(__file__).parent / "scripts"
REPO_ROOT = Path(__file__).resolve().parents[2]


# -- counting our connections from outside -------------------------------------------------


def new_app_name() -> str:
    """A PostgreSQL `application_name` that only the database under test uses."""
    return f"dbl_life_{uuid.uuid4().hex[:12]}"


def pool_options(database_url: str, app: str) -> dict[str, Any]:
    """Small pools; on PostgreSQL every connection carries `app` as its application name."""
    if is_sqlite(database_url):
        return {"max_size": POOL}
    options: dict[str, Any] = {"min_size": 1, "max_size": POOL}
    if admin.dialect_name(database_url) == "postgresql":
        options.update(application_name_options(database_url, app))
    return options


def sqlite_workers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if SQLITE_WORKER in thread.name]


def mysql_connections(database_url: str) -> int:
    rows = admin.raw_fetch_all(
        database_url,
        "SELECT COUNT(*) FROM information_schema.processlist "
        "WHERE db = DATABASE() AND id <> CONNECTION_ID()",
    )
    return int(rows[0][0])


def postgres_connections(database_url: str, app: str) -> int:
    rows = admin.raw_fetch_all(
        database_url,
        "SELECT count(*) FROM pg_stat_activity "
        f"WHERE datname = current_database() AND application_name = '{app}'",
    )
    return int(rows[0][0])


class Census:
    """Counts the connections a database under test holds, seen from outside.

    PostgreSQL: connections with the test's own application name. MySQL: connections to
    the test database beyond those there were when the census started (nothing else uses
    a test database while a test runs). SQLite: worker threads that did not exist
    when the census started.
    """

    def __init__(self, database_url: str, app: str = "") -> None:
        self.url = database_url
        self.app = app
        self.dialect = admin.dialect_name(database_url)
        self._threads_before = set(sqlite_workers())
        self._mysql_before = self._mysql_baseline() if self.dialect == "mysql" else 0

    def _mysql_baseline(self) -> int:
        """The connections there are before the test, once those that were just closed
        (by the fixtures, say) have left the list."""
        count = mysql_connections(self.url)
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while time.monotonic() < deadline:
            time.sleep(0.05)
            again = mysql_connections(self.url)
            if again >= count:
                break
            count = again
        return count

    def count(self) -> int:
        if self.dialect == "sqlite":
            return len([t for t in sqlite_workers() if t not in self._threads_before])
        if self.dialect == "mysql":
            return max(0, mysql_connections(self.url) - self._mysql_before)
        return postgres_connections(self.url, self.app)

    def settle(self, at_most: int, timeout: float = SETTLE_TIMEOUT) -> int:
        """The count once it is `at_most` or less, or the last count after `timeout`.

        A closed connection leaves the server's list (or its worker thread ends) a moment
        after the client let go of it.
        """
        deadline = time.monotonic() + timeout
        while True:
            count = self.count()
            if count <= at_most or time.monotonic() > deadline:
                return count
            time.sleep(0.02)


# -- loops ---------------------------------------------------------------------------------


class LoopThread(support.LoopThread):
    """An event loop running in a thread of its own until `close()`, which checks that the
    thread ended."""

    def close(self, graceful: bool = True) -> None:
        super().close(graceful)
        assert not self.thread.is_alive()


async def use(database: Database, tag: str) -> None:
    """Two tasks at once (two connections of the loop's pool, unless force_rollback: the
    session's one), then a transaction; two rows of `tag` are inserted."""
    await asyncio.gather(
        database.execute(items.insert(), {"tag": tag, "value": 1}),
        database.fetch_val(count_all(items)),
    )
    async with database.transaction():
        await database.execute(items.insert(), {"tag": tag, "value": 2})
    assert await database.fetch_val(count_tag(items, tag)) == 2


def session_connections(force_rollback: bool) -> int:
    """The connections held between loops: with force_rollback the session's one."""
    return 1 if force_rollback else 0


def assert_in_use(census: Census, force_rollback: bool, where: str) -> None:
    """While a loop uses the database: its pool (1 to `POOL` connections), or with
    force_rollback the session's connection only (the loop opens no pool of its own)."""
    if force_rollback:
        live = census.settle(1)
        assert live == 1, f"{where}: {live} connections, the session has one"
    else:
        live = census.settle(POOL)
        assert 1 <= live <= POOL, f"{where}: {live} connections, one pool has {POOL}"


def assert_held_between_loops(census: Census, force_rollback: bool, where: str) -> None:
    held = session_connections(force_rollback)
    left = census.settle(held)
    assert left == held, f"{left} connections left after {where}, expected {held}"


# -- fixtures ------------------------------------------------------------------------------


database_url = database_url_with_table(items)


@pytest.fixture(params=[False, True], ids=["plain", "force_rollback"])
def force_rollback(request: pytest.FixtureRequest) -> bool:
    return request.param


# The databases the running test made (`new_database()`), for `fresh` to clean up after.
MADE: list[Database] = []


def new_database(database_url: str, force_rollback: bool, app: str) -> Database:
    database = Database(
        database_url, force_rollback=force_rollback, **pool_options(database_url, app)
    )
    MADE.append(database)
    return database


@pytest.fixture
def fresh(database_url: str):
    """An empty table, and no garbage collection during the test.

    Releasing connections must not depend on the garbage collector (a driver object that is
    collected may close its socket by itself). Whatever a failing test leaked is collected,
    and so closed, afterwards: it must not hold locks or connections for the tests after it.
    A database a failing test left connected is disconnected: with force_rollback its
    session would otherwise live (and on SQLite hold the write lock) until the process ends.
    """
    admin.clear_tables(database_url, items)
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        made = MADE[:]
        MADE.clear()
        for database in made:
            if database.is_connected:
                with contextlib.suppress(Exception):
                    asyncio.run(database.disconnect())
        gc.enable()
        gc.collect()
    admin.clear_tables(database_url, items)


# -- 200 short-lived loops ------------------------------------------------------------------

LOOPS = 200
CHECK_EVERY = 20


def test_asyncio_run_loops_let_go_of_their_connections(
    database_url: str, force_rollback: bool, fresh: None
) -> None:
    app = new_app_name()
    database = new_database(database_url, force_rollback, app)
    census = Census(database_url, app)
    asyncio.run(database.connect())
    # The connecting loop closed its own state when asyncio.run() ended it; the
    # force-rollback session (started by connect()) lives on.
    assert database.loop_states() == []
    assert_held_between_loops(census, force_rollback, "the connecting loop ended")

    async def job(n: int) -> None:
        # Every loop sees the rows of all the loops before it: committed, or with
        # force_rollback written into the session's transaction.
        assert await database.fetch_val(count_all(items)) == 2 * n
        await use(database, f"run-{n}")
        if n % CHECK_EVERY == 0 or n == LOOPS - 1:
            # This loop's pool (or the session's connection) is all there is.
            assert_in_use(census, force_rollback, f"loop {n}")

    for n in range(LOOPS):
        asyncio.run(job(n))
        if n % CHECK_EVERY == 0 or n == LOOPS - 1:
            # Checked often, so that a leak fails before it exhausts the server.
            assert_held_between_loops(census, force_rollback, f"asyncio.run() loop {n} ended")
            assert database.loop_states() == []
    assert database.is_connected
    assert asyncio.run(database.fetch_val(count_all(items))) == 2 * LOOPS

    asyncio.run(database.disconnect())
    assert not database.is_connected
    assert census.settle(0) == 0
    rows = committed_rows(database_url, items)
    assert len(rows) == (0 if force_rollback else 2 * LOOPS)
    write_probe(database_url, items)


def test_loops_closed_without_shutdown_are_released(
    database_url: str, force_rollback: bool, fresh: None
) -> None:
    """A loop closed with a bare `loop.close()` keeps its connections until the next loop
    appears (or `disconnect()`); their transactions are rolled back by the server.

    With force_rollback the loops hold no connections, only the session does. A bare
    `loop.close()` gives the library no shutdown to roll back what the loop left open: its
    transaction (a savepoint in the session) is rolled back before the session's next call,
    so its rows are gone for the loops after it, as they are without force_rollback.
    """
    app = new_app_name()
    database = new_database(database_url, force_rollback, app)
    census = Census(database_url, app)
    asyncio.run(database.connect())

    async def abandoning_job(n: int) -> None:
        # A dead loop's abandoned rows were rolled back: with its connection (plain), or
        # with its savepoint, before this call (force_rollback).
        assert await database.fetch_val(count_tag(items, "abandoned")) == 0
        await use(database, f"bare-{n}")
        # Left open when the loop dies: only the server (or the session's end) rolls it back.
        await database.transaction()
        await database.execute(items.insert(), {"tag": "abandoned", "value": n})
        # The states of the loops closed before this one were released when it appeared.
        assert_in_use(census, force_rollback, f"loop {n}")

    for n in range(10):
        run_in_bare_loop(abandoning_job(n))
        assert census.settle(POOL) <= POOL
        states = database.loop_states()
        assert len(states) == 1
        assert states[0]["alive"] is False
        # With force_rollback the loop's state only tracks its transactions: no pool opened.
        assert states[0]["open"] is not force_rollback

    # An asyncio.run() loop releases the dead state on its way in and closes its own at
    # the end.
    asyncio.run(use(database, "run"))
    assert_held_between_loops(census, force_rollback, "the asyncio.run() loop ended")
    assert database.loop_states() == []

    async def visible() -> list[int]:
        rows = await database.fetch_all(
            sqlalchemy.select(items.c.value).where(items.c.tag == "abandoned")
        )
        return sorted(row[0] for row in rows)

    # With force_rollback every loop's rows are in the session, but not the abandoned ones.
    assert asyncio.run(visible()) == []
    assert asyncio.run(database.fetch_val(count_all(items))) == 2 * 11

    for n in range(10, 13):
        run_in_bare_loop(abandoning_job(n))
    asyncio.run(database.disconnect())
    assert not database.is_connected
    assert census.settle(0) == 0
    assert database.loop_states() == []

    rows = committed_rows(database_url, items)
    assert ("abandoned", 0) not in rows
    assert all(tag != "abandoned" for tag, _ in rows), rows
    assert len(rows) == (0 if force_rollback else 2 * 14)
    write_probe(database_url, items)


# -- disconnect() ---------------------------------------------------------------------------

OTHER_LOOPS = ["thread_loop", "idle_loop", "bare_closed"]


@pytest.mark.parametrize("other", OTHER_LOOPS)
def test_disconnect_releases_every_other_loop(
    database_url: str, force_rollback: bool, fresh: None, other: str
) -> None:
    """Connected in a loop that is closed by now, used in one other loop, disconnected in
    a third: whatever the other loop is, nothing is left afterwards.

    thread_loop: alive and running in another thread. idle_loop: alive in this thread but
    not running (between two `asyncio.Runner.run()` calls). bare_closed: closed by a bare
    `loop.close()`. (A loop that asyncio.run() closed has closed its state itself: see
    the test with 200 of them.) With force_rollback the other loop's rows are in the
    session, seen from the disconnecting loop, and rolled back by its `disconnect()`.
    """
    app = new_app_name()
    database = new_database(database_url, force_rollback, app)
    census = Census(database_url, app)

    runner = asyncio.Runner()
    loop_thread = LoopThread(TIMEOUT)
    try:
        asyncio.run(database.connect())
        if other == "thread_loop":
            loop_thread.run(use(database, other))
        elif other == "idle_loop":
            runner.run(use(database, other))
        else:
            run_in_bare_loop(use(database, other))
        if force_rollback:
            # The session's connection: the other loop opened no pool of its own.
            assert census.count() == 1
        else:
            assert census.count() >= 1
        states = database.loop_states()
        assert len(states) == 1
        assert states[0]["alive"] is (other != "bare_closed")
        assert states[0]["open"] is not force_rollback
        assert states[0]["connected_explicitly"] is False

        async def other_rows() -> int:
            # Seen from the disconnecting loop: committed, or in the session.
            count = await database.fetch_val(count_tag(items, other))
            await database.disconnect()
            return count

        assert asyncio.run(other_rows()) == 2
        assert not database.is_connected
        assert database.loop_states() == []
        left = census.settle(0)
        assert left == 0, f"{left} connections (SQLite: worker threads) left after disconnect()"
    finally:
        loop_thread.close()
        runner.close()

    assert census.settle(0) == 0
    assert len(committed_rows(database_url, items)) == (0 if force_rollback else 2)
    write_probe(database_url, items)


def test_disconnect_in_connecting_loop_releases_every_loop(
    database_url: str, force_rollback: bool, fresh: None
) -> None:
    """The connecting loop lives on (an `asyncio.Runner`) and disconnects after the database
    was used in asyncio.run() loops, in a loop running in a thread and in a loop closed by a
    bare `loop.close()`."""
    app = new_app_name()
    database = new_database(database_url, force_rollback, app)
    census = Census(database_url, app)

    runner = asyncio.Runner()
    loop_thread = LoopThread(TIMEOUT)
    try:
        runner.run(database.connect())
        runner.run(use(database, "connecting"))
        for n in range(3):
            asyncio.run(use(database, f"run-{n}"))
        loop_thread.run(use(database, "thread"))
        # Dead, and its state not released: no loop has appeared since.
        run_in_bare_loop(use(database, "bare"))
        states = database.loop_states()
        assert sorted(state["alive"] for state in states) == [False, True, True]
        # With force_rollback no loop opens a pool: the states only track transactions.
        assert all(state["open"] is not force_rollback for state in states), states
        explicit = [state["loop"] for state in states if state["connected_explicitly"]]
        assert explicit == [runner.get_loop()]
        held = census.count()
        if force_rollback:
            assert held == 1, f"expected the session's one connection, counted {held}"
        else:
            assert held >= 3, f"expected the connections of three loops, counted {held}"

        async def all_rows() -> int:
            # Every loop's rows: committed, or with force_rollback in the session.
            return await database.fetch_val(count_all(items))

        assert runner.run(all_rows()) == 2 * 6
        runner.run(database.disconnect())
        assert not database.is_connected
        assert database.loop_states() == []
        left = census.settle(0)
        assert left == 0, f"{left} connections (SQLite: worker threads) left after disconnect()"
        # The thread's loop still runs, and holds nothing either.
        assert loop_thread.thread.is_alive()
    finally:
        loop_thread.close()
        runner.close()

    assert census.settle(0) == 0
    assert len(committed_rows(database_url, items)) == (0 if force_rollback else 2 * 6)
    write_probe(database_url, items)


# -- a process that disconnects exits promptly ----------------------------------------------

EXIT_WITHIN = 5.0


class Script:
    """A script run with `sys.executable`, talking line by line over stdin and stdout."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])]
        )
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=os.getcwd(),  # relative SQLite paths resolve as in the tests
            env=env,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self._stderr.extend(self.proc.stderr)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def read(self, timeout: float = TIMEOUT) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output within {timeout} s; stderr:\n{self.stderr}") from None
        assert line is not None, (
            f"the script ended early (exit code {self.proc.wait()}); stderr:\n{self.stderr}"
        )
        return line

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.parametrize("bare_loop", [False, True], ids=["", "bare_loop"])
def test_script_that_disconnects_exits_promptly(
    database_url: str, force_rollback: bool, fresh: None, bare_loop: bool
) -> None:
    app = new_app_name()
    census = Census(database_url, app)
    script = Script(
        str(SCRIPTS / "disconnect_and_exit.py"),
        database_url,
        "1" if force_rollback else "0",
        "1" if bare_loop else "0",
        app,
        items.name,
    )
    try:
        live, workers = script.read().split()
        assert live == "live"
        # The script's connections are seen while it is connected (with force_rollback
        # the session's one only)...
        held = int(workers) if is_sqlite(database_url) else census.count()
        if force_rollback:
            assert held == 1
        else:
            assert held >= 1
        script.send("disconnect")
        report = json.loads(script.read())
        # ...and none once it has disconnected, while the process still runs.
        assert report["threads"] == [], f"threads left after disconnect(): {report['threads']}"
        assert report["loop_states"] == 0
        left = census.settle(0)
        assert left == 0, f"{left} connections left after the script's disconnect()"
        assert script.proc.poll() is None

        script.send("exit")
        started = time.monotonic()
        try:
            script.proc.wait(timeout=EXIT_WITHIN)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the script did not exit within {EXIT_WITHIN} s of being told to; "
                f"stderr:\n{script.stderr}"
            ) from None
        elapsed = time.monotonic() - started
    finally:
        script.kill()
    assert script.proc.returncode == 0, script.stderr
    assert elapsed < EXIT_WITHIN
    assert census.settle(0) == 0
    rows = committed_rows(database_url, items)
    if force_rollback:
        assert rows == []
    else:
        expected = ["final", "run", "thread", *(["bare"] if bare_loop else [])]
        assert sorted({tag for tag, _ in rows}) == sorted(expected)


def test_census_counts_connections(database_url: str, fresh: None) -> None:
    """The census itself: it sees a connection the moment one is open, and the moment it
    closes it is gone, so the tests above can fail."""
    app = new_app_name()
    census = Census(database_url, app)
    database = new_database(database_url, False, app)

    async def check() -> None:
        async with database:
            held: list[int] = []
            all_held = asyncio.Event()
            release = asyncio.Event()

            async def hold_a_connection() -> None:
                async with database.connection() as connection:
                    held.append(await connection.fetch_val(sqlalchemy.text("SELECT 1")))
                    if len(held) == POOL:
                        all_held.set()
                    await release.wait()

            tasks = [asyncio.create_task(hold_a_connection()) for _ in range(POOL)]
            await asyncio.wait_for(all_held.wait(), TIMEOUT)
            assert census.settle(POOL) == POOL
            release.set()
            await asyncio.gather(*tasks)
        assert census.settle(0) == 0

    asyncio.run(check())
