"""Differential test: `databases` must give exactly what SQLAlchemy's own AsyncEngine gives.

Generated Core statements (`tests/differential/`) run through `Database` and through
`create_async_engine` with the same driver, on the same data, on every database of
`TEST_DATABASE_URLS`. aiopg, which SQLAlchemy has no dialect for, is compared with
SQLAlchemy's sync `postgresql+psycopg2` engine: psycopg2 is the driver aiopg runs. Rows
must match in column names and their order, values, and the Python type of every value.
Each shape runs with several seeds (the same structure with other literals, which is what
statement caches must get right), and its first statement runs twice as one object and
once more as a new, structurally equal object.

The seed is `DIFFERENTIAL_SEED` (default in `tests/differential/schema.py`); a failure
prints it with the shape, the variant, the SQL and the values, so
`DIFFERENTIAL_SEED=<seed> pytest tests/test_differential.py -k <shape>` repeats it.
`DIFFERENTIAL_VARIANTS` sets how many seeds each shape runs with.
"""

from __future__ import annotations

import dataclasses
import os
import random
import typing
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from databases import Database
from tests import admin
from tests.differential import schema, selects, typed, writes
from tests.differential.case import ROWS, Case
from tests.differential.sync_engine import SyncEngine

SELECT_SHAPES = {**selects.SHAPES, **typed.SHAPES}

SEED = schema.SEED
VARIANTS = int(os.environ.get("DIFFERENTIAL_VARIANTS", "10"))

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    # SQLAlchemy's warnings about the deliberately uncached TypeDecorator and about
    # Decimal on SQLite concern both sides alike.
    pytest.mark.filterwarnings("ignore:TypeDecorator LegacyCode:sqlalchemy.exc.SAWarning"),
    pytest.mark.filterwarnings("ignore:Dialect sqlite\\+aiosqlite does \\*not\\* support Decimal"),
]

# (shape, backend), either "*" for any -> (strict, reason); a backend is a dialect (all its
# drivers) or `dialect+driver` (see `admin.backend_name`): differences known and not
# fixed here. The interleaved test is the shape "interleaved" (it leaves out the shapes
# known to differ).
KNOWN: dict[tuple[str, str], tuple[bool, str]] = {
    ("raw_string_without_casts", "postgresql+asyncpg"): (
        True,
        "raw SQL goes to asyncpg without SQLAlchemy's bind casts, as in 0.9: PostgreSQL "
        "types a parameter from its context, so `SELECT :number` takes text, and an aware "
        "datetime against a TIMESTAMP or a 64-bit int against an INTEGER is refused, where "
        "text().bindparams() works",
    ),
}


def _mysql_bytes_broken() -> bool:
    """aiomysql 0.3.2 escapes bytes with a PyMySQL function that PyMySQL 1.2 removed."""
    try:
        from pymysql import converters
    except ImportError:
        return False
    return isinstance(getattr(converters, "escape_bytes_prefixed", None), str)


MYSQL_BYTES_BROKEN = _mysql_bytes_broken()
if MYSQL_BYTES_BROKEN:
    KNOWN[("binary_values", "mysql")] = (
        False,
        "aiomysql 0.3.2 cannot send bytes with PyMySQL >= 1.2 (escape_bytes_prefixed is "
        "gone), so neither can SQLAlchemy's aiomysql dialect: no oracle to compare with",
    )
# The driver SQLAlchemy compares with, where it is not the one `databases` uses: its async
# engine runs SQLite on aiosqlite, and aiopg's driver is psycopg2 (a sync engine).
_ORACLE_DRIVERS = {"sqlite3": "aiosqlite", "aiopg": "psycopg2"}
_SYNC_ORACLES = ("aiopg",)


def oracle_url(url: str) -> str:
    """The SQLAlchemy URL of the same database, with the driver `databases` uses."""
    name, driver = admin.backend_name(url).split("+")
    return f"{name}+{_ORACLE_DRIVERS.get(driver, driver)}" + url[url.index(":") :]


def oracle_engine(url: str) -> AsyncEngine:
    if admin.driver_name(url) in _SYNC_ORACLES:
        return typing.cast(AsyncEngine, SyncEngine(oracle_url(url)))
    return create_async_engine(oracle_url(url))


