"""`database.force_rollback()` is per context: the block, and what copies its context.

- A task outside the block (created before it) keeps the pool and commits, while the
  block's task works in the force-rollback session, concurrently, in the same loop.
- Tasks created inside the block, `asyncio.run()` and `asyncio.to_thread()` called inside
  it, and an app that `TestClient` starts inside it (anyio's portal copies the context)
  are in the block; a plain `threading.Thread` started inside it is not.
- Blocks nest and restore the previous setting, also when left in another context; the
  constructor's `force_rollback=True` stays on in every context.

On SQLite the session holds the file's write lock once it wrote, so the outside task
writes first (what happens otherwise: tests/test_sqlite_session_lock.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from databases import Database
from tests.loops import committed_rows, count_tag, make_table
from tests.loops.support import database_url_with_table, empty_table_fixture
from tests.loops.webapp import committed_rows_async

items = make_table("loops_context_items")
database_url = database_url_with_table(items)
empty_table = empty_table_fixture(items)

pytestmark = pytest.mark.usefixtures("empty_table")


async def insert(database: Database, tag: str) -> None:
    await database.execute(items.insert(), {"tag": tag, "value": 1})


async def count(database: Database, tag: str) -> int:
    value: int = await database.fetch_val(count_tag(items, tag))
    return value


@pytest.mark.asyncio
@pytest.mark.parametrize("connect_in_block", [False, True], ids=["connected", "in_block"])
async def test_task_outside_the_block_commits(database_url: str, connect_in_block: bool) -> None:
    """Two tasks of one loop at once: the one inside the block is rolled back, the one
    outside it (created before the block) commits. The database is connected before the
    block, or inside it (0.9's `with database.force_rollback(): async with database:`)."""
    database = Database(database_url)
    outside_wrote = asyncio.Event()
    inside_wrote = asyncio.Event()
    connected = asyncio.Event()

    async def outside() -> tuple[int, int, bool]:
        await connected.wait()
        await insert(database, "outside")
        outside_wrote.set()
        await inside_wrote.wait()
        session = database.connection() is database._force_rollback_session().connection
        return await count(database, "outside"), await count(database, "inside"), session

    async with contextlib.AsyncExitStack() as stack:
        if not connect_in_block:
            await stack.enter_async_context(database)
        outside_task = asyncio.create_task(outside())
        with database.force_rollback():
            if connect_in_block:
                await stack.enter_async_context(database)
            connected.set()
            await outside_wrote.wait()
            await insert(database, "inside")
            assert database.connection() is database._force_rollback_session().connection
            # The session sees the committed row and its own.
            assert (await count(database, "outside"), await count(database, "inside")) == (1, 1)
            inside_wrote.set()
            # Outside: its own committed row, not the session's, on a pooled connection.
            assert await outside_task == (1, 0, False)
        assert database.connection() is not database._force_rollback_session().connection
    assert await committed_rows_async(database_url, items) == [("outside", 1)]


@pytest.mark.asyncio
async def test_what_copies_the_context_is_in_the_block(database_url: str) -> None:
    """Inside the block: a task created in it (also after the block ended), `asyncio.run()`
    in `asyncio.to_thread()`. Not: a `threading.Thread` (a new thread starts with an empty
    context), unless its target runs in a copy of the context."""
    database = Database(database_url)

    def in_new_loop() -> int:
        async def counted() -> int:
            async with database:  # another loop: the session, or that loop's own pool
                return await count(database, "inside")

        return asyncio.run(counted())

    def in_thread(target: object) -> int:
        seen: list[int] = []
        thread = threading.Thread(target=lambda: seen.append(target()))  # type: ignore[operator]
        thread.start()
        thread.join(30)
        return seen[0]

    async with database:
        with database.force_rollback():
            await insert(database, "inside")
            child = asyncio.create_task(count(database, "inside"))
            late_child_may_run = asyncio.Event()

            async def late_child() -> int:
                await late_child_may_run.wait()
                return await count(database, "inside")

            late = asyncio.create_task(late_child())
            assert await child == 1
            assert await asyncio.to_thread(in_new_loop) == 1
            assert await asyncio.to_thread(in_thread, in_new_loop) == 0
            copied = contextvars.copy_context().run
            assert await asyncio.to_thread(in_thread, lambda: copied(in_new_loop)) == 1
        # The block has ended; the task created inside it is still in it.
        late_child_may_run.set()
        assert await late == 1
        assert await count(database, "inside") == 0
    assert await committed_rows_async(database_url, items) == []


@pytest.mark.asyncio
async def test_blocks_nest_and_restore(database_url: str) -> None:
    database = Database(database_url)
    async with database:
        session = database._force_rollback_session().connection
        with database.force_rollback():
            with database.force_rollback():
                assert database.connection() is session
            assert database.connection() is session  # the outer block still holds
            await insert(database, "inside")
        assert database.connection() is not session
        assert await count(database, "inside") == 0

        # Left in another context than it was entered in (a fixture's teardown elsewhere):
        # it ends where it was copied to, and no other block ends with it.
        block = database.force_rollback()
        entered_in = contextvars.Context()
        entered_in.run(block.__enter__)
        assert entered_in.run(database.connection) is session
        assert database.connection() is not session
        copied = entered_in.run(contextvars.copy_context)
        copied.run(block.__exit__, None, None, None)
        assert copied.run(database.connection) is not session
        with database.force_rollback():
            block = database.force_rollback()
            contextvars.Context().run(block.__enter__)
            block.__exit__(None, None, None)
            assert database.connection() is session  # this context's own block holds
        assert database.connection() is not session

        # A database built with force_rollback=True is in the session in every context,
        # inside a block and after it; its flag keeps meaning the constructor's.
        forced = Database(database_url, force_rollback=True)
        with forced.force_rollback():
            assert forced._force_rollback is True
        assert forced._force_rollback is True
    async with forced:
        outside = await asyncio.create_task(_connection_of(forced))
        assert outside is forced.connection()
        await insert(forced, "forced")
    assert await committed_rows_async(database_url, items) == []


async def _connection_of(database: Database) -> object:
    return database.connection()


def test_app_started_by_test_client_inside_the_block(database_url: str) -> None:
    """0.9's `with database.force_rollback(): with TestClient(app):`: the app connects in
    its lifespan in the portal's thread, which anyio runs in a copy of the context; its
    requests write in the session, and nothing is committed."""
    database = Database(database_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with database:
            yield

    async def post(request: Request) -> JSONResponse:
        await insert(database, "app")
        return JSONResponse({"count": await count(database, "app")})

    app = Starlette(routes=[Route("/items", post, methods=["POST"])], lifespan=lifespan)
    with database.force_rollback(), TestClient(app) as client:
        assert client.post("/items").json() == {"count": 1}
        assert client.post("/items").json() == {"count": 2}
    assert not database.is_connected
    assert committed_rows(database_url, items) == []
    # Outside the block the same app commits; a client entered before a block sends the
    # requests made inside it to the session (the portal runs them in a copy of the
    # caller's context).
    with TestClient(app) as client:
        assert client.post("/items").json() == {"count": 1}
        with database.force_rollback():
            assert client.post("/items").json() == {"count": 2}
    assert committed_rows(database_url, items) == [("app", 1)]
