"""Closing a connection's socket at once, whatever state its event loop is in.

Used for loops that cannot run our coroutines: closed ones, and live ones that are idle
(not running) when another loop disconnects the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import typing


def close_now(transport: typing.Any, loop: asyncio.AbstractEventLoop | None) -> None:
    """Take the transport off its loop and close its socket now; never raises.

    `abort()` unregisters the socket from the loop's selector (on a loop that is not
    closed it also schedules the protocol's `connection_lost` for when that loop runs
    again). The socket is then closed here, so the server sees the disconnect at once
    and rolls back what the connection left open, even if that loop never runs again.
    """
    if transport is None:
        return
    with contextlib.suppress(Exception):
        transport.abort()  # on a closed loop: unregisters, then fails to schedule
    sock = getattr(transport, "_sock", None)
    if sock is None:
        sock = getattr(transport.get_extra_info("socket"), "_sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
    if loop is None or loop.is_closed():
        # Nothing will run connection_lost: keep the transport's __del__ from warning
        # about a socket that is closed already.
        with contextlib.suppress(AttributeError):
            transport._sock = None
