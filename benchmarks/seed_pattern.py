"""Per-test cost of the usual pytest pattern: a new event loop per test, `async with` a
force-rollback database, a few statements and a `gather()`.

    python benchmarks/seed_pattern.py URL [TESTS]

Prints the median and mean milliseconds per test. Run it pinned to one CPU
(`taskset -c 0`) as `scripts/benchmark` does; compare two versions of the package by
running it with each on PYTHONPATH, one after the other.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

import databases
from databases import Database

TABLE = "seed_pattern_items"


async def create(url: str) -> None:
    async with Database(url) as database:
        await database.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await database.execute(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, value INTEGER)")


async def drop(url: str) -> None:
    async with Database(url) as database:
        await database.execute(f"DROP TABLE {TABLE}")


def main() -> None:
    url = sys.argv[1]
    tests = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    asyncio.run(create(url))
    database = Database(url, force_rollback=True)

    async def one_test() -> None:
        async with database:
            await database.execute(f"INSERT INTO {TABLE} (id, value) VALUES (1, 10)")
            row = await database.fetch_one(f"SELECT id, value FROM {TABLE} WHERE id = 1")
            assert row is not None
            counts = await asyncio.gather(
                *(database.fetch_val(f"SELECT count(*) FROM {TABLE}") for _ in range(5))
            )
            assert counts == [1] * 5

    times = []
    for _ in range(tests):
        started = time.perf_counter()
        asyncio.run(one_test())
        times.append(time.perf_counter() - started)
    times = times[tests // 10 :]  # warm-up
    asyncio.run(drop(url))
    print(
        f"{databases.__file__}: {url.split(':')[0]}: median "
        f"{statistics.median(times) * 1e3:.2f} ms, mean {statistics.mean(times) * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()
