"""What mypy --strict must infer for result rows and the query methods, and refuse.

`scripts/check` type-checks this module: an `assert_type` fails as soon as a declaration
changes what it says (to `Any`, say), and a `# type: ignore[code]` below fails as unused
once mypy stops refusing its line (strict mode reports unused ignores).
`tests/test_record_typing.py` runs the same functions on every test database, so that the
declared types are the ones the rows really have. It imports nothing of pytest: mypy
checks this module for Python 3.9, which pytest's own sources no longer parse as.
"""

from __future__ import annotations

import typing
from collections.abc import ItemsView, KeysView, Mapping, Sequence, ValuesView

import sqlalchemy as sa
from typing_extensions import assert_type

from databases import Database
from databases._force_rollback import SessionConnection
from databases.backends.common.record_mapping import RecordKeys, RecordMapping
from databases.backends.common.records import Record as BundledRecord
from databases.core import Connection
from databases.interfaces import Record

ID = sa.literal(1, sa.Integer).label("id")
NAME = sa.literal("Ada", sa.String(10)).label("name")
QUERY = sa.select(ID, NAME)

# Checked once for each of the three: a constrained type variable, unlike a union (which
# mypy would reduce to `Database | Connection`), keeps the subclass's own declarations.
Source = typing.TypeVar("Source", Database, Connection, SessionConnection)


async def check_queries(source: Source) -> None:
    """Every query method of `source` returns rows typed as `Record`."""
    rows = await source.fetch_all(QUERY)
    assert_type(rows, list[Record])
    assert len(rows) == 1
    check_row(rows[0])

    row = await source.fetch_one(QUERY, values=None)
    assert_type(row, typing.Optional[Record])
    assert row is not None
    check_row(row)

    assert_type(await source.fetch_val(QUERY, column="name"), typing.Any)
    assert await source.fetch_val(QUERY, column=NAME) == "Ada"
    assert await source.fetch_val(QUERY, column=1) == "Ada"

    iterated = 0
    async for each in source.iterate(QUERY):
        assert_type(each, Record)
        check_row(each)
        iterated += 1
    async for batch in source.batched_iterate(QUERY, batch_size=10):
        assert_type(batch, list[Record])
        assert len(batch) == 1
        check_row(batch[0])
        iterated += 1
    assert iterated == 2


def check_row(row: Record) -> None:
    """What any backend's row offers (`databases.interfaces.Record`)."""
    assert_type(row["name"], typing.Any)
    assert_type(row[1], typing.Any)
    assert_type(row[NAME], typing.Any)
    assert_type(row.name, typing.Any)
    assert row["name"] == row[1] == row[-1] == row[NAME] == row.name == "Ada"

    assert_type(row[0:2], Sequence[typing.Any])
    assert list(row[0:2]) == [1, "Ada"]

    assert_type(row.keys(), KeysView[str])
    assert_type(row.values(), ValuesView[typing.Any])
    assert_type(row.items(), ItemsView[str, typing.Any])
    assert list(row.keys()) == ["id", "name"]
    assert list(row.values()) == [1, "Ada"]
    assert list(row.items()) == [("id", 1), ("name", "Ada")]

    assert_type(row._mapping, Mapping[typing.Any, typing.Any])
    assert row._mapping["name"] == row._mapping[NAME] == "Ada"
    assert_type(dict(row), dict[str, typing.Any])
    assert dict(row) == {"id": 1, "name": "Ada"}
    assert_type(len(row), int)
    assert len(row) == 2
    assert_type("name" in row, bool)

    if isinstance(row, BundledRecord):
        check_bundled_row(row)


def check_bundled_row(row: BundledRecord) -> None:
    """What the bundled backends' rows declare beyond the contract."""
    assert_type(row[0:2], tuple[typing.Any, ...])
    assert row[0:2] == (1, "Ada")
    assert_type([key for key in row], list[str])  # iterating gives the names
    assert list(row) == ["id", "name"]
    assert "name" in row
    assert_type(row.keys(), RecordKeys)
    assert_type(row._mapping, RecordMapping)
    assert_type(list(row._mapping), list[str])
    assert_type(row._mapping.get(NAME), typing.Any)
    assert row._mapping.get(NAME) == row.get(NAME) == "Ada"
    assert row.get("missing", 0) == 0


async def _refused(database: Database, row: Record, bundled: BundledRecord) -> None:
    """mypy's half only (never run): each line must stay an error."""
    row[1.5]  # type: ignore[call-overload]
    row[None]  # type: ignore[call-overload]
    bundled[b"name"]  # type: ignore[call-overload]
    bundled.get(1.5)  # type: ignore[arg-type]
    row.keys().upper()  # type: ignore[attr-defined]
    _ = (await database.fetch_one(QUERY)).name  # type: ignore[union-attr]
    await database.fetch_val(QUERY, column=1.5)  # type: ignore[arg-type]
