"""Helpers for testing code that uses `databases` (docs/testing.md): dedicated test
databases here, and the pytest plugin in `databases.testing.pytest_plugin`.

The names are imported on first use: pytest loads this package for the plugin's options in
every run, which needs none of them.
"""

from __future__ import annotations

import typing

if typing.TYPE_CHECKING:
    from databases.testing._test_database import (
        TestDatabase,
        create_database,
        database_exists,
        drop_database,
    )

__all__ = ["TestDatabase", "create_database", "database_exists", "drop_database"]


def __getattr__(name: str) -> typing.Any:
    if name in __all__:
        from databases.testing import _test_database

        return getattr(_test_database, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
