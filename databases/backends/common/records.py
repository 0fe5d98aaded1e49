"""Result rows, converted once when they are built.

A `RecordShape` is worked out once per statement (and kept with the compiled
statement), so building a row is a copy plus the conversions its column types need.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator, Sequence

from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql.compiler import ResultColumnsEntry

from databases.backends.common import _sqlalchemy_compat as compat
from databases.backends.common._driver import Converter
from databases.backends.common.record_base import RecordBase, make_record, make_records
from databases.backends.common.record_mapping import (
    RecordItems,
    RecordKeys,
    RecordMapping,
    RecordValues,
)
from databases.interfaces import Record as RecordInterface
from databases.interfaces import RecordKey


class RecordShape:
    """Column names, lookup tables and value converters shared by all rows of a statement."""

    __slots__ = ("_by_name", "_by_object", "_index", "converters", "keys")

    def __init__(
        self,
        keys: tuple[str, ...],
        converters: tuple[tuple[int, Converter], ...] = (),
        objects: Sequence[tuple[typing.Any, ...]] = (),
    ) -> None:
        self.keys = keys
        self.converters = converters
        # A later duplicate name wins, as it did in the original; duplicates stay
        # reachable by position.
        self._by_name: dict[str, int] = {name: index for index, name in enumerate(keys)}
        # Names and positions (also negative ones) in one table: one lookup per access.
        count = len(keys)
        self._index: dict[typing.Any, int] = {
            **{position: position for position in range(count)},
            **{position - count: position for position in range(count)},
            **self._by_name,
        }
        self._by_object: dict[typing.Any, int] = {}
        for index, column_objects in enumerate(objects):
            for obj in column_objects:
                self._by_object.setdefault(obj, index)

    @classmethod
    def build(
        cls,
        names: Sequence[str],
        result_columns: Sequence[ResultColumnsEntry],
        dialect: Dialect,
        type_codes: Sequence[typing.Any] | None = None,
    ) -> RecordShape:
        """Match the driver's columns with what SQLAlchemy compiled, by position or name."""
        if result_columns and len(result_columns) == len(names):
            entries: list[ResultColumnsEntry | None] = list(result_columns)
        else:
            by_name = {entry.keyname: entry for entry in result_columns}
            entries = [by_name.get(name) for name in names]
        # An entry without a key name (see `compat.result_columns`) takes the driver's.
        keys = tuple(
            entry.keyname if entry is not None and entry.keyname else name
            for name, entry in zip(names, entries)
        )
        converters: list[tuple[int, Converter]] = []
        for index, entry in enumerate(entries):
            if entry is None:
                continue
            type_code = type_codes[index] if type_codes is not None else None
            processor = compat.result_processor(entry.type, dialect, type_code)
            if processor is not None:
                converters.append((index, processor))
        objects = [entry.objects if entry is not None else () for entry in entries]
        return cls(keys, tuple(converters), objects)

    def index_of(self, key: typing.Any) -> int:
        """The position of a column given by name or by SQLAlchemy column object."""
        if isinstance(key, str):
            return self._by_name[key]
        try:
            return self._by_object[key]
        except (KeyError, TypeError):
            pass
        name = getattr(key, "key", None) or getattr(key, "name", None)
        if isinstance(name, str) and name in self._by_name:
            return self._by_name[name]
        raise KeyError(key)

    def make(self, raw: Sequence[typing.Any]) -> Record:
        """Build one row from the driver's values."""
        return make_record(Record, self, self._index, raw, self.converters)

    def make_all(self, rows: Sequence[Sequence[typing.Any]]) -> list[RecordInterface]:
        """Build many rows from the driver's."""
        return make_records(Record, self, self._index, rows, self.converters)


class Record(RecordBase, RecordInterface):
    """A row: `row["name"]`, `row[0]`, `row[table.c.name]`, `row.name` and mapping methods.

    `RecordBase` holds the values and answers names and positions (in C where built);
    everything else is here.
    """

    __slots__ = ()

    if typing.TYPE_CHECKING:
        # `row[key]` is `RecordBase.__getitem__` (C where built): declared here only, so
        # that no Python method comes between the caller and the C slot.
        @typing.overload
        def __getitem__(self, key: RecordKey) -> typing.Any: ...

        @typing.overload
        def __getitem__(self, key: slice) -> tuple[typing.Any, ...]: ...

        def __getitem__(self, key: RecordKey | slice) -> typing.Any: ...

    def _lookup(self, key: typing.Any) -> typing.Any:
        """`row[key]` for keys other than a column name or an in-range position."""
        if isinstance(key, (int, slice)):
            return self._values[key]
        return self._values[self._shape.index_of(key)]

    @property
    def _row(self) -> tuple[typing.Any, ...]:
        """The converted values in column order (the original exposed the driver row here)."""
        return self._values

    @property
    def _mapping(self) -> RecordMapping:
        """Every column, duplicate names included; a duplicated name gives its last column."""
        return RecordMapping(self)

    def keys(self) -> RecordKeys:
        return self._mapping.keys()

    def values(self) -> RecordValues:
        return self._mapping.values()

    def items(self) -> RecordItems:
        return self._mapping.items()

    def get(self, key: RecordKey, default: typing.Any = None) -> typing.Any:
        """`row[key]`, or `default` for a missing name, column or position."""
        try:
            return self[key]
        except (KeyError, IndexError):
            return default

    def __getattr__(self, name: str) -> typing.Any:
        if name.startswith("__") or name in _OWN_ATTRIBUTES:
            raise AttributeError(name)
        try:
            return self._values[self._shape.index_of(name)]
        except KeyError:
            raise AttributeError(
                f"Record has no column {name!r}; columns: {', '.join(self._shape.keys)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._shape.keys)

    def __contains__(self, key: object) -> bool:
        return key in self._shape.keys

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record):
            return self._shape.keys == other._shape.keys and self._values == other._values
        if isinstance(other, tuple):
            return self._values == other
        if isinstance(other, typing.Mapping):
            return dict(self._mapping) == dict(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values)

    def __reduce__(self) -> tuple[typing.Any, ...]:
        return _rebuild_record, (self._shape.keys, self._values)

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in zip(self._shape.keys, self._values))
        return f"<Record {fields}>"


# A row's own attributes: when one is missing (a row cleared by the garbage collector),
# `__getattr__` must not look it up as a column, which would ask for it again.
_OWN_ATTRIBUTES = frozenset({"_shape", "_index", "_values", "_lookup"})


def _rebuild_record(keys: Sequence[str], values: Sequence[typing.Any]) -> Record:
    """A pickled row: its names and converted values (no conversion again)."""
    return RecordShape(tuple(keys)).make(values)
