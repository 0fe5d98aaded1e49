"""Which databases the suite runs against.

`TEST_DATABASE_URLS` is a comma-separated list of URLs; every backend-dependent test runs once
per URL (through the `database_url` fixture of `tests/conftest.py`). The default is a SQLite
file in the working directory, so a bare `pytest` works.
"""

import os
import typing
from urllib.parse import urlsplit

from databases import Database
from tests import admin

DEFAULT_URLS = "sqlite:///testsuite.sqlite"

DATABASE_URLS: list[str] = [
    url.strip()
    for url in os.environ.get("TEST_DATABASE_URLS", DEFAULT_URLS).split(",")
    if url.strip()
]


def url_ids(urls: typing.Sequence[str]) -> list[str]:
    """A readable test id per URL: its scheme (`sqlite`, `postgresql`, `postgresql+aiopg`,
    ...), which says which backend ran without the host, database or password. A scheme
    listed again gets `-2`, `-3`, ... so that every id stays unique."""
    schemes: list[str] = []
    ids: list[str] = []
    for url in urls:
        scheme = urlsplit(url).scheme.lower()
        schemes.append(scheme)
        seen = schemes.count(scheme)
        ids.append(scheme if seen == 1 else f"{scheme}-{seen}")
    return ids


# The test id of each URL of `DATABASE_URLS`, in the same order.
DATABASE_URL_IDS: list[str] = url_ids(DATABASE_URLS)

# `TEST_THROUGH_PGBOUNCER=1`: the PostgreSQL URLs of this run go through pgbouncer in
# transaction mode (`.ci/run`'s pgbouncer run), so tests marked `needs_session` skip them.
THROUGH_PGBOUNCER = os.environ.get("TEST_THROUGH_PGBOUNCER") == "1"
# The `needs_session` reason of `iterate()` cases outside a transaction.
ITERATE_NEEDS_SESSION = (
    "iterate() outside a transaction keeps a WITH HOLD cursor on its server connection"
)


def backend_dialects() -> dict[str, typing.Any]:
    """The SQLAlchemy dialect of each bundled backend, built without connecting, by name."""
    return {
        "sqlite": Database("sqlite:///unused.sqlite").dialect,
        "postgresql": Database("postgresql://localhost/unused").dialect,
        "mysql": Database("mysql://localhost/unused").dialect,
    }


def needs_fast_path(name: str) -> typing.Any:
    """Skip a test of a fast path, with the probe's reason, when the installed SQLAlchemy
    turned it off (`tests/test_sqlalchemy_compat.py` fails for the pinned releases)."""
    import pytest

    from databases.backends.common._sqlalchemy_compat import FAST_PATHS

    reason = FAST_PATHS[name]
    return pytest.mark.skipif(reason is not None, reason=f"fast path {name!r} is off: {reason}")


def application_name_options(url: str, name: str) -> dict[str, typing.Any]:
    """Options giving a PostgreSQL URL's connections this `application_name`, so a test can
    count them on the server. The drivers differ: asyncpg takes server settings, while
    libpq's drivers (psycopg, aiopg) take it as a connection keyword."""
    if admin.driver_name(url) == "asyncpg":
        return {"server_settings": {"application_name": name}}
    return {"application_name": name}


def postgres_read_only_error(url: str) -> type[Exception]:
    """The error each PostgreSQL driver raises for a write in a read-only transaction."""
    driver = admin.driver_name(url)
    if driver == "psycopg":
        import psycopg

        return psycopg.errors.ReadOnlySqlTransaction
    if driver == "aiopg":
        import psycopg2.errors

        return psycopg2.errors.ReadOnlySqlTransaction
    import asyncpg

    error: type[Exception] = asyncpg.exceptions.ReadOnlySQLTransactionError
    return error
