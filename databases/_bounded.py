"""Await a step for a bounded time, in the caller's own task, as a cancellation of the step.

Every bounded wait of the package goes through `within()`: a pool's acquire
(`pool_timeout`), opening connections (`connect_timeout`) and the calls given `timeout=`.

`asyncio.wait_for()` runs the step in a task of its own before Python 3.12, which costs
extra turns of the event loop, and there loses the step's result when it arrives just as
the timeout fires: a connection the pool hands over at that moment would leak;
`asyncio.timeout()` exists only from 3.11 and arms a timer for every wait. `within()`
runs the step inside the awaiting task. A step that never waits (a free connection in
the pool) costs a coroutine call and nothing else. Once it waits, its deadline joins the
loop's `_Deadlines`, where waits expiring close together share one timer. When the
deadline passes the task is cancelled, as by `asyncio.timeout()`: what the step waits on
is cancelled, or the step gets a CancelledError when it next resumes. The step cleans up
as it does for any cancellation and the caller gets the timeout's error; a step that
finishes regardless returns its result, so nothing it obtained is lost.
"""

from __future__ import annotations

import asyncio
import math
import sys
import types
import typing
import weakref
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


# Tasks count the cancellations asked of them from Python 3.11 on: a timeout then tells its
# own from one from outside, as `asyncio.timeout()` does. Before, it cannot.
if sys.version_info >= (3, 11):

    def _cancel_requests(task: asyncio.Task[typing.Any]) -> int:
        return task.cancelling()

    def _uncancel(task: asyncio.Task[typing.Any]) -> int:
        return task.uncancel()

else:  # pragma: no cover - Python 3.9 and 3.10

    def _cancel_requests(task: asyncio.Task[typing.Any]) -> int:
        return 0

    def _uncancel(task: asyncio.Task[typing.Any]) -> int:
        return 0


class _Within(typing.Generic[_T]):
    """The rest of a step that waits (on `waiting`), in the awaiting task, which is
    cancelled when the deadline passes, as `asyncio.timeout()` does."""

    __slots__ = ("_on_expiry", "_step", "_task", "_timed_out", "_timeout", "expired", "waiting")

    def __init__(
        self,
        step: Generator[typing.Any, typing.Any, _T] | typing.Coroutine[typing.Any, typing.Any, _T],
        waiting: typing.Any,
        timeout: float,
        timed_out: typing.Callable[[], BaseException],
        on_expiry: typing.Callable[[], bool] | None,
    ) -> None:
        self._step = step
        self._timeout = timeout
        self._timed_out = timed_out
        self._on_expiry = on_expiry
        self._task: asyncio.Task[typing.Any] | None = None
        self.expired = False
        # What the step waited on when it first stopped.
        self.waiting = waiting

    def expire(self) -> None:
        """The deadline passed (called by `_Deadlines`): cancel the task, which cancels
        what the step waits on, or the step at its next resumption."""
        if self._on_expiry is not None:
            try:
                if not self._on_expiry():
                    return
            except Exception:  # pragma: no cover - a hook must not break the timeout
                logger.warning("Could not interrupt a timed-out statement", exc_info=True)
        if self._task is not None and not self._task.done():
            self.expired = True
            self._task.cancel()

    def __await__(self) -> Generator[typing.Any, typing.Any, _T]:
        step, waited_on = self._step, self.waiting
        self.waiting = None
        task = self._task = asyncio.current_task()
        if task is None:  # pragma: no cover - awaited outside a task
            return (yield from _resume(step, waited_on))
        pending_before = _cancel_requests(task)
        group = _deadlines(asyncio.get_running_loop()).add(self, self._timeout)
        try:
            result = yield from _resume(step, waited_on)
        except asyncio.CancelledError:
            # Ours, unless the task was also cancelled from outside (seen from 3.11 on).
            if self.expired and _uncancel(task) <= pending_before:
                raise self._timed_out() from None
            raise
        except Exception as exc:
            if self.expired:  # the step failed because it was stopped
                _uncancel(task)
                raise self._timed_out() from exc
            raise
        finally:
            group.discard(self)
        if self.expired:  # it finished all the same: nothing to report but its result
            _uncancel(task)
        return result


@types.coroutine
def _resume(
    step: Generator[typing.Any, typing.Any, _T] | typing.Coroutine[typing.Any, typing.Any, _T],
    waited_on: typing.Any,
) -> Generator[typing.Any, typing.Any, _T]:
    """The rest of `step`, which stopped on `waited_on`: handed to the task, then the step
    driven natively (`yield from`) from where it stopped."""
    while True:
        try:
            yield waited_on
        except GeneratorExit:
            step.close()
            raise
        except BaseException as exc:  # thrown in by the task (a cancellation)
            try:
                waited_on = step.throw(exc)
            except StopIteration as finished:
                return typing.cast(_T, finished.value)
            continue
        result: _T = yield from step  # type: ignore[misc]
        return result


# Deadlines are rounded up to a multiple of 1/RESOLUTION_STEPS of their timeout, taken
# down to a power of two between these bounds (seconds).
RESOLUTION_STEPS = 16
MIN_RESOLUTION = 2.0**-10
MAX_RESOLUTION = 1.0


_resolutions: dict[float, float] = {}


def _resolution(timeout: float) -> float:
    """How finely deadlines of waits of `timeout` seconds are kept apart."""
    resolution = _resolutions.get(timeout)
    if resolution is None:
        exponent = math.floor(math.log2(timeout / RESOLUTION_STEPS))
        resolution = min(MAX_RESOLUTION, max(MIN_RESOLUTION, 2.0**exponent))
        if len(_resolutions) < 256:
            _resolutions[timeout] = resolution
    return resolution


class _Deadlines:
    """One event loop's bounded waits, grouped by when they expire: one timer per group.

    A timer of its own per wait (`loop.call_later()`) costs more than a pool's whole
    acquire. Waits that expire close together (every acquire of a busy pool, all with the
    same `pool_timeout`) share one instead, at the price of expiring up to 1/16 of their
    timeout (at most a second) late.
    """

    __slots__ = ("_groups", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._groups: dict[float, set[_Within[typing.Any]]] = {}

    def add(self, waiting: _Within[typing.Any], timeout: float) -> set[_Within[typing.Any]]:
        """Expire `waiting` once `timeout` has passed; the group to discard it from."""
        resolution = _resolution(timeout)
        when = math.ceil((self._loop.time() + timeout) / resolution) * resolution
        group = self._groups.get(when)
        if group is None:
            group = self._groups[when] = set()
            self._loop.call_at(when, self._expire, when)
        group.add(waiting)
        return group

    def _expire(self, when: float) -> None:
        for waiting in self._groups.pop(when, ()):
            waiting.expire()


_loop_deadlines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines]
_loop_deadlines = weakref.WeakKeyDictionary()
# The last loop asked for, and its deadlines: most processes run one loop at a time.
_last: tuple[weakref.ReferenceType[asyncio.AbstractEventLoop], _Deadlines] | None = None


def _deadlines(loop: asyncio.AbstractEventLoop) -> _Deadlines:
    global _last
    last = _last
    if last is not None and last[0]() is loop:
        return last[1]
    deadlines = _loop_deadlines.get(loop)
    if deadlines is None:
        deadlines = _loop_deadlines[loop] = _Deadlines(loop)
    _last = (weakref.ref(loop), deadlines)
    return deadlines
