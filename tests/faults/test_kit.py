"""The fault kit's own smoke test: the servers restart and lose connections on demand, the
proxy forwards, cuts, stalls and black-holes. Plain drivers only, no `databases`. The
server tests run for the dialects of `TEST_DATABASE_URLS` (`fault_dialect`)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import typing

import asyncpg
import pymysql
import pytest

from tests.faults.proxy import TcpProxy
from tests.faults.servers import DisposableMariaDB, DisposablePostgres

# Seconds any single step below may take.
STEP = 10.0


async def pg_connect(host: str, port: int, timeout: float = STEP) -> typing.Any:
    return await asyncpg.connect(
        host=host, port=port, user="postgres", database="postgres", timeout=timeout
    )


def maria_connect(server: DisposableMariaDB, **kwargs: typing.Any) -> typing.Any:
    return pymysql.connect(
        host=server.host,
        port=server.port,
        user="root",
        database=server.database,
        connect_timeout=STEP,
        read_timeout=STEP,
        **kwargs,
    )


@pytest.mark.dialects("postgresql")
@pytest.mark.asyncio
async def test_disposable_postgres_kills_and_restarts(
    fault_dialect: str, disposable_postgres: DisposablePostgres
) -> None:
    server = disposable_postgres
    connection = await pg_connect(server.host, server.port)
    assert await connection.fetchval("SELECT 1") == 1
    assert server.client_count() == 1
    assert server.terminate_backends() == 1
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
        await asyncio.wait_for(connection.fetchval("SELECT 1"), STEP)
    connection.terminate()

    connection = await pg_connect(server.host, server.port)
    server.restart()
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
        await asyncio.wait_for(connection.fetchval("SELECT 1"), STEP)
    connection.terminate()
    fresh = await pg_connect(server.host, server.port)
    assert await fresh.fetchval("SELECT 2") == 2
    await fresh.close()

    server.stop("immediate")
    assert not server.is_running()
    with pytest.raises(OSError):
        await pg_connect(server.host, server.port)
    server.start()
    assert server.fetch_all("SELECT 3") == [(3,)]


@pytest.mark.dialects("mysql")
def test_disposable_mariadb_kills_restarts_and_times_out(
    fault_dialect: str, disposable_mariadb: DisposableMariaDB
) -> None:
    server = disposable_mariadb
    connection = maria_connect(server)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert server.kill_connections() == 1
    with pytest.raises(pymysql.err.OperationalError), connection.cursor() as cursor:
        cursor.execute("SELECT 1")

    server.set_wait_timeout(1)
    idle = maria_connect(server)
    time.sleep(1.5)
    with pytest.raises(pymysql.err.OperationalError), idle.cursor() as cursor:
        cursor.execute("SELECT 1")

    held = maria_connect(server)
    server.restart()
    with pytest.raises(pymysql.err.OperationalError), held.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert server.fetch_all("SELECT 4") == [(4,)]
    # A restart forgets SET GLOBAL: the default idle time is back.
    assert server.fetch_all("SELECT @@global.wait_timeout") == [(28800,)]


class EchoServer:
    """Sends back whatever it receives; counts the connections it accepted."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._echo, args=(connection,), daemon=True).start()

    @staticmethod
    def _echo(connection: socket.socket) -> None:
        with connection:
            connection.settimeout(STEP * 3)
            try:
                while data := connection.recv(4096):
                    connection.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()


def client(proxy: TcpProxy) -> socket.socket:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=STEP)
    sock.settimeout(0.5)
    return sock


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the other end closed: end of stream, or a reset (it had unread bytes)."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def wait_until(condition: typing.Callable[[], bool]) -> None:
    deadline = time.monotonic() + STEP
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


def test_proxy_forwards_stalls_cuts_and_blackholes(
    tcp_proxy: typing.Callable[[int], TcpProxy],
) -> None:
    echo = EchoServer()
    try:
        proxy = tcp_proxy(echo.port)
        sock = client(proxy)
        sock.sendall(b"hello")
        assert sock.recv(100) == b"hello"
        assert proxy.connections == 1

        proxy.stall()
        sock.sendall(b"held")
        with pytest.raises(socket.timeout):
            sock.recv(100)
        proxy.resume()
        assert sock.recv(100) == b"held"

        assert proxy.cut() == 1
        assert closed_by_peer(sock)
        assert proxy.connections == 0
        sock.close()

        proxy.blackhole()
        held = client(proxy)  # accepted ...
        held.sendall(b"anyone?")
        with pytest.raises(socket.timeout):
            held.recv(100)  # ... but never answered
        assert echo.accepted == 1  # and never connected to the target
        proxy.heal()
        assert closed_by_peer(held)
        held.close()

        again = client(proxy)
        again.sendall(b"back")
        assert again.recv(100) == b"back"

        proxy.stall(existing_only=True)  # a dropped idle flow: new ones still work
        again.sendall(b"lost?")
        with pytest.raises(socket.timeout):
            again.recv(100)
        fresh = client(proxy)
        fresh.sendall(b"new")
        assert fresh.recv(100) == b"new"
        proxy.resume()
        assert again.recv(100) == b"lost?"
        again.close()
        fresh.close()
        wait_until(lambda: proxy.connections == 0)
    finally:
        echo.close()


@pytest.mark.dialects("postgresql")
@pytest.mark.asyncio
async def test_proxy_in_front_of_postgres(
    fault_dialect: str,
    disposable_postgres: DisposablePostgres,
    tcp_proxy: typing.Callable[[int], TcpProxy],
) -> None:
    proxy = tcp_proxy(disposable_postgres.port)
    connection = await pg_connect(proxy.host, proxy.port)
    assert await connection.fetchval("SELECT 1") == 1
    proxy.stall()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(connection.fetchval("SELECT 1"), 0.3)
    proxy.resume()
    connection.terminate()

    connection = await pg_connect(proxy.host, proxy.port)
    proxy.cut()
    with pytest.raises((asyncpg.InterfaceError, asyncpg.PostgresError, OSError)):
        await asyncio.wait_for(connection.fetchval("SELECT 1"), STEP)
    connection.terminate()

    proxy.blackhole()
    with pytest.raises(asyncio.TimeoutError):
        await pg_connect(proxy.host, proxy.port, timeout=0.5)
    proxy.heal()
    connection = await pg_connect(proxy.host, proxy.port)
    assert await connection.fetchval("SELECT 5") == 5
    await connection.close()
