"""A backend written against the 0.9 contract, registered by a third party, keeps working.

The backend is the example of docs/writing-a-backend.md, run as written: it implements
only the 0.9 methods, so everything else comes from the contract's defaults.
"""

from __future__ import annotations

import copy
import pathlib
import re
import sqlite3
import sys
import typing

import pytest
import sqlalchemy as sa

from databases import Database
from databases.interfaces import (
    DEFAULT_CAPABILITIES,
    ConnectionBackend,
    DatabaseBackend,
    Record,
    capabilities_of,
    in_savepoint,
    is_broken,
)

DOC = pathlib.Path(__file__).parent.parent / "docs" / "writing-a-backend.md"

metadata = sa.MetaData()
notes = sa.Table(
    "notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", sa.String(100)),
)


@pytest.fixture
def mini_backend(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> typing.Iterator[type[DatabaseBackend]]:
    """The documented example as module `mini_backend`, registered for `mini://`."""
    blocks = re.findall(r"```python\n(# mini_backend\.py\n.*?)```", DOC.read_text(), re.DOTALL)
    assert len(blocks) == 1, "the page shows one module named mini_backend.py"
    (tmp_path / "mini_backend.py").write_text(blocks[0])
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(Database.SUPPORTED_BACKENDS, "mini", "mini_backend:MiniBackend")
    import mini_backend

    yield mini_backend.MiniBackend
    sys.modules.pop("mini_backend", None)


@pytest.fixture
def url(tmp_path: pathlib.Path) -> str:
    path = tmp_path / "mini.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    engine.dispose()
    return f"mini:///{path}"


@pytest.mark.asyncio
async def test_queries_run_through_a_0_9_style_backend(
    mini_backend: type[DatabaseBackend], url: str
) -> None:
    async with Database(url) as database:
        # The registered class is the one in use (semi-private API, on purpose).
        assert isinstance(database._backend, mini_backend)
        assert database.dialect.name == "sqlite"
        await database.execute(notes.insert(), {"text": "one"})
        await database.execute_many(notes.insert(), [{"text": "two"}, {"text": "three"}])
        await database.execute("UPDATE notes SET text = :text WHERE id = 3", {"text": "3"})
        rows = await database.fetch_all(sa.select(notes).order_by(notes.c.id))
        assert [(row["id"], row["text"]) for row in rows] == [(1, "one"), (2, "two"), (3, "3")]
        row = await database.fetch_one("SELECT text FROM notes WHERE id = :id", {"id": 2})
        assert row is not None and row[0] == "two"
        assert await database.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 3
        assert [row["text"] async for row in database.iterate(sa.select(notes))] == [
            "one",
            "two",
            "3",
        ]


@pytest.mark.asyncio
async def test_a_0_9_style_row_gets_the_mapping_methods_and_attributes(
    mini_backend: type[DatabaseBackend], url: str
) -> None:
    """The example's row implements only `_mapping`, `__getitem__` and `__len__`: what
    the README shows of rows (`row.name`, `keys()`, `values()`, `dict(row)`) comes from
    the contract, derived from its `_mapping`, as the contract's type declares."""
    async with Database(url) as database:
        await database.execute(notes.insert(), {"text": "one"})
        row = await database.fetch_one(sa.select(notes))
        assert row is not None and type(row).__module__ == "mini_backend"
        assert row.text == "one" and row.id == 1
        assert list(row.keys()) == ["id", "text"]
        assert list(row.values()) == [1, "one"]
        assert list(row.items()) == [("id", 1), ("text", "one")]
        assert dict(row) == {"id": 1, "text": "one"}
        assert list(row) == [1, "one"]  # still the Sequence the 0.9 contract made it
        with pytest.raises(AttributeError, match="no column 'missing'; columns: id, text"):
            _ = row.missing
        assert not hasattr(row, "_private")
        clone = copy.copy(row)
        assert clone.text == "one" and dict(clone) == dict(row)
        # A row whose slots are not filled yet (as while being copied) asks for no column.
        empty = type(row).__new__(type(row))
        with pytest.raises(AttributeError):
            _ = empty.text


def test_a_row_without_a_mapping_has_no_attributes() -> None:
    """A 0.9 row class may leave `_mapping` unimplemented: attribute access then finds no
    column (`hasattr` is False) instead of raising NotImplementedError."""

    class Positional(Record):
        __slots__ = ()

        def __getitem__(self, key: typing.Any) -> typing.Any:
            return ("one",)[key]

        def __len__(self) -> int:
            return 1

    row = Positional()
    assert row[0] == "one" and list(row) == ["one"]
    assert not hasattr(row, "text")
    with pytest.raises(NotImplementedError):
        row.keys()


@pytest.mark.asyncio
async def test_transactions_run_through_a_0_9_style_backend(
    mini_backend: type[DatabaseBackend], url: str
) -> None:
    async with Database(url) as database:
        async with database.connection() as connection:
            async with connection.transaction():
                await connection.execute(notes.insert(), {"text": "kept"})
                with pytest.raises(RuntimeError, match="inner"):
                    async with connection.transaction():
                        await connection.execute(notes.insert(), {"text": "undone"})
                        raise RuntimeError("inner")
            transaction = await connection.transaction()
            await connection.execute(notes.insert(), {"text": "rolled back"})
            await transaction.rollback()
        texts = [row["text"] for row in await database.fetch_all(sa.select(notes))]
        assert texts == ["kept"]


@pytest.mark.asyncio
async def test_force_rollback_through_a_0_9_style_backend(
    mini_backend: type[DatabaseBackend], url: str
) -> None:
    async with Database(url, force_rollback=True) as database:
        await database.execute(notes.insert(), {"text": "gone"})
        assert await database.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 1
    async with Database(url) as database:
        assert await database.fetch_all(sa.select(notes)) == []


@pytest.mark.asyncio
async def test_force_rollback_savepoints_through_a_0_9_style_backend(
    mini_backend: type[DatabaseBackend], url: str
) -> None:
    """The default `_in_savepoint()`: its nested transaction undoes the failing statement."""
    async with Database(url, force_rollback=True, force_rollback_savepoints=True) as database:
        await database.execute(notes.insert(), {"id": 1, "text": "kept"})
        with pytest.raises(sqlite3.IntegrityError):
            await database.execute(notes.insert(), {"id": 1, "text": "duplicate"})
        await database.execute(notes.insert(), {"id": 2, "text": "also kept"})
        assert [row["text"] for row in await database.fetch_all(sa.select(notes))] == [
            "kept",
            "also kept",
        ]
    async with Database(url) as database:
        assert await database.fetch_all(sa.select(notes)) == []


@pytest.mark.asyncio
async def test_a_0_9_style_backend_gets_the_default_hooks_and_capabilities(
    mini_backend: type[DatabaseBackend], url: str
) -> None:
    async with Database(url) as database:
        assert database.pool_stats() is None
        # The hooks are called on the backend itself (semi-private API, on purpose).
        backend = database._backend
        assert backend.for_new_loop() is None
        connection = backend.statement_connection()
        assert type(connection) is type(backend.connection())
        assert capabilities_of(connection) is DEFAULT_CAPABILITIES
        backend.terminate()
        backend.release_shared()


def test_a_connection_not_derived_from_ours_gets_the_default_capabilities() -> None:
    class Bare:
        capabilities = "not ours"

    assert capabilities_of(Bare()) is DEFAULT_CAPABILITIES
    assert ConnectionBackend.capabilities is DEFAULT_CAPABILITIES
    assert is_broken(Bare()) is False


@pytest.mark.asyncio
async def test_a_connection_not_derived_from_ours_gets_the_default_savepoints() -> None:
    """`in_savepoint()` sets a savepoint through the connection's `transaction()`, and
    rolls it back when the statement fails."""
    steps: list[str] = []

    class Savepoint:
        async def start(self, is_root: bool, extra_options: dict[str, typing.Any]) -> None:
            steps.append(f"start root={is_root}")

        async def commit(self) -> None:
            steps.append("release")

        async def rollback(self) -> None:
            steps.append("rollback")

    class Bare:
        def transaction(self) -> Savepoint:
            return Savepoint()

    async def statement(value: int) -> int:
        if value < 0:
            raise ValueError("refused")
        return value

    assert await in_savepoint(Bare(), statement, 1) == 1
    with pytest.raises(ValueError, match="refused"):
        await in_savepoint(Bare(), statement, -1)
    assert steps == ["start root=False", "release", "start root=False", "rollback"]


def test_a_backend_without_a_dialect_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoDialect(DatabaseBackend):
        def __init__(self, database_url: object, **options: object) -> None:
            pass

    monkeypatch.setitem(Database.SUPPORTED_BACKENDS, "nodialect", NoDialect)
    with pytest.raises(AttributeError, match="NoDialect does not name its SQLAlchemy dialect"):
        Database("nodialect:///x").dialect  # noqa: B018


@pytest.mark.asyncio
async def test_run_sync_on_a_0_9_style_backend_says_it_is_not_supported(
    mini_backend: type[DatabaseBackend], url: str
) -> None:
    async with Database(url) as database:
        with pytest.raises(
            NotImplementedError, match=r"run_sync\(\) is not supported by MiniConnection"
        ):
            await database.run_sync(lambda connection: None)
        with pytest.raises(NotImplementedError, match="MiniConnection"):
            await database.create_all(sa.MetaData())
        # The connection is released and works on.
        assert await database.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 0
