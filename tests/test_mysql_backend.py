"""The MySQL backends (aiomysql, and asyncmy on the same code) against a real MySQL/MariaDB
server.

The tests that need a server run on each MySQL URL of `TEST_DATABASE_URLS` through the
`database_url` fixture, whichever driver it names: a `mysql+asyncmy://` URL runs them through
the asyncmy backend. Tables are created per test with names unique to this run, so parallel
runs against the same server do not collide. What the server stored is read from outside with
plain PyMySQL (`tests.admin`).
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import enum
import gc
import importlib
import typing
import uuid
import warnings
from urllib.parse import unquote, urlsplit

import pymysql
import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.dialects import mysql as mysql_types
from sqlalchemy.schema import CreateTable, DropTable

from databases import Database, DatabaseURL
from databases.backends.mysql import MySQLBackend, MySQLConnection
from databases.importer import import_from_string
from tests import admin

pytestmark = pytest.mark.dialects("mysql")


@pytest.fixture
def driver(database_url: str) -> typing.Any:
    """The driver module the URL runs on (`aiomysql` or `asyncmy`)."""
    return importlib.import_module(admin.driver_name(database_url))


def _plain_connect(url: str) -> typing.Any:
    """A plain PyMySQL autocommit connection of its own, to act from outside the library."""
    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=unquote(parts.path.lstrip("/")) or None,
        autocommit=True,
        connect_timeout=3,
    )


# -- tables ---------------------------------------------------------------------------------

SUFFIX = uuid.uuid4().hex[:10]
metadata = sa.MetaData()


class Mood(enum.Enum):
    happy = "happy"
    sad = "sad"


class Marked(sa.types.TypeDecorator[str]):
    """Adds a mark on the way in and another on the way out: each applied exactly once."""

    impl = sa.String(50)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else f">{value}"

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else f"{value}!"


types_table = sa.Table(
    f"mysqltest_types_{SUFFIX}",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("data", sa.JSON),
    sa.Column("amount", sa.Numeric(20, 6)),
    sa.Column("created", sa.DateTime),
    sa.Column("precise", mysql_types.DATETIME(fsp=6)),
    sa.Column("day", sa.Date),
    sa.Column("at", sa.Time),
    sa.Column("mood", sa.Enum(Mood)),
    sa.Column("flag", sa.Boolean),
    sa.Column("blob", sa.LargeBinary),
    sa.Column("marked", Marked),
)

items = sa.Table(
    f"mysqltest_items_{SUFFIX}",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("label", sa.String(100)),
    mysql_engine="InnoDB",
)


@pytest_asyncio.fixture
async def database(database_url: str) -> typing.AsyncIterator[Database]:
    """A connected database with this module's tables, dropped again afterwards."""
    async with Database(database_url) as database:
        for table in metadata.sorted_tables:
            await database.execute(CreateTable(table))
        try:
            yield database
        finally:
            for table in reversed(metadata.sorted_tables):
                await database.execute(DropTable(table, if_exists=True))


def items_count(url: str) -> int:
    return int(admin.raw_fetch_all(url, f"SELECT COUNT(*) FROM {items.name}")[0][0])


def committed_labels(url: str) -> list[str]:
    rows = admin.raw_fetch_all(url, f"SELECT label FROM {items.name} ORDER BY id")
    return [row[0] for row in rows]


async def fill_items(database: Database, count: int) -> None:
    await database.execute_many(
        items.insert(), [{"number": number, "label": f"item {number}"} for number in range(count)]
    )


# -- options ----------------------------------------------------------------------------------


def kwargs_of(url: str, **options: typing.Any) -> dict[str, typing.Any]:
    # `_backend._get_connection_kwargs()`: semi-private API of 0.9, tested on purpose.
    backend = Database(url, **options)._backend
    assert isinstance(backend, MySQLBackend)
    return backend._get_connection_kwargs()


