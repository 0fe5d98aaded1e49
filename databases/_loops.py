"""Per-event-loop state of a database, and the registry that finds it for the running loop.

Pools, locks and connections belong to the loop that made them. A `Database` keeps one
`LoopState` per loop it is used in, created on first use in that loop, so the same
`Database` object works from any number of loops, one after another or at once in
several threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import typing
import weakref

from databases._logging import logger
from databases.interfaces import DatabaseBackend

# What a state keeps for its loop's tasks: the core's `Connection` (a type parameter, so
# this module needs nothing from the modules that use it).
Connection = typing.TypeVar("Connection")

LoopEndCallback = typing.Callable[["LoopState[typing.Any]"], typing.Awaitable[None]]


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# Released statement connections kept per loop for one-statement calls.
MAX_STATEMENT_CONNECTIONS = 128

# Closes handed to other loops by `close_elsewhere()`, kept alive until they finish.
_closing: set[asyncio.Task[None]] = set()


async def _watch_loop_end(
    state: LoopState[typing.Any], on_end: LoopEndCallback
) -> typing.AsyncGenerator[None, None]:
    """Suspended for the loop's lifetime; `shutdown_asyncgens()` resumes it at the end.

    `asyncio.run()`, `asyncio.Runner` (pytest-asyncio, anyio) and uvloop close their
    async generators while the loop still runs, just before closing it. That is the
    last moment a state can be closed properly on its own loop.
    """
    try:
        yield
    finally:
        if not state.ended:
            await on_end(state)


class LoopState(typing.Generic[Connection]):
    """Everything one database owns in one event loop, and its whole lifecycle.

    Only its own methods change its fields: the database, its connections and the
    force-rollback session call them to open, close and terminate it, and to hand task
    and statement connections in and out.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, make_backend: typing.Callable[[], DatabaseBackend]
    ) -> None:
        self._loop_ref = weakref.ref(loop)
        self.loop_id = id(loop)
        self.thread_id = threading.get_ident()
        # Made on first use: a loop that only uses the force-rollback session needs none.
        self._make_backend = make_backend
        self._backend: DatabaseBackend | None = None
        # Read freely (it is `Database._connection_map`); written only by the methods below.
        self.connections: weakref.WeakKeyDictionary[asyncio.Task[typing.Any], Connection]
        self.connections = weakref.WeakKeyDictionary()
        # Released statement connections, reused by later one-statement calls.
        self._statement_connections: list[Connection] = []
        # `connect()` was called in this loop (and not yet `disconnect()`).
        self.connected_explicitly = False
        # The backend's `connect()` has run (explicitly or on first use).
        self.is_open = False
        self._open_lock = asyncio.Lock()
        # Closed or terminated: nothing may run on it any more.
        self.ended = False
        self._loop_end_watch: typing.AsyncGenerator[None, None] | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop_ref()

    @property
    def backend(self) -> DatabaseBackend:
        backend = self._backend
        if backend is None:
            backend = self._backend = self._make_backend()
        return backend

    def is_alive(self) -> bool:
        """The loop still exists and is not closed: it may run our coroutines again."""
        loop = self._loop_ref()
        return loop is not None and not loop.is_closed()

    # -- opening and closing, on its own loop ---------------------------------------------

    async def open(self) -> None:
        """Connect the backend, once; the first use in the loop gets here."""
        async with self._open_lock:
            if not self.is_open:
                await self.backend.connect()
                self.is_open = True

    async def connect(self, *, open_backend: bool) -> None:
        """`Database.connect()` in this loop (the force-rollback session opens no backend here)."""
        if open_backend:
            await self.open()
        self.connected_explicitly = True

    async def disconnect(self) -> None:
        """`Database.disconnect()` in this loop: it is closed for good."""
        self.connected_explicitly = False
        await self.close()

    async def close(self) -> None:
        """Close for good on its own loop: end it and close its pool."""
        self.end()
        await self.close_backend()

    async def close_backend(self) -> None:
        """Close the backend's pool if open; the state may open it again later (the
        force-rollback session's state does, at its next start)."""
        if self.is_open:
            self.is_open = False
            await self.backend.disconnect()

    async def close_or_terminate(self) -> None:
        """Close on its own loop; if that fails, terminate instead."""
        try:
            await self.close()
        except Exception:
            logger.warning("Could not close the connections of an ending event loop", exc_info=True)
            self.terminate()

    # -- closing from elsewhere ---------------------------------------------------------------

    def close_elsewhere(self) -> None:
        """Close from another loop: on its own loop if that runs in another thread, else
        terminate at once.

        The close is handed to the other loop, not waited for: that loop may be blocked
        waiting for this one (a test inside `with TestClient(app):` waits for the app's
        shutdown, which is where this runs).
        """
        loop = self.loop
        runs_elsewhere = (
            loop is not None
            and loop.is_running()
            and not loop.is_closed()
            and self.thread_id != threading.get_ident()
        )
        if loop is not None and runs_elsewhere:
            try:
                loop.call_soon_threadsafe(self._close_on_own_loop)
                return
            except RuntimeError:  # the loop closed meanwhile
                pass
        self.terminate()

    def _close_on_own_loop(self) -> None:
        """Runs on the state's own loop: close it there, terminating it if that fails."""
        task = asyncio.get_running_loop().create_task(self.close())
        _closing.add(task)

        def done(task: asyncio.Task[None]) -> None:
            _closing.discard(task)
            if not task.cancelled() and task.exception() is not None:
                logger.warning(
                    "Could not close the connections of event loop %#x; terminating them",
                    self.loop_id,
                    exc_info=task.exception(),
                )
                self.terminate()

        task.add_done_callback(done)

    def terminate(self) -> None:
        """Drop the backend's connections synchronously (the loop cannot run coroutines)."""
        self.end()
        self.is_open = False
        self.connected_explicitly = False
        try:
            if self._backend is not None:
                self._backend.terminate()
        except Exception:  # pragma: no cover - a failing third-party backend must not block
            logger.warning("Could not terminate the connections of a closed loop", exc_info=True)

    # -- the end of its loop ----------------------------------------------------------------

    def watch_loop_end(self, on_end: LoopEndCallback) -> None:
        """Have `on_end(state)` awaited on this loop when the loop shuts down."""
        watch = _watch_loop_end(self, on_end)
        # Run it to its `yield` now: the loop's asyncgen hook registers it on first use.
        with contextlib.suppress(StopIteration):
            watch.asend(None).send(None)
        self._loop_end_watch = watch

    def end(self) -> None:
        """Mark the state finished and close its loop-end watch without awaiting."""
        self.ended = True
        watch, self._loop_end_watch = self._loop_end_watch, None
        if watch is not None:
            with contextlib.suppress(StopIteration, RuntimeError):
                watch.aclose().send(None)

    # -- task and statement connections -----------------------------------------------------

    def task_connection(
        self, task: asyncio.Task[typing.Any], make: typing.Callable[[], Connection]
    ) -> Connection:
        """The connection `task` holds here, made by `make()` on its first call."""
        connection = self.connections.get(task)
        if connection is None:
            connection = self.connections[task] = make()
        return connection

    def forget_task_connection(
        self, task: asyncio.Task[typing.Any], connection: Connection
    ) -> None:
        """`connection`, released, is no longer `task`'s."""
        if self.connections.get(task) is connection:
            del self.connections[task]

    def connection_for_statement(self) -> Connection | None:
        """For one `Database` call: the current task's connection, else a released
        statement connection; None when a new statement connection is needed."""
        # While no task holds a connection (the common case) the keyed lookup is skipped.
        if self.connections:
            task = asyncio.current_task()
            connection = self.connections.get(task) if task is not None else None
            if connection is not None:
                return connection
        if self._statement_connections:
            return self._statement_connections.pop()
        return None

    def keep_statement_connection(self, connection: Connection) -> None:
        """A statement connection is released: keep it for reuse, up to a limit."""
        if len(self._statement_connections) < MAX_STATEMENT_CONNECTIONS:
            self._statement_connections.append(connection)

    def describe(self) -> dict[str, typing.Any]:
        loop = self._loop_ref()
        return {
            "loop": loop,
            "loop_id": self.loop_id,
            "thread_id": self.thread_id,
            "alive": self.is_alive(),
            "open": self.is_open,
            "connected_explicitly": self.connected_explicitly,
            "connections": len(self.connections),
            # Kept for 0.9.1's debugging output: the force-rollback connection belongs to
            # the session (`databases._force_rollback`), never to one loop.
            "force_rollback_connection": False,
        }


