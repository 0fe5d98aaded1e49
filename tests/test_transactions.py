"""Transactions: context manager, explicit, decorator, nesting, tasks and driver options.

What was really committed is checked from outside the library with `tests.admin`.
"""

from __future__ import annotations

import asyncio
import inspect
import typing

import pytest
import sqlalchemy as sa

from databases import Database, DatabaseURL
from databases.core import Connection, Transaction
from tests import admin
from tests.settings import DATABASE_URLS, postgres_read_only_error
from tests.tables import notes

pytestmark = pytest.mark.usefixtures("shared_tables")

QueryRunner = typing.Union[Database, Connection]


class Boom(Exception):
    """Raised by tests to make a transaction roll back."""


async def insert(runner: QueryRunner, text: str) -> None:
    await runner.execute(notes.insert(), values={"text": text, "completed": False})


async def texts(runner: QueryRunner) -> list[str]:
    rows = await runner.fetch_all(sa.select(notes.c.text).order_by(notes.c.id))
    return [row["text"] for row in rows]


# -- a decorator created at import time, on a module-level Database ---------------------------

MODULE_DATABASES = {url: Database(url) for url in DATABASE_URLS}


def _module_writer(database: Database) -> typing.Callable[..., typing.Awaitable[str]]:
    @database.transaction()
    async def write_note(text: str, fail: bool = False) -> str:
        """Insert a note; raise `Boom` after the insert when `fail`."""
        await database.execute(notes.insert(), values={"text": text, "completed": False})
        if fail:
            raise Boom(text)
        return text

    return write_note


MODULE_WRITERS = {url: _module_writer(database) for url, database in MODULE_DATABASES.items()}


@pytest.mark.asyncio
async def test_module_level_decorator_commits(database_url: str) -> None:
    database, write_note = MODULE_DATABASES[database_url], MODULE_WRITERS[database_url]
    assert write_note.__name__ == "write_note"
    assert list(inspect.signature(write_note).parameters) == ["text", "fail"]
    async with database:
        assert await write_note("module-1") == "module-1"
        assert await write_note("module-2") == "module-2"
    assert admin.committed_notes(database_url) == ["module-1", "module-2"]


@pytest.mark.asyncio
async def test_module_level_decorator_rolls_back(database_url: str) -> None:
    # The same module-level Database and decorator, used again in this test's event loop.
    database, write_note = MODULE_DATABASES[database_url], MODULE_WRITERS[database_url]
    async with database:
        with pytest.raises(Boom):
            await write_note("rolled-back", fail=True)
        assert await write_note("after") == "after"
        with pytest.raises(Boom):
            await write_note("rolled-back-too", fail=True)
    assert admin.committed_notes(database_url) == ["after"]


# -- async with database.transaction() ----------------------------------------------------------


@pytest.mark.asyncio
async def test_context_manager_commits(database_url: str) -> None:
    async with Database(database_url) as database:
        async with database.transaction() as transaction:
            assert isinstance(transaction, Transaction)
            await insert(database, "a")
            await insert(database, "b")
            assert await texts(database) == ["a", "b"]
            assert (
                admin.committed_notes(database_url) == []
            )  # not visible outside before the commit
        assert admin.committed_notes(database_url) == ["a", "b"]


@pytest.mark.asyncio
@pytest.mark.parametrize("force_rollback", [False, True])
async def test_context_manager_rolls_back_on_exception(
    database_url: str, force_rollback: bool
) -> None:
    async with Database(database_url, force_rollback=force_rollback) as database:
        await insert(database, "before")
        with pytest.raises(Boom, match="inside"):
            async with database.transaction():
                await insert(database, "inside")
                assert await texts(database) == ["before", "inside"]
                raise Boom("inside")
        assert await texts(database) == ["before"]
        if not force_rollback:
            assert admin.committed_notes(database_url) == ["before"]
    assert admin.committed_notes(database_url) == ([] if force_rollback else ["before"])


