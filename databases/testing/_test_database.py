"""Creating and dropping a whole database, for a test run of its own.

A server database is created and dropped through this package's own backend, connected
to the server's maintenance database (PostgreSQL's `postgres`, no database on MySQL), so
no second driver is needed. A SQLite database is a file; a memory database needs neither.
"""

from __future__ import annotations

import contextlib
import os
import re
import typing
from collections.abc import AsyncIterator

from databases._database import Database
from databases.backends._sqlite_pool import is_memory
from databases.errors import DatabaseExistsError
from databases.url import DatabaseURL

Existing = typing.Literal["error", "keep", "drop"]
_EXISTING = ("error", "keep", "drop")

# Encodings and character sets are written into the SQL: names only.
_ENCODING = re.compile(r"[A-Za-z0-9_-]+")
# PostgreSQL 13 drops a database with its sessions (`WITH (FORCE)`).
_PG_DROP_FORCE = 130000
# What SQLite writes next to a database file.
_SQLITE_SIDE_FILES = ("-journal", "-wal", "-shm")


def _kind(url: DatabaseURL) -> str:
    dialect = url.dialect
    if dialect in ("postgresql", "postgres"):
        return "postgresql"
    if dialect in ("mysql", "sqlite"):
        return dialect
    raise ValueError(
        f"Cannot create or drop databases of {url.scheme}:// (supported: postgresql, "
        "mysql, sqlite)."
    )


def _name(url: DatabaseURL) -> str:
    name = url.database
    if not name:
        raise ValueError(f"The URL {url.obscure_password} names no database.")
    return name


def _check_existing(existing: object) -> None:
    if existing not in _EXISTING:
        raise ValueError(f"existing= takes 'error', 'keep' or 'drop', not {existing!r}.")


def _check_encoding(encoding: str | None) -> None:
    if encoding is not None and not _ENCODING.fullmatch(encoding):
        raise ValueError(f"Invalid encoding {encoding!r}: give a name such as 'UTF8'.")


@contextlib.asynccontextmanager
async def _server(url: DatabaseURL, options: dict[str, typing.Any]) -> AsyncIterator[Database]:
    """Connected to the server of `url`, in its maintenance database."""
    maintenance = url.replace(database="postgres" if _kind(url) == "postgresql" else "")
    async with Database(maintenance, **options) as server:
        yield server


def _sqlite_file(url: DatabaseURL) -> str | None:
    """The file of a SQLite URL; None for a memory database (as the SQLite pool tells
    them, taking `file:` names as URIs)."""
    if is_memory(url, uri=True):
        return None
    database = url.database
    return database[len("file:") :] if database.startswith("file:") else database


async def _exists_on(server: Database, kind: str, name: str) -> bool:
    if kind == "postgresql":
        query = "SELECT 1 FROM pg_database WHERE datname = :name"
    else:
        query = "SELECT 1 FROM information_schema.schemata WHERE schema_name = :name"
    return await server.fetch_val(query, {"name": name}) is not None


async def _drop_on(server: Database, kind: str, name: str) -> None:
    quoted = server.dialect.identifier_preparer.quote(name)
    if kind == "mysql":
        await server.execute(f"DROP DATABASE IF EXISTS {quoted}")
        return
    version = int(await server.fetch_val("SHOW server_version_num"))
    if version >= _PG_DROP_FORCE:
        await server.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        return
    # Older servers: end the database's sessions first, or DROP fails while one is open.
    await server.fetch_all(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = :name AND pid <> pg_backend_pid()",
        {"name": name},
    )
    await server.execute(f"DROP DATABASE IF EXISTS {quoted}")


async def database_exists(url: str | DatabaseURL, **options: typing.Any) -> bool:
    """Whether the database of `url` exists (a memory SQLite database always does).

    `options` are `Database` keyword options for the connection to the server.
    """
    url = DatabaseURL(url)
    kind = _kind(url)
    if kind == "sqlite":
        path = _sqlite_file(url)
        return path is None or os.path.exists(path)
    name = _name(url)
    async with _server(url, options) as server:
        return await _exists_on(server, kind, name)


