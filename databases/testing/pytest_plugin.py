"""pytest fixtures that give each test a database whose writes are rolled back after it.

Enabled by `--databases-url URL`, the ini option `databases_url`, or
`pytest_plugins = ["databases.testing.pytest_plugin"]` in the root conftest (docs/testing.md).

- `databases_database` (session): the `Database` under test. By default one built from the
  URL option with `force_rollback=True`; override it to return your app's own module-global
  instance, so the app's code under test uses it.
- `databases_session` (session): that database in force-rollback mode and connected for the
  whole run: one connection and one transaction for every event loop of the process, rolled
  back at the end of the run. A database built without `force_rollback` is switched to it for
  the run (and back after).
- `databases_db` (function): the same database, inside a savepoint begun before the test
  and rolled back after it. Everything the test, its function-scoped fixtures and the app it
  drives write in any loop is undone then.

All three are synchronous: they work with any loop scope of the tests and their fixtures
(pytest-asyncio, anyio, `TestClient` in a sync test, `asyncio.run()`). The connection and
the savepoints are held from an event loop of the plugin's own, on a thread that lives as
long as the run (`_fixture_loop`), so no test's loop ending or app's lifespan disconnecting
ends them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from databases import Database
from databases.testing._fixture_loop import FixtureLoop
from databases.testing.pytest_options import DEFAULT_TIMEOUT

__all__ = ["databases_database", "databases_db", "databases_session", "databases_url"]


def _ini(config: pytest.Config, name: str) -> str:
    """An ini option of the entry point (`pytest_options`); "" when that is not loaded
    (plugin autoloading disabled and only this module registered)."""
    try:
        value = config.getini(name)
    except ValueError:
        return ""
    return str(value).strip()


def _timeout(config: pytest.Config) -> float:
    raw = _ini(config, "databases_timeout") or DEFAULT_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise pytest.UsageError(
            f"databases_timeout must be a positive number of seconds, got {raw!r} "
            "(set it in the ini file, or with -o databases_timeout=SECONDS)"
        )
    return seconds


_TIMEOUT = pytest.StashKey[float]()


def pytest_configure(config: pytest.Config) -> None:
    """Check the options once, at the start of the run (a bad one stops it at once)."""
    config.stash[_TIMEOUT] = _timeout(config)


@pytest.fixture(scope="session")
def databases_url(pytestconfig: pytest.Config) -> str:
    """The URL of `--databases-url` or of the ini option `databases_url`."""
    url = pytestconfig.getoption("databases_url", default=None) or _ini(
        pytestconfig, "databases_url"
    )
    if not url:
        pytest.fail(
            "The databases_* fixtures need a database: pass --databases-url URL, set the ini "
            "option databases_url, or override the fixture databases_database to return "
            "your app's Database.",
            pytrace=False,
        )
    return str(url)


@pytest.fixture(scope="session")
def databases_database(databases_url: str) -> Database:
    """The database the fixtures manage. Override it to return your app's own instance."""
    return Database(databases_url, force_rollback=True)


@pytest.fixture(scope="session")
def _databases_fixture_loop(pytestconfig: pytest.Config) -> Iterator[FixtureLoop]:
    loop = FixtureLoop("databases-pytest-fixtures")
    yield loop
    loop.close(pytestconfig.stash[_TIMEOUT])


@pytest.fixture(scope="session")
def databases_session(
    databases_database: Database,
    _databases_fixture_loop: FixtureLoop,
    pytestconfig: pytest.Config,
) -> Iterator[Database]:
    """The database, in force-rollback mode and connected until the end of the run."""
    database = databases_database
    if not isinstance(database, Database):
        raise TypeError(
            "The fixture databases_database must return a databases.Database, "
            f"got {type(database).__name__}"
        )
    timeout = pytestconfig.stash[_TIMEOUT]
    loop = _databases_fixture_loop
    previous = database._set_force_rollback(True)
    try:
        loop.run(database.connect(), timeout, "Connecting the force-rollback database")
        try:
            yield database
        finally:
            loop.run(database.disconnect(), timeout, "Disconnecting the force-rollback database")
    finally:
        database._set_force_rollback(previous)


@pytest.fixture
def databases_db(
    databases_session: Database,
    _databases_fixture_loop: FixtureLoop,
    pytestconfig: pytest.Config,
) -> Iterator[Database]:
    """The database inside a savepoint that is rolled back after the test."""
    database = databases_session
    timeout = pytestconfig.stash[_TIMEOUT]
    loop = _databases_fixture_loop
    savepoint = database.transaction(force_rollback=True)
    loop.run(savepoint.start(), timeout, "Beginning the test's savepoint")
    yield database
    loop.run(
        savepoint.rollback(),
        timeout,
        "Rolling back the test's savepoint (a transaction that the test began in an "
        "event loop still running, and did not end, holds it open)",
    )