@pytest.mark.asyncio
async def test_transaction_with_force_rollback(database_url: str) -> None:
    async with Database(database_url) as database:
        async with database.transaction(force_rollback=True):
            await insert(database, "temporary")
            assert await texts(database) == ["temporary"]
        assert await texts(database) == []
        assert admin.committed_notes(database_url) == []

        # as a nested transaction: only its own part is undone
        async with database.transaction():
            await insert(database, "kept")
            async with database.transaction(force_rollback=True):
                await insert(database, "undone")
                assert await texts(database) == ["kept", "undone"]
            assert await texts(database) == ["kept"]
        assert admin.committed_notes(database_url) == ["kept"]


# -- explicit transactions ---------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("force_rollback", [False, True])
async def test_explicit_commit_and_rollback(database_url: str, force_rollback: bool) -> None:
    async with Database(database_url, force_rollback=force_rollback) as database:
        transaction = await database.transaction()
        assert isinstance(transaction, Transaction)
        await insert(database, "kept")
        await transaction.commit()
        if not force_rollback:
            assert admin.committed_notes(database_url) == ["kept"]

        transaction = await database.transaction()
        await insert(database, "dropped")
        assert await texts(database) == ["kept", "dropped"]
        await transaction.rollback()
        assert await texts(database) == ["kept"]

        # start() is the explicit form of the await
        transaction = database.transaction()
        assert await transaction.start() is transaction
        await insert(database, "started")
        await transaction.commit()
        assert await texts(database) == ["kept", "started"]

        transaction = database.transaction()
        await transaction.start()
        await insert(database, "started-then-dropped")
        await transaction.rollback()
        assert await texts(database) == ["kept", "started"]
    assert admin.committed_notes(database_url) == ([] if force_rollback else ["kept", "started"])


@pytest.mark.asyncio
async def test_decorator(database_url: str) -> None:
    async with Database(database_url) as database:

        @database.transaction()
        async def add(text: str, fail: bool = False) -> str:
            await insert(database, text)
            if fail:
                raise Boom(text)
            return text.upper()

        assert await add("x") == "X"
        with pytest.raises(Boom):
            await add("y", fail=True)
        assert await add("z") == "Z"  # the decorator can be used again after a rollback
        assert admin.committed_notes(database_url) == ["x", "z"]

        # the decorated function nests inside an open transaction
        with pytest.raises(Boom):
            async with database.transaction():
                await add("nested")
                assert admin.committed_notes(database_url) == ["x", "z"]
                raise Boom("outer")
    assert admin.committed_notes(database_url) == ["x", "z"]


# -- nesting with savepoints -------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("force_rollback", [False, True])
async def test_nested_context_managers(database_url: str, force_rollback: bool) -> None:
    async with Database(database_url, force_rollback=force_rollback) as database:
        async with database.transaction():
            await insert(database, "outer-1")
            with pytest.raises(Boom):
                async with database.transaction():
                    await insert(database, "inner-rolled-back")
                    raise Boom
            # the inner rollback left the outer transaction intact
            assert await texts(database) == ["outer-1"]
            async with database.transaction():
                await insert(database, "inner-released")
            await insert(database, "outer-2")
            assert await texts(database) == ["outer-1", "inner-released", "outer-2"]
            if not force_rollback:
                assert admin.committed_notes(database_url) == []
        expected = ["outer-1", "inner-released", "outer-2"]
        assert await texts(database) == expected
        if not force_rollback:
            assert admin.committed_notes(database_url) == expected
    assert admin.committed_notes(database_url) == ([] if force_rollback else expected)


@pytest.mark.asyncio
async def test_nested_explicit_transactions(database_url: str) -> None:
    async with Database(database_url) as database:
        outer = await database.transaction()
        await insert(database, "1")
        middle = await database.transaction()
        await insert(database, "2")
        inner = await database.transaction()
        await insert(database, "3")
        await inner.commit()  # releases its savepoint into the middle one
        assert await texts(database) == ["1", "2", "3"]
        await middle.rollback()  # undoes 2 and 3
        assert await texts(database) == ["1"]
        await insert(database, "4")
        await outer.commit()
        assert admin.committed_notes(database_url) == ["1", "4"]

        # an outer rollback undoes committed inner transactions
        outer = await database.transaction()
        await insert(database, "5")
        async with database.transaction():
            await insert(database, "6")
        await outer.rollback()
        assert admin.committed_notes(database_url) == ["1", "4"]
        assert await texts(database) == ["1", "4"]


