"""One module-global `Database`, used from many event loops.

A small Starlette notes app whose `database` is created at import time, the way most
apps do it. The script then uses that one object from every kind of event loop that
broke `databases` 0.9:

1. the app under Starlette's `TestClient` (its own loop, in a thread), plus an
   `asyncio.run()` from the main thread while the app is running;
2. `asyncio.run()` in the main thread: `asyncio.gather()` of many queries, concurrent
   requests through `httpx.ASGITransport`, worker threads that each `asyncio.run()` a job,
   and a `TestClient` started inside that running loop;
3. a uvloop loop (when uvloop is installed);
4. `force_rollback=True` with `asyncio.gather()` in two loops one after the other.

Run it with `scripts/demo`. The database is a SQLite file in a temporary directory, or
`DEMO_DATABASE_URL` when set. Exits 0 when every check passed, 1 with a message otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import os
import shutil
import sys
import tempfile
import threading
import traceback
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import sqlalchemy
from sqlalchemy.schema import CreateTable
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import databases

# --- the app, as an application would write it -------------------------------------------

_TEMP_DIR: str | None = None
if os.environ.get("DEMO_DATABASE_URL"):
    DATABASE_URL = os.environ["DEMO_DATABASE_URL"]
else:
    _TEMP_DIR = tempfile.mkdtemp(prefix="databases-demo-")
    DATABASE_URL = "sqlite:///" + os.path.join(_TEMP_DIR, "notes.sqlite")

# Created at import time, before any event loop exists.
database = databases.Database(DATABASE_URL)

metadata = sqlalchemy.MetaData()
notes = sqlalchemy.Table(
    "demo_notes",
    metadata,
    sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
    sqlalchemy.Column("text", sqlalchemy.String(length=200), nullable=False),
    sqlalchemy.Column("completed", sqlalchemy.Boolean, nullable=False),
)


def note_to_dict(row: Any) -> dict[str, Any]:
    return {"id": row["id"], "text": row["text"], "completed": bool(row["completed"])}


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # Startup: connect (in whatever loop runs the app) and create the table.
    await database.connect()
    await database.execute(CreateTable(notes, if_not_exists=True))
    try:
        yield
    finally:
        # Shutdown.
        await database.disconnect()


async def list_notes(request: Request) -> JSONResponse:
    rows = await database.fetch_all(notes.select().order_by(notes.c.id))
    return JSONResponse([note_to_dict(row) for row in rows])


async def add_note(request: Request) -> JSONResponse:
    data = await request.json()
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        return JSONResponse({"error": 'expected JSON {"text": "...", "completed": false}'}, 400)
    completed = bool(data.get("completed", False))
    note_id = await database.execute(notes.insert(), {"text": data["text"], "completed": completed})
    return JSONResponse({"id": note_id, "text": data["text"], "completed": completed}, 201)


async def get_note(request: Request) -> JSONResponse:
    query = notes.select().where(notes.c.id == request.path_params["note_id"])
    row = await database.fetch_one(query)
    if row is None:
        return JSONResponse({"error": "not found"}, 404)
    return JSONResponse(note_to_dict(row))


async def count_notes_endpoint(request: Request) -> JSONResponse:
    return JSONResponse({"count": await count_notes()})


app = Starlette(
    routes=[
        Route("/notes", list_notes, methods=["GET"]),
        Route("/notes", add_note, methods=["POST"]),
        Route("/notes/count", count_notes_endpoint, methods=["GET"]),
        Route("/notes/{note_id:int}", get_note, methods=["GET"]),
    ],
    lifespan=lifespan,
)


COUNT_NOTES = sqlalchemy.select(sqlalchemy.func.count()).select_from(notes)


async def count_notes() -> int:
    return int(await database.fetch_val(COUNT_NOTES))


# --- the demo -----------------------------------------------------------------------------


class DemoFailure(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise DemoFailure(message)


def loop_name() -> str:
    loop = asyncio.get_running_loop()
    return f"{type(loop).__module__}.{type(loop).__name__} 0x{id(loop):x} in {thread_name()}"


def thread_name() -> str:
    return threading.current_thread().name


def step(text: str) -> None:
    print(f"  - {text}", flush=True)


def phase_test_client(baseline: int) -> int:
    """The app under Starlette's TestClient: its own event loop, in a portal thread."""
    print("\n[1] Starlette TestClient (the app runs in its own loop, in a thread)")
    with TestClient(app) as client:
        step(f"startup ran in the TestClient loop; database.is_connected={database.is_connected}")
        check(database.is_connected, "the database is not connected after the app's startup")

        texts = ["buy milk", "write the changelog", "water the plants"]
        ids = []
        for text in texts:
            response = client.post("/notes", json={"text": text, "completed": False})
            check(response.status_code == 201, f"POST /notes -> {response.status_code}")
            ids.append(response.json()["id"])
        step(f"POST /notes x{len(texts)} -> ids {ids}")
        check(len(set(ids)) == len(ids), f"POST /notes returned duplicate ids: {ids}")

        listed = client.get("/notes").json()
        step(f"GET /notes -> {len(listed)} notes")
        check(len(listed) == baseline + len(texts), f"expected {baseline + 3} notes, got {listed}")
        check([n["text"] for n in listed[-3:]] == texts, f"unexpected notes: {listed}")

        one = client.get(f"/notes/{ids[0]}").json()
        step(f"GET /notes/{ids[0]} -> {one}")
        check(one == {"id": ids[0], "text": texts[0], "completed": False}, f"got {one}")

        missing = client.get("/notes/999999999")
        step(f"GET /notes/999999999 -> {missing.status_code}")
        check(missing.status_code == 404, f"expected 404, got {missing.status_code}")

        # While the app is running, use the same Database from the main thread, in a new loop.
        async def from_main_thread() -> tuple[str, int]:
            return loop_name(), await count_notes()

        where, count = asyncio.run(from_main_thread())
        step(f"asyncio.run() in the main thread while the app runs: {count} notes ({where})")
        check(count == baseline + 3, f"the main thread counted {count} notes")

    step(f"shutdown ran; database.is_connected={database.is_connected}")
    check(not database.is_connected, "the database is still connected after the app's shutdown")
    return baseline + 3


