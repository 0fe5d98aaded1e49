"""A force-rollback connection lost under the session, on servers of the test's own.

Each test runs once per server URL of `TEST_DATABASE_URLS` (PostgreSQL's drivers, MySQL),
on the fault kit's disposable server of that dialect, with that URL's driver: the shared
servers are never restarted. SQLite has no connection to lose (see docs/loops.md).

What must hold: the statement that meets the lost connection raises one clear error, a
`ForceRollbackConnectionLostError` chaining the driver's; so does every later call until a
new session begins, which is the next query (with a warning); a transaction of the lost
session fails clearly; `disconnect()` raises no driver error. The server never keeps a row.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import typing

import pytest

from databases import Database, DatabaseURL
from databases.errors import ForceRollbackConnectionLostError
from tests import admin
from tests.faults.proxy import TcpProxy
from tests.faults.servers import DisposableMariaDB, DisposablePostgres

pytestmark = pytest.mark.dialects("postgresql", "mysql")

# Seconds any one step may take.
STEP = 10.0
TABLE = "lost_session_rows"
COUNT = f"SELECT count(*) FROM {TABLE}"
Server = typing.Union[DisposablePostgres, DisposableMariaDB]


def insert(note: str) -> str:
    return f"INSERT INTO {TABLE} (note) VALUES ('{note}')"


def wait_until(condition: typing.Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + STEP
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {STEP:.0f} s"
        time.sleep(0.02)


class Target:
    """The disposable server for the test's URL, and the URL with its driver."""

    def __init__(self, server: Server, scheme: str) -> None:
        self.server = server
        self.url = server.url(scheme)

    def through(self, proxy: TcpProxy) -> str:
        """The URL, through `proxy`."""
        return str(DatabaseURL(self.url).replace(port=proxy.port))

    def kill_connections(self) -> None:
        """End every client connection from the server's side, and wait until they are gone
        (a pool may open new ones meanwhile: asyncpg keeps its `min_size`)."""
        if isinstance(self.server, DisposablePostgres):
            sessions = (
                "SELECT pid FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
            killed = [row[0] for row in self.server.fetch_all(sessions)]
            assert self.server.terminate_backends() >= 1
        else:
            sessions = "SELECT id FROM information_schema.processlist WHERE id <> CONNECTION_ID()"
            killed = [row[0] for row in self.server.fetch_all(sessions)]
            assert self.server.kill_connections() >= 1

        def gone() -> bool:
            alive = {row[0] for row in self.server.fetch_all(sessions)}
            return not alive.intersection(killed)

        wait_until(gone, "the killed connections gone")

    def committed_notes(self) -> list[str]:
        """The rows the server keeps, read through a connection of its own."""
        return [row[0] for row in self.server.fetch_all(f"SELECT note FROM {TABLE}")]


@pytest.fixture
def target(database_url: str, request: pytest.FixtureRequest) -> Target:
    """The disposable server of the URL's dialect, running, with an empty table (made
    outside the session: MySQL would commit DDL inside it)."""
    url = DatabaseURL(database_url)
    fixture = "disposable_postgres" if url.dialect == "postgresql" else "disposable_mariadb"
    server: Server = request.getfixturevalue(fixture)
    server.execute(f"DROP TABLE IF EXISTS {TABLE}")
    key = "SERIAL" if url.dialect == "postgresql" else "INTEGER AUTO_INCREMENT"
    server.execute(f"CREATE TABLE {TABLE} (id {key} PRIMARY KEY, note VARCHAR(40))")
    assert admin.dialect_name(database_url) in ("postgresql", "mysql")
    return Target(server, url.scheme)


def assert_lost(error: BaseException, text: str = "was lost") -> None:
    """A clear error: ours, saying what happened, with the driver's error as its cause."""
    assert isinstance(error, ForceRollbackConnectionLostError)
    assert text in str(error)
    assert "gone" in str(error) or "rolled it back" in str(error)
    assert error.__cause__ is not None
    assert not isinstance(error.__cause__, ForceRollbackConnectionLostError)


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", ["killed", "cut"])
async def test_lost_connection_fails_one_statement_then_a_new_session_begins(
    target: Target,
    tcp_proxy: typing.Callable[[int], TcpProxy],
    fault: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Killed by the server, or cut by the network (the proxy): the statement that meets
    it raises the clear error, the next query runs in a new session, which no longer has
    the lost session's row."""
    proxy = tcp_proxy(target.server.port) if fault == "cut" else None
    database = Database(target.through(proxy) if proxy else target.url, force_rollback=True)
    await database.connect()
    try:
        await database.execute(insert("lost"))
        assert await database.fetch_val(COUNT) == 1
        if proxy is not None:
            assert proxy.cut() == 1
        else:
            target.kill_connections()

        with pytest.raises(ForceRollbackConnectionLostError) as raised:
            await asyncio.wait_for(database.fetch_val(COUNT), STEP)
        assert_lost(raised.value)
        assert "The next query starts a new force-rollback session" in str(raised.value)

        with caplog.at_level(logging.WARNING, logger="databases"):
            assert await asyncio.wait_for(database.fetch_val(COUNT), STEP) == 0
        assert "a new force-rollback session began" in caplog.text
        await database.execute(insert("new"))
        assert await database.fetch_val(COUNT) == 1
    finally:
        await asyncio.wait_for(database.disconnect(), STEP)
    assert target.committed_notes() == []


@pytest.mark.asyncio
async def test_disconnect_after_a_lost_connection_raises_no_driver_error(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    """Lost while idle and never noticed: `disconnect()` says so in the log, raises
    nothing, and the next `connect()` begins a new session."""
    database = Database(target.url, force_rollback=True)
    await database.connect()
    await database.execute(insert("lost"))
    target.kill_connections()
    with caplog.at_level(logging.WARNING, logger="databases"):
        await asyncio.wait_for(database.disconnect(), STEP)
    assert "had been closed by the server" in caplog.text
    assert not database.is_connected

    async with database:
        assert await database.fetch_val(COUNT) == 0
    assert target.committed_notes() == []


@pytest.mark.asyncio
async def test_disconnect_after_a_reported_loss_raises_nothing(target: Target) -> None:
    database = Database(target.url, force_rollback=True)
    await database.connect()
    target.kill_connections()
    with pytest.raises(ForceRollbackConnectionLostError):
        await asyncio.wait_for(database.execute(insert("lost")), STEP)
    await asyncio.wait_for(database.disconnect(), STEP)
    assert not database.is_connected
    assert target.committed_notes() == []


@pytest.mark.asyncio
async def test_a_transaction_of_the_lost_connection_fails_clearly(target: Target) -> None:
    """Inside a transaction begun on the lost connection nothing runs on the new session:
    its statements and its end raise the clear error; outside it, queries go on."""
    database = Database(target.url, force_rollback=True)
    async with database:
        await database.execute(insert("before"))
        with pytest.raises(ForceRollbackConnectionLostError) as ended:
            async with database.transaction():
                await database.execute(insert("inside"))
                target.kill_connections()
                with pytest.raises(ForceRollbackConnectionLostError) as met:
                    await asyncio.wait_for(database.fetch_val(COUNT), STEP)
                assert_lost(met.value)
                with pytest.raises(ForceRollbackConnectionLostError) as inside:
                    await asyncio.wait_for(database.execute(insert("after")), STEP)
                assert_lost(inside.value, "This transaction ran on the force-rollback connection")
        assert_lost(ended.value, "This transaction ran on the force-rollback connection")

        assert await database.fetch_val(COUNT) == 0
        async with database.transaction():
            await database.execute(insert("new"))
        assert await database.fetch_val(COUNT) == 1
    assert target.committed_notes() == []


@pytest.mark.asyncio
async def test_while_the_server_is_down_queries_fail_with_the_same_error(target: Target) -> None:
    """Every query while no new connection can be made raises the clear error too (its
    cause says why none could be made); once the server is back, the next one works."""
    database = Database(target.url, force_rollback=True)
    async with database:
        await database.execute(insert("lost"))
        target.server.stop()
        try:
            with pytest.raises(ForceRollbackConnectionLostError) as met:
                await asyncio.wait_for(database.fetch_val(COUNT), STEP)
            assert_lost(met.value)
            for _ in range(2):
                with pytest.raises(ForceRollbackConnectionLostError) as again:
                    await asyncio.wait_for(database.fetch_val(COUNT), STEP)
                assert_lost(again.value, "and a new one could not be made")
        finally:
            target.server.start()
        assert await asyncio.wait_for(database.fetch_val(COUNT), STEP) == 0
    assert target.committed_notes() == []


@pytest.mark.asyncio
async def test_restart_mid_load(target: Target) -> None:
    """Tasks writing and reading while the server restarts: every failure is the clear
    error, every task works again after the restart, and nothing was ever committed."""
    database = Database(target.url, force_rollback=True)
    await database.connect()
    errors: list[BaseException] = []
    restarted = asyncio.Event()

    async def work(number: int) -> None:
        deadline = time.monotonic() + 3 * STEP
        worked_after_restart = False
        while not worked_after_restart:
            assert time.monotonic() < deadline, f"task {number} never worked again"
            after = restarted.is_set()
            try:
                await asyncio.wait_for(database.execute(insert(f"task {number}")), STEP)
                await asyncio.wait_for(database.fetch_val(COUNT), STEP)
            except ForceRollbackConnectionLostError as error:
                errors.append(error)
                await asyncio.sleep(0.05)
                continue
            worked_after_restart = after

    async def restart() -> None:
        await asyncio.sleep(0.3)
        await asyncio.to_thread(target.server.restart)
        restarted.set()

    try:
        await asyncio.gather(restart(), *(work(number) for number in range(4)))
    finally:
        await asyncio.wait_for(database.disconnect(), STEP)
    assert errors, "no statement met the restart"
    for error in errors:
        assert_lost(error, "force-rollback connection")
    assert target.committed_notes() == []


@pytest.mark.asyncio
@pytest.mark.dialects("postgresql")
async def test_iterating_over_a_lost_connection(target: Target) -> None:
    """A stream of the lost connection raises the clear error at its next batch (PostgreSQL
    fetches each batch from a server-side cursor; MySQL's result may already sit in the
    socket's buffers, so when it fails is the network's choice), and closes quietly."""
    database = Database(target.url, force_rollback=True)
    async with database:
        await database.execute(
            f"INSERT INTO {TABLE} (note) SELECT 'row ' || n FROM generate_series(1, 1200) AS n"
        )
        rows = database.iterate(f"SELECT note FROM {TABLE} ORDER BY id")
        first = await asyncio.wait_for(rows.__anext__(), STEP)
        assert first[0] == "row 1"
        target.kill_connections()
        with pytest.raises(ForceRollbackConnectionLostError) as raised:
            async for _ in rows:
                pass
        assert_lost(raised.value)
        await asyncio.wait_for(rows.aclose(), STEP)
        assert await asyncio.wait_for(database.fetch_val(COUNT), STEP) == 0
    assert target.committed_notes() == []


@pytest.mark.asyncio
@pytest.mark.dialects("postgresql+aiopg")
async def test_aiopg_descriptor_number_reused_at_once(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiopg takes a connection that libpq closed off the loop only if its descriptor is
    bad by the time it checks; another thread may have reused the number already (in
    the full suite: an admin connection). Its reader must still go, or the next
    connection given that number fails to register it ("No such file or directory")."""
    import aiopg.connection

    real_select = aiopg.connection.select.select
    grabbed: list[socket.socket] = []

    def another_thread_reuses_the_number(*args: typing.Any) -> typing.Any:
        if not grabbed:
            grabbed.append(socket.socket())  # the lowest free number: the one just closed
        return real_select(*args)

    database = Database(target.url, force_rollback=True)
    async with database:
        await database.execute(insert("lost"))
        monkeypatch.setattr(aiopg.connection.select, "select", another_thread_reuses_the_number)
        target.kill_connections()
        with pytest.raises(ForceRollbackConnectionLostError):
            await asyncio.wait_for(database.fetch_val(COUNT), STEP)
        monkeypatch.undo()
        assert grabbed, "aiopg did not check the closed descriptor"
        grabbed[0].close()  # its number is free again: the next connection gets it
        assert await asyncio.wait_for(database.fetch_val(COUNT), STEP) == 0
    assert target.committed_notes() == []