# -- connection-level transactions ----------------------------------------------------------


@pytest.mark.asyncio
async def test_connection_transaction(database_url: str) -> None:
    async with Database(database_url) as database, database.connection() as connection:
        async with connection.transaction():
            await insert(connection, "committed")
            assert admin.committed_notes(database_url) == []
        assert admin.committed_notes(database_url) == ["committed"]

        with pytest.raises(Boom):
            async with connection.transaction():
                await insert(connection, "rolled-back")
                raise Boom

        # database-level calls of this task run on the same connection
        async with connection.transaction():
            await insert(database, "through-database")
            assert await texts(connection) == ["committed", "through-database"]
            async with database.transaction():
                await insert(connection, "nested")
            assert admin.committed_notes(database_url) == ["committed"]

        transaction = await connection.transaction()
        await insert(connection, "explicit")
        await transaction.rollback()
    assert admin.committed_notes(database_url) == ["committed", "through-database", "nested"]


# -- transactions and tasks ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_child_tasks_share_the_parents_transaction(database_url: str) -> None:
    async with Database(database_url) as database:

        async def sibling() -> list[str]:
            # a task of its own, using the database: it gets its own connection
            return await texts(database)

        async with database.connection() as connection:
            async with connection.transaction():
                await insert(connection, "uncommitted")

                async def child(shared: Connection) -> list[str]:
                    return await texts(shared)

                # a child task given the connection sees the uncommitted row
                assert await asyncio.create_task(child(connection)) == ["uncommitted"]
                # many children at once: their queries take turns on the one connection
                results = await asyncio.gather(*(child(connection) for _ in range(5)))
                assert results == [["uncommitted"]] * 5
                # a plain coroutine runs in this task, on this task's connection
                assert await texts(database) == ["uncommitted"]
                assert database.connection() is connection
                # a sibling task on a separate connection does not see it
                assert await asyncio.create_task(sibling()) == []
                assert admin.committed_notes(database_url) == []

                # a child's own transaction on the shared connection nests in the parent's
                async def child_transaction(shared: Connection, fail: bool) -> None:
                    async with shared.transaction():
                        await insert(shared, "from-child")
                        if fail:
                            raise Boom

                with pytest.raises(Boom):
                    await asyncio.create_task(child_transaction(connection, fail=True))
                assert await texts(connection) == ["uncommitted"]
                await asyncio.create_task(child_transaction(connection, fail=False))
                assert await texts(connection) == ["uncommitted", "from-child"]
                assert admin.committed_notes(database_url) == []
            assert await asyncio.create_task(sibling()) == ["uncommitted", "from-child"]
    assert admin.committed_notes(database_url) == ["uncommitted", "from-child"]


@pytest.mark.asyncio
@pytest.mark.parametrize("fail", [True, False])
async def test_sibling_tasks_are_isolated(database_url: str, fail: bool) -> None:
    async with Database(database_url) as database:
        written = asyncio.Event()
        checked = asyncio.Event()

        async def writer() -> None:
            async with database.transaction():
                await insert(database, "writer")
                assert await texts(database) == ["writer"]
                written.set()
                await checked.wait()
                if fail:
                    raise Boom

        async def reader() -> list[str]:
            await written.wait()
            try:
                return await texts(database)
            finally:
                checked.set()

        writer_task = asyncio.create_task(writer())
        seen_while_open = await asyncio.create_task(reader())
        if fail:
            with pytest.raises(Boom):
                await writer_task
        else:
            await writer_task
        assert seen_while_open == []
        expected = [] if fail else ["writer"]
        assert await asyncio.create_task(texts(database)) == expected
        assert admin.committed_notes(database_url) == expected


