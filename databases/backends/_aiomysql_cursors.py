"""aiomysql cursors that send bytes parameters correctly with every PyMySQL we admit.

aiomysql 0.3.2 escapes bytes with PyMySQL's `escape_bytes_prefixed`, which PyMySQL 1.2
replaced by a string placeholder: every bytes parameter then fails with a `TypeError`.
These cursors write bytes as a hexadecimal binary literal (`_binary X'...'`, what
PyMySQL 1.2 itself sends) and leave every other value to the connection's public
`escape()`.

They override aiomysql's private `Cursor._escape_args(args, conn)`, the one place both
`execute()` and `executemany()` escape through. `PROBLEM` says why they are not used
(then the driver's own cursors are, as before): that hook is missing or has changed.
"""

from __future__ import annotations

import inspect
import typing

try:
    import aiomysql
except ImportError:  # pragma: no cover - reported when the backend is used
    aiomysql = None

_BYTES_LIKE = (bytes, bytearray, memoryview)


def escape_bytes(value: bytes | bytearray | memoryview) -> str:
    """A bytes value as a MySQL/MariaDB binary string literal."""
    return f"_binary X'{bytes(value).hex()}'"


def _escape(connection: typing.Any, value: typing.Any) -> str:
    if isinstance(value, _BYTES_LIKE):
        return escape_bytes(value)
    return typing.cast(str, connection.escape(value))


def _probe() -> str | None:
    """Why the cursors below cannot be used with the installed aiomysql, or None."""
    if aiomysql is None:
        return "aiomysql is not installed"
    hook = getattr(aiomysql.Cursor, "_escape_args", None)
    if hook is None:
        return "aiomysql.Cursor has no _escape_args()"
    if list(inspect.signature(hook).parameters) != ["self", "args", "conn"]:
        return f"aiomysql.Cursor._escape_args{inspect.signature(hook)} is not (self, args, conn)"
    return None


PROBLEM = _probe()

Cursor: typing.Any = None
SSCursor: typing.Any = None

if PROBLEM is None:

    class _EscapeBytes:
        """Escapes a statement's parameters, bytes included (mixed into both cursors)."""

        def _escape_args(self, args: typing.Any, conn: typing.Any) -> typing.Any:
            if isinstance(args, (tuple, list)):
                return tuple([_escape(conn, value) for value in args])
            if isinstance(args, dict):
                return {key: _escape(conn, value) for key, value in args.items()}
            return _escape(conn, args)

    class _Cursor(_EscapeBytes, aiomysql.Cursor):  # type: ignore[misc]
        pass

    class _SSCursor(_EscapeBytes, aiomysql.SSCursor):  # type: ignore[misc]
        pass

    Cursor, SSCursor = _Cursor, _SSCursor
