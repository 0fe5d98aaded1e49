"""MySQL and MariaDB through asyncmy (`mysql+asyncmy://`), sharing the aiomysql backend's code.

The module imports without asyncmy; building the backend without it raises an ImportError
that says what to install.
"""

from __future__ import annotations

import importlib
import typing

from databases.backends.mysql import (
    MySQLBackend,
    MySQLConnection,
    MySQLTransaction,
    _resolve,
)

# Imported dynamically: typed the same (as Any) whether or not asyncmy is installed.
asyncmy: typing.Any
try:
    asyncmy = importlib.import_module("asyncmy")
    importlib.import_module("asyncmy.cursors")
except ImportError:  # pragma: no cover - reported when the backend is used
    asyncmy = None

__all__ = ["AsyncMyBackend", "AsyncMyConnection", "AsyncMyTransaction"]


class AsyncMyBackend(MySQLBackend):
    """MySQL/MariaDB over asyncmy: `mysql+asyncmy://user:password@host:3306/name`."""

    _driver_name = "asyncmy"
    _driver_extra = "asyncmy"

    def _driver_module(self) -> typing.Any:
        return asyncmy

    def _pool_kwargs(self) -> dict[str, typing.Any]:
        kwargs = super()._pool_kwargs()
        # asyncmy names it `database` (`db` is a deprecated alias there).
        if "db" in kwargs:
            kwargs.setdefault("database", kwargs.pop("db"))
        return kwargs

    async def _cursor(self, connection: typing.Any, unbuffered: bool = False) -> typing.Any:
        if unbuffered:
            return await _resolve(connection.cursor(asyncmy.cursors.SSCursor))
        return await _resolve(connection.cursor())

    def connection(self) -> AsyncMyConnection:
        return AsyncMyConnection(self)


class AsyncMyTransaction(MySQLTransaction):
    """BEGIN (after SET TRANSACTION ISOLATION LEVEL, with `isolation=`) or SAVEPOINT."""


class AsyncMyConnection(MySQLConnection):
    _backend: AsyncMyBackend

    def transaction(self) -> AsyncMyTransaction:
        return AsyncMyTransaction(self)
