"""Which databases the suite runs against.

`TEST_DATABASE_URLS` is a comma-separated list of URLs; every backend-dependent test runs once
per URL (through the `database_url` fixture of `tests/conftest.py`). The default is a SQLite
file in the working directory, so a bare `pytest` works.
"""

import os
import typing
from urllib.parse import urlsplit

from databases import Database

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


def backend_dialects() -> dict[str, typing.Any]:
    """The SQLAlchemy dialect of each bundled backend, built without connecting, by name."""
    return {
        "sqlite": Database("sqlite:///unused.sqlite")._backend._dialect,
        "postgresql": Database("postgresql://localhost/unused")._backend._dialect,
        "mysql": Database("mysql://localhost/unused")._backend._dialect,
    }


def needs_fast_path(name: str) -> typing.Any:
    """Skip a test of a fast path, with the probe's reason, when the installed SQLAlchemy
    turned it off (`tests/test_sqlalchemy_compat.py` fails for the pinned releases)."""
    import pytest

    from databases.backends.common._sqlalchemy_compat import FAST_PATHS

    reason = FAST_PATHS[name]
    return pytest.mark.skipif(reason is not None, reason=f"fast path {name!r} is off: {reason}")