def test_connection_kwargs_from_url() -> None:
    assert kwargs_of("mysql://localhost/database") == {}
    assert kwargs_of("mysql://localhost/database?min_size=1&max_size=20") == {
        "minsize": 1,
        "maxsize": 20,
    }
    # Ours, for every backend (tests/test_pool_health.py), never aiomysql's.
    assert kwargs_of("mysql://localhost/database?pool_recycle=20") == {}
    assert kwargs_of("mysql://localhost/database?ssl=true") == {"ssl": True}
    assert kwargs_of("mysql://localhost/database?ssl=False") == {"ssl": False}
    assert kwargs_of("mysql://localhost/database?unix_socket=/tmp/mysqld/mysqld.sock") == {
        "unix_socket": "/tmp/mysqld/mysqld.sock"
    }
    with pytest.raises(ValueError, match="true or false"):
        kwargs_of("mysql://localhost/database?ssl=sometimes")


def test_connection_kwargs_from_options() -> None:
    assert kwargs_of("mysql://localhost/database", min_size=1, max_size=20) == {
        "minsize": 1,
        "maxsize": 20,
    }
    assert kwargs_of("mysql://localhost/database?min_size=2&ssl=true", min_size=5, ssl=False) == {
        "minsize": 5,
        "ssl": False,
    }
    assert kwargs_of("mysql://localhost/database", pool_recycle=30, local_infile=True) == {
        "local_infile": True
    }

    def password() -> str:
        return "secret"

    kwargs = kwargs_of("mysql://localhost/database", password=password)
    assert kwargs["password"] is password


def test_pool_kwargs() -> None:
    backend = MySQLBackend("mysql+aiomysql://user:p%40ss@db.example:3307/name?max_size=3")
    assert backend._pool_kwargs() == {
        "host": "db.example",
        "port": 3307,
        "user": "user",
        "password": "p@ss",
        "db": "name",
        "autocommit": True,
        # The TCP part of connect_timeout (10 s by default) also bounds the connections
        # the pool opens later.
        "connect_timeout": 10.0,
        "maxsize": 3,
    }
    overridden = MySQLBackend("mysql://user:old@localhost/name", password="new", port=3310)
    kwargs = overridden._pool_kwargs()
    assert (kwargs["password"], kwargs["port"], kwargs["host"]) == ("new", 3310, "localhost")
    assert MySQLBackend("mysql://localhost/name")._pool_kwargs()["port"] == 3306


def test_dialect(database_url: str) -> None:
    dialect = Database(database_url).dialect
    assert dialect.name == "mysql"
    assert dialect.paramstyle == "format"


def test_asyncmy_module_imports_without_the_driver() -> None:
    from databases.backends import asyncmy as asyncmy_backend

    assert asyncmy_backend.AsyncMyBackend is not None
    try:
        import asyncmy  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="asyncmy"):
            Database("mysql+asyncmy://localhost/database")
    else:  # pragma: no cover - asyncmy installed
        # `_backend`: semi-private API, on purpose (the dialect is aiomysql's too).
        assert isinstance(
            Database("mysql+asyncmy://localhost/database")._backend,
            asyncmy_backend.AsyncMyBackend,
        )


# -- values -----------------------------------------------------------------------------------

JSON_OBJECT = {"text": "héllo ✓", "list": [1, 2.5, None, True], "nested": {"a": {"b": []}}}
JSON_ARRAY = [1, "two", {"three": 3}, [4], None, False]
AMOUNT = decimal.Decimal("12345678901234.123456")
CREATED = datetime.datetime(2024, 2, 29, 23, 59, 58)
PRECISE = datetime.datetime(2024, 2, 29, 23, 59, 58, 123456)
DAY = datetime.date(1999, 12, 31)
AT = datetime.time(13, 14, 15)
BLOB = bytes(range(256)) + b"\xff\xfe\x00'\"\\%s%%"


def full_row(**changes: typing.Any) -> dict[str, typing.Any]:
    row = {
        "data": JSON_OBJECT,
        "amount": AMOUNT,
        "created": CREATED,
        "precise": PRECISE,
        "day": DAY,
        "at": AT,
        "mood": Mood.sad,
        "flag": True,
        "blob": BLOB,
        "marked": "value",
    }
    row.update(changes)
    return row


