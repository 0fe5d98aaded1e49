"""Driver keyword arguments from the URL query and the `Database(...)` keyword options.

One parser for every bundled backend, so an option means the same thing everywhere:
numbers are converted, `ssl` follows one rule (`ssl_option`), keyword options override
the URL's and pass through to the driver unchanged.
"""

from __future__ import annotations

import typing

from databases.url import DatabaseURL

TRUE_FALSE = {"true": True, "false": False}
# Pool sizes when the URL and options give none. asyncpg's own default opens ten
# connections at once; with a pool per event loop that multiplies by the loops in use.
DEFAULT_MIN_SIZE = 1
DEFAULT_MAX_SIZE = 10
# libpq's `sslmode` values: the `ssl` modes of every PostgreSQL driver.
LIBPQ_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# Options of every bundled backend that the shared pool-health step reads
# (`_pool_health.HealthOptions`), never passed to a driver.
POOL_HEALTH_OPTIONS = ("pool_pre_ping", "pool_recycle")


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
    renames = rules.renames
    return {
        renames.get(name, name): value
        for name, value in kwargs.items()
        if name not in POOL_HEALTH_OPTIONS
    }


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
