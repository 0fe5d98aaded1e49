"""Fixtures of the fault kit: disposable servers (one per session, started only for a test
that asks) and TCP proxies (closed after each test).

Which servers run follows `TEST_DATABASE_URLS`: a test asking for `fault_backend` runs once
per server backend among those URLs (`postgresql+asyncpg`, `postgresql+psycopg`, ...,
`mysql+aiomysql`), one asking for `fault_dialect` once per server dialect, each against a
disposable server of that dialect. `@pytest.mark.dialects(...)` narrows them as it does
`database_url`.
"""

from __future__ import annotations

import typing

import pytest

from tests import admin
from tests.faults.proxy import TcpProxy
from tests.faults.servers import DisposableMariaDB, DisposablePostgres, Server
from tests.settings import DATABASE_URLS

SERVER_DIALECTS = ("postgresql", "mysql")


def _configured(names: typing.Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    server_urls = [url for url in DATABASE_URLS if admin.dialect_name(url) in SERVER_DIALECTS]
    marker = metafunc.definition.get_closest_marker("dialects")
    wanted = marker.args if marker is not None else None

    def chosen(names: list[str]) -> list[str]:
        if wanted is None:
            return names
        return [name for name in names if name in wanted or name.split("+")[0] in wanted]

    if "fault_backend" in metafunc.fixturenames:
        names = chosen(_configured(admin.backend_name(url) for url in server_urls))
        metafunc.parametrize("fault_backend", names, ids=names)
    if "fault_dialect" in metafunc.fixturenames:
        names = chosen(_configured(admin.dialect_name(url) for url in server_urls))
        metafunc.parametrize("fault_dialect", names, ids=names)


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
def disposable_postgres(
    _postgres_instance: DisposablePostgres,
) -> typing.Iterator[DisposablePostgres]:
    """The session's own PostgreSQL, running (a test before may have stopped it), with
    sessions never ended for idling again after the test."""
    _postgres_instance.ensure_running()
    yield _postgres_instance
    if _postgres_instance.is_running():
        _postgres_instance.set_idle_timeout(None)


@pytest.fixture
def disposable_mariadb(_mariadb_instance: DisposableMariaDB) -> typing.Iterator[DisposableMariaDB]:
    """The session's own MariaDB, running (a test before may have stopped it), with its
    default `wait_timeout` again after the test."""
    _mariadb_instance.ensure_running()
    yield _mariadb_instance
    if _mariadb_instance.is_running():
        _mariadb_instance.set_idle_timeout(None)


@pytest.fixture
def fault_server(request: pytest.FixtureRequest) -> Server:
    """The disposable server of the test's `fault_backend` or `fault_dialect`."""
    names = request.fixturenames
    param = request.getfixturevalue(
        "fault_backend" if "fault_backend" in names else "fault_dialect"
    )
    if admin.dialect_name(f"{param}://") == "postgresql":
        postgres: DisposablePostgres = request.getfixturevalue("disposable_postgres")
        return postgres
    mariadb: DisposableMariaDB = request.getfixturevalue("disposable_mariadb")
    return mariadb


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
