"""Misuse gets a clear error that names the fix, instead of a hang or a driver's error:

- a `Connection` object made in one event loop and used in another: `ConnectionLoopError`,
  "call `database.connection()` inside the loop that uses it" (not with force_rollback:
  then `database.connection()` is the one session's connection, the same object in every
  loop, and it works from any loop; the tests of that are here too);
- a query before `connect()` (or after `disconnect()`): `DatabaseNotConnectedError`, "call
  `await database.connect()` (or use `async with database:`)";
- `disconnect()` while the calling task still has a transaction open:
  `TransactionOpenError`, "commit or roll it back first".

Each error leaves everything as it was: the misused connection still works in its own loop,
nothing was connected by a refused query, and the transaction is still open afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Callable

import pytest

from databases import Database, DatabaseURL
from databases.backends._sqlite_worker import THREAD_NAME as SQLITE_WORKER
from databases.core import Connection, Transaction
from databases.errors import ConnectionLoopError, DatabaseNotConnectedError, TransactionOpenError
from tests import admin
from tests.loops import (
    committed_rows,
    count_all,
    count_tag,
    is_sqlite,
    make_table,
    values_of,
    write_probe,
)
from tests.loops.support import LoopThread, database_url_with_table, make_databases
from tests.settings import application_name_options

items = make_table("loops_misuse_items")

DATABASES = make_databases()

TIMEOUT = 30


database_url = database_url_with_table(items)


@pytest.fixture(params=[False, True], ids=["plain", "force_rollback"])
def force_rollback(request: pytest.FixtureRequest) -> bool:
    return request.param


@pytest.fixture
def loop_thread():
    loop_thread = LoopThread(TIMEOUT)
    yield loop_thread
    loop_thread.close()


@pytest.fixture
def database(database_url: str, force_rollback: bool, loop_thread: LoopThread):
    """A module-global database on an empty table; left disconnected however the test ends."""
    admin.clear_tables(database_url, items)
    database = DATABASES[(database_url, force_rollback)]
    assert not database.is_connected
    yield database
    if database.is_connected and loop_thread.thread.is_alive():
        with contextlib.suppress(Exception):
            loop_thread.run(database.disconnect())
    if database.is_connected:
        asyncio.run(database.disconnect())
    admin.clear_tables(database_url, items)


async def consume(rows: AsyncIterator[Any]) -> list[Any]:
    return [row async for row in rows]


async def enter(context: Any) -> None:
    async with context:
        pass


async def start_and_commit(transaction: Transaction) -> None:
    await transaction.start()
    await transaction.commit()


async def error_of(name: str, call: Callable[[], Awaitable[Any]]) -> BaseException:
    """The error `call()` raises; failing, with `name`, if it raises none."""
    try:
        await asyncio.wait_for(call(), TIMEOUT)
    except Exception as error:
        return error
    raise AssertionError(f"{name}: no error raised")


def uses(
    target: Database | Connection, tag: str = "refused"
) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Every way to run a query (or hold a connection) through `target`; those that write
    insert four rows of `tag` in all, values 1 to 4."""
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "fetch_all": lambda: target.fetch_all(values_of(items, "x")),
        "fetch_one": lambda: target.fetch_one(values_of(items, "x")),
        "fetch_val": lambda: target.fetch_val(count_all(items)),
        "execute": lambda: target.execute(items.insert(), {"tag": tag, "value": 1}),
        "execute_many": lambda: target.execute_many(
            items.insert(), [{"tag": tag, "value": 2}, {"tag": tag, "value": 3}]
        ),
        "raw_execute": lambda: target.execute(
            f"INSERT INTO {items.name} (tag, value) VALUES (:tag, :value)",
            {"tag": tag, "value": 4},
        ),
        "iterate": lambda: consume(target.iterate(values_of(items, "x"))),
        "transaction_context": lambda: enter(target.transaction()),
        "transaction_await": lambda: start_and_commit(target.transaction()),
    }
    if isinstance(target, Connection):
        calls["async_with_connection"] = lambda: enter(target)
    else:
        calls["async_with_connection"] = lambda: enter(target.connection())
    return calls


# -- a Connection used in another loop ------------------------------------------------------


def assert_names_the_loop_fix(error: BaseException) -> None:
    assert isinstance(error, ConnectionLoopError)
    assert isinstance(error, RuntimeError)
    message = str(error)
    assert "another event loop" in message
    assert "database.connection()" in message
    assert "inside the loop that uses it" in message


async def refused_everywhere(connection: Connection) -> None:
    for name, call in uses(connection).items():
        error = await error_of(name, call)
        assert isinstance(error, ConnectionLoopError), f"{name}: {error!r}"
        assert_names_the_loop_fix(error)


