"""The bundled backends' shared setup: URL options with one `ssl` rule, per-loop instances.

Pure unit tests: nothing here connects.
"""

from __future__ import annotations

import logging

import pytest

from databases import Database, DatabaseURL
from databases.backends.common._option_values import (
    read_bool,
    read_float,
    read_int,
    read_seconds,
    read_text,
)
from databases.backends.common._options import (
    LIBRARY_OPTIONS,
    DriverKeywords,
    LibraryOption,
    OptionRules,
    connection_kwargs,
    ssl_option,
)
from databases.backends.common.base import SQLBackend
from databases.backends.mysql import MySQLBackend
from databases.backends.sqlite import SQLiteBackend
from databases.errors import InvalidOptionError, UnknownOptionError


@pytest.mark.parametrize("value", ["true", "TRUE", " True "])
def test_ssl_true_in_any_case(value: str) -> None:
    assert ssl_option(value) is True
    assert ssl_option(value, ("require",)) is True


def test_ssl_false() -> None:
    assert ssl_option("False") is False


def test_ssl_mode_only_where_the_driver_has_modes() -> None:
    assert ssl_option("Verify-Full", ("require", "verify-full")) == "verify-full"
    with pytest.raises(ValueError, match=r"use true or false\.$"):
        ssl_option("require")


def test_unknown_postgresql_ssl_mode_is_refused_with_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match="true or false, or one of disable, allow"):
        Database("postgresql://localhost/db?ssl=sometimes")


def test_options_convert_then_keyword_options_override_and_rename() -> None:
    rules = OptionRules(
        url={"size": read_int, "timeout": read_float, "socket": read_text},
        renames={"size": "n", "max_size": "most"},
    )
    keywords = DriverKeywords("driver", frozenset(("size", "echo")))
    url = DatabaseURL("x://h/d?size=2&timeout=1.5&socket=/s&max_size=4")

    def kwargs(**options: object) -> dict[str, object]:
        return connection_kwargs(url, options, rules, keywords, "X")

    assert kwargs() == {"n": 2, "timeout": 1.5, "socket": "/s", "most": 4}
    assert kwargs(size=7, echo=True, max_size=5) == {
        "n": 7,
        "timeout": 1.5,
        "socket": "/s",
        "most": 5,
        "echo": True,
    }


def test_ssl_is_read_only_by_drivers_that_take_it(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="databases"):
        Database("sqlite:///unused.sqlite?ssl=true")
    assert "Ignoring unknown option 'ssl' in the query" in caplog.text


@pytest.mark.parametrize(
    ("url", "option"),
    [
        ("sqlite:///:memory:", "cached_statements"),
        ("postgresql://localhost/db?min_size=2", "statement_cache_size"),
        ("mysql://localhost/db?ssl=true", "local_infile"),
    ],
)
def test_another_loops_instance_is_constructed_sharing_the_setup(url: str, option: str) -> None:
    backend = Database(url, **{option: 0})._backend
    assert isinstance(backend, SQLBackend)
    other = backend.for_new_loop()
    assert type(other) is type(backend)
    assert other is not backend
    assert other._setup is backend._setup
    assert other._compiler is backend._compiler
    assert other._dialect is backend._dialect
    assert other._options == {option: 0}
    assert other._database_url == url


def test_another_loops_sqlite_pool_opens_the_same_memory_database() -> None:
    backend = SQLiteBackend("sqlite:///:memory:")
    other = backend.for_new_loop()
    assert other._pool is not backend._pool
    assert other._pool.target is backend._pool.target
    assert other._pool.target.is_memory
    assert other._memory_keeper is backend._memory_keeper


def test_another_loops_mysql_instance_keeps_the_driver_option_names() -> None:
    backend = MySQLBackend("mysql://localhost/db?min_size=1")
    assert backend.for_new_loop()._get_connection_kwargs() == {"minsize": 1}


def test_a_library_option_is_one_line_and_reaches_no_driver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An option added to `LIBRARY_OPTIONS` is checked, read from the URL and keywords, and
    kept from the drivers, which would refuse it; `servers_only` keeps it from SQLite."""
    monkeypatch.setitem(LIBRARY_OPTIONS, "example_timeout", LibraryOption(read_seconds))
    monkeypatch.setitem(LIBRARY_OPTIONS, "example_check", LibraryOption(read_bool, True))
    for url in ("postgresql://h/db", "postgresql+psycopg://h/db", "mysql://h/db"):
        backend = Database(f"{url}?example_timeout=2.5&example_check=true")._backend
        assert isinstance(backend, SQLBackend)
        assert backend._library_options() == {"example_timeout": 2.5, "example_check": True}
        assert backend._get_connection_kwargs() == {}
        keyword = Database(url, example_timeout=1)._backend
        assert isinstance(keyword, SQLBackend)
        assert keyword._library_options() == {"example_timeout": 1.0}
        with pytest.raises(InvalidOptionError, match="'example_timeout' option: expected a"):
            Database(url, example_timeout="soon")
    sqlite = Database("sqlite:///unused.sqlite?example_timeout=3")._backend
    assert isinstance(sqlite, SQLiteBackend)
    assert sqlite._library_options() == {"example_timeout": 3.0}
    assert "example_timeout" not in sqlite._pool.target.name
    assert "example_timeout" not in sqlite._pool._connect_kwargs
    with pytest.raises(UnknownOptionError, match="'example_check'"):
        Database("sqlite:///unused.sqlite", example_check=True)
