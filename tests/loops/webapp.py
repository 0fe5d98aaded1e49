"""A small web app over one `Database`, and the scenarios that drive it.

Shared by the web-framework tests of this package: Starlette 1.x with a `lifespan`
(`test_starlette_lifespan`), FastAPI with `on_event` (`test_fastapi_on_event`) and, in a
subprocess that imports Starlette 0.x, Starlette's `add_event_handler`
(`_starlette_legacy_app`). Only what both Starlette generations have is used here: routes,
requests, JSON responses and `TestClient`, plus `httpx.ASGITransport`.

The routes write and read a table of tagged values (`tests.loops.make_table`) and report
where they ran: the event loop, the thread, the task and the connection. So a scenario can
tell which loop served a request and whether the app shared the test's connection.

Every scenario starts and ends disconnected, with no loop state left, and checks what was
committed through connections of its own. Rules it checks (README, "Event loops"):

- `TestClient` runs the app in a loop of its own, in a thread; the app's startup connects
  there and its shutdown disconnects there. The database stays connected afterwards only if
  another live loop (the test's) called `connect()` and not `disconnect()`.
- With `force_rollback=True` the database is one session for the whole process: one
  connection in one transaction, on the library's session loop, which every loop (the
  test's, each `TestClient`'s) uses. Every loop sees every other loop's uncommitted rows,
  and every loop may write, SQLite included. A loop's `disconnect()` that is not the last
  keeps the session and its rows; the last `disconnect()` rolls everything back, so
  nothing is ever committed (checked from outside connections).
- `httpx.ASGITransport` runs the app in the test's own loop and task: the app and the test
  share the test's connection (and so its transactions).
- When the app's shutdown is the last `disconnect()`, it closes every loop's state, also
  that of a test's loop that queried without connecting, and returns promptly.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Awaitable
from typing import Any, Callable, NamedTuple

import httpx
import sqlalchemy
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from databases import Database, DatabaseURL
from databases.errors import DatabaseNotConnectedError
from tests.loops import (
    committed_rows,
    count_all,
    insert_and_select,
    is_sqlite,
    sqlite_committed_rows,
    values_of,
)

# -- what the routes do, whatever the framework -----------------------------------------------


async def where(database: Database) -> dict[str, Any]:
    """Where this request runs: loop, thread, task, and the connection it gets.

    `connection` is the `Connection` object the task gets (with force_rollback, the session's
    one `SessionConnection`, the same object in every loop), `raw` the driver connection
    under it while it is acquired.
    """
    connection = database.connection()
    async with connection:
        raw = id(connection.raw_connection)
    return {
        "loop": id(asyncio.get_running_loop()),
        "thread": threading.get_ident(),
        "task": id(asyncio.current_task()),
        "connection": id(connection),
        "raw": raw,
        "connected": database.is_connected,
        "loops": len(database.loop_states()),
    }


async def insert_values(
    database: Database, table: sqlalchemy.Table, tag: str, values: list[int]
) -> dict[str, Any]:
    """Insert one row per value, one statement after the other."""
    ids = [await database.execute(table.insert(), {"tag": tag, "value": v}) for v in values]
    return {"ids": ids, **await where(database)}


async def insert_in_transaction(
    database: Database, table: sqlalchemy.Table, tag: str, values: list[int]
) -> dict[str, Any]:
    """Insert one row per value inside a transaction of the request's own, committed at the
    end (a savepoint if the connection already has a transaction open)."""
    async with database.transaction():
        ids = [await database.execute(table.insert(), {"tag": tag, "value": v}) for v in values]
    return {"ids": ids, **await where(database)}


async def gather_values(
    database: Database, table: sqlalchemy.Table, tag: str, count: int
) -> dict[str, Any]:
    """`count` inserts interleaved with `count` selects, all at once (`asyncio.gather`)."""
    values = await insert_and_select(database, table, tag, count)
    return {"values": values, **await where(database)}


async def read_values(database: Database, table: sqlalchemy.Table, tag: str) -> dict[str, Any]:
    """The values of `tag`, sorted, and the number of rows of any tag."""
    rows = await database.fetch_all(values_of(table, tag))
    total = await database.fetch_val(count_all(table))
    return {"values": sorted(row[0] for row in rows), "total": total, **await where(database)}


# -- the Starlette app --------------------------------------------------------------------------


def starlette_routes(database: Database, table: sqlalchemy.Table) -> list[Route]:
    """`GET /where`, `POST /items {"tag", "values"}`, `POST /transaction {"tag", "values"}`,
    `POST /gather {"tag", "count"}` and `GET /items/{tag}`, for Starlette 0.x and 1.x alike."""

    async def get_where(request: Request) -> JSONResponse:
        return JSONResponse(await where(database))

    async def post_items(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse(await insert_values(database, table, body["tag"], body["values"]))

    async def post_transaction(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse(
            await insert_in_transaction(database, table, body["tag"], body["values"])
        )

    async def post_gather(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse(await gather_values(database, table, body["tag"], body["count"]))

    async def get_items(request: Request) -> JSONResponse:
        return JSONResponse(await read_values(database, table, request.path_params["tag"]))

    return [
        Route("/where", get_where, methods=["GET"]),
        Route("/items", post_items, methods=["POST"]),
        Route("/transaction", post_transaction, methods=["POST"]),
        Route("/gather", post_gather, methods=["POST"]),
        Route("/items/{tag}", get_items, methods=["GET"]),
    ]


# How long an app's shutdown may take: it closes a few connections, in milliseconds.
SHUTDOWN_LIMIT = 0.5

# -- helpers of the scenarios -------------------------------------------------------------------


class Case(NamedTuple):
    """What a scenario runs on: the app, its module-global `Database` (with its
    force_rollback flag) and the table of that database the app writes to."""

    app: Any
    database: Database
    url: str
    table: sqlalchemy.Table
    force_rollback: bool


def rows_of(tag: str, values: list[int]) -> list[tuple[str, int]]:
    return [(tag, value) for value in values]


async def committed_rows_async(url: str, table: sqlalchemy.Table) -> list[tuple[str, int]]:
    """`committed_rows()` from inside a running loop: through a plain `Database` of its own
    (a pool of its own), or for SQLite through `sqlite3`."""
    if is_sqlite(url):
        return sqlite_committed_rows(url, table)
    async with Database(url) as separate:
        rows = await separate.fetch_all(sqlalchemy.select(table.c.tag, table.c.value))
    return sorted((row[0], row[1]) for row in rows)


async def table_lock_holder(url: str, table: sqlalchemy.Table) -> str | None:
    """Why a separate connection cannot lock `table` exclusively right now, or None if it
    can: then no connection has a transaction open on it (with force_rollback, the
    database's rolled-back transaction really ended and its connection was released)."""
    if is_sqlite(url):
        conn = sqlite3.connect(DatabaseURL(url).database, timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            conn.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            return f"BEGIN EXCLUSIVE failed: {exc}"
        finally:
            conn.close()
        return None
    dialect = DatabaseURL(url).dialect
    async with Database(url) as separate, separate.connection() as connection:
        try:
            if dialect == "postgresql":
                async with connection.transaction(force_rollback=True):
                    await connection.execute(
                        f"LOCK TABLE {table.name} IN ACCESS EXCLUSIVE MODE NOWAIT"
                    )
            else:
                await connection.execute("SET SESSION lock_wait_timeout = 1")
                await connection.execute(f"LOCK TABLES {table.name} WRITE")
                await connection.execute("UNLOCK TABLES")
        except Exception as exc:
            return f"locking the table failed: {type(exc).__name__}: {exc}"
    return None


async def check_table_released(url: str, table: sqlalchemy.Table) -> None:
    """No connection is left with a transaction open on `table` (allowing a moment for
    closing that was scheduled on a loop that is running again)."""
    for _ in range(20):
        holder = await table_lock_holder(url, table)
        if holder is None:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"a connection still holds {table.name}: {holder}")


def check_disconnected(database: Database) -> None:
    assert not database.is_connected
    assert database.loop_states() == []


def only_loop(database: Database) -> dict[str, Any]:
    states = database.loop_states()
    assert len(states) == 1, states
    return states[0]


async def expect_not_connected(database: Database, table: sqlalchemy.Table) -> None:
    try:
        await database.fetch_val(count_all(table))
    except DatabaseNotConnectedError:
        return
    raise AssertionError("a query after the last disconnect() did not fail")


async def check_outcome(case: Case, expected: list[tuple[str, int]]) -> None:
    """After a scenario: everything closed and released; with force_rollback nothing was
    committed, else exactly `expected`."""
    check_disconnected(case.database)
    await check_table_released(case.url, case.table)
    committed = await committed_rows_async(case.url, case.table)
    assert committed == ([] if case.force_rollback else sorted(expected))


def run_scenario(name: str, case: Case) -> None:
    """Run a scenario of `SYNC_SCENARIOS` from a thread that runs no loop, and check it."""
    expected = SYNC_SCENARIOS[name](case)
    asyncio.run(check_outcome(case, expected))


async def run_async_scenario(name: str, case: Case) -> None:
    """Run a scenario of `ASYNC_SCENARIOS_ALL` in the running loop, and check it."""
    expected = await ASYNC_SCENARIOS_ALL[name](case)
    await check_outcome(case, expected)


# -- scenarios ----------------------------------------------------------------------------------
#
# Each returns the rows it expects to be committed without force_rollback.


def client_session(
    case: Case,
) -> list[tuple[str, int]]:
    """One `with TestClient(app)` block from a thread that runs no loop."""
    app, database, url, table, force_rollback = case
    check_disconnected(database)
    with TestClient(app) as client:
        # The startup connected in the client's own loop, in the portal's thread.
        assert database.is_connected
        here = client.get("/where").json()
        assert here["thread"] != threading.get_ident()
        assert here["connected"] is True
        state = only_loop(database)
        assert state["loop_id"] == here["loop"]
        assert state["connected_explicitly"] is True

        posted = client.post("/items", json={"tag": "session", "values": [3, 1, 2]}).json()
        assert len(set(posted["ids"])) == 3
        gathered = client.post("/gather", json={"tag": "gather", "count": 20}).json()
        assert gathered["values"] == list(range(20))
        read = client.get("/items/session").json()
        assert read["values"] == [1, 2, 3]
        assert read["total"] == 23

        # Every request ran in the app's one loop.
        responses = [here, posted, gathered, read]
        assert {r["loop"] for r in responses} == {here["loop"]}
        expected = rows_of("session", [1, 2, 3]) + rows_of("gather", list(range(20)))
        if force_rollback:
            # All on the session's one connection, inside its transaction: not committed.
            # It is the same object in every loop (here, a thread that runs none), and it
            # lives on the session loop: the app's loop holds no connection of its own.
            assert {r["connection"] for r in responses} == {here["connection"]}
            assert here["connection"] == id(database.connection())
            assert {r["raw"] for r in responses} == {here["raw"]}
            assert here["raw"] == id(database.connection().raw_connection)
            assert state["force_rollback_connection"] is False
            assert committed_rows(url, table) == []
        else:
            assert committed_rows(url, table) == sorted(expected)
    # The shutdown disconnected, and no other loop had connected.
    check_disconnected(database)
    return expected


def client_entered_twice(
    case: Case,
) -> list[tuple[str, int]]:
    """The same `TestClient` object entered twice, one session after the other: each
    session is a new loop, started up and shut down."""
    app, database, url, table, force_rollback = case
    check_disconnected(database)
    client = TestClient(app)
    with client:
        assert database.is_connected
        first = client.post("/items", json={"tag": "first", "values": [1, 2]}).json()
        assert len(set(first["ids"])) == 2
        assert client.get("/items/first").json()["values"] == [1, 2]
    check_disconnected(database)
    # force_rollback: the first shutdown was the last disconnect(): it rolled the session back.
    assert committed_rows(url, table) == ([] if force_rollback else rows_of("first", [1, 2]))

    with client:
        assert database.is_connected
        read = client.get("/items/first").json()
        # force_rollback: a new session, without the first one's rows.
        assert read["values"] == ([] if force_rollback else [1, 2])
        second = client.post("/gather", json={"tag": "second", "count": 12}).json()
        assert second["values"] == list(range(12))
        read = client.get("/items/second").json()
        assert read["values"] == list(range(12))
        assert read["total"] == (12 if force_rollback else 14)
        assert only_loop(database)["loop_id"] == read["loop"]
    check_disconnected(database)
    return rows_of("first", [1, 2]) + rows_of("second", list(range(12)))


def two_clients_at_once(
    case: Case,
) -> list[tuple[str, int]]:
    """A second `TestClient` of the app entered while the first one runs: two loops that
    both connected, and both write. Leaving the inner one keeps the database connected for
    the outer one.

    With force_rollback both loops use the session's one connection and transaction: each
    sees the other's uncommitted rows (on SQLite too, where both write through it), and the
    inner app's shutdown, not the last disconnect(), keeps the inner rows in the session.
    """
    app, database, url, table, force_rollback = case
    check_disconnected(database)
    with TestClient(app) as outer:
        posted = outer.post("/items", json={"tag": "outer", "values": [5, 6]}).json()
        with TestClient(app) as inner:
            inner_here = inner.get("/where").json()
            assert inner_here["loop"] != posted["loop"]
            assert inner_here["thread"] != posted["thread"]
            states = database.loop_states()
            assert {s["loop_id"] for s in states} == {posted["loop"], inner_here["loop"]}
            assert all(s["connected_explicitly"] for s in states)
            # The inner loop sees the outer loop's rows (force_rollback: uncommitted).
            seen = inner.get("/items/outer").json()
            assert seen["values"] == [5, 6]
            written = inner.post("/items", json={"tag": "inner", "values": [8, 9]}).json()
            assert written["loop"] == inner_here["loop"]
            # And the outer loop sees the inner loop's.
            assert outer.get("/items/inner").json()["values"] == [8, 9]
            if force_rollback:
                # One connection for both loops, and nothing committed.
                assert inner_here["connection"] == posted["connection"]
                assert inner_here["raw"] == posted["raw"]
                assert committed_rows(url, table) == []
        # The inner app's shutdown closed its loop's state only.
        assert database.is_connected
        assert only_loop(database)["loop_id"] == posted["loop"]
        more = outer.post("/items", json={"tag": "outer", "values": [7]}).json()
        assert more["loop"] == posted["loop"]
        assert outer.get("/items/outer").json()["values"] == [5, 6, 7]
        # force_rollback: the inner rows are still in the session, which the inner loop's
        # disconnect() did not end.
        read = outer.get("/items/inner").json()
        assert read["values"] == [8, 9]
        assert read["total"] == 5
        if force_rollback:
            assert more["connection"] == posted["connection"]
            assert committed_rows(url, table) == []
    check_disconnected(database)
    return rows_of("outer", [5, 6, 7]) + rows_of("inner", [8, 9])


async def async_test_with_client(
    case: Case,
) -> list[tuple[str, int]]:
    """An async test that connects and writes in its own loop, and also drives the app
    through a `TestClient` (whose loop runs in another thread while the test's loop waits).
    After the app shut down, the test's loop is still connected and keeps working.

    The app sees the test's rows and the test sees the app's, written before, during and
    after the client's session. With force_rollback they are all uncommitted, in the
    session's one transaction (on SQLite too, where both loops write through it); the
    app's shutdown is not the last disconnect(), so the app's rows stay until the test's
    disconnect() rolls everything back.
    """
    app, database, url, table, force_rollback = case
    check_disconnected(database)
    test_loop = id(asyncio.get_running_loop())
    async with database:
        await database.execute_many(table.insert(), [{"tag": "test", "value": v} for v in (10, 11)])
        assert await database.fetch_all(values_of(table, "app")) == []

        with TestClient(app) as client:
            assert database.is_connected
            here = client.get("/where").json()
            assert here["loop"] != test_loop
            assert here["thread"] != threading.get_ident()
            states = database.loop_states()
            assert {s["loop_id"] for s in states} == {test_loop, here["loop"]}
            assert all(s["connected_explicitly"] for s in states)
            if force_rollback:
                # The test's loop and the app's use the session's one connection.
                assert here["connection"] == id(database.connection())
                async with database.connection() as connection:
                    assert here["raw"] == id(connection.raw_connection)

            posted = client.post("/items", json={"tag": "app", "values": [1, 2]}).json()
            assert posted["loop"] == here["loop"]
            # The app sees the test's rows (force_rollback: uncommitted).
            seen = client.get("/items/test").json()
            assert seen["values"] == [10, 11]
            assert seen["total"] == 4
            # The test sees the app's rows while the app runs, and writes again.
            app_rows = await database.fetch_all(values_of(table, "app"))
            assert sorted(row[0] for row in app_rows) == [1, 2]
            await database.execute(table.insert(), {"tag": "test", "value": 12})
            seen = client.get("/items/test").json()
            assert seen["values"] == [10, 11, 12]
            assert seen["total"] == 5
            if force_rollback:
                await transaction_around_app(case, client)
            committed = await committed_rows_async(url, table)
            assert committed == (
                []
                if force_rollback
                else sorted(rows_of("test", [10, 11, 12]) + rows_of("app", [1, 2]))
            )

        # The app shut down in its own loop; the test's loop connected and is still alive.
        assert database.is_connected
        assert only_loop(database)["loop_id"] == test_loop
        # The app's rows: committed, or (force_rollback) still in the session, which the
        # app's disconnect() did not end.
        app_rows = await database.fetch_all(values_of(table, "app"))
        assert sorted(row[0] for row in app_rows) == [1, 2]
        test_rows = await database.fetch_all(values_of(table, "test"))
        assert sorted(row[0] for row in test_rows) == [10, 11, 12]
        assert await insert_and_select(database, table, "after", 20) == list(range(20))
        assert await database.fetch_val(count_all(table)) == 25
        expected = (
            rows_of("test", [10, 11, 12])
            + rows_of("app", [1, 2])
            + rows_of("after", list(range(20)))
        )
        committed = await committed_rows_async(url, table)
        assert committed == ([] if force_rollback else sorted(expected))
    # The test's disconnect() was the last: force_rollback rolled back every loop's rows
    # (check_outcome checks that from outside).
    check_disconnected(database)
    await expect_not_connected(database, table)
    return expected


async def transaction_around_app(case: Case, client: TestClient) -> None:
    """With force_rollback: a transaction of the test's task, open while the app serves
    requests from its own loop. The app's statements run inside it (one connection), and so
    does the app's own transaction: begun from another loop, it nests as a savepoint instead
    of waiting for the test's to end (which could never happen: the test's loop is blocked
    in the request meanwhile). All of it is rolled back with the test's transaction."""
    database, table = case.database, case.table
    assert case.force_rollback
    total = await database.fetch_val(count_all(table))
    async with database.transaction(force_rollback=True):
        await database.execute(table.insert(), {"tag": "test_tx", "value": 1})
        assert client.get("/items/test_tx").json()["values"] == [1]
        client.post("/items", json={"tag": "app_tx", "values": [2]})
        nested = client.post("/transaction", json={"tag": "app_tx", "values": [3, 4]}).json()
        assert len(nested["ids"]) == 2
        rows = await database.fetch_all(values_of(table, "app_tx"))
        assert sorted(row[0] for row in rows) == [2, 3, 4]
        assert await database.fetch_val(count_all(table)) == total + 4
    assert await database.fetch_all(values_of(table, "test_tx")) == []
    assert await database.fetch_all(values_of(table, "app_tx")) == []
    read = client.get("/items/app_tx").json()
    assert read["values"] == []
    assert read["total"] == total


async def async_test_queries_while_app_connected(
    case: Case,
) -> list[tuple[str, int]]:
    """An async test that does not connect itself, but reads and writes while the app,
    started by a `TestClient`, holds the database connected. Without force_rollback the
    test's loop opens a state of its own on first use; with it, its statements go to the
    session, which the app's loop started, and the loop gets no state. Either way the app
    and the test see each other's rows (force_rollback: uncommitted, on SQLite too).

    The app's shutdown is then the last `disconnect()`: it closes everything (the test's
    loop state, or the session) and returns promptly although the test's loop is blocked in
    `TestClient.__exit__` and cannot run anything until the shutdown is over."""
    app, database, url, table, force_rollback = case
    check_disconnected(database)
    test_loop = id(asyncio.get_running_loop())
    with TestClient(app) as client:
        posted = client.post("/items", json={"tag": "app", "values": [1, 2]}).json()
        rows = await database.fetch_all(values_of(table, "app"))
        assert sorted(row[0] for row in rows) == [1, 2]
        await database.execute(table.insert(), {"tag": "test", "value": 5})
        seen = client.get("/items/test").json()
        assert seen["values"] == [5]
        assert seen["total"] == 3
        committed = await committed_rows_async(url, table)
        assert committed == (
            [] if force_rollback else sorted(rows_of("app", [1, 2]) + rows_of("test", [5]))
        )
        states = {s["loop_id"]: s for s in database.loop_states()}
        assert states[posted["loop"]]["connected_explicitly"] is True
        if force_rollback:
            assert set(states) == {posted["loop"]}
            assert posted["connection"] == id(database.connection())
        else:
            assert set(states) == {test_loop, posted["loop"]}
            assert states[test_loop]["connected_explicitly"] is False
        shutdown_started = time.monotonic()
    shutdown_took = time.monotonic() - shutdown_started
    check_disconnected(database)
    # The test loop's connections (or the session's) were closed too (by now, at the latest).
    await check_table_released(url, table)
    assert shutdown_took < SHUTDOWN_LIMIT, f"the app's shutdown took {shutdown_took:.1f} s"
    await expect_not_connected(database, table)
    return rows_of("app", [1, 2]) + rows_of("test", [5])


async def asgi_transport(
    case: Case,
) -> list[tuple[str, int]]:
    """`httpx.AsyncClient` with `ASGITransport`: the app runs in the test's own loop and
    task (no lifespan: the test connects), so test and app share one connection."""
    app, database, url, table, force_rollback = case
    check_disconnected(database)
    loop = asyncio.get_running_loop()
    async with database:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://app"
        ) as client:
            here = (await client.get("/where")).json()
            assert here["loop"] == id(loop)
            assert here["thread"] == threading.get_ident()
            assert here["task"] == id(asyncio.current_task())
            assert only_loop(database)["loop_id"] == id(loop)
            if force_rollback:
                assert here["connection"] == id(database.connection())
                async with database.connection() as connection:
                    assert here["raw"] == id(connection.raw_connection)

            posted = (await client.post("/items", json={"tag": "app", "values": [1, 2, 3]})).json()
            assert posted["loop"] == id(loop)
            # The test sees the app's rows; a separate connection sees them only when they
            # were committed.
            rows = await database.fetch_all(values_of(table, "app"))
            assert sorted(row[0] for row in rows) == [1, 2, 3]
            committed = await committed_rows_async(url, table)
            assert committed == ([] if force_rollback else rows_of("app", [1, 2, 3]))

            # And the app sees the test's rows.
            await database.execute(table.insert(), {"tag": "test", "value": 7})
            assert (await client.get("/items/test")).json()["values"] == [7]

            # Requests at once (a task each) mixed with the test's own queries.
            results = await asyncio.gather(
                *(client.post("/items", json={"tag": "many", "values": [i]}) for i in range(10)),
                *(database.fetch_val(count_all(table)) for _ in range(10)),
                client.post("/gather", json={"tag": "gathered", "count": 15}),
            )
            responses = [r.json() for r in results[:10]] + [results[-1].json()]
            assert all(0 <= n <= 35 for n in results[10:20])
            assert responses[-1]["values"] == list(range(15))
            assert {r["loop"] for r in responses} == {id(loop)}
            if force_rollback:
                # The loop's one connection, serialised.
                assert {r["connection"] for r in responses} == {here["connection"]}
            read = (await client.get("/items/many")).json()
            assert read["values"] == list(range(10))
            assert read["total"] == 3 + 1 + 10 + 15

            # A transaction of the test's task: the app's inserts, made in the same task,
            # run on the same connection inside it, and are rolled back with it.
            async with database.transaction(force_rollback=True):
                inside = (await client.post("/items", json={"tag": "tx", "values": [9]})).json()
                assert inside["task"] == id(asyncio.current_task())
                rows = await database.fetch_all(values_of(table, "tx"))
                assert [row[0] for row in rows] == [9]
            assert await database.fetch_all(values_of(table, "tx")) == []
            assert (await client.get("/items/tx")).json()["values"] == []

        # ASGITransport runs no lifespan: the test's connection is untouched.
        assert database.is_connected
    check_disconnected(database)
    await expect_not_connected(database, table)
    return (
        rows_of("app", [1, 2, 3])
        + rows_of("test", [7])
        + rows_of("many", list(range(10)))
        + rows_of("gathered", list(range(15)))
    )


