"""One event loop per process on a thread of its own, and a way to await work on it.

The force-rollback session's connection lives on this loop, so the session serves every
other loop whatever they are doing: idle (pytest's session loop while a test's loop
runs), blocked (a test inside `with TestClient(app):` waiting for the app's loop) or
closed (a finished `asyncio.run()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
import typing
from collections.abc import Awaitable, Callable, Coroutine

_T = typing.TypeVar("_T")


class SessionLoop:
    """The process's session loop, started on first use; a forked child starts its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None:
            return loop
        with self._lock:
            if self._loop is None:
                self._loop = self._start()
            return self._loop

    @staticmethod
    def _start() -> asyncio.AbstractEventLoop:
        # A daemon: it serves the others and must never keep the process alive. Sessions
        # still open at exit are rolled back by an atexit hook, while it still runs.
        loop, _ = start_loop_thread("databases-session-loop")
        return loop

    def forget(self) -> None:
        """In a forked child: the parent's thread does not exist here."""
        self._lock = threading.Lock()
        self._loop = None


def start_loop_thread(name: str) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """A new event loop running forever on a new daemon thread `name`, once it runs."""
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        loop.run_forever()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    started.wait()
    return loop, thread


SESSION_LOOP = SessionLoop()
if hasattr(os, "register_at_fork"):  # pragma: no branch - every POSIX Python has it
    os.register_at_fork(after_in_child=SESSION_LOOP.forget)


class _RemoteCall(typing.Generic[_T]):
    """One call of `call_in()`: its task on the target loop and the caller's wake-up."""

    __slots__ = ("call", "caller", "done", "target", "task", "waiter")

    def __init__(
        self,
        target: asyncio.AbstractEventLoop,
        call: Callable[[], Coroutine[typing.Any, typing.Any, _T]],
    ) -> None:
        self.target = target
        self.caller = asyncio.get_running_loop()
        self.call = call
        self.task: asyncio.Task[_T] | None = None
        self.done = False
        self.waiter: asyncio.Future[None] | None = None

    def start(self) -> None:
        """On the target loop, in a copy of the caller's context."""
        self.task = self.target.create_task(self.call())
        self.task.add_done_callback(self._report)

    def cancel(self) -> None:
        """On the target loop."""
        if self.task is not None:
            self.task.cancel()

    def _report(self, task: asyncio.Task[_T]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved: the caller gets it, if its loop still runs
        with contextlib.suppress(RuntimeError):  # else its loop closed: nobody waits
            self.caller.call_soon_threadsafe(self._wake_caller)

    def _wake_caller(self) -> None:
        """On the caller's loop."""
        self.done = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


async def call_in(
    loop: asyncio.AbstractEventLoop,
    call: Callable[[], Coroutine[typing.Any, typing.Any, _T]],
    undo: Callable[[_T], Coroutine[typing.Any, typing.Any, object]] | None = None,
) -> _T:
    """Await `call()` run as a task on `loop`, from the running loop (another one).

    The task runs in a copy of the caller's context, so context variables read there see
    the caller's values. Cancelling the caller cancels the task and then waits for it to
    end: a step that must run to its end (see `run_to_end`) does so before the caller gets
    its CancelledError. If the task had already succeeded, `undo(result)` runs on `loop`.
    """
    remote = _RemoteCall(loop, call)
    loop.call_soon_threadsafe(remote.start, context=contextvars.copy_context())
    cancelled: asyncio.CancelledError | None = None
    while not remote.done:
        waiter = remote.waiter = remote.caller.create_future()
        try:
            await waiter
        except asyncio.CancelledError as exc:
            if cancelled is None:
                cancelled = exc
                loop.call_soon_threadsafe(remote.cancel)
    task = typing.cast("asyncio.Task[_T]", remote.task)
    if cancelled is None:
        return task.result()
    if undo is not None and not task.cancelled() and task.exception() is None:
        result = task.result()
        await _outcome_of(call_in(loop, lambda: undo(result)))
    raise cancelled


async def _outcome_of(future: Awaitable[object]) -> None:
    """Wait for `future` to finish whatever it does, ignoring the caller's cancellation."""
    waited = asyncio.ensure_future(future)
    while not waited.done():
        with contextlib.suppress(BaseException):
            await asyncio.shield(waited)
    if not waited.cancelled():
        waited.exception()  # retrieved: the caller reports its own cancellation instead


def call_blocking(
    loop: asyncio.AbstractEventLoop,
    call: Callable[[], Coroutine[typing.Any, typing.Any, _T]],
    timeout: float,
) -> _T:
    """Run `call()` on `loop` from a thread that runs no loop, waiting at most `timeout`."""
    return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout)