def job_in_own_loop(job: int) -> tuple[int, str, int]:
    """A worker thread's job: its own `asyncio.run()`, inserting one note."""

    async def run() -> tuple[int, str, int]:
        values = {"text": f"from worker job {job}", "completed": True}
        note_id = await database.execute(notes.insert(), values)
        return job, thread_name(), int(note_id)

    return asyncio.run(run())


async def phase_main_loop(expected: int) -> int:
    """One loop in the main thread: gather, ASGITransport, worker threads, a TestClient."""
    print(f"\n[2] asyncio.run() in the main thread ({loop_name()})")
    check(not database.is_connected, "the database should start this phase disconnected")
    async with database:
        step(f"connected in this loop; database.is_connected={database.is_connected}")

        # Many queries at once: every task gets its own pooled connection.
        all_rows = await database.fetch_all(notes.select().order_by(notes.c.id))
        ids = [row["id"] for row in all_rows]
        results = await asyncio.gather(
            *[database.fetch_one(notes.select().where(notes.c.id == i)) for i in ids],
            *[database.fetch_all(notes.select()) for _ in range(10)],
            *[database.fetch_val("SELECT COUNT(*) FROM demo_notes") for _ in range(10)],
        )
        singles = results[: len(ids)]
        lists = results[len(ids) : len(ids) + 10]
        counts = results[len(ids) + 10 :]
        step(
            f"asyncio.gather() of {len(results)} queries: {len(singles)} fetch_one, "
            f"{len(lists)} fetch_all, {len(counts)} fetch_val -> counts {sorted(set(counts))}"
        )
        check(all(row is not None for row in singles), "a fetch_one returned None")
        check([row["id"] for row in singles] == ids, "fetch_one returned the wrong rows")
        check(all(len(rows) == expected for rows in lists), "a fetch_all saw the wrong count")
        check(all(int(c) == expected for c in counts), f"fetch_val counts {counts}")

        # Concurrent HTTP requests through the ASGI app, in this loop. ASGITransport does not
        # run the lifespan: the database was connected above, in this loop.
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            posts = await asyncio.gather(
                *[client.post("/notes", json={"text": f"concurrent note {n}"}) for n in range(10)]
            )
            check(all(r.status_code == 201 for r in posts), "a concurrent POST failed")
            new_ids = [r.json()["id"] for r in posts]
            gets = await asyncio.gather(*[client.get(f"/notes/{i}") for i in new_ids])
            check(all(r.status_code == 200 for r in gets), "a concurrent GET failed")
            check(
                sorted(r.json()["text"] for r in gets)
                == sorted(f"concurrent note {n}" for n in range(10)),
                "concurrent GETs returned the wrong notes",
            )
            expected += 10
            count = (await client.get("/notes/count")).json()["count"]
        step(f"httpx.ASGITransport: 10 concurrent POSTs + 10 concurrent GETs -> {count} notes")
        check(count == expected, f"expected {expected} notes, GET /notes/count said {count}")

        # Worker threads, each with its own asyncio.run(), while this loop stays connected.
        def run_jobs() -> list[tuple[int, str, int]]:
            with ThreadPoolExecutor(max_workers=4, thread_name_prefix="worker") as pool:
                return list(pool.map(job_in_own_loop, range(8)))

        jobs = await asyncio.to_thread(run_jobs)
        threads = sorted({name for _, name, _ in jobs})
        job_ids = [note_id for _, _, note_id in jobs]
        step(f"8 jobs, each its own asyncio.run() in worker threads {threads} -> ids {job_ids}")
        check(len(set(job_ids)) == 8, f"the worker jobs returned ids {job_ids}")
        expected += 8
        count = await count_notes()
        check(count == expected, f"expected {expected} notes after the worker jobs, got {count}")

        # The app started by a TestClient inside this running loop: its startup connects in
        # the TestClient's loop and its shutdown disconnects there, and this loop, which
        # connected first and has not disconnected, stays connected.
        with TestClient(app) as test_client:
            listed = test_client.get("/notes").json()
        step(f"TestClient inside this loop: GET /notes -> {len(listed)} notes")
        check(len(listed) == expected, f"the TestClient saw {len(listed)} notes")
        step(f"after its shutdown: database.is_connected={database.is_connected}")
        check(database.is_connected, "the app's shutdown disconnected this loop's database")
        count = await count_notes()
        step(f"this loop still queries: {count} notes")
        check(count == expected, f"expected {expected} notes, got {count}")

    step(f"disconnected; database.is_connected={database.is_connected}")
    check(not database.is_connected, "the database is still connected after disconnect()")
    return expected


