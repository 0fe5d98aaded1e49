"""Await a driver step so that cancelling the caller lets the step finish first.

`asyncio.shield()` does this with a second task, which costs three extra turns of the
event loop per statement (start the task, its done callback, wake the caller): more
than the statement's own round trip on a fast server. `run_to_end()` drives the step's
coroutine inside the caller's own task instead. Whenever the step waits on a future,
the task is shown a `_Waiting` stand-in that forwards everything to that future but
refuses to be cancelled. asyncio then remembers the cancellation and delivers it the
next time the task runs, which `run_to_end()` catches and keeps for later: the step
goes on, and once it ends (with a result or an error) the caller gets CancelledError.

This relies on the documented duck-typing of futures that `asyncio.Task` accepts: an
object with `_asyncio_future_blocking`, `get_loop()`, `add_done_callback()` and
`cancel()` (the same protocol that lets tasks await futures of other libraries).
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Awaitable, Generator

_T = typing.TypeVar("_T")


class _Waiting:
    """What the task sees while the step waits on `future`: that future, uncancellable."""

    __slots__ = ("_asyncio_future_blocking", "_future")

    def __init__(self, future: asyncio.Future[typing.Any]) -> None:
        self._future = future
        self._asyncio_future_blocking = True

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._future.get_loop()

    def add_done_callback(self, callback: typing.Any, *, context: typing.Any = None) -> None:
        self._future.add_done_callback(callback, context=context)

    def remove_done_callback(self, callback: typing.Any) -> int:
        return self._future.remove_done_callback(callback)

    def cancel(self, msg: typing.Any = None) -> bool:
        # Refused: the task keeps the request and raises it when the future is done.
        return False

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return self._future.done()

    def result(self) -> typing.Any:
        return self._future.result()

    def exception(self) -> BaseException | None:
        return self._future.exception()

    def __repr__(self) -> str:
        return f"<run_to_end waiting on {self._future!r}>"


def run_to_end(step: Awaitable[_T]) -> Awaitable[_T]:
    """`await run_to_end(step)`: like `await step`, but a cancellation waits for its end."""
    return _RunToEnd(step)


class _RunToEnd(typing.Generic[_T]):
    """Drives `step` in the awaiting task, holding back that task's cancellation."""

    __slots__ = ("_step",)

    def __init__(self, step: Awaitable[_T]) -> None:
        self._step = step

    def __await__(self) -> Generator[typing.Any, typing.Any, _T]:
        step = self._step.__await__()
        cancelled: asyncio.CancelledError | None = None
        sent: typing.Any = None
        error: BaseException | None = None
        while True:
            try:
                waited_on = step.send(sent) if error is None else step.throw(error)
            except StopIteration as finished:
                if cancelled is not None:
                    raise cancelled from None
                return typing.cast(_T, finished.value)
            except BaseException:
                if cancelled is not None:
                    # The caller is cancelled; the step's own failure is not its concern.
                    raise cancelled from None
                raise
            sent = error = None
            shown = waited_on
            if getattr(waited_on, "_asyncio_future_blocking", None):
                waited_on._asyncio_future_blocking = False
                shown = _Waiting(waited_on)
            try:
                sent = yield shown
            except asyncio.CancelledError as exc:
                # The task's own cancellation, delivered now that the future is done (or
                # at a bare `yield`): keep it, let the step carry on.
                if waited_on is None or (waited_on.done() and not waited_on.cancelled()):
                    cancelled = exc
                else:
                    error = exc
            except GeneratorExit:
                step.close()
                raise
            except BaseException as exc:
                error = exc