@dataclasses.dataclass
class Pair:
    """One database seen through `databases` and through SQLAlchemy's AsyncEngine."""

    url: str
    dialect: str
    backend: str
    database: Database
    engine: AsyncEngine


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pair(database_url: str) -> AsyncIterator[Pair]:
    """The database with the differential tables filled from the seed, seen both ways."""
    engine = oracle_engine(database_url)
    rows = schema.seed_rows(SEED)
    async with engine.begin() as connection:
        await connection.run_sync(schema.metadata.drop_all)
        await connection.run_sync(schema.metadata.create_all)
        for table in schema.READ_TABLES:
            if table is not schema.blobs:
                await connection.execute(table.insert(), rows[table])
    try:
        async with engine.begin() as connection:
            await connection.execute(schema.blobs.insert(), rows[schema.blobs])
    except TypeError:
        # aiomysql cannot send bytes with PyMySQL 1.2 (see KNOWN): the binary shape fails.
        if not (admin.dialect_name(database_url) == "mysql" and MYSQL_BYTES_BROKEN):
            raise
    database = Database(database_url)
    await database.connect()
    try:
        yield Pair(
            database_url,
            admin.dialect_name(database_url),
            admin.backend_name(database_url),
            database,
            engine,
        )
    finally:
        await database.disconnect()
        async with engine.begin() as connection:
            await connection.run_sync(schema.metadata.drop_all)
        await engine.dispose()


# -- running a case both ways ------------------------------------------------------------

Typed = tuple[str, str]
Snapshot = typing.Any


def typed_value(value: typing.Any) -> Typed:
    """A value as its type and repr: 1 and 1.0 and True differ, Decimal('1.10') too, and
    so do two types of one name (asyncpg's UUID and `uuid.UUID`)."""
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}", repr(value)


def row_snapshot(keys: typing.Iterable[str], values: typing.Iterable[typing.Any]) -> Snapshot:
    return tuple(keys), tuple(map(typed_value, values))


def ours(row: typing.Any) -> Snapshot:
    return row_snapshot(row._mapping.keys(), [row[index] for index in range(len(row))])


def theirs(row: sa.Row[typing.Any]) -> Snapshot:
    return row_snapshot(row._mapping.keys(), tuple(row))


async def run_ours(database: Database, case: Case) -> Snapshot:
    method = case.method
    if method == "fetch_all":
        return [ours(row) for row in await database.fetch_all(case.query, case.values)]
    if method == "iterate":
        return [ours(row) async for row in database.iterate(case.query, case.values)]
    if method == "fetch_one":
        row = await database.fetch_one(case.query, case.values)
        return None if row is None else ours(row)
    if method == "fetch_val":
        return typed_value(await database.fetch_val(case.query, case.values, column=case.column))
    if method == "execute":
        return await database.execute(case.query, case.values)
    if method == "execute_many":
        return await database.execute_many(case.query, case.values)
    raise AssertionError(method)


def oracle_statement(case: Case) -> typing.Any:
    if case.oracle is not None:
        return case.oracle
    if isinstance(case.query, str):
        clause = sa.text(case.query)
        return clause.bindparams(**case.values) if case.values is not None else clause
    return case.query


async def run_theirs(engine: AsyncEngine, case: Case) -> Snapshot:
    statement = oracle_statement(case)
    method = case.method
    if method in ("execute", "execute_many"):
        async with engine.begin() as connection:
            if isinstance(statement, list):  # one statement per row
                for one in statement:
                    await connection.execute(one)
                return None
            result = await connection.execute(statement, case.oracle_values)
            if case.returns_key:
                return result.inserted_primary_key[0]
            return None
    async with engine.connect() as connection:
        if method == "iterate":
            stream = await connection.stream(statement)
            return [theirs(row) async for row in stream]
        result = await connection.execute(statement)
        if method == "fetch_all":
            return [theirs(row) for row in result.fetchall()]
        row = result.first()
        if method == "fetch_one":
            return None if row is None else theirs(row)
        if row is None:
            return typed_value(None)
        value = row._mapping[case.column] if isinstance(case.column, str) else row[case.column]
        return typed_value(value)


def unordered(snapshot: Snapshot) -> Snapshot:
    return sorted(snapshot, key=repr) if isinstance(snapshot, list) else snapshot


