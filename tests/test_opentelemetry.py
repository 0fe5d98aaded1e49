"""`databases.opentelemetry`: a CLIENT span per statement, with the database semantic
conventions' attributes, parented to the caller's span, on every backend (the SDK's
in-memory exporter collects them)."""

from __future__ import annotations

import logging
import sys
import typing

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from databases import Database, DatabaseURL
from databases.opentelemetry import instrument, summarise
from tests import admin

TABLE = "vis_otel"
SECRET = "s3cret-value-9z"
# The database's code for a duplicate key, as `db.response.status_code` gives it.
DUPLICATE_KEY_CODES = {"postgresql": "23505", "mysql": "1062", "sqlite": "1555"}


class Tracing(typing.NamedTuple):
    provider: TracerProvider
    exporter: InMemorySpanExporter

    def spans(self, prefix: str = "") -> list[ReadableSpan]:
        return [span for span in self.exporter.get_finished_spans() if span.name.startswith(prefix)]


@pytest.fixture
def tracing() -> Tracing:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider, exporter)


@pytest.fixture(scope="module")
def table(database_url: str) -> typing.Iterator[str]:
    admin.raw_execute(database_url, f"DROP TABLE IF EXISTS {TABLE}")
    admin.raw_execute(database_url, f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, note TEXT)")
    yield TABLE
    admin.raw_execute(database_url, f"DROP TABLE IF EXISTS {TABLE}")


@pytest.fixture
def empty_table(database_url: str, table: str) -> str:
    admin.raw_execute(database_url, f"DELETE FROM {table}")
    return table


@pytest.mark.asyncio
@pytest.mark.parametrize("force_rollback", [False, True])
async def test_a_client_span_per_statement_under_the_callers_span(
    database_url: str, empty_table: str, tracing: Tracing, force_rollback: bool
) -> None:
    tracer = tracing.provider.get_tracer("test")
    async with Database(database_url, force_rollback=force_rollback) as database:
        system = admin.dialect_name(database_url)
        if system == "mysql" and "MariaDB" in await database.fetch_val("SELECT VERSION()"):
            system = "mariadb"
        instrument(database, tracer_provider=tracing.provider)
        with tracer.start_as_current_span("request") as request:
            await database.execute(
                f"INSERT INTO {empty_table} VALUES (:id, :note)", {"id": 1, "note": SECRET}
            )
            await database.fetch_all(
                f"SELECT id, note FROM {empty_table} WHERE id = :id", {"id": 1}
            )
            await database.execute_many(
                f"INSERT INTO {empty_table} VALUES (:id, :note)",
                [{"id": 2, "note": "b"}, {"id": 3, "note": "c"}],
            )
    insert, select, batch = (
        tracing.spans(prefix="INSERT")
        + tracing.spans(prefix="SELECT")
        + (tracing.spans(prefix="BATCH"))
    )
    assert insert.name == f"INSERT {empty_table}"
    assert select.name == f"SELECT {empty_table}"
    assert batch.name == f"BATCH INSERT {empty_table}"
    url = DatabaseURL(database_url)
    for span in (insert, select, batch):
        assert span.kind is SpanKind.CLIENT
        assert span.parent is not None
        assert span.parent.span_id == request.get_span_context().span_id
        attributes = dict(span.attributes or {})
        assert attributes["db.system.name"] == system
        assert attributes["db.namespace"] == url.database
        assert str(attributes["db.query.text"]).startswith(span.name.split()[-2])
        if admin.dialect_name(database_url) == "sqlite":
            assert "server.address" not in attributes
        else:
            assert attributes["server.address"] == url.hostname
            assert attributes["server.port"] == url.port
        # Parameter values are off by default.
        assert not any(key.startswith("db.query.parameter") for key in attributes)
        assert SECRET not in str(attributes)
    assert dict(batch.attributes or {})["db.operation.batch.size"] == 2
    assert dict(select.attributes or {})["db.operation.name"] == "SELECT"


@pytest.mark.asyncio
async def test_a_failed_statement_has_an_error_span(
    database_url: str, empty_table: str, tracing: Tracing
) -> None:
    insert = f"INSERT INTO {empty_table} VALUES (:id, :note)"
    async with Database(database_url) as database:
        instrument(database, tracer_provider=tracing.provider)
        await database.execute(insert, {"id": 1, "note": "a"})
        with pytest.raises(Exception) as caught:
            await database.execute(insert, {"id": 1, "note": "a"})
    failed = tracing.spans()[-1]
    assert failed.status.status_code is StatusCode.ERROR
    attributes = dict(failed.attributes or {})
    kind = type(caught.value)
    assert attributes["error.type"] == f"{kind.__module__}.{kind.__qualname__}"
    if admin.dialect_name(database_url) != "sqlite" or sys.version_info >= (3, 11):
        # sqlite3's error codes are Python 3.11+.
        expected = DUPLICATE_KEY_CODES[admin.dialect_name(database_url)]
        assert attributes["db.response.status_code"] == expected
    assert tracing.spans()[0].status.status_code is StatusCode.UNSET


@pytest.mark.asyncio
async def test_parameters_when_asked_and_uninstrument(database_url: str, tracing: Tracing) -> None:
    async with Database(database_url) as database:
        instrumentation = instrument(
            database, tracer_provider=tracing.provider, capture_parameters=True
        )
        await database.fetch_val("SELECT :value", {"value": SECRET})
        instrumentation.uninstrument()
        assert not database.events.watching_statements
        await database.fetch_val("SELECT 1")
    (span,) = tracing.spans()
    assert dict(span.attributes or {})["db.query.parameter.0"] == repr(SECRET)
    assert span.name == "SELECT"


@pytest.mark.asyncio
async def test_instrumenting_twice_makes_one_span_per_statement(
    database_url: str, tracing: Tracing, caplog: pytest.LogCaptureFixture
) -> None:
    async with Database(database_url) as database:
        first = instrument(database, tracer_provider=tracing.provider)
        with caplog.at_level(logging.WARNING, logger="databases"):
            second = instrument(database, tracer_provider=tracing.provider)
        assert second is first
        assert "instrumented already" in caplog.text
        await database.fetch_val("SELECT 1")
        assert len(tracing.spans()) == 1
        first.uninstrument()
        # Instrumented anew after uninstrument(): spans again, once each.
        again = instrument(database, tracer_provider=tracing.provider)
        assert again is not first
        await database.fetch_val("SELECT 2")
        again.uninstrument()
    assert len(tracing.spans()) == 2


def test_a_clear_error_without_the_opentelemetry_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"pip install 'databases\[opentelemetry\]'"):
        instrument(Database("sqlite:///unused-otel.sqlite"))


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT a FROM users WHERE id = $1", ("SELECT", "users")),
        ('select * from "Mixed" join b on 1=1', ("SELECT", '"Mixed"')),
        ("  INSERT INTO public.t (a) VALUES (?)", ("INSERT", "public.t")),
        ("UPDATE `t` SET a = %s", ("UPDATE", "`t`")),
        ("DELETE FROM t", ("DELETE", "t")),
        ("/* hint */ SELECT 1", ("SELECT", None)),
        ("CREATE TABLE t (a INT)", ("CREATE", None)),
        ("", (None, None)),
    ],
)
def test_summaries(sql: str, expected: tuple[str | None, str | None]) -> None:
    assert summarise(sql) == expected