def check_full_row(row: typing.Any, **changes: typing.Any) -> None:
    expected = full_row(**changes)
    assert row["data"] == expected["data"]
    assert row["amount"] == expected["amount"]
    assert isinstance(row["amount"], decimal.Decimal)
    assert str(row["amount"]) == str(expected["amount"])
    assert row["created"] == expected["created"]
    assert row["precise"] == expected["precise"]
    assert row["day"] == expected["day"] and type(row["day"]) is datetime.date
    assert row["at"] == expected["at"] and isinstance(row["at"], datetime.time)
    assert row["mood"] is expected["mood"]
    assert row["flag"] is expected["flag"]
    assert row["blob"] == expected["blob"] and isinstance(row["blob"], bytes)
    assert row["marked"] == f">{expected['marked']}!"


@pytest.mark.asyncio
async def test_type_round_trips(database_url: str, database: Database) -> None:
    table = types_table
    first = await database.execute(table.insert(), full_row())
    second = await database.execute(
        table.insert(), full_row(data=JSON_ARRAY, flag=False, mood=Mood.happy, blob=b"\x80\x81")
    )
    assert (first, second) == (1, 2)

    rows = await database.fetch_all(sa.select(table).order_by(table.c.id))
    check_full_row(rows[0])
    check_full_row(rows[1], data=JSON_ARRAY, flag=False, mood=Mood.happy, blob=b"\x80\x81")
    assert rows[0][table.c.mood] is Mood.sad and rows[0].mood is Mood.sad

    one = await database.fetch_one(sa.select(table).where(table.c.id == second))
    assert one is not None
    check_full_row(one, data=JSON_ARRAY, flag=False, mood=Mood.happy, blob=b"\x80\x81")

    streamed = [row async for row in database.iterate(sa.select(table).order_by(table.c.id))]
    check_full_row(streamed[0])
    check_full_row(streamed[1], data=JSON_ARRAY, flag=False, mood=Mood.happy, blob=b"\x80\x81")

    select_first = sa.select(table).where(table.c.id == first)
    assert await database.fetch_val(select_first, column="data") == JSON_OBJECT
    assert await database.fetch_val(select_first, column=table.c.amount) == AMOUNT
    assert await database.fetch_val(select_first, column="blob") == BLOB
    assert await database.fetch_val(sa.select(table.c.data).where(table.c.id == 2)) == JSON_ARRAY
    assert await database.fetch_val(sa.select(table.c.marked).where(table.c.id == 1)) == ">value!"
    assert await database.fetch_val(sa.select(table.c.at).where(table.c.id == 1)) == AT
    assert await database.fetch_val(sa.select(table.c.flag).where(table.c.id == 2)) is False

    # What the server really stored: one bind mark, JSON text, exact bytes.
    stored = admin.raw_fetch_all(
        database_url, f"SELECT marked, `blob`, amount FROM {table.name} ORDER BY id"
    )
    assert stored[0] == (">value", BLOB, AMOUNT)
    assert stored[1][1] == b"\x80\x81"

    # Values bound by a WHERE clause go through the bind processors too.
    found = await database.fetch_val(
        sa.select(table.c.id).where(table.c.blob == BLOB, table.c.mood == Mood.sad)
    )
    assert found == first
    assert await database.fetch_val(sa.select(table.c.id).where(table.c.marked == "value")) == 1

    nulls = await database.execute(table.insert(), {"data": None})
    null_row = await database.fetch_one(sa.select(table).where(table.c.id == nulls))
    assert null_row is not None
    assert all(null_row[name] is None for name in full_row())


