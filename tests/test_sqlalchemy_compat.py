"""The fast paths on SQLAlchemy's private API: on for the pinned releases, and when a probe
fails, off with its reason while the public API gives the same statements and rows."""

from __future__ import annotations

import datetime
import decimal
import logging
import pathlib
import re
import typing
import warnings

import pytest
import sqlalchemy as sa
from sqlalchemy import exc

from databases import Database
from databases.backends.common import _sqlalchemy_compat as compat
from databases.backends.common.compiler import QueryCompiler, QueryValues
from tests.settings import backend_dialects
from tests.tables import articles, documents, notes, prices

ROOT = pathlib.Path(__file__).parent.parent
DIALECTS = backend_dialects()

metadata = sa.MetaData()
people = sa.Table(
    "people",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50)),
    sa.Column("data", sa.JSON),
    sa.Column("amount", sa.Numeric(10, 2)),
    sa.Column("score", sa.Float),
    sa.Column("joined", sa.DateTime, default=lambda: datetime.datetime(2020, 1, 2, 3, 4, 5)),
    sa.Column("visits", sa.Integer, default=0, onupdate=1),
)


@pytest.fixture(autouse=True)
def probe_again() -> typing.Iterator[None]:
    """Whatever a test turned off is probed again (so back on) after it."""
    yield
    for name in compat.PROBES:
        compat.probe(name)


def all_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every probe fails as it would on a SQLAlchemy without the private attributes."""

    message = "'SQLCompiler' object has no attribute '_private'"

    def missing() -> str | None:
        raise AttributeError(message)

    for name in compat.PROBES:
        monkeypatch.setitem(compat.PROBES, name, missing)
        assert compat.probe(name) == f"AttributeError: {message}"


def _pinned_sqlalchemy_versions() -> dict[str, str]:
    pinned = {}
    for name in ("requirements.txt", "requirements-latest.txt"):
        found = re.search(r"(?im)^sqlalchemy==(\S+)", (ROOT / name).read_text())
        assert found, f"{name} pins no SQLAlchemy"
        pinned[found.group(1)] = name
    return pinned


def test_every_fast_path_is_on_for_the_pinned_sqlalchemy() -> None:
    """The canary: a pinned SQLAlchemy release that turns a fast path off fails here, so a
    loss of speed is never silent. Review `_sqlalchemy_compat` for the new release."""
    pinned = _pinned_sqlalchemy_versions()
    if sa.__version__ not in pinned:
        pytest.skip(f"SQLAlchemy {sa.__version__} is not pinned (pinned: {sorted(pinned)})")
    assert {name: reason for name, reason in compat.FAST_PATHS.items() if reason} == {}
    assert set(compat.FAST_PATHS) == set(compat.PROBES)


def test_a_select_class_of_another_shape_turns_the_simple_select_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(compat.REVIEWED_TRAVERSALS, sa.Select, ())
    with caplog.at_level(logging.DEBUG, logger="databases"):
        reason = compat.probe("simple_select")
    assert reason is not None and reason.startswith("Select traverses (")
    assert compat.FAST_PATHS["simple_select"] == reason
    lines = [record.getMessage() for record in caplog.records if record.name == "databases"]
    assert len(lines) == 1
    assert "'simple_select' is off" in lines[0] and reason in lines[0]
    query = sa.select(people).where(people.c.id == 1)
    compiler = QueryCompiler(DIALECTS["sqlite"])
    compiler.prepare(query)
    assert compiler.prepare(sa.select(people).where(people.c.id == 2))[1:] == (
        str(query.compile(dialect=DIALECTS["sqlite"])),
        (2,),
    )
    assert compiler._simple == {}


def test_a_failed_probe_logs_one_line_per_fast_path(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="databases"):
        all_off(monkeypatch)
    lines = [record.getMessage() for record in caplog.records if record.name == "databases"]
    assert len(lines) == len(compat.PROBES)
    for name, line in zip(compat.PROBES, lines):
        assert f"fast path {name!r} is off" in line and "no attribute '_private'" in line


def _statements() -> list[typing.Any]:
    """Statements that take each fast path, or its fallback."""
    moment = datetime.datetime(2021, 3, 4, 5, 6, 7, 890)
    by_name = sa.select(people.c.id).where(people.c.name == sa.bindparam("wanted"))
    return [
        sa.select(people).where(people.c.id == 5).order_by(people.c.name).limit(2),
        sa.select(people.c.data, people.c.amount).where(people.c.joined > moment),
        sa.select(people).where(people.c.id.in_([1, 2, 3])),
        by_name.params(wanted="Ann"),
        people.update().where(people.c.id == 3).values(name="Bo"),
        people.insert().values(name="Cy", data={"a": [1, 2]}, amount=decimal.Decimal("1.50")),
        QueryValues(people.insert(), {"name": "Di", "score": 1.5}),
        QueryValues(people.update().where(people.c.id == 4), {"name": "Ed"}),
        QueryValues("SELECT * FROM people WHERE joined > :since", {"since": moment}),
    ]


@pytest.mark.parametrize("dialect_name", sorted(DIALECTS))
def test_the_public_api_binds_as_the_fast_paths(
    dialect_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every probe failed, each statement has the same SQL and the same values."""
    dialect = DIALECTS[dialect_name]

    def prepared() -> list[tuple[str, tuple[typing.Any, ...]]]:
        compiler = QueryCompiler(dialect)
        results = []
        for _ in range(2):  # compiled, then cached
            for query in _statements():
                _, sql, args = compiler.prepare(query)
                results.append((sql, args))
        return results

    fast = prepared()
    all_off(monkeypatch)
    assert prepared() == fast


