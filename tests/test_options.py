"""Clear errors for every option: unknown ones and bad values fail at `Database()`, naming
the option and what the backend accepts; the driver's own keywords still reach it; SQLite
honours the pool sizes in its URL; no message, log line or repr shows a password."""

from __future__ import annotations

import asyncio
import logging
import socket
import traceback
import typing
from urllib.parse import quote

import pytest

from databases import Database, DatabaseURL
from databases.backends.common.base import SQLBackend
from databases.backends.sqlite import SQLiteBackend
from databases.errors import InvalidOptionError, UnknownOptionError
from tests import admin

# Each backend's driver, with one keyword option the driver itself takes (0.9 passed
# keyword options through to the driver: they must keep working).
DRIVER_KEYWORDS: dict[str, dict[str, typing.Any]] = {
    "asyncpg": {"command_timeout": 30, "statement_cache_size": 0},
    "psycopg": {"application_name": "h4-options", "prepare_threshold": None},
    "aiopg": {"application_name": "h4-options", "timeout": 30},
    "aiomysql": {"charset": "utf8mb4", "local_infile": False},
    "asyncmy": {"charset": "utf8mb4", "local_infile": False},
    "sqlite3": {"timeout": 3.0, "cached_statements": 16},
}
# Never to be shown: with a space and a slash, so the URL holds it percent-encoded.
PASSWORD = "h4 Pa55/word"


def with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def with_password(url: str) -> str:
    """`url` with PASSWORD as its password (SQLite's URL takes one too, and ignores it)."""
    return str(DatabaseURL(url).replace(password=PASSWORD))


def test_unknown_keyword_option_fails_at_database_with_the_accepted_ones(
    database_url: str,
) -> None:
    with pytest.raises(UnknownOptionError) as caught:
        Database(database_url, max_sise=3)
    message = str(caught.value)
    assert "'max_sise' (did you mean 'max_size'?)" in message
    assert "max_size, min_size" in message
    # The driver's own keywords are listed too.
    listed = {"asyncpg": "statement_cache_size", "psycopg": "prepare_threshold"}
    listed.update(aiopg="enable_json", aiomysql="charset", sqlite3="detect_types")
    assert listed.get(admin.driver_name(database_url), "") in message
    # A TypeError as Python's own for an unexpected keyword, and a ValueError.
    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, ValueError)


def test_echo_is_the_packages_own_option_and_reaches_no_driver(database_url: str) -> None:
    # aiomysql, asyncmy and aiopg have an `echo=` of their own: it no longer reaches them.
    for database in (
        Database(database_url, echo=True, echo_parameters=False),
        Database(with_query(database_url, "echo=true&echo_parameters=false")),
    ):
        backend = database._backend
        assert isinstance(backend, SQLBackend)
        assert "echo" not in backend._get_connection_kwargs()
        assert "echo" not in str(database._backend_url)
        assert len(database.events._finished) == 1
    assert not Database(database_url, echo=False).events.watching_statements
    with pytest.raises(InvalidOptionError, match="echo"):
        Database(with_query(database_url, "echo=loud"))


@pytest.mark.asyncio
async def test_the_drivers_own_keywords_reach_it(database_url: str) -> None:
    options = DRIVER_KEYWORDS[admin.driver_name(database_url)]
    async with Database(database_url, **options) as database:
        assert await asyncio.wait_for(database.fetch_val("SELECT 1"), 30) == 1