@pytest.mark.asyncio
async def test_raw_sql_and_percent_signs(database_url: str, database: Database) -> None:
    for label in ["apple", "avocado", "banana", "50% off", "a%b"]:
        await database.execute(items.insert(), {"number": 1, "label": label})

    rows = await database.fetch_all(
        f"SELECT label FROM {items.name} WHERE label LIKE 'a%' ORDER BY label"
    )
    assert [row["label"] for row in rows] == ["a%b", "apple", "avocado"]
    rows = await database.fetch_all(
        f"SELECT label FROM {items.name} WHERE label LIKE :pattern ORDER BY label",
        {"pattern": "%\\%%"},
    )
    assert [row[0] for row in rows] == ["50% off", "a%b"]
    assert await database.fetch_val("SELECT CONCAT(:value, '%')", {"value": "100"}) == "100%"
    assert await database.fetch_val("SELECT '%s %%'") == "%s %%"
    # The rows changed (as in 0.9): a%b, apple, avocado.
    updated = await database.execute(f"UPDATE {items.name} SET number = 2 WHERE label LIKE 'a%'")
    assert updated == 3
    assert items_count(database_url) == 5
    rows = await database.fetch_all(sa.text(f"SELECT number FROM {items.name} WHERE number = 2"))
    assert len(rows) == 3
    async for row in database.iterate(f"SELECT label FROM {items.name} WHERE label LIKE '%\\%%'"):
        assert "%" in row.label


@pytest.mark.asyncio
async def test_execute_returns_lastrowid(database: Database) -> None:
    first = await database.execute(items.insert(), {"number": 1, "label": "one"})
    second = await database.execute(items.insert().values(number=2, label="two"))
    third = await database.execute(
        f"INSERT INTO {items.name} (number, label) VALUES (:number, :label)",
        {"number": 3, "label": "three"},
    )
    assert second == first + 1 and third == second + 1
    rows = await database.fetch_all(sa.select(items.c.id, items.c.label).order_by(items.c.id))
    assert [tuple(row._mapping.values()) for row in rows] == [
        (first, "one"),
        (second, "two"),
        (third, "three"),
    ]


@pytest.mark.asyncio
async def test_execute_many(database_url: str, database: Database) -> None:
    await fill_items(database, 1000)
    assert items_count(database_url) == 1000
    total = await database.fetch_val(sa.select(sa.func.sum(items.c.number)))
    assert total == sum(range(1000))
    await database.execute_many(
        f"UPDATE {items.name} SET label = :label WHERE number = :number",
        [{"label": f"changed {n}", "number": n} for n in range(10)],
    )
    changed = await database.fetch_val(
        sa.select(sa.func.count()).where(items.c.label.like("changed %"))
    )
    assert changed == 10
    await database.execute_many(items.insert(), [])
    assert items_count(database_url) == 1000


# -- streaming --------------------------------------------------------------------------------

ROWS = 10_000


async def run_queries_meanwhile(
    database: Database, stop: asyncio.Event, limit: int = 1_000_000
) -> int:
    """Keep querying until `stop` is set (or `limit` rounds ran); how many rounds ran."""
    count = 0
    while not stop.is_set() and count < limit:
        assert await database.fetch_val("SELECT 40 + 2") == 42
        assert await database.fetch_val(sa.select(items.c.label).where(items.c.id == 7)) == (
            "item 6"
        )
        count += 1
        await asyncio.sleep(0)
    return count


async def iterate_all(database: Database, stop: asyncio.Event, pause_every: int = 100) -> list[int]:
    numbers: list[int] = []
    try:
        query = sa.select(items.c.number).order_by(items.c.id)
        async for row in database.iterate(query):
            numbers.append(row.number)
            if len(numbers) % pause_every == 0:
                await asyncio.sleep(0)
    finally:
        stop.set()
    return numbers


@pytest.mark.asyncio
async def test_iterate_while_other_tasks_query(database: Database) -> None:
    await fill_items(database, ROWS)
    stop = asyncio.Event()
    numbers, *counts = await asyncio.gather(
        iterate_all(database, stop), *(run_queries_meanwhile(database, stop) for _ in range(3))
    )
    assert numbers == list(range(ROWS))
    assert all(count > 0 for count in counts)


