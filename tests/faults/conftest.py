"""Fixtures of the fault kit: disposable servers (one per session, started only for a test
that asks) and TCP proxies (closed after each test)."""

from __future__ import annotations

import typing

import pytest

from tests.faults.proxy import TcpProxy
from tests.faults.servers import DisposableMariaDB, DisposablePostgres


@pytest.fixture(scope="session")
def _postgres_instance() -> typing.Iterator[DisposablePostgres]:
    server = DisposablePostgres()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def _mariadb_instance() -> typing.Iterator[DisposableMariaDB]:
    server = DisposableMariaDB()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def disposable_postgres(_postgres_instance: DisposablePostgres) -> DisposablePostgres:
    """The session's own PostgreSQL, running (a test before may have stopped it)."""
    _postgres_instance.ensure_running()
    return _postgres_instance


@pytest.fixture
def disposable_mariadb(_mariadb_instance: DisposableMariaDB) -> typing.Iterator[DisposableMariaDB]:
    """The session's own MariaDB, running, with its default `wait_timeout` again after the
    test (a test before may have stopped it)."""
    _mariadb_instance.ensure_running()
    yield _mariadb_instance
    if _mariadb_instance.is_running():
        _mariadb_instance.set_wait_timeout(28800)


@pytest.fixture
def tcp_proxy() -> typing.Iterator[typing.Callable[[int], TcpProxy]]:
    """`tcp_proxy(port)`: a new proxy to 127.0.0.1:port; every one is closed after the test."""
    proxies: list[TcpProxy] = []

    def make(port: int, host: str = "127.0.0.1") -> TcpProxy:
        proxy = TcpProxy(host, port)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()
