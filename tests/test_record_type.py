"""The row type itself, without a database: C speedups and the Python fallback alike.

The same tests run twice: in this process with whatever `RecordBase` is in use (the C
one, where it was built), and in a subprocess with `DATABASES_NO_SPEEDUPS=1`, the
pure-Python fallback.
"""

from __future__ import annotations

import collections.abc
import copy
import datetime
import decimal
import gc
import os
import pickle
import sys
import weakref
from pathlib import Path

import pytest
import sqlalchemy as sa

from databases.backends.common import record_base
from databases.backends.common.records import Record, RecordShape
from databases.interfaces import Record as RecordInterface
from tests.subprocesses import run_pytest

ROOT = Path(__file__).resolve().parent.parent
metadata = sa.MetaData()
people = sa.Table(
    "record_type_people",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50)),
)
NOW = datetime.datetime(2026, 12, 5, 10, 30)


def shape_of(*keys: str) -> RecordShape:
    return RecordShape(tuple(keys))


def person(pid: int = 7, name: str = "Ada") -> Record:
    shape = RecordShape(("id", "name"), objects=[(people.c.id,), (people.c.name,)])
    return shape.make((pid, name))


def test_the_fallback_passes_this_module_too(tmp_path: Path) -> None:
    if os.environ.get("DATABASES_NO_SPEEDUPS"):
        pytest.skip("this is the fallback run")
    # A database of its own, so that the inner run could never touch the outer run's.
    env = {
        **os.environ,
        "DATABASES_NO_SPEEDUPS": "1",
        "TEST_DATABASE_URLS": f"sqlite:///{tmp_path / 'fallback.sqlite'}",
    }
    result = run_pytest(__file__, ROOT, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_the_implementation_in_use() -> None:
    """Here the C speedups must be built and used; the fallback only when asked for."""
    if os.environ.get("DATABASES_NO_SPEEDUPS"):
        assert record_base.SPEEDUPS is False
        assert record_base.RecordBase is record_base.PyRecordBase
    else:
        assert record_base.SPEEDUPS is True, (
            "databases._speedups is not built: run scripts/install (it needs a C compiler)"
        )
        assert record_base.RecordBase.__module__ == "databases._speedups"


def test_access_by_name_position_column_and_attribute() -> None:
    row = person()
    assert row["id"] == 7 and row["name"] == "Ada"
    assert row[0] == 7 and row[1] == "Ada"
    assert row[-1] == "Ada" and row[-2] == 7
    assert row[people.c.name] == "Ada"
    assert row[sa.column("name")] == "Ada"  # another column object, found by name
    assert row.name == "Ada"
    assert row[0:2] == (7, "Ada") and row[::-1] == ("Ada", 7)
    assert len(row) == 2
    assert list(row) == ["id", "name"]
    assert dict(row) == {"id": 7, "name": "Ada"}
    assert row._mapping == {"id": 7, "name": "Ada"}
    assert list(row.keys()) == ["id", "name"] and list(row.values()) == [7, "Ada"]
    assert row.get("missing", "default") == "default" and row.get(5) is None
    assert "name" in row and "missing" not in row
    assert row._row == (7, "Ada")
    assert isinstance(row, Record) and isinstance(row, RecordInterface)


def test_missing_keys_raise_the_usual_errors() -> None:
    row = person()
    with pytest.raises(KeyError, match="missing"):
        row["missing"]
    with pytest.raises(IndexError):
        row[2]
    with pytest.raises(IndexError):
        row[-3]
    with pytest.raises(KeyError):
        row[["id"]]  # unhashable
    with pytest.raises(KeyError):
        row[sa.column("other")]
    with pytest.raises(AttributeError, match="no column 'missing'; columns: id, name"):
        _ = row.missing


def test_duplicate_names_keep_every_column() -> None:
    """As in the original (and SQLAlchemy): every column stays in the keys, values and
    items, in order; a duplicated name gives its later column."""
    row = shape_of("id", "id", "name").make((1, 2, "x"))
    assert row["id"] == row.id == row._mapping["id"] == 2
    assert (row[0], row[1]) == (1, 2)
    assert len(row) == len(row._mapping) == 3
    assert list(row) == list(row._mapping) == ["id", "id", "name"]
    assert list(row.keys()) == list(row._mapping.keys()) == ["id", "id", "name"]
    assert list(row.values()) == list(row._mapping.values()) == [1, 2, "x"]
    assert list(row.items()) == list(row._mapping.items()) == [("id", 1), ("id", 2), ("name", "x")]
    assert dict(row) == dict(row._mapping) == {"id": 2, "name": "x"}
    assert row._mapping == {"id": 2, "name": "x"}
    assert repr(row) == "<Record id=1, id=2, name='x'>"
    for clone in [pickle.loads(pickle.dumps(row)), copy.copy(row), copy.deepcopy(row)]:
        assert list(clone._mapping.items()) == [("id", 1), ("id", 2), ("name", "x")]
        assert clone["id"] == 2 and clone == row


def test_the_views_compare_with_lists_in_order_and_with_sets_as_sets() -> None:
    row = shape_of("id", "id", "name").make((1, 2, "x"))
    keys, values, items = row._mapping.keys(), row._mapping.values(), row._mapping.items()
    assert keys == ["id", "id", "name"] == keys and keys == ("id", "id", "name")
    assert keys != ["id", "name", "id"] and keys != ["id", "name"]
    assert values == [1, 2, "x"] == values and values != [2, 1, "x"]
    assert items == [("id", 1), ("id", 2), ("name", "x")] and items != [("id", 2)]
    assert row.keys() == keys and row.values() == values and row.items() == items
    assert person().keys() == {"id", "name"} and person().items() == {("id", 7), ("name", "Ada")}
    assert person().keys() == {"id": 0, "name": 0}.keys() and person().keys() != {"id"}
    assert "id" in keys and "missing" not in keys and 0 not in keys
    assert 2 in values and 3 not in values
    assert ("id", 1) in items and ("id", 2) in items and ("id", 3) not in items
    assert isinstance(keys, collections.abc.KeysView)
    assert isinstance(values, collections.abc.ValuesView)
    assert isinstance(items, collections.abc.ItemsView)
    assert repr(keys) == "RecordKeys(['id', 'id', 'name'])"
    assert repr(row._mapping) == "RecordMapping([('id', 1), ('id', 2), ('name', 'x')])"
    with pytest.raises(TypeError):
        hash(keys)


def test_the_mapping_takes_what_the_row_takes() -> None:
    """`row._mapping[key]` is `row[key]`: names, SQLAlchemy columns and positions (the
    original's mapping took all three); a missing one is a KeyError, as in any mapping."""
    mapping = person()._mapping
    assert mapping["name"] == mapping[people.c.name] == mapping[1] == mapping[-1] == "Ada"
    assert people.c.name in mapping and "name" in mapping and 0 in mapping
    for missing in ["missing", sa.column("other"), 2, -3, ["id"]]:
        assert missing not in mapping
        assert mapping.get(missing, "default") == "default"
        with pytest.raises(KeyError):
            mapping[missing]
    with pytest.raises(TypeError):
        mapping["name"] = "changed"  # type: ignore[index]


def test_values_need_not_come_as_a_tuple() -> None:
    shape = shape_of("a", "b")
    assert shape.make([1, 2])._values == (1, 2)
    rows = shape.make_all([[1, 2], (3, 4), range(5, 7)])
    assert [r._values for r in rows] == [(1, 2), (3, 4), (5, 6)]


def test_converters_apply_once_per_value() -> None:
    calls: list[object] = []

    def double(value: int) -> int:
        calls.append(value)
        return value * 2

    shape = RecordShape(("a", "b"), converters=((1, double),))
    assert shape.make((1, 2))._values == (1, 4)
    many = shape.make_all([(n, n) for n in range(20)])  # the column-wise path
    assert [r["b"] for r in many] == [n * 2 for n in range(20)]
    assert len(calls) == 21


def test_equality_hash_and_repr() -> None:
    assert person() == person()
    assert person() != person(8)
    assert person() == (7, "Ada")
    assert person() == {"id": 7, "name": "Ada"}
    assert hash(person()) == hash(person())
    assert repr(person()) == "<Record id=7, name='Ada'>"


def test_pickle_and_copy_keep_names_and_values() -> None:
    row = shape_of("id", "at", "price").make((1, NOW, decimal.Decimal("1.50")))
    for clone in [pickle.loads(pickle.dumps(row)), copy.copy(row), copy.deepcopy(row)]:
        assert type(clone) is Record
        assert dict(clone) == {"id": 1, "at": NOW, "price": decimal.Decimal("1.50")}
        assert clone["at"] == NOW and clone[2] == decimal.Decimal("1.50")
        assert clone.at == NOW


def test_rows_of_plain_values_are_left_out_of_garbage_collection() -> None:
    """Numbers, strings, dates and None cannot lead back to a row: the collector need not
    visit such rows (C speedups). A row holding a container stays tracked."""
    plain = shape_of("a", "b", "c", "d").make((1, "x", NOW, None))
    holding = shape_of("a", "b").make((1, {"key": [1]}))
    assert gc.is_tracked(holding)
    if record_base.SPEEDUPS:
        assert not gc.is_tracked(plain)
        assert not gc.is_tracked(plain._values)


def test_a_cycle_through_a_value_is_collected() -> None:
    """A row whose JSON value is made to refer back to the row is still freed by the
    collector: rows holding containers stay tracked."""

    class Marker:
        pass

    marker = Marker()
    alive = weakref.ref(marker)
    row = shape_of("id", "data").make((1, {"marker": marker}))
    del marker
    row["data"]["row"] = row
    del row
    gc.collect()
    assert alive() is None


def test_building_and_dropping_rows_leaks_no_references() -> None:
    shape = shape_of("a", "b")
    values = (1, "x")
    before = (sys.getrefcount(shape), sys.getrefcount(shape._index), sys.getrefcount(values))
    rows = shape.make_all([values] * 100) + [shape.make(values) for _ in range(100)]
    assert rows[0]._values is values
    assert sys.getrefcount(values) >= before[2] + 200
    del rows
    after = (sys.getrefcount(shape), sys.getrefcount(shape._index), sys.getrefcount(values))
    assert after == before


def test_an_error_while_reading_rows_propagates() -> None:
    def failing_rows() -> object:
        yield (1, 2)
        raise RuntimeError("driver failed")

    with pytest.raises(RuntimeError, match="driver failed"):
        record_base.make_records(Record, shape_of("a", "b"), {}, failing_rows())
    with pytest.raises(TypeError):
        record_base.make_record(Record, shape_of("a"), {}, 5)  # not a sequence


def test_converted_values_decide_tracking_and_errors_propagate() -> None:
    """Conversion happens before the row is built: a converter that returns a container
    leaves the row tracked; one that raises fails the whole call."""
    to_dict = RecordShape(("id", "data"), converters=((1, lambda text: {"text": text}),))
    assert gc.is_tracked(to_dict.make((1, "x")))
    assert all(gc.is_tracked(row) for row in to_dict.make_all([(n, "x") for n in range(10)]))

    def refuse(value: object) -> object:
        raise ValueError(f"cannot convert {value!r}")

    failing = RecordShape(("id", "data"), converters=((1, refuse),))
    with pytest.raises(ValueError, match="cannot convert 'x'"):
        failing.make((1, "x"))
    with pytest.raises(ValueError, match="cannot convert 'x'"):
        failing.make_all([(n, "x") for n in range(10)])


def test_a_converted_row_does_not_change_the_drivers_row() -> None:
    shape = RecordShape(("a", "b"), converters=((0, str),))
    raw = (1, 2)
    assert shape.make(raw)._values == ("1", 2)
    assert shape.make_all([raw, raw])[1]._values == ("1", 2)
    assert raw == (1, 2)


def test_converters_are_checked() -> None:
    with pytest.raises((TypeError, IndexError)):
        record_base.make_record(Record, shape_of("a"), {}, (1,), ((3, str),))
    with pytest.raises(TypeError):
        record_base.make_records(Record, shape_of("a"), {}, [(1,)], ((0, "not callable"),))