@pytest.mark.usefixtures("shared_tables")
@pytest.mark.parametrize("fast", [True, False], ids=["fast paths", "public API"])
@pytest.mark.asyncio
async def test_rows_are_the_same_with_every_fast_path_off(
    database_url: str, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not fast:
        all_off(monkeypatch)
    published = datetime.datetime(2022, 2, 3, 4, 5, 6)
    async with Database(database_url) as database:
        await database.execute_many(
            notes.insert(), [{"text": f"note {n}", "completed": n % 2 == 0} for n in range(4)]
        )
        await database.execute(documents.insert(), {"data": {"list": [1, "two"], "n": None}})
        await database.execute(prices.insert().values(amount=decimal.Decimal("1.25")))
        await database.execute(articles.insert(), {"title": "a", "published": published})
        done = sa.select(notes.c.text).where(notes.c.completed == sa.bindparam("done"))
        rows = await database.fetch_all(done.order_by(notes.c.id).params(done=True))
        assert [row["text"] for row in rows] == ["note 0", "note 2"]
        row = await database.fetch_one(sa.select(notes).where(notes.c.text == "note 1"))
        assert row is not None
        assert (row.text, row[notes.c.completed], row["completed"]) == ("note 1", False, False)
        assert await database.fetch_val(sa.select(documents.c.data)) == {
            "list": [1, "two"],
            "n": None,
        }
        assert await database.fetch_val(sa.select(prices.c.amount)) == decimal.Decimal("1.25")
        article = await database.fetch_one(
            sa.select(articles).where(articles.c.published == published)
        )
        assert article is not None and dict(article)["published"] == published


class Shout(sa.types.TypeDecorator[str]):
    """A type without `cache_ok`: SQLAlchemy will not cache statements using it."""

    impl = sa.String(100)

    def process_bind_param(self, value: str | None, dialect: typing.Any) -> str | None:
        return None if value is None else value.upper()

    def process_result_value(self, value: str | None, dialect: typing.Any) -> str | None:
        return None if value is None else value + "!"


shouted_notes = sa.Table(
    "notes",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", Shout),
    sa.Column("completed", sa.Boolean),
)


@pytest.mark.usefixtures("shared_tables")
@pytest.mark.asyncio
async def test_a_type_decorator_without_cache_ok_runs_without_a_warning(
    database_url: str,
) -> None:
    """As in databases 0.9, which never asked SQLAlchemy for a cache key: the statement is
    compiled each time, with the type's conversions, and nothing is said about it."""
    async with Database(database_url) as database:
        with warnings.catch_warnings():
            warnings.simplefilter("error", exc.SAWarning)
            for text in ("hi", "ho"):
                await database.execute(shouted_notes.insert(), {"text": text, "completed": True})
                await database.execute(shouted_notes.insert().values(text=text, completed=True))
            query = sa.select(shouted_notes.c.text).where(shouted_notes.c.text == "hi")
            rows = await database.fetch_all(query.order_by(shouted_notes.c.id))
            assert [row.text for row in rows] == ["HI!", "HI!"]
            assert await database.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 4
    # Still said to anyone asking SQLAlchemy for the cache key itself.
    with pytest.warns(exc.SAWarning, match="cache_ok"):
        query._generate_cache_key()
