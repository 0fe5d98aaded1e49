"""Readers of option values: text from a URL query or a keyword's value, checked and converted.

Each reader takes the option's name and its value and raises `InvalidOptionError` naming
both, so `?max_size=abc` says which option is wrong and what it takes, never a bare
`int()` error. URL values arrive as text; keyword values may already have their type.
"""

from __future__ import annotations

import math
import typing

from databases._bounded import positive_seconds
from databases.errors import InvalidOptionError

# (option name, value) -> the converted value.
Reader = typing.Callable[[str, typing.Any], typing.Any]

TRUE_FALSE = {"true": True, "false": False}
# libpq's `sslmode` values: the `ssl` modes of every PostgreSQL driver.
LIBPQ_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def invalid(name: str, value: typing.Any, expected: str) -> InvalidOptionError:
    """The error for a bad value: the value as given, the option, what it takes."""
    return InvalidOptionError(
        f"Invalid value {value!r} for the {name!r} option: expected {expected}."
    )


def read_int(name: str, value: typing.Any, minimum: int | None = None) -> int:
    """A whole number (text or int, never a bool), at least `minimum` if given."""
    expected = "an integer" if minimum is None else f"an integer of {minimum} or more"
    if isinstance(value, bool):
        raise invalid(name, value, expected)
    if isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            raise invalid(name, value, expected) from None
    elif isinstance(value, int):
        number = value
    else:
        raise invalid(name, value, expected)
    if minimum is not None and number < minimum:
        raise invalid(name, value, expected)
    return number


def read_count(name: str, value: typing.Any) -> int:
    """A number of connections, 0 or more (`min_size`)."""
    return read_int(name, value, 0)


def read_positive_count(name: str, value: typing.Any) -> int:
    """A number of connections, 1 or more (`max_size`: a pool of none would wait forever)."""
    return read_int(name, value, 1)


def read_int_or_none(name: str, value: typing.Any) -> int | None:
    """An integer, or `None` (the text `none` or nothing): psycopg's `prepare_threshold`."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    try:
        return read_int(name, value)
    except InvalidOptionError:
        raise invalid(name, value, "an integer or none") from None


def read_float(name: str, value: typing.Any) -> float:
    """A number (text, int or float, never a bool or NaN)."""
    if isinstance(value, bool):
        raise invalid(name, value, "a number")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise invalid(name, value, "a number") from None
    if math.isnan(number):
        raise invalid(name, value, "a number")
    return number


def read_seconds(name: str, value: typing.Any) -> float:
    """A duration in seconds, 0 or more."""
    try:
        seconds = read_float(name, value)
    except InvalidOptionError:
        seconds = -1.0
    if seconds < 0:
        raise invalid(name, value, "a number of seconds, 0 or more")
    return seconds


def read_seconds_or_never(name: str, value: typing.Any) -> float | None:
    """A duration in seconds; `None` or a negative number (SQLAlchemy's -1): never."""
    if value is None:
        return None
    try:
        seconds = read_float(name, value)
    except InvalidOptionError:
        raise invalid(name, value, "a number of seconds (negative: never)") from None
    return None if seconds < 0 else seconds


def read_timeout(name: str, value: typing.Any) -> float | None:
    """A bound in seconds above zero, or `None` (in a URL: `none`): no bound."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    try:
        seconds = positive_seconds(read_float(name, value))
    except InvalidOptionError:
        seconds = None
    if seconds is None:
        raise invalid(name, value, "seconds above zero, or none for no bound")
    return seconds


def read_bool(name: str, value: typing.Any) -> bool:
    """`true` or `false` in any case, or a bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_FALSE:
        return TRUE_FALSE[value.strip().lower()]
    raise invalid(name, value, "true or false")


def read_text(name: str, value: typing.Any) -> str:
    """Text, as given (a socket path, say)."""
    if not isinstance(value, str):
        raise invalid(name, value, "text")
    return value


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
    raise InvalidOptionError(f"Invalid value {value!r} for the 'ssl' URL option: use {accepted}.")


def ssl_reader(
    modes: tuple[str, ...] = (), booleans: typing.Mapping[bool, str] | None = None
) -> Reader:
    """The reader of a URL's `ssl`: true, false or one of `modes`.

    `booleans` says what true and false become for a driver that takes only a mode
    (libpq's `sslmode`: require, disable); empty: the bools themselves.
    """

    as_mode = booleans or {}

    def read_ssl(name: str, value: typing.Any) -> bool | str:
        ssl = ssl_option(value, modes)
        return as_mode.get(ssl, ssl) if isinstance(ssl, bool) else ssl

    return read_ssl