@pytest.mark.asyncio
@pytest.mark.parametrize("force_rollback", [False, True])
async def test_concurrent_transactions_in_separate_tasks(
    database_url: str, force_rollback: bool
) -> None:
    """Each task's transaction commits or rolls back its own work only, also when all
    tasks share the one force-rollback connection."""
    async with Database(database_url, force_rollback=force_rollback) as database:

        async def worker(number: int) -> None:
            async with database.transaction():
                await insert(database, f"w{number}")
                await asyncio.sleep(0)
                await insert(database, f"w{number}-second")
                await asyncio.sleep(0)
                if number % 2:
                    raise Boom(number)

        results = await asyncio.gather(*(worker(n) for n in range(6)), return_exceptions=True)
        assert [isinstance(result, Boom) for result in results] == [False, True] * 3
        expected = sorted(f"w{n}{suffix}" for n in (0, 2, 4) for suffix in ("", "-second"))
        assert sorted(await texts(database)) == expected
        if not force_rollback:
            assert sorted(admin.committed_notes(database_url)) == expected
    assert sorted(admin.committed_notes(database_url)) == ([] if force_rollback else expected)


@pytest.mark.asyncio
@pytest.mark.parametrize("force_rollback", [False, True])
async def test_transaction_is_not_active_in_a_sibling_task(
    database_url: str, force_rollback: bool
) -> None:
    """As in 0.9: a task started before the transaction sees no `_transaction`, and one
    that waits for it to end does not hang. (`Transaction._transaction`: semi-private API of
    0.9, tested on purpose; `is_active` is the public question.)"""
    async with Database(database_url, force_rollback=force_rollback) as database:
        transaction = database.transaction()
        started = asyncio.Event()
        seen: list[object] = []

        async def sibling() -> None:
            await started.wait()
            seen.append(transaction._transaction)
            # Code written for 0.9 polls like this; it hung when a sibling saw it active.
            while transaction._transaction is not None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)

        sibling_task = asyncio.create_task(sibling())
        await transaction.start()
        assert transaction._transaction is not None
        started.set()
        await asyncio.wait_for(sibling_task, timeout=5)
        assert seen == [None]
        await transaction.rollback()
        assert transaction._transaction is None


@pytest.mark.asyncio
@pytest.mark.parametrize("end", ["commit", "rollback"])
async def test_transaction_ended_from_another_task(database_url: str, end: str) -> None:
    async with Database(database_url) as database:

        async def begin() -> Transaction:
            transaction = await database.transaction()
            await insert(database, "cross-task")
            return transaction

        begin_task = asyncio.create_task(begin())
        transaction = await begin_task
        assert admin.committed_notes(database_url) == []
        # this task has a connection of its own, outside that transaction
        assert await texts(database) == []

        # ending it here acts on the connection it started on
        if end == "commit":
            await transaction.commit()
        else:
            await transaction.rollback()
        expected = ["cross-task"] if end == "commit" else []
        assert admin.committed_notes(database_url) == expected
        assert await texts(database) == expected
        # the starting task's connection was released with the transaction
        stats = database.pool_stats()
        assert stats is not None and stats.in_use == 0


@pytest.mark.asyncio
async def test_fixture_style_transaction_across_tasks_with_force_rollback(
    database_url: str,
) -> None:
    """A pytest fixture enters a transaction in one task and leaves it in another; the test
    body runs in a third. With `force_rollback=True` all of them share the one connection."""
    async with Database(database_url, force_rollback=True) as database:
        await insert(database, "before-fixture")

        async def fixture() -> typing.AsyncIterator[None]:
            async with database.transaction(force_rollback=True):
                yield

        generator = fixture()

        async def setup() -> None:
            await generator.__anext__()

        async def teardown() -> None:
            with pytest.raises(StopAsyncIteration):
                await generator.__anext__()

        await asyncio.create_task(setup())
        await insert(database, "test-body")  # the test itself
        assert await texts(database) == ["before-fixture", "test-body"]
        await asyncio.create_task(teardown())
        assert await texts(database) == ["before-fixture"]
    assert admin.committed_notes(database_url) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("force_rollback", [True, False])
