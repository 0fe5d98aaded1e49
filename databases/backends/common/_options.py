"""Driver keyword arguments from the URL query and the `Database(...)` keyword options.

One parser for every bundled backend, so an option means the same thing everywhere:
numbers are converted, `ssl` follows one rule (`ssl_option`), keyword options override
the URL's and pass through to the driver unchanged.
"""

from __future__ import annotations

import typing

from databases._bounded import positive_seconds
from databases.url import DatabaseURL

TRUE_FALSE = {"true": True, "false": False}
# Pool sizes when the URL and options give none. asyncpg's own default opens ten
# connections at once; with a pool per event loop that multiplies by the loops in use.
DEFAULT_MIN_SIZE = 1
DEFAULT_MAX_SIZE = 10
# Bounded waits, in seconds (`None`: no bound). Ours, not a driver's: every bundled backend
# reads them (`timeouts()`) and none is passed on to a driver. The pool's default is
# SQLAlchemy's `pool_timeout`.
DEFAULT_POOL_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 10.0
TIMEOUT_OPTIONS = ("pool_timeout", "connect_timeout")
# libpq's `sslmode` values: the `ssl` modes of every PostgreSQL driver.
LIBPQ_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def ssl_option(value: str, modes: typing.Collection[str] = ()) -> bool | str:
    """`true`/`false` (any case) as a bool; else one of the driver's `modes`, lower-cased.

    A driver without modes (aiomysql) takes only true or false.
    """
    lowered = value.strip().lower()
    if lowered in TRUE_FALSE:
        return TRUE_FALSE[lowered]
    if lowered in modes:
        return lowered
    accepted = "true or false" + (f", or one of {', '.join(modes)}" if modes else "")
    raise ValueError(f"Invalid value {value!r} for the 'ssl' URL option: use {accepted}.")


class OptionRules(typing.NamedTuple):
    """Which URL query options a driver reads, how they convert, and the driver's names."""

    ints: tuple[str, ...] = ()
    floats: tuple[str, ...] = ()
    strings: tuple[str, ...] = ()
    # The values `ssl` takes besides true and false; `None`: no `ssl` option.
    ssl_modes: tuple[str, ...] | None = None
    # What `true` and `false` become for a driver that takes only a mode (libpq's
    # `sslmode`: require, disable); empty: the bools themselves.
    ssl_booleans: typing.Mapping[bool, str] = {}
    # Our option name -> the driver's (for URL and keyword options alike).
    renames: typing.Mapping[str, str] = {}


def connection_kwargs(
    url: DatabaseURL, options: typing.Mapping[str, typing.Any], rules: OptionRules
) -> dict[str, typing.Any]:
    """The driver's keyword arguments: URL query options converted, then keyword options."""
    query = url.options
    kwargs: dict[str, typing.Any] = {}
    for name in rules.ints:
        if name in query:
            kwargs[name] = int(query[name])
    for name in rules.floats:
        if name in query:
            kwargs[name] = float(query[name])
    for name in rules.strings:
        if name in query:
            kwargs[name] = query[name]
    if rules.ssl_modes is not None and "ssl" in query:
        ssl = ssl_option(query["ssl"], rules.ssl_modes)
        kwargs["ssl"] = rules.ssl_booleans.get(ssl, ssl) if isinstance(ssl, bool) else ssl
    kwargs.update(options)
    for name in TIMEOUT_OPTIONS:
        kwargs.pop(name, None)
    renames = rules.renames
    return {renames.get(name, name): value for name, value in kwargs.items()}


def server_kwargs(url: DatabaseURL, database_keyword: str) -> dict[str, typing.Any]:
    """The URL's server, login and database as driver keywords (`None` where it has none)."""
    return {
        "host": url.hostname,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        database_keyword: url.database,
    }


def pool_sizes(kwargs: typing.Mapping[str, typing.Any]) -> tuple[int, int]:
    """`min_size` and `max_size` from `kwargs`, defaulted so that min <= max."""
    max_size: int = kwargs.get("max_size", max(DEFAULT_MAX_SIZE, kwargs.get("min_size", 0)))
    min_size: int = kwargs.get("min_size", min(DEFAULT_MIN_SIZE, max_size))
    return min_size, max_size


class Timeouts(typing.NamedTuple):
    """The bounded waits of one database, in seconds (`None`: no bound)."""

    pool: float | None
    connect: float | None


def timeout_value(name: str, value: typing.Any) -> float | None:
    """A timeout option's value: seconds above zero, or `None` (in a URL: `none`)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "none":
            return None
        try:
            value = float(text)
        except ValueError:
            value = text
    if value is None:
        return None
    seconds = positive_seconds(value)
    if seconds is not None:
        return seconds
    raise ValueError(
        f"Invalid value {value!r} for the {name!r} option: give seconds above zero, "
        "or None for no bound."
    )


def timeouts(url: DatabaseURL, options: typing.Mapping[str, typing.Any]) -> Timeouts:
    """`pool_timeout` and `connect_timeout` from the keyword options, else the URL query,
    else their defaults."""
    query = url.options
    defaults = {"pool_timeout": DEFAULT_POOL_TIMEOUT, "connect_timeout": DEFAULT_CONNECT_TIMEOUT}
    values = {
        name: timeout_value(name, options[name] if name in options else query[name])
        if name in options or name in query
        else default
        for name, default in defaults.items()
    }
    return Timeouts(values["pool_timeout"], values["connect_timeout"])
