"""Options from the URL query and `Database(url, **options)`: one table of ours, one check.

An option is the library's own (`LIBRARY_OPTIONS`: the same name and meaning on every
bundled backend), one the backend reads from its URL query (`OptionRules.url`), or a
keyword argument of the backend's driver (`DriverKeywords`). Any other keyword option fails
when the `Database` is built, listing what that backend accepts; any other URL query option
is ignored, as 0.9 did, with a warning that lists them; a bad value names its option. So
a typo never waits for the first query or passes silently. Keyword options override
the URL's; the driver's pass to it unchanged.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from urllib.parse import urlencode

from databases._logging import logger
from databases.backends.common._option_values import (
    LIBPQ_SSL_MODES,
    Reader,
    read_bool,
    read_count,
    read_positive_count,
    read_seconds_or_never,
    read_timeout,
    ssl_option,
)
from databases.errors import InvalidOptionError, UnknownOptionError
from databases.url import DatabaseURL

__all__ = [
    "CORE_OPTIONS",
    "LIBPQ_SSL_MODES",
    "LIBRARY_OPTIONS",
    "DriverKeywords",
    "LibraryOption",
    "OptionRules",
    "ReadOptions",
    "connection_kwargs",
    "driver_kwargs",
    "pool_sizes",
    "read_options",
    "server_kwargs",
    "signature_keywords",
    "ssl_option",
    "take_core_options",
]


class LibraryOption(typing.NamedTuple):
    """One of the library's own options: how its value is read, and where it applies."""

    read: Reader
    # Only backends with a server take it (not SQLite, a file).
    servers_only: bool = False
    # It is among `connection_kwargs()`, the driver's pool arguments (renamed as the
    # backend says); otherwise only in `SQLBackend._library_options()`.
    pool_argument: bool = False


# The library's own options, in the URL query and as keywords, on every bundled backend.
# Adding one is one line here; a backend finds its checked value, when given, in
# `SQLBackend._library_options()`, and never passes it to a driver that would not know it.
LIBRARY_OPTIONS: dict[str, LibraryOption] = {
    "min_size": LibraryOption(read_count, pool_argument=True),
    "max_size": LibraryOption(read_positive_count, pool_argument=True),
    # Read by the shared pool-health step (`_pool_health`); SQLite takes and ignores them.
    "pool_pre_ping": LibraryOption(read_bool),
    "pool_recycle": LibraryOption(read_seconds_or_never),
    # Bounded waits (`timeouts()`): ours, never passed to a driver.
    "pool_timeout": LibraryOption(read_timeout),
    "connect_timeout": LibraryOption(read_timeout),
}

# Pool sizes when the URL and options give none. asyncpg's own default opens ten
# connections at once; with a pool per event loop that multiplies by the loops in use.
DEFAULT_MIN_SIZE = 1
DEFAULT_MAX_SIZE = 10
# Bounded waits, in seconds, when the URL and options give none (`None` there: no bound).
# The pool's is SQLAlchemy's `pool_timeout` default.
DEFAULT_POOL_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 10.0
# URL query keys `DatabaseURL.hostname` reads (a unix socket directory): every server takes them.
URL_ADDRESS_OPTIONS = ("host", "unix_sock")


class OptionRules(typing.NamedTuple):
    """What a backend reads from its URL query besides the library's options."""

    # URL query option -> how its text is read (the driver's keyword of the same name).
    url: typing.Mapping[str, Reader] = {}
    # Our option name -> the driver's (for URL and keyword options alike).
    renames: typing.Mapping[str, str] = {}
    # Whether the backend has a server (SQLite has a file): it then takes the library's
    # `servers_only` options and the URL's `host`.
    server: bool = True


class DriverKeywords(typing.NamedTuple):
    """The keyword arguments a backend passes on to its driver."""

    # The driver's name in messages: "asyncpg".
    driver: str
    names: frozenset[str]
    # Names the driver takes beyond `names`, where they cannot be listed (libpq's
    # connection parameters, asked of libpq itself), and how messages describe them.
    more: typing.Callable[[str], bool] | None = None
    more_note: str = ""

    def takes(self, name: str) -> bool:
        return name in self.names or (self.more is not None and self.more(name))


def signature_keywords(
    *functions: typing.Callable[..., typing.Any], leave_out: typing.Iterable[str] = ()
) -> frozenset[str]:
    """The names of the parameters `functions` take by keyword, except `leave_out`.

    For drivers written in Python, whose signatures say exactly what they take.
    """
    names: set[str] = set()
    for function in functions:
        for parameter in inspect.signature(function).parameters.values():
            if parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD):
                names.add(parameter.name)
    return frozenset(names.difference(leave_out))


class ReadOptions(typing.NamedTuple):
    """A backend's options, checked and converted; the keyword's value wins over the URL's."""

    # The library's own options that were given (no defaults filled in).
    library: dict[str, typing.Any]
    # The backend's URL query options other than the library's.
    url: dict[str, typing.Any]
    # Keyword options for the driver, unchanged.
    keywords: dict[str, typing.Any]


def library_options(server: bool) -> dict[str, LibraryOption]:
    """The library's options a backend takes: all of them, or (no server) the others."""
    return {
        name: option
        for name, option in LIBRARY_OPTIONS.items()
        if server or not option.servers_only
    }


