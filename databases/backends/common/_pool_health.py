"""Healthy pools: whether a connection just taken from a pool may be handed out.

One mechanism for every bundled server backend. `SQLConnection` asks it after each take
and tells it about each release; a backend only supplies the driver calls (`_ping()`,
`_close()`, `_close_now()`, and the backend's `_is_broken()`). The rules:

- `pool_recycle` (seconds): a connection older than that is closed and replaced when
  taken. Its age counts from the first time the pool handed it out.
- `pool_pre_ping`: a connection idle for more than `PRE_PING_IDLE` seconds is pinged (one
  round trip) first, and replaced if that fails. Busy connections are not pinged, so
  the option costs nothing under steady load.
- A connection the driver reports broken at release is discarded, never pooled again.
  Whatever killed it (a server restart, a kill, a network cut) has likely killed the
  connections idle at that moment too: each of those is pinged once when next taken,
  pre-ping or not.
- A ping that gets no answer within `PING_TIMEOUT` means the path to the server drops
  idle flows silently (a NAT or load balancer timeout): the other connections of that
  take that would need a ping are replaced without one, instead of each costing the
  timeout again. A ping that fails at once (the server closed it) costs nothing to repeat,
  so the others are still pinged and the live ones kept.

With no option set and no dead connection found, nothing is recorded: the default costs
an attribute check per take and the driver's closed check per release.
"""

from __future__ import annotations

import enum
import math
import time
import typing
import weakref

__all__ = ["PING_TIMEOUT", "PRE_PING_IDLE", "HealthOptions", "Ping", "PoolHealth", "Verdict"]

# Seconds a connection must have been idle before `pool_pre_ping` checks it: busy
# connections are in use every few milliseconds, so they go unchecked.
PRE_PING_IDLE = 1.0
# Seconds a ping may take before its connection counts as dead: a healthy server answers
# `SELECT 1` in milliseconds.
PING_TIMEOUT = 3.0


class HealthOptions(typing.NamedTuple):
    """`pool_pre_ping` and `pool_recycle` (seconds, `None`: never), parsed."""

    pre_ping: bool = False
    recycle: float | None = None

    @classmethod
    def of(cls, library: typing.Mapping[str, typing.Any]) -> HealthOptions:
        """From the library's options as read and checked (`SQLBackend._library_options()`)."""
        return cls(library.get("pool_pre_ping", False), library.get("pool_recycle"))


class Verdict(enum.Enum):
    """What to do with a connection just taken from the pool."""

    READY = "ready"  # hand it out
    PING = "ping"  # ping it first
    RECYCLE = "recycle"  # too old: close it politely and take another
    DEAD = "dead"  # presumed dead: drop it and take another


class Ping(enum.Enum):
    """How a ping went."""

    ANSWERED = "answered"
    FAILED = "failed"  # an error at once: the connection is dead
    TIMED_OUT = "timed out"  # no answer: the path to the server may drop idle flows


class _Stamp:
    __slots__ = ("alive_at", "born")

    def __init__(self, born: float) -> None:
        self.born = born
        # When it was last known alive (released after use, or answered a ping); `None`
        # until then: it may have sat in the pool since the pool opened.
        self.alive_at: float | None = None


class PoolHealth:
    """The health records of one event loop's pool (a backend instance has one)."""

    def __init__(self, options: HealthOptions) -> None:
        self.options = options
        # By driver connection: held weakly, so a connection the pool dropped goes too.
        self._stamps: weakref.WeakKeyDictionary[typing.Any, _Stamp] = weakref.WeakKeyDictionary()
        # When a dead connection was last found (broken at release, or a failed ping).
        self._found_dead_at = -math.inf
        # Whether takes are checked: an option is on, or a dead connection was found.
        self.active = options.pre_ping or options.recycle is not None

    def _stamp(self, key: typing.Any, now: float) -> _Stamp:
        stamp = self._stamps.get(key)
        if stamp is None:
            stamp = self._stamps[key] = _Stamp(now)
        return stamp

    def verdict(self, key: typing.Any, presume_dead: bool = False) -> Verdict:
        """What to do with the connection `key` just taken. `presume_dead`: a ping timed
        out during this take, so one that would be pinged is replaced instead (one never
        back from use is still pinged: it may be new)."""
        if not self.active:
            return Verdict.READY
        now = time.monotonic()
        stamp = self._stamp(key, now)
        recycle = self.options.recycle
        if recycle is not None and now - stamp.born > recycle:
            return Verdict.RECYCLE
        alive_at = stamp.alive_at
        if alive_at is None:
            # Never back from use: maybe new, maybe idle since the pool opened.
            suspect = self.options.pre_ping or self._found_dead_at > -math.inf
            return Verdict.PING if suspect else Verdict.READY
        if alive_at < self._found_dead_at or (
            self.options.pre_ping and now - alive_at > PRE_PING_IDLE
        ):
            return Verdict.DEAD if presume_dead else Verdict.PING
        return Verdict.READY

    def alive(self, key: typing.Any) -> None:
        """The connection `key` answered a ping, or comes back from use unbroken."""
        if self.active:
            now = time.monotonic()
            self._stamp(key, now).alive_at = now

    def found_dead(self) -> None:
        """A connection turned out dead: the ones idle now are suspects from here on."""
        self._found_dead_at = time.monotonic()
        self.active = True
