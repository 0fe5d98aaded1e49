"""Per-event-loop state of a database, and the registry that finds it for the running loop.

Pools, locks and connections belong to the loop that made them. A `Database` keeps one
`LoopState` per loop it is used in, created on first use in that loop, so the same
`Database` object works from any number of loops, one after another or at once in
several threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import typing
import weakref

from databases.interfaces import DatabaseBackend

if typing.TYPE_CHECKING:
    from databases.core import Connection

logger = logging.getLogger("databases")

LoopEndCallback = typing.Callable[["LoopState"], typing.Awaitable[None]]


async def _watch_loop_end(
    state: LoopState, on_end: LoopEndCallback
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


class LoopState:
    """Everything one database owns in one event loop."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, make_backend: typing.Callable[[], DatabaseBackend]
    ) -> None:
        self._loop_ref = weakref.ref(loop)
        self.loop_id = id(loop)
        self.thread_id = threading.get_ident()
        # Made on first use: a loop that only uses the force-rollback session needs none.
        self._make_backend = make_backend
        self._backend: DatabaseBackend | None = None
        self.connections: weakref.WeakKeyDictionary[asyncio.Task[typing.Any], Connection]
        self.connections = weakref.WeakKeyDictionary()
        # Released `Connection`s that no task owns, reused by one-statement calls.
        self.spare_connections: list[Connection] = []
        # `connect()` was called in this loop (and not yet `disconnect()`).
        self.connected_explicitly = False
        # The backend's `connect()` has run (explicitly or on first use).
        self.is_open = False
        self.open_lock = asyncio.Lock()
        # Closed or terminated: nothing may run on it any more.
        self.ended = False
        self._loop_end_watch: typing.AsyncGenerator[None, None] | None = None

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
_registries: weakref.WeakSet[LoopRegistry] = weakref.WeakSet()


def _forget_parent_states() -> None:
    for registry in list(_registries):
        LEFT_BY_PARENT.append(registry._states)
        registry._states = {}
        registry._lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # pragma: no branch - every POSIX Python has it
    os.register_at_fork(after_in_child=_forget_parent_states)


class LoopRegistry:
    """Finds the `LoopState` of the running loop; creating one is rare and locked.

    States are keyed by `id(loop)` and checked against a weak reference, so a new loop
    that happens to reuse a dead loop's id never gets the dead loop's state. A forked
    child starts with none: the parent's belong to the parent.
    """

    def __init__(self) -> None:
        self._states: dict[int, LoopState] = {}
        self._lock = threading.Lock()
        _registries.add(self)

    def find(self, loop: asyncio.AbstractEventLoop) -> LoopState | None:
        state = self._states.get(id(loop))
        if state is not None and state.loop is loop:
            return state
        return None

    def create(
        self,
        loop: asyncio.AbstractEventLoop,
        make_backend: typing.Callable[[], DatabaseBackend],
        on_loop_end: LoopEndCallback,
    ) -> LoopState:
        """The loop's state, made now if needed; states of dead loops are released on the way."""
        with self._lock:
            state = self.find(loop)
            if state is not None:
                return state
            dead = [(key, s) for key, s in self._states.items() if not s.is_alive()]
            for key, _ in dead:
                del self._states[key]
            state = LoopState(loop, make_backend)
            state.watch_loop_end(on_loop_end)
            self._states[state.loop_id] = state
        for _, old in dead:
            logger.debug("Releasing the state of closed event loop %#x", old.loop_id)
            old.terminate()
        logger.debug("Opened state for event loop %#x (%d open)", state.loop_id, len(self))
        return state

    def remove(self, state: LoopState) -> None:
        with self._lock:
            if self._states.get(state.loop_id) is state:
                del self._states[state.loop_id]
        logger.debug("Closed state for event loop %#x (%d open)", state.loop_id, len(self))

    def pop_all(self) -> list[LoopState]:
        with self._lock:
            states = list(self._states.values())
            self._states.clear()
        return states

    def all(self) -> list[LoopState]:
        with self._lock:
            return list(self._states.values())

    def __len__(self) -> int:
        return len(self._states)