@pytest.mark.asyncio
async def test_iterate_on_a_shared_connection(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """force_rollback: every task shares one connection, and queries run between rows."""
    drained = []
    settle = MySQLConnection._settle

    async def counting_settle(self: MySQLConnection) -> None:
        if self._stream is not None:
            drained.append(self._stream)
        await settle(self)

    monkeypatch.setattr(MySQLConnection, "_settle", counting_settle)
    async with Database(database_url) as setup:
        await setup.execute(CreateTable(items))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            async with Database(database_url, force_rollback=True) as database:
                await fill_items(database, ROWS)
                stop = asyncio.Event()
                numbers, *counts = await asyncio.gather(
                    iterate_all(database, stop, pause_every=250),
                    *(run_queries_meanwhile(database, stop, limit=20) for _ in range(3)),
                )
                assert numbers == list(range(ROWS))
                assert all(count > 0 for count in counts)
                # The queries really met an open stream, which was read off into memory.
                assert len(drained) == 1

                # A write between rows, in the shared transaction.
                query = sa.select(items.c.number).where(items.c.number < 5).order_by(items.c.id)
                seen = []
                async for row in database.iterate(query):
                    seen.append(row.number)
                    await database.execute(items.insert(), {"number": -1, "label": "meanwhile"})
                assert seen == [0, 1, 2, 3, 4]
                assert (
                    await database.fetch_val(sa.select(sa.func.count()).where(items.c.number == -1))
                    == 5
                )

                # Nested iteration over the same connection.
                pairs = []
                outer = (
                    sa.select(items.c.number)
                    .where(items.c.number.between(0, 2))
                    .order_by(items.c.id)
                )
                async for row in database.iterate(outer):
                    async for inner in database.iterate(outer):
                        pairs.append((row.number, inner.number))
                assert pairs == [(a, b) for a in range(3) for b in range(3)]

                # Abandoning a stream leaves the connection usable.
                async for _row in database.iterate(sa.select(items.c.number)):
                    break
                assert await database.fetch_val("SELECT 1") == 1

                # A savepoint opened and closed between rows.
                async for _row in database.iterate(outer):
                    async with database.transaction():
                        await database.execute(items.insert(), {"number": -2, "label": "sp"})
                assert (
                    await database.fetch_val(sa.select(sa.func.count()).where(items.c.number == -2))
                    == 3
                )
            assert items_count(database_url) == 0  # everything was rolled back
        stray = [str(w.message) for w in caught if "unbuffered" in str(w.message)]
        assert stray == []
    finally:
        admin.raw_execute(database_url, f"DROP TABLE IF EXISTS {items.name}")


@pytest.mark.asyncio
async def test_iterate_abandoned_and_resumed(database: Database) -> None:
    await fill_items(database, 3000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with database.connection() as connection:
            query = sa.select(items.c.number).order_by(items.c.id)
            async for row in connection.iterate(query):
                if row.number == 10:
                    break
            assert await connection.fetch_val(sa.select(sa.func.count()).select_from(items)) == 3000

            # An iterator left open while the same task queries on its connection.
            rows = connection.iterate(query)
            assert (await rows.__anext__()).number == 0
            assert await connection.fetch_val("SELECT 7") == 7
            rest = [row.number async for row in rows]
            assert rest == list(range(1, 3000))
            backend_connection = connection._connection
            assert isinstance(backend_connection, MySQLConnection)
            assert backend_connection._stream is None
    assert [str(w.message) for w in caught if "unbuffered" in str(w.message)] == []


# -- transactions -----------------------------------------------------------------------------


async def set_number(url: str, label: str, number: int) -> None:
    admin.raw_execute(url, f"UPDATE {items.name} SET number = {number} WHERE label = '{label}'")


@pytest.mark.asyncio
async def test_isolation_levels_are_applied(database_url: str, database: Database) -> None:
    await database.execute(items.insert(), {"number": 1, "label": "x"})
    read = sa.select(items.c.number).where(items.c.label == "x")

    async with database.connection() as connection:
        # REPEATABLE READ: a row read once stays the same inside the transaction.
        async with connection.transaction(isolation="repeatable_read"):
            assert await connection.fetch_val(read) == 1
            await set_number(database_url, "x", 2)
            assert await connection.fetch_val(read) == 1

        # READ COMMITTED: the outside commit becomes visible.
        async with connection.transaction(isolation="READ COMMITTED"):
            assert await connection.fetch_val(read) == 2
            await set_number(database_url, "x", 3)
            assert await connection.fetch_val(read) == 3

        # READ UNCOMMITTED: even another connection's uncommitted write is seen.
        other = _plain_connect(database_url)
        try:
            async with connection.transaction(isolation="Read_Uncommitted"):
                with other.cursor() as cursor:
                    cursor.execute("BEGIN")
                    cursor.execute(f"UPDATE {items.name} SET number = 99 WHERE label = 'x'")
                    assert await connection.fetch_val(read) == 99
                    cursor.execute("ROLLBACK")
        finally:
            other.close()

        # SERIALIZABLE: plain reads take shared locks, so an outside write has to wait.
        other = _plain_connect(database_url)
        try:
            async with connection.transaction(isolation="serializable"):
                assert await connection.fetch_val(read) == 3
                with other.cursor() as cursor:
                    cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")
                    with pytest.raises(pymysql.err.OperationalError) as blocked:
                        cursor.execute(f"UPDATE {items.name} SET number = 4 WHERE label = 'x'")
                    assert blocked.value.args[0] == 1205  # lock wait timeout
        finally:
            other.close()

        # The level was for that transaction only: the default (REPEATABLE READ) is back.
        async with connection.transaction():
            assert await connection.fetch_val(read) == 3
            await set_number(database_url, "x", 5)
            assert await connection.fetch_val(read) == 3
        assert await connection.fetch_val("SELECT @@tx_isolation") == "REPEATABLE-READ"


@pytest.mark.asyncio
async def test_transaction_options_are_checked(database_url: str, database: Database) -> None:
    async with database.connection() as connection:
        with pytest.raises(ValueError, match="read_committed"):
            async with connection.transaction(isolation="chaotic"):
                pass  # pragma: no cover
        with pytest.raises(TypeError, match="isolation"):
            async with connection.transaction(readonly=True):
                pass  # pragma: no cover
        assert not connection.in_transaction()
        assert not connection.raw_connection.get_transaction_status()
        async with connection.transaction(isolation=None):
            await connection.execute(items.insert(), {"number": 1, "label": "ok"})
    assert committed_labels(database_url) == ["ok"]


@pytest.mark.asyncio
async def test_savepoints(database_url: str, database: Database) -> None:
    insert = items.insert()
    async with database.connection() as connection, connection.transaction():
        await connection.execute(insert, {"number": 1, "label": "outer"})
        with pytest.raises(RuntimeError, match="inner failure"):
            async with connection.transaction():
                await connection.execute(insert, {"number": 2, "label": "rolled back"})
                raise RuntimeError("inner failure")
        async with connection.transaction():
            await connection.execute(insert, {"number": 3, "label": "inner"})
            inner = await connection.transaction()
            await connection.execute(insert, {"number": 4, "label": "deepest"})
            await inner.rollback()
        assert committed_labels(database_url) == []  # nothing committed before the root commits
        labels = await connection.fetch_all(sa.select(items.c.label).order_by(items.c.id))
        assert [row.label for row in labels] == ["outer", "inner"]
    assert committed_labels(database_url) == ["outer", "inner"]

    async with database.transaction(force_rollback=True):
        await database.execute(insert, {"number": 5, "label": "never"})
    assert committed_labels(database_url) == ["outer", "inner"]


@pytest.mark.asyncio
async def test_release_rolls_back_an_open_transaction(
    database_url: str, database: Database
) -> None:
    async with Database(database_url, min_size=1, max_size=1) as single:
        async with single.connection() as connection:
            raw = connection.raw_connection
            await connection.execute("BEGIN")
            await connection.execute(items.insert(), {"number": 1, "label": "dirty"})
            assert raw.get_transaction_status()
        assert committed_labels(database_url) == []

        async with single.connection() as connection:
            assert connection.raw_connection is raw  # the pool kept the connection
            assert not raw.get_transaction_status()
            assert await connection.fetch_val(sa.select(sa.func.count()).select_from(items)) == 0


@pytest.mark.asyncio
async def test_raw_connection(driver: typing.Any, database: Database) -> None:
    async with database.connection() as connection:
        raw = connection.raw_connection
        assert isinstance(raw, driver.Connection)
        async with raw.cursor() as cursor:
            await cursor.execute("SELECT 1")
            assert await cursor.fetchone() == (1,)
    with pytest.raises(RuntimeError, match="not acquired"):
        _ = database.connection().raw_connection


# -- connecting and disconnecting -------------------------------------------------------------


@pytest.mark.asyncio
async def test_connect_failure_is_reported(driver: typing.Any, database_url: str) -> None:
    parts = urlsplit(database_url)
    host = f"{parts.hostname}:{parts.port or 3306}"
    database = Database(f"{parts.scheme}://nobody-{SUFFIX}:wrong@{host}{parts.path}")
    with pytest.raises(driver.OperationalError):
        await database.connect()


@pytest.mark.asyncio
async def test_disconnect_does_not_wait_for_connections_in_use(database_url: str) -> None:
    database = Database(database_url)
    await database.connect()
    holding = asyncio.Event()
    finish = asyncio.Event()

    async def hold() -> None:
        async with database.connection() as connection:
            await connection.fetch_val("SELECT 1")
            holding.set()
            await finish.wait()

    task = asyncio.create_task(hold())
    await holding.wait()
    await asyncio.wait_for(database.disconnect(), timeout=10)
    # disconnect() returned while the connection was still held, and disconnected.
    assert not task.done()
    assert not database.is_connected
    finish.set()
    await asyncio.wait_for(task, timeout=10)


def transport_of(connection: typing.Any) -> typing.Any:
    writer = getattr(connection, "_writer", None)  # aiomysql
    return writer.transport if writer is not None else connection._transport  # asyncmy


def test_terminate_after_the_loop_closed(database_url: str) -> None:
    """A closed loop's connections are dropped without awaiting and without errors."""
    # The class registered for the URL's scheme (aiomysql's or asyncmy's).
    scheme = DatabaseURL(database_url).scheme
    backend_class = import_from_string(Database.SUPPORTED_BACKENDS[scheme])
    backend = typing.cast(MySQLBackend, backend_class(database_url, min_size=2))
    assert isinstance(backend, MySQLBackend)
    loop = asyncio.new_event_loop()
    connection = backend.connection()

    async def use() -> typing.Any:
        await backend.connect()
        await connection.acquire()
        assert await connection.fetch_val(sa.text("SELECT 5")) == 5
        return connection.raw_connection

    raw = loop.run_until_complete(use())
    pool = backend._pool
    loop.close()
    sockets = [transport_of(conn).get_extra_info("socket") for conn in pool._used]
    sockets += [transport_of(conn).get_extra_info("socket") for conn in pool._free]
    assert len(sockets) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backend.terminate()
        backend.terminate()  # again: nothing left, no error
        assert backend._is_closed(raw)
        assert all(sock.fileno() == -1 for sock in sockets)
        del raw, pool, sockets
        gc.collect()


@pytest.mark.asyncio
async def test_cancelled_query_frees_its_pool_slot(database_url: str) -> None:
    """A query cancelled mid-way leaves a broken connection: it is dropped, and a task
    waiting for the (single) pool slot gets a fresh connection instead of hanging."""
    async with Database(database_url, min_size=0, max_size=1) as database:
        started = asyncio.Event()

        async def slow() -> None:
            async with database.connection() as connection:
                started.set()
                await connection.fetch_val("SELECT SLEEP(5)")

        async def waiting() -> typing.Any:
            async with database.connection() as connection:
                return await connection.fetch_val("SELECT CONNECTION_ID()")

        slow_task = asyncio.create_task(slow())
        await started.wait()
        await asyncio.sleep(0.2)
        waiting_task = asyncio.create_task(waiting())
        await asyncio.sleep(0.1)
        assert not waiting_task.done()  # the only connection is busy
        slow_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow_task
        assert isinstance(await asyncio.wait_for(waiting_task, timeout=3), int)
        assert await database.fetch_val("SELECT 1") == 1
