"""Connect, use the database from several loops, disconnect, and report what is left.

    python disconnect_and_exit.py URL FORCE_ROLLBACK(0|1) BARE_LOOP(0|1) APPLICATION_NAME TABLE

Uses the database from asyncio.run() loops, from loops in threads and, with BARE_LOOP,
from a loop closed by a bare `loop.close()`. Talks to the test line by line: prints
`live <SQLite worker threads>` while connected and waits for a line; then disconnects,
prints a JSON report (threads still alive other than the main one and, with
force_rollback, the session loop's; states still held) and waits for another line
before returning from `main()`, without any cleanup of its own. The test measures how
long the process then takes to exit.

Every loop writes, the three thread loops at the same time (with force_rollback all of
them through the one session, their transactions overlapping), and the last loop checks
that it sees every loop's rows.

The garbage collector is off: releasing connections must not depend on it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import threading
import time

import sqlalchemy

from databases import Database, DatabaseURL
from databases.backends._sqlite_worker import THREAD_NAME as SQLITE_WORKER
from tests.loops import count_all, table_named
from tests.settings import application_name_options

POOL = 2


def main() -> None:
    url, force_rollback, bare_loop, app, table_name = sys.argv[1:6]
    rollback = force_rollback == "1"
    gc.disable()
    table = table_named(table_name)
    dialect = DatabaseURL(url).dialect
    options: dict[str, object] = {"max_size": POOL}
    if dialect != "sqlite":
        options["min_size"] = 1
    if dialect == "postgresql":
        options.update(application_name_options(url, app))
    database = Database(url, force_rollback=rollback, **options)

    async def job(tag: str) -> None:
        count = count_all(table)
        await asyncio.gather(
            database.execute(table.insert(), {"tag": tag, "value": 1}),
            database.fetch_val(count),
        )
        async with database.transaction():
            await database.execute(table.insert(), {"tag": tag, "value": 2})
        rows = [row async for row in database.iterate(sqlalchemy.select(table.c.tag))]
        assert rows is not None

    asyncio.run(database.connect())
    for _ in range(3):
        asyncio.run(job("run"))

    errors: list[BaseException] = []

    def in_thread() -> None:
        try:
            asyncio.run(job("thread"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=in_thread) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]

    if bare_loop == "1":
        # Closed without shutdown_asyncgens(): the library cannot close its state on it.
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(job("bare"))
        finally:
            loop.close()

    async def final() -> None:
        await job("final")
        # Every loop's rows, committed or (force_rollback) in the one session.
        loops = 3 + 3 + (1 if bare_loop == "1" else 0) + 1
        assert await database.fetch_val(count_all(table)) == 2 * loops
        workers = [t for t in threading.enumerate() if SQLITE_WORKER in t.name]
        print(f"live {len(workers)}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await database.disconnect()

    asyncio.run(final())

    # Worker threads end a moment after their connection closed; give them that moment.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and threading.active_count() > 1:
        time.sleep(0.02)
    # With force_rollback, the process's session loop (a daemon thread that holds no
    # connection once the session ended) serves every later session: it stays.
    session_loop = "databases-session-loop"
    others = [
        t.name
        for t in threading.enumerate()
        if t is not threading.main_thread() and not (rollback and t.name == session_loop)
    ]
    report = {"threads": others, "loop_states": len(database.loop_states())}
    print(json.dumps(report), flush=True)
    sys.stdin.readline()


if __name__ == "__main__":
    main()