# What a forked child inherited from its parent: never used, never collected either (a
# driver connection collected in the child would unregister its socket from the epoll
# instance the child shares with the parent, and the parent would wait forever).
LEFT_BY_PARENT: list[object] = []
_registries: weakref.WeakSet[LoopRegistry[typing.Any]] = weakref.WeakSet()


def _forget_parent_states() -> None:
    for registry in list(_registries):
        LEFT_BY_PARENT.append(registry._states)
        registry._states = {}
        registry._lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # pragma: no branch - every POSIX Python has it
    os.register_at_fork(after_in_child=_forget_parent_states)


class LoopRegistry(typing.Generic[Connection]):
    """Finds the `LoopState` of the running loop; creating one is rare and locked.

    States are keyed by `id(loop)` and checked against a weak reference, so a new loop
    that happens to reuse a dead loop's id never gets the dead loop's state. A forked
    child starts with none: the parent's belong to the parent.
    """

    def __init__(self) -> None:
        self._states: dict[int, LoopState[Connection]] = {}
        self._lock = threading.Lock()
        _registries.add(self)

    def find(self, loop: asyncio.AbstractEventLoop) -> LoopState[Connection] | None:
        state = self._states.get(id(loop))
        # (The weak reference itself, not the `loop` property: this runs for every query.)
        if state is not None and state._loop_ref() is loop:
            return state
        return None

    def create(
        self,
        loop: asyncio.AbstractEventLoop,
        make_backend: typing.Callable[[], DatabaseBackend],
        on_loop_end: LoopEndCallback,
    ) -> LoopState[Connection]:
        """The loop's state, made now if needed; states of dead loops are released on the way."""
        with self._lock:
            state = self.find(loop)
            if state is not None:
                return state
            dead = [(key, s) for key, s in self._states.items() if not s.is_alive()]
            for key, _ in dead:
                del self._states[key]
            state = LoopState[Connection](loop, make_backend)
            state.watch_loop_end(on_loop_end)
            self._states[state.loop_id] = state
        for _, old in dead:
            logger.debug("Releasing the state of closed event loop %#x", old.loop_id)
            old.terminate()
        logger.debug("Opened state for event loop %#x (%d open)", state.loop_id, len(self))
        return state

    def remove(self, state: LoopState[Connection]) -> None:
        with self._lock:
            if self._states.get(state.loop_id) is state:
                del self._states[state.loop_id]
        logger.debug("Closed state for event loop %#x (%d open)", state.loop_id, len(self))

    def pop_all(self) -> list[LoopState[Connection]]:
        with self._lock:
            states = list(self._states.values())
            self._states.clear()
        return states

    def all(self) -> list[LoopState[Connection]]:
        with self._lock:
            return list(self._states.values())

    def __len__(self) -> int:
        return len(self._states)