async def test_fixture_style_connection_transaction_across_tasks(
    database_url: str, force_rollback: bool
) -> None:
    """A fixture hands its connection, inside a transaction, to a test running in another
    task; the transaction and the connection are left from a third task."""
    async with Database(database_url) as database:

        async def fixture() -> typing.AsyncIterator[Connection]:
            async with (
                database.connection() as connection,
                connection.transaction(force_rollback=force_rollback),
            ):
                yield connection

        generator = fixture()

        async def setup() -> Connection:
            return await generator.__anext__()

        async def teardown() -> None:
            with pytest.raises(StopAsyncIteration):
                await generator.__anext__()

        setup_task = asyncio.create_task(setup())
        connection = await setup_task
        await insert(connection, "from-test")
        assert await texts(connection) == ["from-test"]
        assert admin.committed_notes(database_url) == []
        await asyncio.create_task(teardown())
        assert admin.committed_notes(database_url) == ([] if force_rollback else ["from-test"])
        # the fixture's connection was released
        stats = database.pool_stats()
        assert stats is not None and stats.in_use == 0
    assert admin.committed_notes(database_url) == ([] if force_rollback else ["from-test"])


# -- driver-specific transaction options -----------------------------------------------------


@pytest.mark.asyncio
async def test_postgres_transaction_options(database_url: str) -> None:
    if DatabaseURL(database_url).dialect != "postgresql":
        pytest.skip("isolation/readonly/deferrable are PostgreSQL transaction options")

    async with Database(database_url) as database, database.connection() as connection:
        default_isolation = await connection.fetch_val("SHOW transaction_isolation")

        async with connection.transaction(isolation="serializable", readonly=True):
            assert await connection.fetch_val("SHOW transaction_isolation") == "serializable"
            assert await connection.fetch_val("SHOW transaction_read_only") == "on"
        async with connection.transaction(isolation="serializable", readonly=True, deferrable=True):
            assert await connection.fetch_val("SHOW transaction_deferrable") == "on"
        for isolation, shown in [
            ("repeatable_read", "repeatable read"),
            ("read_committed", "read committed"),
        ]:
            async with database.transaction(isolation=isolation):
                assert await database.fetch_val("SHOW transaction_isolation") == shown
                assert await database.fetch_val("SHOW transaction_read_only") == "off"

        # the options are the transaction's own: the next one has the defaults again
        async with connection.transaction():
            assert await connection.fetch_val("SHOW transaction_isolation") == (default_isolation)
            assert await connection.fetch_val("SHOW transaction_read_only") == "off"

        with pytest.raises(postgres_read_only_error(database_url)):
            async with connection.transaction(readonly=True):
                await insert(connection, "not allowed")
        await insert(connection, "allowed")
    assert admin.committed_notes(database_url) == ["allowed"]


@pytest.mark.asyncio
async def test_mysql_transaction_isolation(database_url: str) -> None:
    if DatabaseURL(database_url).dialect != "mysql":
        pytest.skip("isolation is a MySQL transaction option")

    level_query = (
        "SELECT trx_isolation_level FROM information_schema.innodb_trx "
        "WHERE trx_mysql_thread_id = CONNECTION_ID()"
    )

    async def current_level(connection: Connection) -> str:
        # the transaction becomes visible to InnoDB with its first write, and
        # INFORMATION_SCHEMA.INNODB_TRX is a cache refreshed at most every 0.1 s
        await insert(connection, "probe")
        await asyncio.sleep(0.25)
        return typing.cast(str, await connection.fetch_val(level_query))

    async with Database(database_url) as database, database.connection() as connection:
        async with connection.transaction():
            default_level = await current_level(connection)
        async with connection.transaction(isolation="serializable"):
            assert await current_level(connection) == "SERIALIZABLE"
        async with connection.transaction():
            assert await current_level(connection) == default_level
    assert admin.committed_notes(database_url) == ["probe"] * 3
