"""Await a step for a bounded time, in the caller's own task, as a cancellation of the step.

Every bounded wait of the package goes through `within()`: a pool's acquire
(`pool_timeout`), opening connections (`connect_timeout`) and the calls given `timeout=`.

`asyncio.wait_for()` runs the step in a task of its own before Python 3.12, which costs
extra turns of the event loop, and there loses the step's result when it arrives just as
the timeout fires: a connection the pool hands over at that moment would leak.
`within()` drives the step's coroutine inside the awaiting task instead (as `run_to_end()`
does), and a step that never waits (a free connection in the pool) sets no timer at all.
Once the step waits, a timer runs. When it fires, the step is cancelled exactly as
`Task.cancel()` cancels it: the future it waits on is cancelled or, when that future is
done already (or refuses, as `run_to_end()`'s stand-in does), a CancelledError is thrown
in at its next resumption. The step cleans up as it does for any cancellation, and the
caller gets the timeout's error; a step that finishes regardless returns its result, so
nothing it obtained is lost.
"""

from __future__ import annotations

import asyncio
import math
import types
import typing
from collections.abc import Awaitable, Generator

from databases._logging import logger

_T = typing.TypeVar("_T")


def positive_seconds(value: object) -> float | None:
    """`value` as seconds if it is a finite number above zero (no bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0 < value < math.inf else None


def within(
    step: Awaitable[_T],
    timeout: float | None,
    timed_out: typing.Callable[[], BaseException],
    on_expiry: typing.Callable[[], bool] | None = None,
) -> Awaitable[_T]:
    """`await within(step, timeout, timed_out)`: `await step`, cancelled after `timeout`
    seconds of waiting, raising `timed_out()` then; `None`: no bound, `step` itself.

    `on_expiry()` runs when the timer fires, before the step is cancelled: where
    cancelling the task cannot stop the work (a statement left to run to its end), it
    asks the server to stop it. It returns False when it is too late to stop the step (its
    work is done, what is left only tidies up): the step then ends undisturbed.
    """
    if timeout is None:
        return step
    return _within(step, timeout, timed_out, on_expiry)


async def _within(
    step: Awaitable[_T],
    timeout: float,
    timed_out: typing.Callable[[], BaseException],
    on_expiry: typing.Callable[[], bool] | None,
) -> _T:
    """The step's first stretch, up to its first wait, costs no more than awaiting it."""
    steps = step if type(step) is types.CoroutineType else step.__await__()
    try:
        waited_on = steps.send(None)
    except StopIteration as finished:
        return typing.cast(_T, finished.value)
    # The step waits: from now on the clock runs.
    return await _Within(steps, waited_on, timeout, timed_out, on_expiry)


class _Expiry:
    """What the timer and the driving generator share about one bounded wait."""

    __slots__ = ("expired", "must_cancel", "waiting")

    def __init__(self, waiting: typing.Any) -> None:
        self.expired = False
        # A CancelledError is owed to the step at its next resumption.
        self.must_cancel = False
        # What the step waits on right now.
        self.waiting = waiting


def _cancel(waited_on: typing.Any) -> bool:
    """Cancel what a step waits on, if it is a future that accepts it."""
    if getattr(waited_on, "_asyncio_future_blocking", None) is None:
        return False  # a bare `yield`: nothing to cancel
    return bool(waited_on.cancel())


def _cancel_requests(task: asyncio.Task[typing.Any] | None) -> int:
    """How many cancellations of `task` are pending (Python 3.11+; 0 before)."""
    cancelling = getattr(task, "cancelling", None)
    return int(cancelling()) if cancelling is not None else 0


class _Within(typing.Generic[_T]):
    """Drives a step that waits on `waited_on` on in the awaiting task, cancelling it when
    the timer fires."""

    __slots__ = ("_on_expiry", "_step", "_timed_out", "_timeout", "_waited_on")

    def __init__(
        self,
        step: Generator[typing.Any, typing.Any, _T] | typing.Coroutine[typing.Any, typing.Any, _T],
        waited_on: typing.Any,
        timeout: float,
        timed_out: typing.Callable[[], BaseException],
        on_expiry: typing.Callable[[], bool] | None,
    ) -> None:
        self._step = step
        self._waited_on = waited_on
        self._timeout = timeout
        self._timed_out = timed_out
        self._on_expiry = on_expiry

    def _expire(self, state: _Expiry) -> None:
        if self._on_expiry is not None:
            try:
                if not self._on_expiry():
                    return
            except Exception:  # pragma: no cover - a hook must not break the timeout
                logger.warning("Could not interrupt a timed-out statement", exc_info=True)
        state.expired = True
        if not _cancel(state.waiting):
            state.must_cancel = True

    def __await__(self) -> Generator[typing.Any, typing.Any, _T]:
        step, waited_on = self._step, self._waited_on
        task = asyncio.current_task()
        pending_before = _cancel_requests(task)
        state = _Expiry(waited_on)
        timer = asyncio.get_running_loop().call_later(self._timeout, self._expire, state)
        try:
            while True:
                error: BaseException | None = None
                sent: typing.Any = None
                try:
                    sent = yield waited_on
                except GeneratorExit:
                    step.close()
                    raise
                except BaseException as exc:
                    error = exc
                state.waiting = None
                if state.must_cancel:  # as Task.cancel(): in place of what came
                    state.must_cancel = False
                    error = asyncio.CancelledError()
                try:
                    waited_on = step.send(sent) if error is None else step.throw(error)
                except StopIteration as finished:
                    return typing.cast(_T, finished.value)
                state.waiting = waited_on
                if state.must_cancel and _cancel(waited_on):
                    state.must_cancel = False
        except asyncio.CancelledError:
            # Ours, unless the task was also cancelled from outside (seen from 3.11 on).
            if state.expired and _cancel_requests(task) == pending_before:
                raise self._timed_out() from None
            raise
        except Exception as exc:
            if state.expired:  # the step failed because it was stopped
                raise self._timed_out() from exc
            raise
        finally:
            timer.cancel()
