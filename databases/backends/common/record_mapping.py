"""`row._mapping` and the `keys()`, `values()` and `items()` views of a row.

A result may name two columns alike (`SELECT 1 AS id, 2 AS id`, or a join of two tables
with an `id` each). A `dict` would keep one of them; these keep every column, in order, as
`databases` 0.9 and SQLAlchemy do. Looking a duplicated name up gives its last column, as
`row[name]` does.
"""

from __future__ import annotations

import typing
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView

from databases.interfaces import RecordKey


class Row(typing.Protocol):
    """What the views read of a row (`records.Record`): its shape's names and its values."""

    _shape: typing.Any
    _values: tuple[typing.Any, ...]

    def __getitem__(self, key: typing.Any) -> typing.Any: ...


class RecordMapping(Mapping[str, typing.Any]):
    """A read-only mapping over one row: every column, duplicate names included.

    A key is whatever `row[key]` takes: a name, a SQLAlchemy column or a position; it
    iterates over the names.
    """

    __slots__ = ("_record",)

    def __init__(self, record: Row) -> None:
        self._record = record

    def __getitem__(self, key: RecordKey) -> typing.Any:
        try:
            return self._record[key]
        except IndexError:  # a position past the end: a missing key to a mapping
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._record._shape.keys)

    def __len__(self) -> int:
        return len(self._record._values)

    if typing.TYPE_CHECKING:
        # `Mapping.get`, which takes whatever `__getitem__` takes.
        def get(self, key: RecordKey, default: typing.Any = None, /) -> typing.Any: ...

    def keys(self) -> RecordKeys:
        return RecordKeys(self)

    def values(self) -> RecordValues:
        return RecordValues(self)

    def items(self) -> RecordItems:
        return RecordItems(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self.items())!r})"


class _InOrder:
    """What the three views share: equal to a list or tuple of the same items in the same
    order (SQLAlchemy's views are too); compared with anything else as their base class does.
    """

    __slots__ = ()

    if typing.TYPE_CHECKING:

        def __iter__(self) -> Iterator[typing.Any]: ...

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple, _InOrder)):
            return list(self) == list(other)
        equal: bool = super().__eq__(other)
        return equal

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r})"


class RecordKeys(_InOrder, KeysView[str]):
    """The column names in order, duplicates included."""

    __slots__ = ()
    _mapping: RecordMapping

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping._record._shape.keys)

    def __contains__(self, key: object) -> bool:
        return key in self._mapping._record._shape.keys


class RecordValues(_InOrder, ValuesView[typing.Any]):
    """The values in column order, one per column."""

    __slots__ = ()
    _mapping: RecordMapping

    def __iter__(self) -> Iterator[typing.Any]:
        return iter(self._mapping._record._values)

    def __contains__(self, value: object) -> bool:
        return value in self._mapping._record._values


class RecordItems(_InOrder, ItemsView[str, typing.Any]):
    """(name, value) per column, in order, duplicates included."""

    __slots__ = ()
    _mapping: RecordMapping

    def __iter__(self) -> Iterator[tuple[str, typing.Any]]:
        record = self._mapping._record
        return zip(record._shape.keys, record._values)

    def __contains__(self, item: object) -> bool:
        return item in list(self)
