"""The hot part of a result row: its values, its shape, and lookups by name or position.

`databases._speedups` has the same three names in C; it is built at install when a C
compiler is there, and used unless the environment variable `DATABASES_NO_SPEEDUPS` is
set (to anything but an empty string). The Python classes below behave the same and are
the fallback. `records.Record` builds on whichever `RecordBase` is in use.
"""

from __future__ import annotations

import os
import types
import typing

from databases.backends.common._driver import Converter

Values = tuple[typing.Any, ...]
R = typing.TypeVar("R", bound="PyRecordBase")


class PyRecordBase:
    """A row's values with its shape; `row[name]` and `row[position]` in one lookup.

    Every other key goes to `self._lookup(key)`, which the subclass defines.
    """

    __slots__ = ("_index", "_shape", "_values")

    _shape: typing.Any
    _index: dict[typing.Any, int]
    _values: Values

    def __init__(
        self, shape: typing.Any, index: dict[typing.Any, int], values: typing.Iterable[typing.Any]
    ) -> None:
        self._shape = shape
        self._index = index
        self._values = values if type(values) is tuple else tuple(values)

    def __getitem__(self, key: typing.Any) -> typing.Any:
        try:
            return self._values[self._index[key]]
        except (KeyError, TypeError):
            return self._lookup(key)

    def __len__(self) -> int:
        return len(self._values)

    def _lookup(self, key: typing.Any) -> typing.Any:
        raise KeyError(key)


Converters = tuple[tuple[int, Converter], ...]


def _converted(values: typing.Iterable[typing.Any], converters: Converters) -> Values:
    row = list(values)
    for index, convert in converters:
        row[index] = convert(row[index])
    return tuple(row)


def py_make_record(
    cls: type[R],
    shape: typing.Any,
    index: dict[typing.Any, int],
    values: typing.Any,
    converters: Converters = (),
) -> R:
    """One row of `cls`, its values converted by `converters` (position, function)."""
    return cls(shape, index, _converted(values, converters) if converters else values)


def py_make_records(
    cls: type[R],
    shape: typing.Any,
    index: dict[typing.Any, int],
    rows: typing.Iterable[typing.Any],
    converters: Converters = (),
) -> list[typing.Any]:
    """A row of `cls` per row; many rows are converted column by column (C-level `map`)."""
    if not converters:
        return [cls(shape, index, values) for values in rows]
    rows = rows if isinstance(rows, list) else list(rows)
    if len(rows) < 8:
        return [cls(shape, index, _converted(values, converters)) for values in rows]
    columns = list(zip(*rows))
    for position, convert in converters:
        columns[position] = tuple(map(convert, columns[position]))
    return [cls(shape, index, values) for values in zip(*columns)]


def _load_speedups() -> types.ModuleType | None:
    if os.environ.get("DATABASES_NO_SPEEDUPS"):
        return None
    try:
        from databases import _speedups
    except ImportError:  # pragma: no cover - built where a C compiler was at install
        return None
    return _speedups


_speedups = _load_speedups()
# Whether rows are built and read in C.
SPEEDUPS = _speedups is not None

if typing.TYPE_CHECKING or _speedups is None:
    RecordBase = PyRecordBase
    make_record = py_make_record
    make_records = py_make_records
else:
    RecordBase = _speedups.RecordBase
    make_record = _speedups.make_record
    make_records = _speedups.make_records
