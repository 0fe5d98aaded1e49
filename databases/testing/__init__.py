"""Helpers for test suites: dedicated test databases."""

from databases.testing._test_database import (
    TestDatabase,
    create_database,
    database_exists,
    drop_database,
)

__all__ = ["TestDatabase", "create_database", "database_exists", "drop_database"]
