"""Every use of asyncpg's, aiomysql's, asyncmy's and aiopg's private attributes, in one place.

They serve four needs the drivers' public API does not: dropping the connections of an
event loop that cannot run the drivers' own `close()` (a closed loop, or one idle in another
thread), waking an aiomysql `acquire()` that waits while a closed connection comes back,
telling whether aiopg still watches the descriptor of a connection libpq closed, telling
asyncpg's pooled connections apart across acquisitions (for the pool-health records), and
sending bytes parameters through aiomysql with PyMySQL 1.2 (see the aiomysql cursors at
the end). Each driver class is checked once, the first time one of its objects comes here:
the attributes read must be declared (`__slots__`, class attributes or set in
`__init__`). A class without them is named in `DRIVER_GAPS` with the missing names, once at
debug level on the "databases" logger too, and every step that needs them is skipped (the
sockets are then left to the driver's own cleanup), never an error.
"""

from __future__ import annotations

import inspect
import typing

from databases._logging import logger
from databases.backends.common.transports import close_now

# "module.Class" -> the private attributes it lacks, for each driver class that lacks any.
DRIVER_GAPS: dict[str, tuple[str, ...]] = {}
_checked: set[type] = set()

# What each kind of driver object is read for, by the attributes' names.
ASYNCPG_POOL = ("_loop", "_holders")
ASYNCPG_HOLDER = ("_con",)
ASYNCPG_PROXY = ("_con",)
ASYNCPG_CONNECTION = ("_transport", "_aborted")
MYSQL_POOL = ("_loop", "_free", "_used", "_terminated", "_closing")
AIOMYSQL_CONNECTION = ("_loop", "_writer", "_reader")
ASYNCMY_CONNECTION = ("_loop", "_transport", "_connected")
AIOPG_CONNECTION = ("_fileno",)


def _declared(cls: type, name: str) -> bool:
    if hasattr(cls, name):
        return True
    for klass in cls.__mro__:
        if name in getattr(klass, "__slots__", ()):
            return True
        init = klass.__dict__.get("__init__")
        if name in getattr(getattr(init, "__code__", None), "co_names", ()):
            return True
    return False


def check(obj: typing.Any, names: tuple[str, ...]) -> bool:
    """Whether the class of `obj` declares all of `names`."""
    return check_class(type(obj), names)


def check_class(cls: type, names: tuple[str, ...]) -> bool:
    """Whether `cls` declares all of `names`; checked (and a gap logged) once per class."""
    label = f"{cls.__module__}.{cls.__qualname__}"
    if cls not in _checked:
        _checked.add(cls)
        missing = tuple(name for name in names if not _declared(cls, name))
        if missing:
            DRIVER_GAPS[label] = missing
            logger.debug(
                "%s has no %s: connections of a closed or idle event loop are left to the "
                "driver's own cleanup",
                label,
                ", ".join(missing),
            )
    return label not in DRIVER_GAPS


# -- asyncpg --------------------------------------------------------------------------------


def asyncpg_pool_connections(pool: typing.Any) -> tuple[typing.Any, list[typing.Any]]:
    """A pool's event loop and the connections it holds (idle or in use)."""
    if not check(pool, ASYNCPG_POOL):
        return None, []
    connections = []
    for holder in pool._holders:
        if check(holder, ASYNCPG_HOLDER) and holder._con is not None:
            connections.append(holder._con)
    return pool._loop, connections


def asyncpg_unproxied(proxy: typing.Any) -> typing.Any:
    """The connection behind a pool's proxy (the same across acquisitions, where the
    proxy is new each time); the proxy itself if that cannot be read."""
    if check(proxy, ASYNCPG_PROXY):
        connection = proxy._con
        if connection is not None:
            return connection
    return proxy


def asyncpg_transport(connection: typing.Any) -> typing.Any:
    """The transport of a connection, to close from outside."""
    return connection._transport if check(connection, ASYNCPG_CONNECTION) else None


def asyncpg_mark_aborted(connection: typing.Any) -> None:
    """Tell a connection closed from outside that it is gone, or collecting it warns
    "unclosed connection"."""
    if check(connection, ASYNCPG_CONNECTION):
        connection._aborted = True


# -- aiopg ----------------------------------------------------------------------------------

# psycopg2's `connection.closed` for a connection libpq found broken (1: closed by close()).
_PSYCOPG2_BROKEN = 2


def aiopg_reader_left(connection: typing.Any) -> bool:
    """Whether aiopg still watches the descriptor of a connection libpq closed on finding
    it broken. aiopg stops watching when it finds the descriptor bad; if another thread
    reused the number first (a new socket got it), it goes on watching that number."""
    return (
        connection.closed == _PSYCOPG2_BROKEN
        and check(connection, AIOPG_CONNECTION)
        and connection._fileno is not None
    )


# -- aiomysql and asyncmy -------------------------------------------------------------------


