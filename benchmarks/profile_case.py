"""Look inside one benchmark case: this package against the raw driver, closer up.

    .venv/bin/python benchmarks/profile_case.py sqlite fetch_one_select
    .venv/bin/python benchmarks/profile_case.py postgresql gather_100 --count 30 --profile
    .venv/bin/python benchmarks/profile_case.py mysql insert --no-gc

For the numbers to publish, use `scripts/benchmark`; this is for finding where the time
goes. It runs the same contenders and inputs as the benchmark, alternating raw and this
package for `--repeat` batches, and prints per operation: the median wall time, the
smallest CPU time of the process (all threads: SQLite's worker too) and the event-loop
iterations. `--profile` adds a cProfile of one more batch of this package; `--no-gc`
turns the garbage collector off, to see what it costs. The tables are created in the
given database and dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import statistics
import sys
import time
import typing

import bench_admin
import bench_cases as bc
import bench_contenders
from sqlalchemy.engine import make_url

import databases

URLS = {
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test",
    "mysql": "mysql://root@127.0.0.1:3306/test",
    "sqlite": "sqlite:////dev/shm/databases-profile-case.sqlite",
}


class LoopTurns:
    """Counts the event loop's iterations (`_run_once` calls) while installed."""

    def __init__(self) -> None:
        self.count = 0
        self._original = asyncio.BaseEventLoop._run_once  # type: ignore[attr-defined]

    def __enter__(self) -> LoopTurns:
        original = self._original

        def counted(loop: typing.Any) -> None:
            self.count += 1
            original(loop)

        asyncio.BaseEventLoop._run_once = counted  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.BaseEventLoop._run_once = self._original  # type: ignore[attr-defined]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("backend", choices=sorted(URLS))
    parser.add_argument("case", choices=list(bc.CASES))
    parser.add_argument("--url", help="database URL (default: the backend's test database)")
    parser.add_argument("--count", type=int, default=200, help="operations per batch")
    parser.add_argument("--repeat", type=int, default=7, help="batches per contender")
    parser.add_argument("--profile", action="store_true", help="cProfile one more batch")
    parser.add_argument("--sort", default="tottime", help="cProfile sort key (tottime)")
    parser.add_argument("--no-gc", action="store_true", help="garbage collector off")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.no_gc:
        gc.disable()
    url_text = args.url or URLS[args.backend]
    url = make_url(url_text)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    admin = bench_admin.Admin(args.backend, url)
    loop.run_until_complete(admin.open())
    loop.run_until_complete(admin.create_tables())
    raw = bench_contenders.RAW_CONTENDERS[args.backend](url)
    this = bench_contenders.DatabasesContender(
        "databases", databases, url_text, bench_contenders.databases_options(args.backend, "this")
    )
    contenders = {"raw": raw, "databases": this}

    def batch(contender: bench_contenders.Contender, count: int) -> tuple[float, float, int]:
        inputs = contender.inputs(args.case, count)
        loop.run_until_complete(contender.prepare(args.case))
        if args.case in bc.WRITE_CASES:
            loop.run_until_complete(admin.empty_writes())
        run = getattr(contender, f"case_{args.case}")
        with LoopTurns() as turns:
            wall, cpu = time.perf_counter(), time.process_time()
            loop.run_until_complete(run(inputs))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        loop.run_until_complete(contender.finish(args.case))
        return wall / count, cpu / count, turns.count // count

    try:
        for contender in contenders.values():
            loop.run_until_complete(contender.setup())
            batch(contender, max(1, args.count // 5))  # warm up
        samples: dict[str, list[tuple[float, float, int]]] = {name: [] for name in contenders}
        for _ in range(args.repeat):
            for name, contender in contenders.items():
                samples[name].append(batch(contender, args.count))
        raw_wall = statistics.median(wall for wall, _, _ in samples["raw"])
        for name, rows in samples.items():
            wall = statistics.median(row[0] for row in rows)
            cpu = min(row[1] for row in rows)
            print(
                f"{args.backend} {args.case} {name:>9}: {wall * 1e6:9.1f} us "
                f"({wall / raw_wall:.2f}x)  cpu {cpu * 1e6:9.1f} us  "
                f"loop turns {rows[-1][2]}"
            )
        if args.profile:
            inputs = this.inputs(args.case, args.count)
            loop.run_until_complete(this.prepare(args.case))
            if args.case in bc.WRITE_CASES:
                loop.run_until_complete(admin.empty_writes())
            profiler = cProfile.Profile()
            profiler.enable()
            loop.run_until_complete(getattr(this, f"case_{args.case}")(inputs))
            profiler.disable()
            loop.run_until_complete(this.finish(args.case))
            pstats.Stats(profiler, stream=sys.stdout).sort_stats(args.sort).print_stats(30)
    finally:
        for contender in contenders.values():
            loop.run_until_complete(contender.teardown())
        loop.run_until_complete(admin.drop_tables())
        loop.run_until_complete(admin.close())
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
