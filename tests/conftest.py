"""The suite's database fixtures.

- `database_url`: the one fixture that says which database a test runs on. Every test that
  asks for it (directly or through a fixture) runs once per URL of `TEST_DATABASE_URLS`
  (`tests/settings.py`), with the URL's scheme as its id; `@pytest.mark.dialects(...)`
  keeps only the URLs of those dialects (`"postgresql"`: all its drivers) or backends
  (`"postgresql+asyncpg"`: that driver only; see `admin.backend_name`). It is
  module-scoped so that module-scoped fixtures can build on it (a module may override it
  with a wider scope).
- `@pytest.mark.needs_session("reason")`: the test needs a PostgreSQL server connection of
  its own for its whole session (it tells connections apart by `pg_backend_pid()`, counts
  them on the server, or keeps a cursor past its transaction). In a run whose PostgreSQL
  URLs go through pgbouncer in transaction mode (`TEST_THROUGH_PGBOUNCER=1`), which lends
  server connections per transaction, it is skipped there, with its reason.
- `shared_tables`: the tables of `tests.tables` on the test's database, empty at the start
  of the test and emptied after it. Only tests that ask for it touch them, so tests that
  need no database (or work on tables of their own) connect to nothing.

The fixtures are synchronous and go through `tests.admin` (plain drivers), so they neither
depend on `databases` nor on any event loop.
"""

from __future__ import annotations

import typing

import pytest

# The helper modules assert on behalf of the tests: rewrite their asserts as in a test
# module. This must run before anything imports them, so it comes before the imports below.
pytest.register_assert_rewrite(
    "tests.admin", "tests.differential", "tests.faults", "tests.loops", "tests.typing_checks"
)

from tests import admin  # noqa: E402
from tests.settings import (  # noqa: E402
    DATABASE_URL_IDS,
    DATABASE_URLS,
    THROUGH_PGBOUNCER,
)
from tests.tables import PointType, metadata  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "dialects(*names): run on the URLs of TEST_DATABASE_URLS of these dialects or "
        "backends only: a dialect ('sqlite', 'postgresql', 'mysql') takes all its drivers, "
        "'dialect+driver' ('postgresql+asyncpg', 'mysql+asyncmy', ...) that driver only, "
        "where a URL without '+driver' runs on its dialect's default (asyncpg, aiomysql, "
        "sqlite3)",
    )
    config.addinivalue_line(
        "markers",
        "needs_session(reason): needs a PostgreSQL server connection of its own for its "
        "whole session; skipped, with the reason, on PostgreSQL URLs that go through "
        "pgbouncer in transaction mode (TEST_THROUGH_PGBOUNCER=1)",
    )


def _known_backend_names() -> set[str]:
    return {*admin.DRIVERS, *(f"{d}+{v}" for d, drivers in admin.DRIVERS.items() for v in drivers)}


def _selects(url: str, names: tuple[str, ...]) -> bool:
    """Whether a `dialects(*names)` marker keeps this URL."""
    return admin.dialect_name(url) in names or admin.backend_name(url) in names


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `database_url` for every test that uses it, once per URL. First, so that
    the URL's id leads each test id (`[postgresql-plain]`)."""
    if "database_url" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("dialects")
    if marker is not None:
        # A misspelt name would quietly keep no URL: the test would never run.
        unknown = sorted(set(marker.args) - _known_backend_names())
        if unknown:
            raise pytest.UsageError(
                f"{metafunc.definition.nodeid}: unknown dialects {unknown}; "
                f"known: {sorted(_known_backend_names())}"
            )
    chosen = [
        (url, test_id)
        for url, test_id in zip(DATABASE_URLS, DATABASE_URL_IDS)
        if marker is None or _selects(url, marker.args)
    ]
    metafunc.parametrize(
        "database_url",
        [url for url, _ in chosen],
        ids=[test_id for _, test_id in chosen],
        indirect=True,
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `needs_session` tests, with their reason, on PostgreSQL through pgbouncer."""
    for item in items:
        marker = item.get_closest_marker("needs_session")
        if marker is None:
            continue
        if len(marker.args) != 1 or not isinstance(marker.args[0], str):
            raise pytest.UsageError(f"{item.nodeid}: needs_session takes one reason")
        callspec = getattr(item, "callspec", None)
        url = callspec.params.get("database_url") if callspec is not None else None
        if THROUGH_PGBOUNCER and url is not None and admin.dialect_name(url) == "postgresql":
            item.add_marker(
                pytest.mark.skip(
                    reason=f"needs a server session of its own ({marker.args[0]}); "
                    "pgbouncer in transaction mode lends server connections per transaction"
                )
            )


@pytest.fixture(scope="module")
def database_url(request: pytest.FixtureRequest) -> str:
    """The URL of the database this test runs on (see the module docstring)."""
    return str(request.param)


@pytest.fixture(scope="session")
def shared_tables_created() -> typing.Iterator[dict[tuple[str, str, str], str]]:
    """The databases on which the tables of `tests.tables` were created (by their
    `admin.database_key`, so several drivers of one PostgreSQL database share them), each with
    the URL that created them; they are dropped there at the end of the session. Rows left in
    them by then were written by a test that did not ask for `shared_tables` (so nothing
    emptied them after it)."""
    created: dict[tuple[str, str, str], str] = {}
    yield created
    left = {
        (url, table.name): count
        for url in created.values()
        for table in metadata.sorted_tables
        for ((count,),) in [admin.raw_fetch_all(url, f"SELECT count(*) FROM {table.name}")]
        if count
    }
    for url in created.values():
        admin.drop_tables(url, *metadata.sorted_tables)
    assert left == {}, f"rows left in the shared tables (a test without shared_tables): {left}"


@pytest.fixture
def shared_tables(
    database_url: str, shared_tables_created: dict[tuple[str, str, str], str]
) -> typing.Iterator[None]:
    """The tables of `tests.tables` exist on the test's database and are empty; the test
    leaves none of its rows behind."""
    key = admin.database_key(database_url)
    if key not in shared_tables_created:
        # Leftovers of an interrupted run may have an older shape: start afresh.
        admin.drop_tables(database_url, *metadata.sorted_tables)
        admin.create_tables(database_url, *metadata.sorted_tables)
        shared_tables_created[key] = database_url
    PointType.reset_counters()
    yield
    admin.clear_tables(database_url, *metadata.sorted_tables)