def mysql_connection_loop(connection: typing.Any) -> typing.Any:
    """The event loop a MySQL driver connection runs on, if it tells."""
    return getattr(connection, "_loop", None)


def mysql_cut(connection: typing.Any, loop: typing.Any) -> None:
    """Close a MySQL driver connection's socket now (`close_now`) and take its transport
    away, so that it knows it has none (which keeps its `__del__` from closing again)."""
    if getattr(connection, "_writer", None) is not None:  # aiomysql: asyncio streams
        if check(connection, AIOMYSQL_CONNECTION):
            # Closed before the stream writer is let go: collected on a closed loop with
            # its transport open, it would warn.
            close_now(connection._writer.transport, loop)
            connection._writer = None
            connection._reader = None
    elif getattr(connection, "_transport", None) is not None and check(  # asyncmy
        connection, ASYNCMY_CONNECTION
    ):
        close_now(connection._transport, loop)
        connection._transport = None
        connection._connected = False


def mysql_pool_loop(pool: typing.Any) -> typing.Any:
    return pool._loop if check(pool, MYSQL_POOL) else None


def mysql_pool_idle(pool: typing.Any) -> typing.Any:
    """The pool's idle connections (a deque), or None."""
    return pool._free if check(pool, MYSQL_POOL) else None


def mysql_pool_cut_all(pool: typing.Any) -> list[typing.Any]:
    """Empty the pool without awaiting: mark it closing, and every connection it holds as
    terminated (a later release of one must find it there); those connections."""
    if not check(pool, MYSQL_POOL):
        return []
    pool._closing = True
    idle, used = pool._free, pool._used
    connections = [*idle, *used]
    idle.clear()
    pool._terminated.update(used)
    used.clear()
    return connections


def mysql_pool_wakeup(pool: typing.Any) -> typing.Callable[[], typing.Awaitable[None]] | None:
    """aiomysql's coroutine that wakes a waiting `acquire()`, if the pool has one."""
    wakeup: typing.Callable[[], typing.Awaitable[None]] | None = getattr(pool, "_wakeup", None)
    return wakeup


# -- aiomysql cursors that send bytes with every PyMySQL -----------------------------------
#
# aiomysql 0.3.2 escapes bytes with PyMySQL's `escape_bytes_prefixed`, which PyMySQL 1.2
# replaced by a string placeholder: every bytes parameter then fails with a TypeError.
# These cursors write bytes as a hexadecimal binary literal (`_binary X'...'`, what PyMySQL
# 1.2 itself sends) and leave every other value to the connection's public `escape()`. They
# override `Cursor._escape_args(args, conn)`, the one place both `execute()` and
# `executemany()` escape through; `AIOMYSQL_CURSORS_PROBLEM` says why they are not used
# (then the driver's own cursors are, as before).

_BYTES_LIKE = (bytes, bytearray, memoryview)


def escape_bytes(value: bytes | bytearray | memoryview) -> str:
    """A bytes value as a MySQL/MariaDB binary string literal."""
    return f"_binary X'{bytes(value).hex()}'"


def _escape(connection: typing.Any, value: typing.Any) -> str:
    if isinstance(value, _BYTES_LIKE):
        return escape_bytes(value)
    return typing.cast(str, connection.escape(value))


class _EscapeBytes:
    """Escapes a statement's parameters, bytes included (mixed into both cursors)."""

    def _escape_args(self, args: typing.Any, conn: typing.Any) -> typing.Any:
        if isinstance(args, (tuple, list)):
            return tuple([_escape(conn, value) for value in args])
        if isinstance(args, dict):
            return {key: _escape(conn, value) for key, value in args.items()}
        return _escape(conn, args)


def _aiomysql_cursors() -> tuple[typing.Any, typing.Any, str | None]:
    """Our buffered and unbuffered aiomysql cursor classes, or why they cannot be used."""
    try:
        import aiomysql
    except ImportError:
        return None, None, "aiomysql is not installed"
    hook = getattr(aiomysql.Cursor, "_escape_args", None)
    if hook is None:
        return None, None, "aiomysql.Cursor has no _escape_args()"
    if list(inspect.signature(hook).parameters) != ["self", "args", "conn"]:
        return None, None, f"aiomysql.Cursor._escape_args{inspect.signature(hook)} changed"
    cursor = type("Cursor", (_EscapeBytes, aiomysql.Cursor), {})
    unbuffered = type("SSCursor", (_EscapeBytes, aiomysql.SSCursor), {})
    return cursor, unbuffered, None


AIOMYSQL_CURSOR, AIOMYSQL_SSCURSOR, AIOMYSQL_CURSORS_PROBLEM = _aiomysql_cursors()
if AIOMYSQL_CURSORS_PROBLEM is not None:
    logger.debug("aiomysql bytes escaping left to the driver: %s", AIOMYSQL_CURSORS_PROBLEM)