def describe(pair: Pair, label: str, case: Case) -> str:
    """Everything needed to see and repeat a case."""
    statement = oracle_statement(case)
    if isinstance(statement, list):  # SQLAlchemy runs one statement per row
        statement = case.query if isinstance(case.query, str) else statement[0]
    try:
        sql = str(statement.compile(dialect=pair.engine.dialect))
    except Exception as error:  # pragma: no cover - only in a failure message
        sql = f"<not compilable: {error!r}>"
    return (
        f"DIFFERENTIAL_SEED={SEED} {label} on {pair.dialect} via {case.method}"
        f"{'' if case.method != 'fetch_val' else f'(column={case.column!r})'}\n"
        f"  SQL: {sql}\n  values: {case.values!r}"
    )


def first_difference(mine: Snapshot, expected: Snapshot) -> str:
    if isinstance(mine, list) and isinstance(expected, list):
        if len(mine) != len(expected):
            return f"{len(mine)} rows, SQLAlchemy {len(expected)}"
        for index, (a, b) in enumerate(zip(mine, expected)):
            if a != b:
                return f"row {index}:\n    databases:  {a}\n    SQLAlchemy: {b}"
    return f"\n    databases:  {mine}\n    SQLAlchemy: {expected}"


def has_content(snapshot: Snapshot) -> bool:
    """Whether a result has rows, or a value that is not None."""
    if isinstance(snapshot, list):
        return bool(snapshot)
    return snapshot is not None and snapshot != typed_value(None)


async def compare(pair: Pair, label: str, case: Case, answered: list[bool]) -> str | None:
    """Run `case` both ways; a description of the difference, or None. Appends to
    `answered` whether SQLAlchemy's result had any content."""
    try:
        expected = await run_theirs(pair.engine, case)
    except Exception as error:
        raise AssertionError(
            f"SQLAlchemy refuses the generated statement: {error!r}\n" + describe(pair, label, case)
        ) from error
    answered.append(has_content(expected))
    try:
        mine = await run_ours(pair.database, case)
    except Exception as error:
        return f"{describe(pair, label, case)}\n  databases raised {error!r}"
    if not case.ordered:
        mine, expected = unordered(mine), unordered(expected)
    if mine != expected:
        return f"{describe(pair, label, case)}\n  {first_difference(mine, expected)}"
    return None


def known(shape: str, backend: str) -> tuple[bool, str] | None:
    dialect = backend.split("+")[0]
    for key in ((shape, backend), (shape, dialect), (shape, "*"), ("*", backend), ("*", dialect)):
        if key in KNOWN:
            return KNOWN[key]
    return None


def expect_known(request: pytest.FixtureRequest, shape: str, backend: str) -> None:
    known_here = known(shape, backend)
    if known_here is not None:
        strict, reason = known_here
        request.applymarker(pytest.mark.xfail(strict=strict, reason=reason))


def report(mismatches: list[str]) -> None:
    if mismatches:
        shown = "\n\n".join(mismatches[:5])
        pytest.fail(f"{len(mismatches)} statements differ from SQLAlchemy:\n\n{shown}")


def case_rng(shape: str, variant: int | str) -> random.Random:
    return random.Random(f"{SEED}:{shape}:{variant}")


# -- the tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", sorted(SELECT_SHAPES))
async def test_select_shape(request: pytest.FixtureRequest, pair: Pair, shape: str) -> None:
    """One shape with `VARIANTS` sets of literals; the first statement object runs twice,
    then a structurally equal new object."""
    expect_known(request, shape, pair.backend)
    build = SELECT_SHAPES[shape]
    mismatches: list[str] = []
    first = build(case_rng(shape, 0))
    runs = [("variant 0", first), ("variant 0, same object again", first)]
    if first.method in ROWS:
        for method in ROWS:
            if method != first.method:
                again = dataclasses.replace(first, method=method)
                runs.append((f"variant 0, same object via {method}", again))
    runs.append(("variant 0, equal new object", build(case_rng(shape, 0))))
    runs += [(f"variant {n}", build(case_rng(shape, n))) for n in range(1, VARIANTS)]
    answered: list[bool] = []
    for label, case in runs:
        difference = await compare(pair, f"{shape} {label}", case, answered)
        if difference is not None:
            mismatches.append(difference)
    report(mismatches)
    # A shape whose statements all come back empty would compare nothing of the rows.
    assert any(answered), f"{shape}: no statement found anything"


