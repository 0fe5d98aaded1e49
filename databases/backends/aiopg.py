"""PostgreSQL through aiopg (`postgresql+aiopg://`): an optional upstream driver.

The module imports without aiopg so existing test suites that import it keep working;
using it says which package to install. asyncpg (`postgresql://`) is the maintained path.
"""

from __future__ import annotations

import typing

from databases.backends.postgres import PostgresConnection, PostgresTransaction
from databases.interfaces import DatabaseBackend
from databases.url import DatabaseURL

__all__ = ["AiopgBackend", "AiopgConnection", "AiopgTransaction"]

MESSAGE = (
    "The 'postgresql+aiopg://' backend needs the 'aiopg' package, which is not installed: "
    "pip install 'databases[aiopg]', or use 'postgresql://' (asyncpg)."
)


class AiopgBackend(DatabaseBackend):
    def __init__(self, database_url: DatabaseURL | str, **options: typing.Any) -> None:
        try:
            import aiopg  # noqa: F401
        except ImportError:
            raise ImportError(MESSAGE) from None
        raise NotImplementedError(
            "The aiopg backend is not available in this release; use 'postgresql://' (asyncpg)."
        )


AiopgConnection = PostgresConnection
AiopgTransaction = PostgresTransaction
