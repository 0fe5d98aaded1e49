"""`connect_timeout` against servers that never answer: in-test listeners on loopback.

One accepts the TCP connection and then says nothing (the driver waits for the server's
greeting or its answer to the startup message: MySQL's handshake, PostgreSQL's startup);
the other never accepts (its backlog is full, so the TCP handshake itself never ends).
Either way `connect()` must fail within the bound, with an error naming the server and
the option, never the password. SQLite has no server to wait for: these run on the
PostgreSQL drivers and MySQL.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
import typing

import pytest

from databases import Database, DatabaseURL
from databases.errors import ConnectTimeoutError

pytestmark = [pytest.mark.dialects("postgresql", "mysql"), pytest.mark.timeout(60)]

CONNECT_TIMEOUT = 0.5
# The most connect() may take: the bound plus the driver's own cleanup.
LIMIT = CONNECT_TIMEOUT + 1.5
PASSWORD = "s3cret-pw"


@contextlib.contextmanager
def silent_server(accepts: bool) -> typing.Iterator[tuple[str, int]]:
    """A loopback listener that accepts connections and never sends a byte, or (not
    `accepts`) never accepts one at all; its host and port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    host, port = listener.getsockname()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_keep() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():  # bounded by the test's end
            with contextlib.suppress(OSError):
                connection, _ = listener.accept()
                held.append(connection)

    if accepts:
        acceptor = threading.Thread(target=accept_and_keep, daemon=True)
        acceptor.start()
    else:
        # A backlog of 0 holds one connection: fill it, and further SYNs are dropped.
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect((host, port))
        select.select([], [filler], [], 5)
        held.append(filler)
    try:
        yield host, port
    finally:
        stop.set()
        if accepts:
            acceptor.join(5)
        for connection in held:
            connection.close()
        listener.close()


@pytest.mark.parametrize("accepts", [True, False], ids=["accepts-then-silent", "never-accepts"])
@pytest.mark.parametrize("force_rollback", [False, True], ids=["plain", "rollback"])
@pytest.mark.asyncio
async def test_connect_to_a_silent_server_fails_within_connect_timeout(
    database_url: str, accepts: bool, force_rollback: bool
) -> None:
    with silent_server(accepts) as (host, port):
        url = DatabaseURL(database_url).replace(hostname=host, port=port, password=PASSWORD)
        database = Database(url, connect_timeout=CONNECT_TIMEOUT, force_rollback=force_rollback)
        for _ in range(2):  # a failed attempt leaves nothing that blocks the next one
            started = time.monotonic()
            with pytest.raises(ConnectTimeoutError) as raised:
                await database.connect()
            elapsed = time.monotonic() - started
            assert CONNECT_TIMEOUT * 0.9 <= elapsed < LIMIT, elapsed
            assert not database.is_connected
            message = str(raised.value)
            assert f"{host}:{port}" in message and f"connect_timeout={CONNECT_TIMEOUT:g}" in message
            assert PASSWORD not in message and PASSWORD not in repr(raised.value)
            assert isinstance(raised.value, TimeoutError)


@pytest.mark.asyncio
async def test_connect_timeout_in_the_url(database_url: str) -> None:
    with silent_server(accepts=True) as (host, port):
        url = DatabaseURL(database_url).replace(
            hostname=host, port=port, query=f"connect_timeout={CONNECT_TIMEOUT}"
        )
        started = time.monotonic()
        with pytest.raises(ConnectTimeoutError):
            await Database(url).connect()
        assert time.monotonic() - started < LIMIT
