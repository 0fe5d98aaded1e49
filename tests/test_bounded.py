"""`within()`: a bounded wait in the caller's own task, as a cancellation of the step.

No database: plain asyncio futures stand for what a pool or a driver waits on.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from databases._bounded import within
from databases._run_to_end import run_to_end
from databases.errors import (
    ConnectTimeoutError,
    DatabaseTimeoutError,
    PoolTimeoutError,
    QueryTimeoutError,
)


class Expired(Exception):
    pass


def expired() -> Expired:
    return Expired("timed out")


@pytest.mark.asyncio
async def test_no_bound_is_the_step_itself() -> None:
    async def step() -> int:
        return 1

    coroutine = step()
    assert within(coroutine, None, expired) is coroutine
    assert await coroutine == 1


@pytest.mark.asyncio
async def test_the_clock_starts_when_the_step_first_waits() -> None:
    """A step that never waits (a free connection in the pool) is never timed out, however
    long its synchronous part takes."""

    async def step() -> str:
        time.sleep(0.05)  # noqa: ASYNC251 - synchronous work on purpose
        return "done"

    assert await within(step(), 0.01, expired) == "done"


@pytest.mark.asyncio
async def test_a_step_that_waits_too_long_is_cancelled() -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    started = time.monotonic()
    with pytest.raises(Expired):
        await within(never, 0.05, expired)
    assert 0.04 <= time.monotonic() - started < 1
    assert never.cancelled()


@pytest.mark.asyncio
async def test_a_result_that_arrives_as_the_timer_fires_is_handed_back() -> None:
    """The future the step waits on is done when the timer fires (as when a pool hands a
    connection over at that moment): the step gets a CancelledError, as from
    `Task.cancel()`, and gives the connection back; nothing is lost."""
    loop = asyncio.get_running_loop()
    handed_over: asyncio.Future[str] = loop.create_future()
    given_back: list[str] = []

    async def take() -> str:
        try:
            return await handed_over
        except asyncio.CancelledError:
            if handed_over.done() and not handed_over.cancelled():
                given_back.append(handed_over.result())
            raise

    def hand_over_now() -> bool:
        handed_over.set_result("connection")
        return True

    with pytest.raises(Expired):
        await within(take(), 0.02, expired, hand_over_now)
    assert given_back == ["connection"]


@pytest.mark.asyncio
async def test_too_late_to_stop_the_step_returns_its_result() -> None:
    async def step() -> str:
        await asyncio.sleep(0.05)
        return "result"

    assert await within(step(), 0.01, expired, lambda: False) == "result"


@pytest.mark.asyncio
async def test_a_step_that_fails_once_stopped_raises_the_timeout_from_its_error() -> None:
    async def step() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise RuntimeError("interrupted") from None

    with pytest.raises(Expired) as raised:
        await within(step(), 0.02, expired)
    assert isinstance(raised.value.__cause__, RuntimeError)


@pytest.mark.asyncio
async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    async def bounded() -> None:
        await within(asyncio.sleep(10), 5, expired)

    task = asyncio.create_task(bounded())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.asyncio
async def test_a_step_that_runs_to_its_end_ends_first() -> None:
    """A protected step (`run_to_end`) is not abandoned: the timeout is raised once it
    ended, as a cancellation would be."""
    finished: list[bool] = []

    async def protected() -> None:
        await asyncio.sleep(0.1)
        finished.append(True)

    started = time.monotonic()
    with pytest.raises(Expired):
        await within(run_to_end(protected()), 0.02, expired)
    assert finished == [True]
    assert time.monotonic() - started >= 0.09


@pytest.mark.asyncio
async def test_the_cleanup_after_a_timeout_is_not_cancelled_again() -> None:
    """One cancellation per timeout, as `Task.cancel()`: the step's cleanup may wait."""
    cleaned: list[bool] = []

    async def step() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.05)
            cleaned.append(True)

    with pytest.raises(Expired):
        await within(step(), 0.02, expired)
    assert cleaned == [True]


def test_the_timeout_errors_are_timeout_errors() -> None:
    """`except TimeoutError` and `except asyncio.TimeoutError` (a class of its own before
    Python 3.11) catch every timeout of the package."""
    for error in (PoolTimeoutError, ConnectTimeoutError, QueryTimeoutError):
        assert issubclass(error, DatabaseTimeoutError)
        assert issubclass(error, TimeoutError) and issubclass(error, asyncio.TimeoutError)
