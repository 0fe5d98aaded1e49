"""A storm of timeouts: 1000 tasks with tiny `timeout=`s writing and reading at once, inside
and outside transactions, then the data checked from a separate connection.

Every timeout is a cancellation somewhere: while waiting for the pool, for a connection's
turn, inside a statement on the server, at a savepoint. Whatever the mix, a write that
returned (outside a transaction) or whose transaction committed is there exactly once; a
write whose transaction rolled back, and a timed-out write inside a transaction that went
on, is not; a timed-out write outside a transaction may or may not have landed, at most
once. Afterwards every connection of the pool answers correctly.
"""

from __future__ import annotations

import asyncio
import collections
import random
import typing

import pytest
import sqlalchemy as sa

from databases import Database
from databases.errors import QueryTimeoutError
from tests import admin
from tests.tables import notes

pytestmark = [pytest.mark.usefixtures("shared_tables"), pytest.mark.timeout(120)]

TASKS = 1000
# From "cancelled mid-statement" to "usually in time".
TIMEOUTS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.03, 0.1, 0.3)
# Upper bound for the whole storm.
STORM_LIMIT = 60


class Outcomes:
    """What each task's writes must have left behind, by note text."""

    def __init__(self) -> None:
        self.committed: set[str] = set()
        self.rolled_back: set[str] = set()
        self.maybe: set[str] = set()
        self.timeouts = 0


async def insert(database: Database, text: str, timeout: float | None = None) -> None:
    await database.execute(
        notes.insert(), values={"text": text, "completed": False}, timeout=timeout
    )


async def storm_task(database: Database, number: int, outcomes: Outcomes) -> None:
    timeout = random.Random(number).choice(TIMEOUTS)
    kind = number % 5
    try:
        if kind == 0:  # a write on its own
            text = f"{number}-alone"
            outcomes.maybe.add(text)
            await insert(database, text, timeout)
            outcomes.maybe.discard(text)
            outcomes.committed.add(text)
        elif kind == 1:  # a transaction that any timeout rolls back
            texts = {f"{number}-a", f"{number}-b"}
            outcomes.rolled_back |= texts
            async with database.transaction(timeout=timeout):
                await insert(database, f"{number}-a", timeout)
                await database.fetch_all(
                    sa.select(notes.c.text).where(notes.c.text == f"{number}-a"), timeout=timeout
                )
                await insert(database, f"{number}-b", timeout)
            outcomes.rolled_back -= texts
            outcomes.committed |= texts
        elif kind == 2:  # a transaction that goes on after its timed-out write
            async with database.transaction():
                await insert(database, f"{number}-first")
                try:
                    await insert(database, f"{number}-timed", timeout)
                except QueryTimeoutError:
                    outcomes.timeouts += 1
                    outcomes.rolled_back.add(f"{number}-timed")
                else:
                    outcomes.committed.add(f"{number}-timed")
                await insert(database, f"{number}-last")
            outcomes.committed |= {f"{number}-first", f"{number}-last"}
        elif kind == 3:  # a transaction that rolls back anyway
            outcomes.rolled_back.add(f"{number}-undone")
            async with database.transaction(force_rollback=True):
                await insert(database, f"{number}-undone", timeout)
        else:  # reads
            async for _ in database.iterate(sa.select(notes.c.text), timeout=timeout):
                pass
    except QueryTimeoutError:
        outcomes.timeouts += 1


@pytest.mark.asyncio
async def test_timeout_storm_keeps_the_data_right(
    database_url: str, request: pytest.FixtureRequest
) -> None:
    outcomes = Outcomes()
    async with Database(database_url) as database:
        tasks = [asyncio.create_task(storm_task(database, n, outcomes)) for n in range(TASKS)]
        await asyncio.wait_for(asyncio.gather(*tasks), STORM_LIMIT)
        # Every connection of the pool (and the statement connection) answers right.
        answers = await asyncio.wait_for(
            asyncio.gather(*(database.fetch_val(f"SELECT {n}") for n in range(20))), STORM_LIMIT
        )
        assert answers == list(range(20))
        seen = {row["text"] async for row in database.iterate(sa.select(notes.c.text))}

    counts = collections.Counter(
        row[0] for row in admin.raw_fetch_all(database_url, "SELECT text FROM notes")
    )
    request.node.user_properties.append(("timeouts", outcomes.timeouts))
    request.node.user_properties.append(("committed", len(outcomes.committed)))
    assert outcomes.timeouts > 0 and outcomes.committed
    assert {text: counts[text] for text in outcomes.committed if counts[text] != 1} == {}
    assert {text: counts[text] for text in outcomes.rolled_back if counts[text]} == {}
    assert {text: counts[text] for text in outcomes.maybe if counts[text] > 1} == {}
    assert set(counts) <= outcomes.committed | outcomes.maybe
    assert seen == set(counts)


@pytest.mark.asyncio
async def test_timeout_storm_in_the_force_rollback_session(database_url: str) -> None:
    """The same storm on the one connection every task shares. There, a write outside a
    transaction lands inside whichever task's savepoint is open at that moment, and goes
    if that one rolls back; so the check is that the session's transaction stays correct
    (seen from inside): what was written before the storm is there, no rolled-back or
    unknown row is, no row twice; later statements work; nothing is committed."""
    outcomes = Outcomes()
    async with Database(database_url, force_rollback=True) as database:
        await insert(database, "before")
        tasks = [asyncio.create_task(storm_task(database, n, outcomes)) for n in range(TASKS)]
        await asyncio.wait_for(asyncio.gather(*tasks), STORM_LIMIT)
        await insert(database, "after")
        rows = await asyncio.wait_for(database.fetch_all(sa.select(notes.c.text)), STORM_LIMIT)
        counts: typing.Counter[str] = collections.Counter(row["text"] for row in rows)
    assert admin.committed_notes(database_url) == []
    assert outcomes.timeouts > 0
    assert counts["before"] == counts["after"] == 1
    assert {text: count for text, count in counts.items() if count != 1} == {}
    assert set(counts) <= outcomes.committed | outcomes.maybe | {"before", "after"}