def read_options(
    url: DatabaseURL,
    options: typing.Mapping[str, typing.Any],
    rules: OptionRules,
    keywords: DriverKeywords,
    backend: str,
) -> ReadOptions:
    """Check and convert the URL query and keyword `options` of one backend.

    Raises `UnknownOptionError` for a keyword option nobody takes and `InvalidOptionError`
    for a bad value, each naming the option; logs a warning for URL query options nobody
    takes, which are ignored. `backend` names the backend in the messages.
    """
    ours = library_options(rules.server)
    library: dict[str, typing.Any] = {}
    from_url: dict[str, typing.Any] = {}
    ignored: list[str] = []
    for name, text in url.options.items():
        if name in ours:
            library[name] = ours[name].read(name, text)
        elif name in rules.url:
            from_url[name] = rules.url[name](name, text)
        elif not (rules.server and name in URL_ADDRESS_OPTIONS):
            ignored.append(name)
    if ignored:
        # 0.9 ignored them, and shared URLs carry other tools' options (`?sslmode=require`
        # from a hosting platform): ignored still, but never silently.
        accepted = [*ours, *rules.url, *(URL_ADDRESS_OPTIONS if rules.server else ())]
        logger.warning(
            "Ignoring unknown %s in the query of the database URL %r (%s). Accepted in the "
            "URL: %s. Give the driver's other options as keyword arguments: "
            "Database(url, name=value).",
            _described(ignored, accepted),
            url.obscure_password,
            backend,
            ", ".join(sorted(accepted)),
        )
    unknown: list[str] = []
    driver_options: dict[str, typing.Any] = {}
    for name, value in options.items():
        if name in ours:
            library[name] = ours[name].read(name, value)
        elif keywords.takes(name) or name in rules.renames:
            driver_options[name] = value
        else:
            unknown.append(name)
    if unknown:
        listed = sorted({*keywords.names, *rules.renames})
        more = f", and {keywords.more_note}" if keywords.more_note else ""
        raise UnknownOptionError(
            f"Unknown {_described(unknown, [*ours, *listed])} for the database "
            f"{url.obscure_password!r} ({backend}). Accepted: the options of databases "
            f"({', '.join(sorted(ours))}) and {keywords.driver}'s keyword arguments "
            f"({', '.join(listed)}{more})."
        )
    _check_sizes(library)
    return ReadOptions(library, from_url, driver_options)


def _described(names: list[str], accepted: typing.Iterable[str]) -> str:
    """ "option 'x' (did you mean 'y'?)" for every name of `names`."""
    candidates = list(accepted)
    described = []
    for name in names:
        close = difflib.get_close_matches(name, candidates, n=1)
        described.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"option{'s' if len(names) > 1 else ''} {', '.join(described)}"


def _check_sizes(library: typing.Mapping[str, typing.Any]) -> None:
    min_size, max_size = library.get("min_size"), library.get("max_size")
    if min_size is not None and max_size is not None and min_size > max_size:
        raise InvalidOptionError(
            f"Invalid pool sizes: 'min_size' ({min_size}) is larger than 'max_size' "
            f"({max_size}); a pool cannot keep more connections open than it may have."
        )


def connection_kwargs(
    url: DatabaseURL,
    options: typing.Mapping[str, typing.Any],
    rules: OptionRules,
    keywords: DriverKeywords,
    backend: str,
) -> dict[str, typing.Any]:
    """The driver's keyword arguments: the URL's options, then the keyword options, renamed;
    of the library's options, only the pool arguments (`min_size`, `max_size`)."""
    return driver_kwargs(read_options(url, options, rules, keywords, backend), rules)


def driver_kwargs(read: ReadOptions, rules: OptionRules) -> dict[str, typing.Any]:
    """`connection_kwargs()` of options already read."""
    pool = {
        name: value for name, value in read.library.items() if LIBRARY_OPTIONS[name].pool_argument
    }
    merged = {**read.url, **pool, **read.keywords}
    renames = rules.renames
    return {renames.get(name, name): value for name, value in merged.items()}


# Options `Database` reads itself, the same on every backend, each with its reader: in the
# URL query (a keyword of `Database()` overrides it). The backend gets the URL without them.
CORE_OPTIONS: dict[str, Reader] = {
    "force_rollback_savepoints": read_bool,
    "echo": read_bool,
    "echo_parameters": read_bool,
}


def take_core_options(url: DatabaseURL) -> tuple[DatabaseURL, dict[str, str]]:
    """The URL without the `CORE_OPTIONS` in its query, and those options' texts (read
    them with `CORE_OPTIONS[name]`)."""
    query = url.options
    taken = {name: query.pop(name) for name in CORE_OPTIONS if name in query}
    if not taken:
        return url, taken
    return url.replace(query=urlencode(query)), taken


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


def timeouts(library: typing.Mapping[str, typing.Any]) -> Timeouts:
    """`pool_timeout` and `connect_timeout` from the library's options as read and checked
    (`SQLBackend._library_options()`), else their defaults."""
    return Timeouts(
        library.get("pool_timeout", DEFAULT_POOL_TIMEOUT),
        library.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
    )