async def works_everywhere(connection: Connection, tag: str) -> None:
    """Every use of `connection` works in the running loop; four rows of `tag` written."""
    for name, call in uses(connection, tag).items():
        try:
            await asyncio.wait_for(call(), TIMEOUT)
        except Exception as error:
            raise AssertionError(f"{name}: {error!r}") from error
    assert await connection.fetch_val(count_tag(items, tag)) == 4


PLAIN = pytest.mark.parametrize("force_rollback", [False], ids=["plain"])
SESSION = pytest.mark.parametrize("force_rollback", [True], ids=["force_rollback"])


@PLAIN
def test_connection_of_a_closed_loop_is_refused(
    database_url: str, database: Database, force_rollback: bool
) -> None:
    async def first() -> Connection:
        await database.connect()
        connection = database.connection()
        async with connection:
            assert await connection.fetch_val(count_all(items)) == 0
        return connection

    connection = asyncio.run(first())

    async def second() -> None:
        await refused_everywhere(connection)
        # The fix the message names works.
        own = database.connection()
        assert own is not connection
        await own.execute(items.insert(), {"tag": "fixed", "value": 1})
        async with own:
            assert await own.fetch_val(count_all(items)) == 1

    asyncio.run(second())
    asyncio.run(database.disconnect())
    assert committed_rows(database_url, items) == [("fixed", 1)]


@SESSION
def test_session_connection_of_a_closed_loop_works_here(
    database_url: str, database: Database, force_rollback: bool
) -> None:
    """With force_rollback, `database.connection()` is the session's connection, the same
    object in every loop: made in a loop that is closed by now, it works in the next one,
    which sees the first loop's rows (in the session, rolled back at the end)."""

    async def first() -> Connection:
        await database.connect()
        connection = database.connection()
        async with connection:
            await connection.execute(items.insert(), {"tag": "first", "value": 1})
            assert await connection.fetch_val(count_all(items)) == 1
        return connection

    connection = asyncio.run(first())

    async def second() -> None:
        assert database.connection() is connection
        assert await connection.fetch_val(count_tag(items, "first")) == 1
        await works_everywhere(connection, "second")
        # Through the database the same rows, the session's.
        assert await database.fetch_val(count_all(items)) == 1 + 4

    asyncio.run(second())
    asyncio.run(database.disconnect())
    assert not database.is_connected
    assert committed_rows(database_url, items) == []
    write_probe(database_url, items)


async def connect_and_write_first(database: Database) -> Connection:
    """Connect in the running loop and write one row ("first", 1) through the connection
    `database.connection()` gives there."""
    await database.connect()
    connection = database.connection()
    await connection.execute(items.insert(), {"tag": "first", "value": 1})
    return connection


@PLAIN
def test_connection_of_a_running_loop_is_refused_and_keeps_working_there(
    database_url: str, database: Database, force_rollback: bool, loop_thread: LoopThread
) -> None:
    connection = loop_thread.run(connect_and_write_first(database))

    async def second() -> None:
        await refused_everywhere(connection)
        own = database.connection()
        assert own is not connection
        # Committed by the first loop.
        assert await own.fetch_val(count_tag(items, "first")) == 1

    asyncio.run(second())

    async def first_again() -> int:
        # Nothing of the refused calls stuck: no lock held, no transaction started.
        async with connection:
            async with connection.transaction():
                await connection.execute(items.insert(), {"tag": "first", "value": 2})
            return await connection.fetch_val(count_all(items))

    assert loop_thread.run(first_again()) == 2
    loop_thread.run(database.disconnect())
    assert not database.is_connected
    assert committed_rows(database_url, items) == [("first", 1), ("first", 2)]
    write_probe(database_url, items)


@SESSION
def test_session_connection_of_a_running_loop_works_here_and_there(
    database_url: str, database: Database, force_rollback: bool, loop_thread: LoopThread
) -> None:
    """With force_rollback the session's connection, made in a loop that still runs (in
    another thread), works in this loop too; each loop sees the other's rows, and the
    first loop goes on using it afterwards, transactions included."""

    connection = loop_thread.run(connect_and_write_first(database))

    async def second() -> None:
        assert database.connection() is connection
        assert await connection.fetch_val(count_tag(items, "first")) == 1
        await works_everywhere(connection, "second")

    asyncio.run(second())

    async def first_again() -> int:
        assert database.connection() is connection
        assert await connection.fetch_val(count_tag(items, "second")) == 4
        async with connection:
            async with connection.transaction():
                await connection.execute(items.insert(), {"tag": "first", "value": 2})
            return await connection.fetch_val(count_all(items))

    assert loop_thread.run(first_again()) == 2 + 4
    loop_thread.run(database.disconnect())
    assert not database.is_connected
    assert committed_rows(database_url, items) == []
    write_probe(database_url, items)