async def phase_other_loop(expected: int) -> None:
    print(f"\n[3] another event loop implementation ({loop_name()})")
    async with database:
        counts = await asyncio.gather(*[count_notes() for _ in range(20)])
        rows = await database.fetch_all(notes.select().order_by(notes.c.id))
    step(f"asyncio.gather() of 20 counts -> {sorted(set(counts))}; fetch_all -> {len(rows)} rows")
    check(set(counts) == {expected}, f"expected {expected} notes, got {counts}")
    check(len(rows) == expected, f"fetch_all returned {len(rows)} rows")


# Also module-global, as in a test suite's conftest.py.
rollback_database = databases.Database(DATABASE_URL, force_rollback=True)


async def force_rollback_round(expected: int, round_number: int) -> None:
    async with rollback_database:
        values = [{"text": f"rolled back {n}", "completed": False} for n in range(10)]
        inserts = [rollback_database.execute(notes.insert(), v) for v in values]
        reads = [rollback_database.fetch_val(COUNT_NOTES) for _ in range(10)]
        results = await asyncio.gather(*inserts, *reads)
        inside = await rollback_database.fetch_val(COUNT_NOTES)
    step(
        f"round {round_number} ({loop_name()}): gather of 10 inserts + 10 counts on the one "
        f"rolled-back connection -> {inside} notes inside the transaction"
    )
    check(len(results) == 20, "gather lost results")
    check(int(inside) == expected + 10, f"expected {expected + 10} notes inside, got {inside}")


def phase_force_rollback(expected: int) -> None:
    print("\n[4] force_rollback=True, asyncio.gather(), two loops one after the other")
    for round_number in (1, 2):
        asyncio.run(force_rollback_round(expected, round_number))

    async def count_after() -> int:
        async with database:
            return await count_notes()

    count = asyncio.run(count_after())
    step(f"after disconnect everything was rolled back: {count} notes")
    check(count == expected, f"expected {expected} notes after the rollbacks, got {count}")


def main() -> int:
    # A hang is one of the failures this project exists to fix: don't wait forever.
    timeout = float(os.environ.get("DEMO_TIMEOUT", "120"))
    faulthandler.dump_traceback_later(timeout, exit=True)

    print(f"databases {databases.__version__}, database {database.url!r}")
    print("One module-global Database, created at import time, used from every loop below.")
    try:

        async def baseline_count() -> int:
            async with database:
                await database.execute(CreateTable(notes, if_not_exists=True))
                return await count_notes()

        baseline = asyncio.run(baseline_count())
        print(f"notes before the demo: {baseline}")

        expected = phase_test_client(baseline)
        expected = asyncio.run(phase_main_loop(expected))

        try:
            import uvloop
        except ImportError:
            print("\n[3] uvloop is not installed: skipped")
        else:
            uvloop.run(phase_other_loop(expected))

        phase_force_rollback(expected)

        async def final_rows() -> list[Any]:
            async with database:
                return list(await database.fetch_all(notes.select().order_by(notes.c.id)))

        rows = asyncio.run(final_rows())
        check(len(rows) == expected, f"expected {expected} notes at the end, got {len(rows)}")
    except Exception as exc:
        faulthandler.cancel_dump_traceback_later()
        traceback.print_exc()
        kind = "check failed" if isinstance(exc, DemoFailure) else type(exc).__name__
        print(f"\nDEMO FAILED ({kind}): {exc}", file=sys.stderr)
        return 1
    finally:
        faulthandler.cancel_dump_traceback_later()
        if _TEMP_DIR is not None:
            shutil.rmtree(_TEMP_DIR, ignore_errors=True)

    print(f"\nThe notes table now ({len(rows)} rows, {len(rows) - baseline} added by this run):")
    for row in rows:
        mark = "x" if row["completed"] else " "
        print(f"  [{mark}] {row['id']:>3}  {row['text']}")
    print("\nDEMO OK: one module-global Database worked from every loop; every check passed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
