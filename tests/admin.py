"""Database administration for the test suite that does not go through `databases`.

Tests use these helpers to set up tables and to check from the outside what really was
committed, so they talk to each server with a plain driver: `sqlite3` for SQLite, PyMySQL for
MySQL/MariaDB and asyncpg (run to completion in a private thread) for PostgreSQL. Every call
opens its own autocommit connection and closes it again.

All functions are synchronous and may be called from inside a running event loop (they block it
briefly); URLs are parsed with `urllib.parse`, not with `databases.DatabaseURL`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import typing
from urllib.parse import parse_qsl, unquote, urlsplit

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.schema import CreateTable

# Seconds any admin statement may wait for a lock before failing.
ADMIN_TIMEOUT = 20

__all__ = [
    "backend_name",
    "clear_tables",
    "committed_notes",
    "create_tables",
    "database_key",
    "dialect_name",
    "driver_name",
    "drop_tables",
    "raw_execute",
    "raw_fetch_all",
]


def dialect_name(url: str) -> str:
    """`"sqlite"`, `"mysql"` or `"postgresql"` for a database URL (drivers are ignored)."""
    scheme = urlsplit(url).scheme.split("+", 1)[0].lower()
    if scheme == "postgres":
        return "postgresql"
    if scheme in ("sqlite", "mysql", "postgresql"):
        return scheme
    raise ValueError(f"Unsupported database URL for the test suite: {url!r}")


# The driver `databases` runs a URL on when its scheme names none (SQLite's is the standard
# library's `sqlite3`), and the drivers a scheme may name, by dialect.
DEFAULT_DRIVERS = {"postgresql": "asyncpg", "mysql": "aiomysql", "sqlite": "sqlite3"}
DRIVERS = {
    "postgresql": ("asyncpg", "psycopg", "aiopg"),
    "mysql": ("aiomysql", "asyncmy"),
    "sqlite": ("sqlite3", "aiosqlite"),
}


def driver_name(url: str) -> str:
    """The driver a database URL names (`postgresql+psycopg://` -> `"psycopg"`), else its
    dialect's default: `"asyncpg"`, `"aiomysql"` or `"sqlite3"`."""
    scheme = urlsplit(url).scheme.lower()
    driver = scheme.split("+", 1)[1] if "+" in scheme else ""
    return driver or DEFAULT_DRIVERS[dialect_name(url)]


def backend_name(url: str) -> str:
    """`dialect+driver` of a database URL (`"postgresql+asyncpg"` for `postgresql://`): the
    name tests and markers pick a backend by."""
    return f"{dialect_name(url)}+{driver_name(url)}"


def database_key(url: str) -> tuple[str, str, str]:
    """What tells databases apart: the dialect, the server and the database (not the driver)."""
    parts = urlsplit(url)
    return dialect_name(url), parts.netloc, parts.path


def _sa_dialect(url: str) -> sa.Dialect:
    name = dialect_name(url)
    if name == "sqlite":
        return sqlite.dialect()
    if name == "mysql":
        return mysql.dialect()
    return postgresql.dialect()


# -- drivers -------------------------------------------------------------------------------


def _sqlite_connect(url: str) -> sqlite3.Connection:
    parts = urlsplit(url)
    path = unquote(parts.path)
    if path.startswith("/"):
        path = path[1:]  # sqlite:///relative.db -> relative.db, sqlite:////abs.db -> /abs.db
    if parts.query:
        connection = sqlite3.connect(f"file:{path}?{parts.query}", uri=True, timeout=ADMIN_TIMEOUT)
    else:
        connection = sqlite3.connect(path, timeout=ADMIN_TIMEOUT)
    connection.isolation_level = None  # autocommit: every statement stands alone
    return connection


def _mysql_connect(url: str) -> typing.Any:
    import pymysql

    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    kwargs: dict[str, typing.Any] = {
        "user": unquote(parts.username) if parts.username else "root",
        "password": unquote(parts.password) if parts.password else "",
        "database": unquote(parts.path.lstrip("/")) or None,
        "autocommit": True,
        "charset": "utf8mb4",
        "connect_timeout": ADMIN_TIMEOUT,
        # never wait forever on a lock a leaked test connection holds
        "init_command": (
            f"SET SESSION lock_wait_timeout = {ADMIN_TIMEOUT}, "
            f"SESSION innodb_lock_wait_timeout = {ADMIN_TIMEOUT}"
        ),
    }
    if "unix_socket" in query:
        kwargs["unix_socket"] = query["unix_socket"]
    else:
        kwargs["host"] = parts.hostname or "localhost"
        kwargs["port"] = parts.port or 3306
    return pymysql.connect(**kwargs)


def _postgres_kwargs(url: str) -> dict[str, typing.Any]:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    kwargs: dict[str, typing.Any] = {
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "host": parts.hostname or query.get("host"),
        "port": parts.port,
        "database": unquote(parts.path.lstrip("/")) or None,
    }
    return {key: value for key, value in kwargs.items() if value is not None}


# PostgreSQL statements that refuse to run inside a transaction block (the fault kit's
# server settings, databases made by tests): run as they are.
OUTSIDE_TRANSACTIONS = ("ALTER SYSTEM", "CREATE DATABASE", "DROP DATABASE", "VACUUM")


