"""MySQL and MariaDB through asyncmy (`mysql+asyncmy://`), sharing the aiomysql backend's code.

The module imports without asyncmy; building the backend without it raises an ImportError
that says what to install.
"""

from __future__ import annotations

import importlib
import typing

from sqlalchemy.dialects.mysql.asyncmy import MySQLDialect_asyncmy

from databases.backends.common import _run_sync as run_sync
from databases.backends.common._options import DriverKeywords
from databases.backends.common._run_sync import BorrowedConnectionDialect
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

# What `asyncmy.create_pool()` takes, listed: asyncmy is compiled, its signatures cannot be
# read. Its pool's own keywords, then `asyncmy.connection.Connection`'s (asyncmy 0.2.9+).
ASYNCMY_KEYWORDS = DriverKeywords(
    "asyncmy",
    frozenset(
        (
            *("minsize", "maxsize", "echo", "pool_recycle"),
            *("user", "password", "host", "database", "db", "unix_socket", "port"),
            *("charset", "sql_mode", "read_default_file", "conv", "use_unicode"),
            *("client_flag", "cursor_cls", "init_command", "connect_timeout"),
            *("read_default_group", "autocommit", "local_infile", "max_allowed_packet"),
            *("auth_plugin_map", "read_timeout", "write_timeout", "binary_prefix"),
            *("program_name", "server_public_key", "ssl"),
        )
    ),
)


class AsyncMyRunSyncDialect(BorrowedConnectionDialect, MySQLDialect_asyncmy):
    """`run_sync()` on our asyncmy connections (autocommit: transactions are ours)."""

    supports_statement_cache = True


RUN_SYNC_DRIVER = run_sync.register("mysql.databases_asyncmy", __name__, "AsyncMyRunSyncDialect")


class AsyncMyBackend(MySQLBackend):
    """MySQL/MariaDB over asyncmy: `mysql+asyncmy://user:password@host:3306/name`."""

    _driver_name = "asyncmy"
    driver_name = "asyncmy"
    _driver_extra = "asyncmy"
    run_sync_driver = RUN_SYNC_DRIVER

    def _driver_module(self) -> typing.Any:
        return asyncmy

    def _driver_keywords(self) -> DriverKeywords:
        return ASYNCMY_KEYWORDS

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