def test_unknown_url_option_is_ignored_with_a_warning_naming_it(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """0.9 ignored unknown URL query options (shared URLs carry other tools' options, such
    as a platform's `?sslmode=require`): still ignored, but with a warning that lists them."""
    url = with_query(database_url, "max_sise=3")
    with caplog.at_level(logging.WARNING, logger="databases"):
        database = Database(url)
    assert database.url == DatabaseURL(url)
    message = caplog.records[-1].getMessage()
    assert "Ignoring unknown option 'max_sise' (did you mean 'max_size'?) in the query" in message
    assert "Accepted in the URL: " in message and "max_size, min_size" in message


@pytest.mark.asyncio
async def test_an_ignored_url_option_is_warned_about_once(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The options are read when the `Database` is built, not again at each connect."""
    with caplog.at_level(logging.WARNING, logger="databases"):
        database = Database(with_query(database_url, "max_sise=3"))
        for _ in range(2):
            await asyncio.wait_for(database.connect(), 30)
            assert await asyncio.wait_for(database.fetch_val("SELECT 1"), 30) == 1
            await asyncio.wait_for(database.disconnect(), 30)
    assert sum("max_sise" in record.getMessage() for record in caplog.records) == 1


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("max_size=abc", "Invalid value 'abc' for the 'max_size' option: expected an integer"),
        ("max_size=0", "Invalid value '0' for the 'max_size' option: expected an integer of 1"),
        ("min_size=-1", "Invalid value '-1' for the 'min_size' option: expected an integer of 0"),
        ("min_size=1.5", "Invalid value '1.5' for the 'min_size' option"),
        ("min_size=3&max_size=2", "'min_size' (3) is larger than 'max_size' (2)"),
    ],
)
def test_bad_pool_size_in_the_url_names_the_option(
    database_url: str, query: str, expected: str
) -> None:
    with pytest.raises(InvalidOptionError) as caught:
        Database(with_query(database_url, query))
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"max_size": "abc"}, "Invalid value 'abc' for the 'max_size' option"),
        ({"max_size": True}, "Invalid value True for the 'max_size' option"),
        ({"max_size": -2}, "Invalid value -2 for the 'max_size' option"),
        ({"min_size": 4, "max_size": 2}, "'min_size' (4) is larger than 'max_size' (2)"),
    ],
)
def test_bad_pool_size_keyword_names_the_option(
    database_url: str, options: dict[str, typing.Any], expected: str
) -> None:
    with pytest.raises(InvalidOptionError) as caught:
        Database(database_url, **options)
    assert expected in str(caught.value)


def test_keyword_options_override_the_urls_before_sizes_are_compared(database_url: str) -> None:
    Database(with_query(database_url, "min_size=3&max_size=3"), min_size=1, max_size=2)


@pytest.mark.dialects("postgresql", "mysql")
@pytest.mark.parametrize("value", ["yes", "1", "sometimes"])
def test_bad_ssl_bool_names_the_option(database_url: str, value: str) -> None:
    with pytest.raises(InvalidOptionError, match=f"Invalid value '{value}' for the 'ssl'"):
        Database(with_query(database_url, f"ssl={value}"))


@pytest.mark.dialects("postgresql+asyncpg")
def test_bad_number_for_a_drivers_url_option_names_it(database_url: str) -> None:
    with pytest.raises(InvalidOptionError, match="'statement_cache_size' option: expected an"):
        Database(with_query(database_url, "statement_cache_size=none"))
    with pytest.raises(InvalidOptionError, match="'command_timeout' option: expected a number"):
        Database(with_query(database_url, "command_timeout=soon"))


@pytest.mark.dialects("sqlite")
@pytest.mark.asyncio
async def test_sqlite_honours_pool_sizes_in_the_url(database_url: str) -> None:
    """`?max_size=2&min_size=2` sizes the pool (0.9 put them into the file URI, where
    SQLite ignored them): two connections open at connect, a third task waits."""
    database = Database(with_query(database_url, "max_size=2&min_size=2"))
    backend = database._backend
    assert isinstance(backend, SQLiteBackend)
    assert "max_size" not in backend._pool.target.name
    holding = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with database.connection() as connection:
            await connection.fetch_val("SELECT 1")
            holding.set()
            await release.wait()

    async with database:
        pool = database._backend
        assert isinstance(pool, SQLiteBackend)
        assert len(pool._pool._idle) == 2, "min_size connections opened at connect"
        holders = [asyncio.create_task(hold()) for _ in range(2)]
        await asyncio.wait_for(holding.wait(), 10)
        third = asyncio.create_task(hold())
        await asyncio.sleep(0.3)
        assert not third.done() and len(pool._pool._in_use) == 2, "a third connection opened"
        release.set()
        await asyncio.wait_for(asyncio.gather(*holders, third), 10)


@pytest.mark.dialects("sqlite")
def test_sqlite_keeps_its_uri_parameters(database_url: str) -> None:
    backend = Database(with_query(database_url, "mode=rwc&max_size=3"))._backend
    assert isinstance(backend, SQLiteBackend)
    assert backend._pool.target.name.endswith("?mode=rwc")
    assert backend._pool._max_size == 3


# -- no password anywhere -----------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nobody listens on (connecting is refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def failing_connect_urls(url: str) -> list[tuple[str, bool]]:
    """URLs with PASSWORD whose `connect()` fails, each with the `force_rollback` to use."""
    if admin.dialect_name(url) == "sqlite":
        missing = "sqlite://:x@/no-such-h4-directory/database.sqlite?min_size=1"
        return [(with_password(missing), False), (with_password(missing), True)]
    secret = DatabaseURL(with_password(url))
    failing = [
        (str(secret.replace(port=closed_port())), False),
        (str(secret.replace(port=closed_port())), True),
        (str(secret.replace(database="h4_no_such_database")), False),
    ]
    if admin.dialect_name(url) == "mysql":  # PostgreSQL's test server trusts any password
        failing.append((str(secret), False))
    return failing


def assert_no_password(*texts: str) -> None:
    for text in texts:
        for shown in (PASSWORD, quote(PASSWORD), quote(PASSWORD, safe="")):
            assert shown not in text, f"the password is shown in: {text}"


def described(error: BaseException) -> str:
    """Everything a user may see of an error: each message, chained ones included."""
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def test_option_errors_never_show_the_password(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = with_password(database_url)
    assert PASSWORD not in url and quote(PASSWORD, safe="") in url
    with caplog.at_level(logging.WARNING, logger="databases"):
        Database(with_query(url, "max_sise=3"))
    assert "max_sise" in caplog.text, "the ignored option's warning was not checked"
    assert_no_password(caplog.text)
    failing: list[tuple[str, dict[str, typing.Any]]] = [
        (url, {"max_sise": 3}),
        (with_query(url, "max_size=abc"), {}),
        (url, {"min_size": 5, "max_size": 1}),
    ]
    messages = []
    for failing_url, options in failing:
        with pytest.raises(InvalidOptionError) as caught:
            Database(failing_url, **options)
        messages.append(str(caught.value))
        assert_no_password(described(caught.value))
    assert ":********@" in messages[0], "the URL is named, its password masked"


@pytest.mark.asyncio
async def test_failing_connects_never_show_the_password(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for url, force_rollback in failing_connect_urls(database_url):
        database = Database(url, force_rollback=force_rollback)
        with pytest.raises(Exception) as caught:
            await asyncio.wait_for(database.connect(), 60)
        texts = [described(caught.value), repr(database), repr(database.url)]
        texts += [str(database.loop_states()), str(database.options)]
        with pytest.raises(Exception) as query_error:
            await asyncio.wait_for(database.fetch_val("SELECT 1"), 60)
        texts.append(described(query_error.value))
        await asyncio.wait_for(database.disconnect(), 60)
        assert_no_password(*texts, caplog.text)
    assert caplog.records, "nothing was logged: the log was not checked"
