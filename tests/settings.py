"""Which databases the suite runs against.

`TEST_DATABASE_URLS` is a comma-separated list of URLs; every backend-dependent test runs once
per URL. The default is a SQLite file in the working directory, so a bare `pytest` works.
"""

import os
import typing

from databases import Database

DEFAULT_URLS = "sqlite:///testsuite.sqlite"

DATABASE_URLS: list[str] = [
    url.strip()
    for url in os.environ.get("TEST_DATABASE_URLS", DEFAULT_URLS).split(",")
    if url.strip()
]


def backend_dialects() -> dict[str, typing.Any]:
    """The SQLAlchemy dialect of each bundled backend, built without connecting, by name."""
    return {
        "sqlite": Database("sqlite:///unused.sqlite")._backend._dialect,
        "postgresql": Database("postgresql://localhost/unused")._backend._dialect,
        "mysql": Database("mysql://localhost/unused")._backend._dialect,
    }
