"""`run_to_end()`: a step finishes even when its caller is cancelled, in the same task."""

from __future__ import annotations

import asyncio
import typing

import pytest
import uvloop

from databases._run_to_end import run_to_end

LOOPS = pytest.mark.parametrize("new_loop", [asyncio.new_event_loop, uvloop.new_event_loop])


def run(new_loop: typing.Callable[[], asyncio.AbstractEventLoop], main: typing.Any) -> typing.Any:
    loop = new_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


class Step:
    """A step that waits `waits` times on futures the test completes, then returns."""

    def __init__(self, waits: int = 2, fail: bool = False) -> None:
        self.waits = waits
        self.fail = fail
        self.futures: list[asyncio.Future[int]] = []
        self.waiting: asyncio.Queue[asyncio.Future[int]] = asyncio.Queue()
        self.reached: list[int] = []
        self.started = asyncio.Event()

    async def __call__(self) -> int:
        total = 0
        for index in range(self.waits):
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self.futures.append(future)
            self.waiting.put_nowait(future)
            self.started.set()
            total += await future
            self.reached.append(index)
        if self.fail:
            raise LookupError("the step failed")
        return total

    async def complete_all(self) -> None:
        """Complete each future as the step reaches it."""
        for index in range(self.waits):
            future = await self.waiting.get()
            future.set_result(index + 1)


@LOOPS
def test_result_and_errors_pass_through(new_loop: typing.Any) -> None:
    async def main() -> None:
        step = Step(waits=3)
        completer = asyncio.ensure_future(step.complete_all())
        assert await run_to_end(step()) == 6
        await completer

        failing = Step(waits=1, fail=True)
        completer = asyncio.ensure_future(failing.complete_all())
        with pytest.raises(LookupError):
            await run_to_end(failing())
        await completer

    run(new_loop, main)


@LOOPS
def test_cancelled_caller_waits_for_the_step_to_end(new_loop: typing.Any) -> None:
    async def main() -> None:
        step = Step(waits=3)
        task = asyncio.ensure_future(run_to_end(step()))
        await step.started.wait()
        task.cancel()
        for _ in range(5):
            await asyncio.sleep(0)
        # The step is still waiting on its first future: nothing was cancelled under it.
        assert not task.done()
        assert not step.futures[0].cancelled()
        assert step.reached == []
        await step.complete_all()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()
        assert step.reached == [0, 1, 2]

    run(new_loop, main)


@LOOPS
def test_step_failure_after_cancel_ends_cancelled(new_loop: typing.Any) -> None:
    async def main() -> None:
        step = Step(waits=1, fail=True)
        task = asyncio.ensure_future(run_to_end(step()))
        await step.started.wait()
        task.cancel()
        await step.complete_all()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert step.reached == [0]

    run(new_loop, main)


@LOOPS
def test_timeout_after_the_step_completed(new_loop: typing.Any) -> None:
    async def main() -> None:
        step = Step(waits=2)

        async def complete_later() -> None:
            await asyncio.sleep(0.05)
            await step.complete_all()

        completer = asyncio.ensure_future(complete_later())
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(run_to_end(step()), 0.01)
        assert step.reached == [0, 1]
        await completer

    run(new_loop, main)


@LOOPS
def test_cancel_at_a_bare_yield(new_loop: typing.Any) -> None:
    async def main() -> None:
        steps: list[int] = []

        async def step() -> None:
            for index in range(3):
                await asyncio.sleep(0)
                steps.append(index)

        task = asyncio.ensure_future(run_to_end(step()))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert steps == [0, 1, 2]

    run(new_loop, main)


@LOOPS
def test_future_cancelled_by_someone_else_reaches_the_step(new_loop: typing.Any) -> None:
    async def main() -> None:
        step = Step(waits=1)
        task = asyncio.ensure_future(run_to_end(step()))
        await step.started.wait()
        step.futures[0].cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert step.reached == []

    run(new_loop, main)


@LOOPS
def test_closing_the_caller_closes_the_step(new_loop: typing.Any) -> None:
    async def main() -> None:
        closed: list[bool] = []

        async def step() -> None:
            try:
                await asyncio.get_running_loop().create_future()
            finally:
                closed.append(True)

        awaiting = run_to_end(step()).__await__()
        next(awaiting)
        awaiting.close()
        assert closed == [True]

    run(new_loop, main)