async def asgi_transport_with_lifespan(
    case: Case,
) -> list[tuple[str, int]]:
    """`ASGITransport` with the app's own startup and shutdown run in the test's loop
    (`app.router.lifespan_context`, as lifespan managers for httpx do): the app connects
    and disconnects the test's loop; the test queries in between without connecting."""
    app, database, url, table, force_rollback = case
    check_disconnected(database)
    loop = asyncio.get_running_loop()
    async with app.router.lifespan_context(app):
        assert database.is_connected
        assert only_loop(database)["loop_id"] == id(loop)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://app"
        ) as client:
            gathered = (await client.post("/gather", json={"tag": "app", "count": 10})).json()
            assert gathered["values"] == list(range(10))
            assert gathered["loop"] == id(loop)
            rows = await database.fetch_all(values_of(table, "app"))
            assert sorted(row[0] for row in rows) == list(range(10))
            await database.execute(table.insert(), {"tag": "test", "value": 4})
            read = (await client.get("/items/test")).json()
            assert read["values"] == [4]
            assert read["total"] == 11
            if force_rollback:
                assert read["connection"] == id(database.connection())
                assert await committed_rows_async(url, table) == []
    # The app's shutdown disconnected the only loop that connected.
    check_disconnected(database)
    await expect_not_connected(database, table)
    return rows_of("app", list(range(10))) + rows_of("test", [4])


SYNC_SCENARIOS: dict[str, Callable[[Case], list[tuple[str, int]]]] = {
    "client_session": client_session,
    "client_entered_twice": client_entered_twice,
    "two_clients_at_once": two_clients_at_once,
}

ASYNC_SCENARIOS: dict[str, Callable[[Case], Awaitable[list[tuple[str, int]]]]] = {
    "async_test_with_client": async_test_with_client,
    "asgi_transport": asgi_transport,
    "asgi_transport_with_lifespan": asgi_transport_with_lifespan,
}

# Run on its own: the app's shutdown must not wait for the test's loop, blocked meanwhile.
QUERIES_WHILE_APP_CONNECTED = "async_test_queries_while_app_connected"
ASYNC_SCENARIOS_ALL = {
    **ASYNC_SCENARIOS,
    QUERIES_WHILE_APP_CONNECTED: async_test_queries_while_app_connected,
}
