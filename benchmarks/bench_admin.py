"""Setting up and cleaning the benchmark tables, with the raw driver (not timed)."""

from __future__ import annotations

import contextlib
import os
import typing
import warnings

import bench_cases as bc
import bench_contenders


class Admin:
    """One raw driver connection of the orchestrator, outside every contender."""

    def __init__(self, backend: str, url: typing.Any) -> None:
        self.backend = backend
        self.url = url
        self.connection: typing.Any = None

    async def open(self) -> None:
        if self.backend == "postgresql":
            import asyncpg

            self.connection = await asyncpg.connect(
                host=self.url.host,
                port=self.url.port,
                user=self.url.username,
                password=self.url.password,
                database=self.url.database,
            )
        elif self.backend == "mysql":
            import aiomysql

            self.connection = await aiomysql.connect(
                host=self.url.host,
                port=self.url.port or 3306,
                user=self.url.username,
                password=self.url.password or "",
                db=self.url.database,
                autocommit=True,
            )
        else:
            import aiosqlite

            self.connection = await aiosqlite.connect(self.url.database, isolation_level=None)

    async def close(self) -> None:
        if self.connection is None:
            return
        connection, self.connection = self.connection, None
        if self.backend == "mysql":
            connection.close()
        else:
            await connection.close()

    async def execute(self, sql: str) -> None:
        if self.backend == "mysql":
            # DROP TABLE IF EXISTS of a missing table warns.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                async with self.connection.cursor() as cursor:
                    await cursor.execute(sql)
        else:
            await self.connection.execute(sql)

    async def fetch_value(self, sql: str) -> typing.Any:
        if self.backend == "postgresql":
            return await self.connection.fetchval(sql)
        if self.backend == "mysql":
            async with self.connection.cursor() as cursor:
                await cursor.execute(sql)
                row = await cursor.fetchone()
                return row[0]
        rows = list(await self.connection.execute_fetchall(sql))
        return rows[0][0]

    async def server_version(self) -> str:
        if self.backend == "postgresql":
            return str(await self.fetch_value("SHOW server_version"))
        if self.backend == "mysql":
            return str(await self.fetch_value("SELECT VERSION()"))
        return str(await self.fetch_value("SELECT sqlite_version()"))

    async def create_tables(self) -> None:
        """Create both tables and fill the read table with ROW_COUNT rows."""
        for sql in bc.ddl(self.backend):
            await self.execute(sql)
        rows = bc.read_rows()
        if self.backend == "postgresql":
            await self.connection.copy_records_to_table(
                bc.ROWS_TABLE,
                records=[tuple(row[name] for name in bc.COLUMNS) for row in rows],
                columns=list(bc.COLUMNS),
            )
            await self.execute(f"ANALYZE {bc.ROWS_TABLE}")
            return
        dialect = bench_contenders.dialect_for(self.backend)
        insert = bc.compile_positional(bc.rows_table.insert().inline(), dialect, bc.COLUMNS)
        if self.backend == "mysql":
            async with self.connection.cursor() as cursor:
                await cursor.executemany(insert.sql, [insert.args(row) for row in rows])
            return
        stored = bench_contenders.sqlite_stored
        await self.execute("BEGIN")
        await self.connection.executemany(
            insert.sql, [tuple(stored(row[name]) for name in insert.names) for row in rows]
        )
        await self.execute("COMMIT")

    async def empty_writes(self) -> None:
        await self.execute(bc.empty_writes_statement(self.backend))

    async def count_writes(self) -> int:
        return int(await self.fetch_value(bc.count_writes_statement()))

    async def drop_tables(self) -> None:
        for sql in bc.drop_statements():
            await self.execute(sql)


def remove_sqlite_files(path: str) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)