def _run_postgres(url: str, statements: list[str], fetch: bool) -> list[tuple[typing.Any, ...]]:
    """Run the statements on one asyncpg connection; return the rows of the last one if `fetch`."""
    import asyncpg

    async def work() -> list[tuple[typing.Any, ...]]:
        # No prepared statement outlives its statement: through pgbouncer in transaction
        # mode, the next client of the server connection may use the same names.
        connection = await asyncpg.connect(
            **_postgres_kwargs(url), timeout=ADMIN_TIMEOUT, statement_cache_size=0
        )
        try:
            rows: list[tuple[typing.Any, ...]] = []
            for statement in statements:
                if statement.lstrip().upper().startswith(OUTSIDE_TRANSACTIONS):
                    await connection.execute(statement)
                    continue
                # Each in a transaction of its own, which (unlike a session setting) also
                # holds through pgbouncer: never wait forever on a lock a leaked test
                # connection holds.
                async with connection.transaction():
                    await connection.execute(f"SET LOCAL lock_timeout = '{ADMIN_TIMEOUT}s'")
                    if fetch:
                        records = await connection.fetch(statement)
                        rows = [tuple(record.values()) for record in records]
                    else:
                        await connection.execute(statement)
            return rows
        finally:
            await connection.close()

    # A thread of its own keeps asyncio.run() usable while the caller's loop is running.
    # It is not waited for at shutdown, so a caller interrupted by a timeout is not stuck.
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return executor.submit(lambda: asyncio.run(work())).result()
    finally:
        executor.shutdown(wait=False)


def _run(url: str, statements: list[str], fetch: bool = False) -> list[tuple[typing.Any, ...]]:
    name = dialect_name(url)
    if name == "postgresql":
        return _run_postgres(url, statements, fetch)
    rows: list[tuple[typing.Any, ...]] = []
    if name == "sqlite":
        connection = _sqlite_connect(url)
        try:
            for statement in statements:
                rows = [tuple(row) for row in connection.execute(statement).fetchall()]
        finally:
            connection.close()
        return rows
    connection = _mysql_connect(url)
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
                rows = [tuple(row) for row in cursor.fetchall()]
    finally:
        connection.close()
    return rows


# -- public helpers ------------------------------------------------------------------------


def raw_fetch_all(url: str, sql: str) -> list[tuple[typing.Any, ...]]:
    """Run one SQL query on its own connection and return its rows as tuples."""
    return _run(url, [sql], fetch=True)


def raw_execute(url: str, sql: str) -> None:
    """Run one SQL statement on its own autocommit connection."""
    _run(url, [sql])


def _native_enums(tables: typing.Sequence[sa.Table]) -> list[sa.Enum]:
    """The native enum types of `tables` (PostgreSQL creates them apart), each once."""
    enums: dict[str, sa.Enum] = {}
    for table in tables:
        for column in table.columns:
            column_type = column.type
            if isinstance(column_type, sa.Enum) and column_type.native_enum and column_type.name:
                enums.setdefault(column_type.name, column_type)
    return list(enums.values())


def create_tables(url: str, *tables: sa.Table) -> None:
    """Make each of `tables` exist and be empty: created if missing (on PostgreSQL with its
    enum types), its rows deleted otherwise. Give them in dependency order."""
    dialect = _sa_dialect(url)
    statements: list[str] = []
    if dialect.name == "postgresql":
        existing = {row[0] for row in raw_fetch_all(url, "SELECT typname FROM pg_type")}
        statements += [
            str(postgresql.CreateEnumType(enum).compile(dialect=dialect))
            for enum in _native_enums(tables)
            if enum.name not in existing
        ]
    statements += [
        str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)).strip()
        for table in tables
    ]
    _run(url, statements)
    clear_tables(url, *tables)


def clear_tables(url: str, *tables: sa.Table) -> None:
    """Delete every row of each of `tables` (in reverse order, so references go first)."""
    preparer = _sa_dialect(url).identifier_preparer
    _run(url, [f"DELETE FROM {preparer.format_table(table)}" for table in reversed(tables)])


def drop_tables(url: str, *tables: sa.Table) -> None:
    """Drop each of `tables` that exists (on PostgreSQL with its enum types).

    On PostgreSQL, server connections that still hold a lock on them are ended first: one a
    failed test left behind must not keep them (the tables belong to this test run: the
    shared ones to its database, the others have the process id in their names).
    """
    dialect = _sa_dialect(url)
    preparer = dialect.identifier_preparer
    statements: list[str] = []
    if dialect.name == "postgresql":
        names = ", ".join(f"'{table.name}'" for table in tables)
        statements.append(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l "
            "JOIN pg_class c ON c.oid = l.relation "
            f"WHERE c.relname IN ({names}) AND l.pid <> pg_backend_pid()"
        )
    statements += [
        f"DROP TABLE IF EXISTS {preparer.format_table(table)}" for table in reversed(tables)
    ]
    if dialect.name == "postgresql":
        statements += [
            f"DROP TYPE IF EXISTS {preparer.quote(str(enum.name))}"
            for enum in _native_enums(tables)
        ]
    _run(url, statements)


def committed_notes(url: str) -> list[str]:
    """The texts of all committed rows of the shared table `notes`, in insertion order."""
    return [row[0] for row in raw_fetch_all(url, "SELECT text FROM notes ORDER BY id")]
