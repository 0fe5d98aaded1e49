"""An event loop on a thread of its own that outlives every test's loop.

The pytest fixtures connect the database and hold each test's savepoint from this loop: a
loop that stays alive and connected for the whole run, whatever loops the tests and their
fixtures use (pytest-asyncio's function, module or session loops, anyio's, `TestClient`'s,
none at all). So the database stays connected when a test's loop or an app's lifespan
disconnects, and the savepoint is never rolled back by the end of a test's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import typing
from collections.abc import Coroutine

from databases._session_loop import start_loop_thread

_T = typing.TypeVar("_T")


class FixtureLoopTimeoutError(TimeoutError):
    """A step run on the fixture loop did not finish in time (it was cancelled)."""


class FixtureLoop:
    """A running event loop on a daemon thread; `run()` awaits a coroutine there."""

    def __init__(self, name: str) -> None:
        # A daemon: a run interrupted at a bad moment must not hang the process at exit.
        self._loop, self._thread = start_loop_thread(name)

    def run(
        self, coroutine: Coroutine[typing.Any, typing.Any, _T], timeout: float, what: str
    ) -> _T:
        """Run `coroutine` on the loop and wait for its result, at most `timeout` seconds;
        past that it is cancelled and `FixtureLoopTimeoutError` says `what` did not end."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise FixtureLoopTimeoutError(
                f"{what} did not finish within {timeout:g} s (the ini option "
                "databases_timeout sets this bound)"
            ) from None

    def close(self, timeout: float) -> None:
        """Close the loop as `asyncio.run()` does: async generators first (what loop-bound
        state watches for), then stop the thread."""
        try:
            self.run(self._loop.shutdown_asyncgens(), timeout, "Closing the fixture loop")
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._loop.close()