@PLAIN
def test_transaction_of_another_loop_is_not_ended_here(
    database_url: str, database: Database, force_rollback: bool, loop_thread: LoopThread
) -> None:
    """Ending a transaction runs on the connection it started on: from another loop that is
    a connection used in another loop, refused the same way, and the transaction stays
    open in its own loop."""

    async def first() -> tuple[Connection, Transaction]:
        await database.connect()
        connection = database.connection()
        transaction = await connection.transaction()
        await connection.execute(items.insert(), {"tag": "pending", "value": 1})
        return connection, transaction

    connection, transaction = loop_thread.run(first())

    async def second() -> None:
        for name, end in (("commit", transaction.commit), ("rollback", transaction.rollback)):
            error = await error_of(name, end)
            assert isinstance(error, ConnectionLoopError), f"{name}: {error!r}"
            assert_names_the_loop_fix(error)

    asyncio.run(second())

    async def first_again() -> None:
        assert await connection.fetch_val(count_tag(items, "pending")) == 1
        await transaction.rollback()
        assert await connection.fetch_val(count_tag(items, "pending")) == 0
        await database.disconnect()

    loop_thread.run(first_again())
    assert committed_rows(database_url, items) == []


@SESSION
def test_session_transaction_of_another_loop_is_ended_here(
    database_url: str, database: Database, force_rollback: bool, loop_thread: LoopThread
) -> None:
    """With force_rollback a transaction on the session's connection, begun in one loop, is
    ended from another loop: the connection is the same in every loop. Committed, its rows
    stay in the session; rolled back, they are gone, for both loops; and nothing is
    committed after the last `disconnect()`."""

    async def begin(tag: str) -> Transaction:
        transaction = await database.connection().transaction()
        await database.connection().execute(items.insert(), {"tag": tag, "value": 1})
        return transaction

    async def first() -> tuple[Transaction, Transaction]:
        await database.connect()
        kept = await begin("kept")
        undone = await begin("undone")  # nested in `kept`: a savepoint
        return kept, undone

    kept, undone = loop_thread.run(first())

    async def second() -> None:
        assert await database.fetch_val(count_tag(items, "undone")) == 1
        await undone.rollback()
        assert await database.fetch_val(count_tag(items, "undone")) == 0
        await kept.commit()
        # Ended: neither can be ended again, from here...
        for name, end in (("commit", kept.commit), ("rollback", undone.rollback)):
            error = await error_of(name, end)
            assert "not active" in str(error), f"{name}: {error!r}"
        assert await database.fetch_val(count_tag(items, "kept")) == 1

    asyncio.run(second())

    async def first_again() -> None:
        # ...nor from the loop that began them; what they left is the same here.
        with pytest.raises(RuntimeError, match="not active"):
            await kept.rollback()
        assert await database.fetch_val(count_tag(items, "kept")) == 1
        assert await database.fetch_val(count_tag(items, "undone")) == 0
        await database.disconnect()

    loop_thread.run(first_again())
    assert not database.is_connected
    assert committed_rows(database_url, items) == []
    write_probe(database_url, items)


# -- querying before connect() -------------------------------------------------------------


def assert_names_the_connect_fix(error: BaseException, database_url: str) -> None:
    assert isinstance(error, DatabaseNotConnectedError)
    assert isinstance(error, RuntimeError)
    message = str(error)
    assert "not connected" in message
    assert "await database.connect()" in message
    assert "async with database:" in message
    assert DatabaseURL(database_url).obscure_password in message


async def refused_until_connected(database: Database) -> None:
    for name, call in uses(database).items():
        error = await error_of(name, call)
        assert isinstance(error, DatabaseNotConnectedError), f"{name}: {error!r}"
        assert_names_the_connect_fix(error, str(database.url))


def server_connections(database_url: str, app: str) -> int | None:
    """PostgreSQL connections with application name `app`, seen from outside."""
    if admin.dialect_name(database_url) != "postgresql":
        return None
    rows = admin.raw_fetch_all(
        database_url,
        "SELECT count(*) FROM pg_stat_activity "
        f"WHERE datname = current_database() AND application_name = '{app}'",
    )
    return int(rows[0][0])


def sqlite_workers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if SQLITE_WORKER in t.name}


