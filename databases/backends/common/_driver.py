"""Small things every bundled driver adapter needs, written once.

Kept free of driver imports: each backend module imports its own driver and hands it in.
"""

from __future__ import annotations

import asyncio
import typing

from databases._logging import logger
from databases._loops import running_loop

# A value conversion (bind or result processor).
Converter = typing.Callable[[typing.Any], typing.Any]

# Rows fetched per round trip when iterating (a server-side cursor, an unbuffered stream
# or a worker thread): few trips, bounded memory.
ITERATE_CHUNK = 500

NOT_ACQUIRED = "The connection is not acquired: use it inside `async with connection:`."


def require_driver(module: object, package: str, extra: str, backend: str) -> None:
    """Raise an ImportError saying what to install when the driver module is missing.

    Backend modules import without their driver (test suites import them all), so the
    error comes when a backend is built.
    """
    if module is None:
        raise ImportError(
            f"The {backend} backend needs the {package!r} package: "
            f"pip install 'databases[{extra}]' (or pip install {package})."
        )


def runs_in_other_thread(loop: asyncio.AbstractEventLoop | None) -> bool:
    """Whether `loop` is running, but not here: it must then do its own teardown."""
    return (
        loop is not None
        and loop.is_running()
        and not loop.is_closed()
        and running_loop() is not loop
    )


def tear_down(loop: asyncio.AbstractEventLoop | None, drop: typing.Callable[[], None]) -> None:
    """Run `drop()` (closing sockets, awaiting nothing) where it is safe; never raises.

    A loop running in another thread owns its transports: `drop()` is handed to it.
    Otherwise (a closed loop, an idle one, or this thread's) it runs here and now.
    """
    try:
        if runs_in_other_thread(loop):
            assert loop is not None
            loop.call_soon_threadsafe(drop)
        else:
            drop()
    except Exception:  # pragma: no cover - best effort by design
        logger.debug("Could not tear down a connection pool", exc_info=True)