async def _interleaved(pair: Pair, variants: range, salt: str) -> list[str]:
    """Every shape's statements of these variants shuffled together, so cached statements
    of all shapes sit side by side and each is found again between others. Shapes known
    to differ here have their own xfail and are left out: the rest must all match."""
    cases = [
        (shape, variant)
        for shape in sorted(SELECT_SHAPES)
        for variant in variants
        if not any((shape, key) in KNOWN for key in (pair.backend, pair.dialect, "*"))
    ]
    random.Random(f"{SEED}:{salt}").shuffle(cases)
    mismatches: list[str] = []
    for shape, variant in cases:
        case = SELECT_SHAPES[shape](case_rng(shape, variant))
        difference = await compare(pair, f"{shape} variant {variant} ({salt})", case, [])
        if difference is not None:
            mismatches.append(difference)
    return mismatches


async def test_shapes_interleaved(request: pytest.FixtureRequest, pair: Pair) -> None:
    expect_known(request, "interleaved", pair.backend)
    report(await _interleaved(pair, range(VARIANTS, VARIANTS + 3), "interleaved"))


async def test_shapes_interleaved_through_a_tiny_cache(
    request: pytest.FixtureRequest, pair: Pair
) -> None:
    """With a statement cache of four entries, compiled statements are evicted and
    compiled again all the time, and must still bind each statement's own values."""
    expect_known(request, "interleaved", pair.backend)
    database = Database(pair.url)
    compiler = database._backend._compiler  # type: ignore[attr-defined]
    compiler._max_size = 4
    async with database:
        tiny = dataclasses.replace(pair, database=database)
        mismatches = await _interleaved(tiny, range(2), "tiny cache")
    assert len(compiler._cache) <= 4 and len(compiler._simple) <= 4
    report(mismatches)


async def test_shapes_interleaved_with_force_rollback(
    request: pytest.FixtureRequest, pair: Pair
) -> None:
    """The same through the one connection and transaction of `force_rollback=True`
    (PostgreSQL's iterate() then declares its cursor inside that transaction)."""
    expect_known(request, "interleaved", pair.backend)
    async with Database(pair.url, force_rollback=True) as database:
        rolled_back = dataclasses.replace(pair, database=database)
        report(await _interleaved(rolled_back, range(2, 4), "force_rollback"))


async def _reset_scratch(engine: AsyncEngine) -> None:
    tables = [schema.scratch_a, schema.scratch_b]
    rows = schema.scratch_rows(SEED)
    async with engine.begin() as connection:
        for table in tables:
            # Table by table: `metadata.drop_all(tables=...)` would drop the enum types
            # other tables use on PostgreSQL.
            await connection.run_sync(table.drop, checkfirst=True)
            await connection.run_sync(table.create)
            await connection.execute(table.insert(), rows)


async def _contents(engine: AsyncEngine, table: sa.Table) -> list[Snapshot]:
    async with engine.connect() as connection:
        result = await connection.execute(sa.select(table).order_by(table.c.id))
        return [theirs(row) for row in result]


@pytest.mark.parametrize("shape", sorted(writes.SHAPES))
async def test_write_shape(request: pytest.FixtureRequest, pair: Pair, shape: str) -> None:
    """A write statement changes `databases`' copy of a table exactly as SQLAlchemy's
    changes its own, and an INSERT returns the same primary key."""
    expect_known(request, shape, pair.backend)
    build = writes.SHAPES[shape]
    await _reset_scratch(pair.engine)
    mismatches: list[str] = []
    for variant in range(VARIANTS):
        label = f"{shape} variant {variant}"
        mine_case = build(case_rng(shape, variant), schema.scratch_a)
        their_case = build(case_rng(shape, variant), schema.scratch_b)
        expected = await run_theirs(pair.engine, their_case)
        try:
            returned = await run_ours(pair.database, mine_case)
        except Exception as error:
            mismatches.append(f"{describe(pair, label, mine_case)}\n  databases raised {error!r}")
            break
        if mine_case.returns_key and returned != expected:
            mismatches.append(
                f"{describe(pair, label, mine_case)}\n  returned {returned!r}, "
                f"SQLAlchemy's key {expected!r}"
            )
        mine, theirs_now = (
            await _contents(pair.engine, schema.scratch_a),
            await _contents(pair.engine, schema.scratch_b),
        )
        if mine != theirs_now:
            mismatches.append(
                f"{describe(pair, label, mine_case)}\n  {first_difference(mine, theirs_now)}"
            )
            break  # the copies differ from here on
    report(mismatches)