async def create_database(
    url: str | DatabaseURL,
    *,
    existing: Existing = "error",
    encoding: str | None = None,
    template: str | None = None,
    **options: typing.Any,
) -> bool:
    """Create the database of `url`; True if it was created, False if kept.

    `existing`: what to do if it exists already: `"error"` (raise
    `DatabaseExistsError`), `"keep"` (use it as it is), `"drop"` (drop it first, and
    create it empty). `encoding` (PostgreSQL's ENCODING, MySQL's CHARACTER SET) and
    `template` (PostgreSQL) as in CREATE DATABASE. `options` are `Database` keyword
    options for the connection to the server.
    """
    url = DatabaseURL(url)
    kind = _kind(url)
    _check_existing(existing)
    _check_encoding(encoding)
    if kind == "sqlite":
        return await _create_sqlite(url, existing, options)
    name = _name(url)
    async with _server(url, options) as server:
        if await _exists_on(server, kind, name):
            if existing == "error":
                raise DatabaseExistsError(url.obscure_password)
            if existing == "keep":
                return False
            await _drop_on(server, kind, name)
        preparer = server.dialect.identifier_preparer
        sql = f"CREATE DATABASE {preparer.quote(name)}"
        if encoding is not None and kind == "postgresql":
            sql += f" ENCODING '{encoding}'"
        elif encoding is not None:
            sql += f" CHARACTER SET {encoding}"
        if template is not None:
            if kind != "postgresql":
                raise ValueError("template= is PostgreSQL's (CREATE DATABASE ... TEMPLATE).")
            sql += f" TEMPLATE {preparer.quote(template)}"
        await server.execute(sql)
    return True


async def _create_sqlite(
    url: DatabaseURL, existing: Existing, options: dict[str, typing.Any]
) -> bool:
    path = _sqlite_file(url)
    if path is None:
        return True  # a memory database comes with its first connection
    if os.path.exists(path):
        if existing == "error":
            raise DatabaseExistsError(url.obscure_password)
        if existing == "keep":
            return False
        _remove_sqlite_files(path)
    # Opening it creates the file; a statement makes it a database SQLite recognises.
    async with Database(url, **options) as database:
        await database.execute("CREATE TABLE databases_created (id INTEGER)")
        await database.execute("DROP TABLE databases_created")
    return True


def _remove_sqlite_files(path: str) -> None:
    for name in (path, *(path + suffix for suffix in _SQLITE_SIDE_FILES)):
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)


async def drop_database(url: str | DatabaseURL, **options: typing.Any) -> bool:
    """Drop the database of `url` (its open sessions ended, on PostgreSQL); True if it
    existed. A SQLite file is removed (a memory database: nothing to do).

    `options` are `Database` keyword options for the connection to the server.
    """
    url = DatabaseURL(url)
    kind = _kind(url)
    if kind == "sqlite":
        path = _sqlite_file(url)
        if path is None or not os.path.exists(path):
            return False
        _remove_sqlite_files(path)
        return True
    name = _name(url)
    async with _server(url, options) as server:
        if not await _exists_on(server, kind, name):
            return False
        await _drop_on(server, kind, name)
    return True


def _prefixed(url: DatabaseURL, prefix: str) -> DatabaseURL:
    """`url` with its database name (a SQLite file's own name) prefixed."""
    if not prefix:
        return url
    name = url.database
    if _kind(url) == "sqlite":
        if _sqlite_file(url) is None:
            return url
        head, tail = os.path.split(name)
        return url.replace(database=os.path.join(head, prefix + tail))
    return url.replace(database=prefix + _name(url))


class TestDatabase:
    """A dedicated database for a test run: created empty and connected on entry,
    disconnected and dropped on exit::

        async with TestDatabase("postgresql://localhost/app", prefix="test_") as database:
            ...  # `database` is a connected `Database` on `test_app`

    `prefix` is put before the URL's database name (a SQLite file's name); `existing`
    as for `create_database()` (default: drop a left-over one); `drop=False` keeps the
    database afterwards. `force_rollback` and `options` go to the `Database`.
    """

    __test__ = False  # not a test class, for pytest

    def __init__(
        self,
        url: str | DatabaseURL,
        *,
        prefix: str = "",
        existing: Existing = "drop",
        drop: bool = True,
        force_rollback: bool = False,
        **options: typing.Any,
    ) -> None:
        _check_existing(existing)
        self.url = _prefixed(DatabaseURL(url), prefix)
        self.existing: Existing = existing
        self.drop = drop
        self._options = options
        self.database = Database(self.url, force_rollback=force_rollback, **options)

    async def __aenter__(self) -> Database:
        await create_database(self.url, existing=self.existing, **self._options)
        try:
            await self.database.connect()
        except BaseException:
            if self.drop:
                await drop_database(self.url, **self._options)
            raise
        return self.database

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.database.disconnect()
        finally:
            if self.drop:
                await drop_database(self.url, **self._options)

    def __repr__(self) -> str:
        return f"<TestDatabase {self.url.obscure_password!r}>"
