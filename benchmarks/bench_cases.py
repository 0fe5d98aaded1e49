"""What every contender runs: the tables, the data, the cases and their inputs.

Shared by the orchestrator (`run.py`) and the side runner (`side_runner.py`, which runs
under another virtualenv's Python), so it imports only SQLAlchemy 2 and the standard
library.
"""

from __future__ import annotations

import datetime
import typing

import sqlalchemy as sa
from sqlalchemy.engine.interfaces import Dialect

# Table names unlikely to clash with anything else in a shared `test` database.
ROWS_TABLE = "databases_bench_rows"
WRITES_TABLE = "databases_bench_writes"

# Rows in the read table: `iterate_10k` reads all of them, `fetch_all_1000` the first 1000.
ROW_COUNT = 10_000
FETCH_ALL_ROWS = 1_000
EXECUTE_MANY_ROWS = 1_000
TRANSACTION_INSERTS = 10
GATHER_QUERIES = 100
# Rows per round trip where the caller chooses (raw drivers, SQLAlchemy's yield_per).
ITERATE_CHUNK = 500

metadata = sa.MetaData()

rows_table = sa.Table(
    ROWS_TABLE,
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

writes_table = sa.Table(
    WRITES_TABLE,
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

COLUMNS = ("id", "name", "score", "active", "created_at")
WRITE_COLUMNS = ("name", "score", "active", "created_at")

# The raw SQL of the `fetch_one_text` case; the SQLAlchemy-based contenders pass it as it
# is, the raw drivers get it compiled to their parameter style.
TEXT_SELECT_BY_ID = f"SELECT id, name, score, active, created_at FROM {ROWS_TABLE} WHERE id = :id"

# Case name -> what one operation is. The order is the order of the report.
CASES: dict[str, str] = {
    "fetch_one_select": "fetch_one by primary key, SQLAlchemy select()",
    "fetch_one_text": "fetch_one by primary key, raw SQL text with :id",
    "fetch_val": "fetch_val of one column by primary key, SQLAlchemy select()",
    "fetch_all_1000": f"fetch_all of {FETCH_ALL_ROWS} rows x 5 columns, values not read",
    "fetch_all_1000_read": f"fetch_all of {FETCH_ALL_ROWS} rows x 5 columns, every value read",
    "iterate_10k": f"iterate over {ROW_COUNT} rows, every value read",
    "insert": "one single-row INSERT (SQLAlchemy insert() + values)",
    "execute_many_1000": f"execute_many of {EXECUTE_MANY_ROWS} rows, atomic",
    "transaction_10": f"a transaction of {TRANSACTION_INSERTS} single-row INSERTs",
    "gather_100": f"{GATHER_QUERIES} concurrent fetch_one (asyncio.gather), pool of 10",
    "gather_100_force_rollback": (
        f"the same {GATHER_QUERIES} on a force_rollback database (one connection)"
    ),
    "fetch_one_force_rollback": (
        "fetch_one by primary key, one after another, on a force_rollback database"
    ),
}

# Rows one operation of each case gets back (reads) or adds to WRITES_TABLE (writes):
# every batch is checked against this.
ROWS_PER_OPERATION: dict[str, int] = {
    "fetch_one_select": 1,
    "fetch_one_text": 1,
    "fetch_val": 1,
    "fetch_all_1000": FETCH_ALL_ROWS,
    "fetch_all_1000_read": FETCH_ALL_ROWS,
    "iterate_10k": ROW_COUNT,
    "insert": 1,
    "execute_many_1000": EXECUTE_MANY_ROWS,
    "transaction_10": TRANSACTION_INSERTS,
    "gather_100": GATHER_QUERIES,
    "gather_100_force_rollback": GATHER_QUERIES,
    "fetch_one_force_rollback": 1,
}

# Cases that write to WRITES_TABLE: it is emptied before each of their batches.
WRITE_CASES = frozenset({"insert", "execute_many_1000", "transaction_10"})
# Cases that use a force-rollback connection, opened before the batch and closed after.
FORCE_ROLLBACK_CASES = frozenset({"gather_100_force_rollback", "fetch_one_force_rollback"})

_BASE_TIME = datetime.datetime(2024, 1, 1, 8, 0, 0)


def row_values(i: int) -> dict[str, typing.Any]:
    """The values of row number `i` (1-based) of either table."""
    return {
        "name": f"row-{i:05d}-abcdefghijklmnopqrst",
        "score": i * 1.25,
        "active": i % 3 == 0,
        "created_at": _BASE_TIME + datetime.timedelta(seconds=37 * i),
    }


def read_rows() -> list[dict[str, typing.Any]]:
    """The ROW_COUNT rows of the read table, with their ids."""
    return [{"id": i, **row_values(i)} for i in range(1, ROW_COUNT + 1)]


def row_ids(count: int) -> list[int]:
    """The primary keys looked up by `count` operations: spread over the table, the same
    for every contender."""
    return [(i * 7919) % ROW_COUNT + 1 for i in range(count)]


def gather_ids(count: int) -> list[list[int]]:
    """For `count` gather operations, the GATHER_QUERIES ids each of them fetches."""
    ids = row_ids(count * GATHER_QUERIES)
    return [ids[i * GATHER_QUERIES : (i + 1) * GATHER_QUERIES] for i in range(count)]


def insert_values(count: int, offset: int = 0) -> list[dict[str, typing.Any]]:
    """Values for `count` inserted rows."""
    return [row_values(offset + i + 1) for i in range(count)]


# -- statements ---------------------------------------------------------------------------


def select_by_id(row_id: int) -> sa.Select[typing.Any]:
    """The `fetch_one_select` statement, built the way user code builds it."""
    return sa.select(rows_table).where(rows_table.c.id == row_id)


def select_score_by_id(row_id: int) -> sa.Select[typing.Any]:
    """The `fetch_val` statement."""
    return sa.select(rows_table.c.score).where(rows_table.c.id == row_id)


def select_first_rows() -> sa.Select[typing.Any]:
    """The `fetch_all_1000` statement."""
    return sa.select(rows_table).where(rows_table.c.id <= FETCH_ALL_ROWS)


def select_all_rows() -> sa.Select[typing.Any]:
    """The `iterate_10k` statement."""
    return sa.select(rows_table)


def insert_row() -> sa.Insert:
    """The statement of `insert`, `execute_many_1000` and `transaction_10`."""
    return writes_table.insert()


class PositionalSQL(typing.NamedTuple):
    """A statement compiled for a driver: its SQL and the parameter names in order."""

    sql: str
    names: tuple[str, ...]

    def args(self, values: typing.Mapping[str, typing.Any]) -> tuple[typing.Any, ...]:
        return tuple(values[name] for name in self.names)


def compile_positional(
    statement: sa.ClauseElement,
    dialect: Dialect,
    column_keys: typing.Sequence[str] | None = None,
) -> PositionalSQL:
    """Compile with the driver's dialect, so the raw drivers send the SQL the
    SQLAlchemy-based contenders send."""
    compiled = statement.compile(
        dialect=dialect, column_keys=list(column_keys) if column_keys is not None else None
    )
    names = tuple(typing.cast(typing.Any, compiled).positiontup or ())
    return PositionalSQL(compiled.string, names)


class DriverSQL(typing.NamedTuple):
    """Every statement of the cases, compiled for one driver."""

    select_by_id: PositionalSQL
    text_by_id: PositionalSQL
    score_by_id: PositionalSQL
    first_rows: PositionalSQL
    first_rows_args: tuple[typing.Any, ...]
    all_rows: PositionalSQL
    insert_returning: PositionalSQL
    insert_many: PositionalSQL


def driver_sql(dialect: Dialect) -> DriverSQL:
    by_id = sa.bindparam("id", type_=sa.Integer)
    first = select_first_rows().compile(dialect=dialect)
    first_names = tuple(typing.cast(typing.Any, first).positiontup or ())
    return DriverSQL(
        select_by_id=compile_positional(
            sa.select(rows_table).where(rows_table.c.id == by_id), dialect
        ),
        text_by_id=compile_positional(sa.text(TEXT_SELECT_BY_ID), dialect),
        score_by_id=compile_positional(
            sa.select(rows_table.c.score).where(rows_table.c.id == by_id), dialect
        ),
        first_rows=PositionalSQL(first.string, first_names),
        first_rows_args=tuple(first.params[name] for name in first_names),
        all_rows=compile_positional(select_all_rows(), dialect),
        # A single-row INSERT returns the new id (RETURNING where the dialect does it
        # implicitly, PostgreSQL), like `Database.execute()`; executemany returns nothing.
        insert_returning=compile_positional(insert_row(), dialect, WRITE_COLUMNS),
        insert_many=compile_positional(insert_row().inline(), dialect, WRITE_COLUMNS),
    )


def ddl(backend: str) -> list[str]:
    """Drop and create both tables, in storage that does not sync to disk: UNLOGGED on
    PostgreSQL, ENGINE=MEMORY on MySQL (no TEXT there: VARCHAR), and SQLite's file lives
    under /dev/shm (chosen by the caller)."""
    if backend == "postgresql":
        columns = (
            "name VARCHAR(100) NOT NULL, score DOUBLE PRECISION NOT NULL, "
            "active BOOLEAN NOT NULL, created_at TIMESTAMP NOT NULL"
        )
        return [
            f"DROP TABLE IF EXISTS {ROWS_TABLE}",
            f"DROP TABLE IF EXISTS {WRITES_TABLE}",
            f"CREATE UNLOGGED TABLE {ROWS_TABLE} (id INTEGER PRIMARY KEY, {columns})",
            f"CREATE UNLOGGED TABLE {WRITES_TABLE} (id SERIAL PRIMARY KEY, {columns})",
        ]
    if backend == "mysql":
        columns = (
            "name VARCHAR(100) NOT NULL, score DOUBLE NOT NULL, "
            "active BOOLEAN NOT NULL, created_at DATETIME NOT NULL"
        )
        return [
            # MEMORY tables are sized when created, from this session variable.
            "SET SESSION max_heap_table_size = 268435456",
            f"DROP TABLE IF EXISTS {ROWS_TABLE}",
            f"DROP TABLE IF EXISTS {WRITES_TABLE}",
            f"CREATE TABLE {ROWS_TABLE} (id INT PRIMARY KEY, {columns}) ENGINE=MEMORY",
            f"CREATE TABLE {WRITES_TABLE} (id INT AUTO_INCREMENT PRIMARY KEY, {columns}) "
            "ENGINE=MEMORY",
        ]
    if backend == "sqlite":
        columns = (
            "name VARCHAR(100) NOT NULL, score FLOAT NOT NULL, "
            "active BOOLEAN NOT NULL, created_at DATETIME NOT NULL"
        )
        return [
            f"DROP TABLE IF EXISTS {ROWS_TABLE}",
            f"DROP TABLE IF EXISTS {WRITES_TABLE}",
            f"CREATE TABLE {ROWS_TABLE} (id INTEGER PRIMARY KEY, {columns})",
            f"CREATE TABLE {WRITES_TABLE} (id INTEGER PRIMARY KEY AUTOINCREMENT, {columns})",
        ]
    raise ValueError(f"unknown backend {backend!r}")


def count_writes_statement() -> str:
    return f"SELECT COUNT(*) FROM {WRITES_TABLE}"


def drop_statements() -> list[str]:
    return [f"DROP TABLE IF EXISTS {ROWS_TABLE}", f"DROP TABLE IF EXISTS {WRITES_TABLE}"]


def empty_writes_statement(backend: str) -> str:
    if backend == "sqlite":
        return f"DELETE FROM {WRITES_TABLE}"
    return f"TRUNCATE TABLE {WRITES_TABLE}"


# -- reading every value ------------------------------------------------------------------


def read_by_name(rows: typing.Iterable[typing.Any]) -> int:
    """Read every value of mapping-like rows (`row["name"]`); returns the row count."""
    count = 0
    for row in rows:
        _values = (row["id"], row["name"], row["score"], row["active"], row["created_at"])
        count += 1
    return count


def read_by_attribute(rows: typing.Iterable[typing.Any]) -> int:
    """Read every value of SQLAlchemy `Row`s (`row.name`)."""
    count = 0
    for row in rows:
        _values = (row.id, row.name, row.score, row.active, row.created_at)
        count += 1
    return count


def read_by_index(rows: typing.Iterable[typing.Any]) -> int:
    """Read every value of plain tuples (the default rows of aiomysql and aiosqlite)."""
    count = 0
    for row in rows:
        _values = (row[0], row[1], row[2], row[3], row[4])
        count += 1
    return count