@pytest.mark.parametrize("force_rollback", [False, True], ids=["plain", "force_rollback"])
def test_query_before_connect_says_to_connect(database_url: str, force_rollback: bool) -> None:
    admin.clear_tables(database_url, items)
    app = f"dbl_misuse_{uuid.uuid4().hex[:12]}"
    options: dict[str, Any] = {}
    if admin.dialect_name(database_url) == "postgresql":
        options.update(application_name_options(database_url, app))
    database = Database(database_url, force_rollback=force_rollback, **options)
    workers_before = sqlite_workers()

    asyncio.run(refused_until_connected(database))
    assert not database.is_connected
    # A refused query opened nothing.
    assert server_connections(database_url, app) in (None, 0)
    assert sqlite_workers() <= workers_before

    async def connected() -> None:
        await database.connect()
        for call in uses(database).values():
            await asyncio.wait_for(call(), TIMEOUT)
        assert await database.fetch_val(count_tag(items, "refused")) == 4
        await database.disconnect()
        # After disconnect(), the same error again, in the same loop...
        await refused_until_connected(database)

    asyncio.run(connected())
    # ...and in another one.
    asyncio.run(refused_until_connected(database))
    assert committed_rows(database_url, items) == (
        [] if force_rollback else [("refused", value) for value in (1, 2, 3, 4)]
    )
    admin.clear_tables(database_url, items)


def test_not_connected_error_hides_the_password(database_url: str) -> None:
    if is_sqlite(database_url):
        pytest.skip("a SQLite URL has no password")
    secret_url = DatabaseURL(database_url).replace(username="someone", password="s3cret-Pa55")
    database = Database(secret_url)

    async def refused() -> str:
        with pytest.raises(DatabaseNotConnectedError) as info:
            await database.fetch_all(values_of(items, "x"))
        return str(info.value)

    message = asyncio.run(refused())
    assert "s3cret-Pa55" not in message
    assert secret_url.obscure_password in message
    assert "someone" in message


# -- disconnect() with a transaction open ---------------------------------------------------


def assert_names_the_transaction_fix(error: BaseException) -> None:
    assert isinstance(error, TransactionOpenError)
    assert isinstance(error, RuntimeError)
    message = str(error)
    assert "transaction" in message
    assert "commit or roll it back first" in message


def test_disconnect_with_open_transaction_says_to_end_it(
    database_url: str, database: Database, force_rollback: bool
) -> None:
    async def main() -> None:
        await database.connect()
        transaction = await database.transaction()
        await database.execute(items.insert(), {"tag": "pending", "value": 1})
        with pytest.raises(TransactionOpenError) as info:
            await database.disconnect()
        assert_names_the_transaction_fix(info.value)
        # Nothing was closed: still connected, the transaction goes on.
        assert database.is_connected
        assert await database.fetch_val(count_tag(items, "pending")) == 1
        await transaction.rollback()
        assert await database.fetch_val(count_tag(items, "pending")) == 0
        # The fix the message names works.
        await database.disconnect()
        assert not database.is_connected

    asyncio.run(main())
    assert committed_rows(database_url, items) == []


def test_disconnect_inside_transaction_blocks(
    database_url: str, database: Database, force_rollback: bool
) -> None:
    async def main() -> None:
        await database.connect()
        async with database.transaction():
            await database.execute(items.insert(), {"tag": "outer", "value": 1})
            async with database.transaction():
                await database.execute(items.insert(), {"tag": "inner", "value": 2})
                with pytest.raises(TransactionOpenError) as info:
                    await database.disconnect()
                assert_names_the_transaction_fix(info.value)
            with pytest.raises(TransactionOpenError) as info:
                await database.disconnect()
            assert_names_the_transaction_fix(info.value)
            assert database.is_connected
            assert await database.fetch_val(count_all(items)) == 2
        # Both committed (into the force-rollback transaction, if any).
        assert await database.fetch_val(count_all(items)) == 2
        await database.disconnect()
        assert not database.is_connected

    asyncio.run(main())
    expected = [] if force_rollback else [("inner", 2), ("outer", 1)]
    assert committed_rows(database_url, items) == expected


def test_disconnect_after_connection_block_with_transaction(
    database_url: str, database: Database, force_rollback: bool
) -> None:
    """A transaction on an explicitly held connection counts as well; once it is committed,
    `async with database:` disconnects as usual."""

    async def main() -> None:
        async with database, database.connection() as connection:
            transaction = await connection.transaction()
            await connection.execute(items.insert(), {"tag": "held", "value": 1})
            with pytest.raises(TransactionOpenError) as info:
                await database.disconnect()
            assert_names_the_transaction_fix(info.value)
            assert database.is_connected
            await transaction.commit()
        assert not database.is_connected

    asyncio.run(main())
    assert committed_rows(database_url, items) == ([] if force_rollback else [("held", 1)])
