"""Shared fixtures: the test tables exist on every database for the whole session and are
empty at the start of every test.

The fixtures are synchronous and go through `tests.admin` (plain drivers), so they neither
depend on `databases` nor on any event loop.
"""

from __future__ import annotations

import typing

import pytest

from tests import admin
from tests.settings import DATABASE_URLS
from tests.tables import PointType, metadata

# One URL per database: several drivers of one server (asyncpg, psycopg and aiopg on the
# same PostgreSQL database) share its tables, created and emptied once.
ADMIN_URLS = list({admin.database_key(url): url for url in DATABASE_URLS}.values())


@pytest.fixture(scope="session", autouse=True)
def create_test_tables() -> typing.Iterator[None]:
    """Create the tables of `tests.tables` on every test database; drop them at the end."""
    for url in ADMIN_URLS:
        admin.create_tables(url, metadata)
    yield
    for url in ADMIN_URLS:
        admin.drop_tables(url, metadata)


@pytest.fixture(autouse=True)
def empty_tables(create_test_tables: None) -> typing.Iterator[None]:
    """Every test starts with empty tables and leaves none of its rows behind."""
    PointType.reset_counters()
    yield
    for url in ADMIN_URLS:
        admin.clear_tables(url, metadata)
