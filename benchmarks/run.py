"""Benchmark: this package against the raw drivers, SQLAlchemy's AsyncEngine and, from side
virtualenvs, `databases` 0.9.0 and `databasez`.

    scripts/benchmark                                  # all backends, 5 rounds
    scripts/benchmark --backend postgresql --rounds 9 --json out.json
    scripts/benchmark --side-env databases-0.9.0=/tmp/bench-db09 \\
                      --side-env databasez=/tmp/bench-databasez
    scripts/benchmark --cpu 0                          # client pinned to one CPU

Every contender runs the same cases with the same SQL. For each backend: a calibration
pass sizes each (case, contender) batch to about --seconds-per-case and warms everything
up; then each round runs every case, and within a case every contender one batch, in an
order rotated each round, so machine noise hits all of them alike. The result per case is
the median over the rounds of the time per operation, and its ratio to the raw driver;
per contender, the geometric mean of its ratios. docs/performance.md explains the cases.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import json
import os
import platform
import sys
import tempfile
import time
import typing

import bench_admin
import bench_cases as bc
import bench_contenders
import bench_report
from bench_runners import (
    ContenderError,
    InProcessRunner,
    Runner,
    SideRunner,
    print_progress,
)
from sqlalchemy.engine import make_url

BACKENDS = ("postgresql", "mysql", "sqlite")
DEFAULT_URLS = {
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test",
    "mysql": "mysql://root@127.0.0.1:3306/test",
}
LOOPBACK = ("127.0.0.1", "localhost", "::1", None)
# The largest batch: bounds memory and the rows a write batch adds.
MAX_BATCH = 20_000
SETUP_TIMEOUT = 60.0
# The contender that runs only when named: force_rollback_savepoints' cost.
SAVEPOINTS = "databases+savepoints"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--backend",
        choices=(*BACKENDS, "all"),
        action="append",
        help="backend to run (repeatable; default: all)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument(
        "--warmup-rounds",
        type=int,
        default=1,
        help="unmeasured rounds after calibration (default 1)",
    )
    parser.add_argument(
        "--seconds-per-case",
        type=float,
        default=0.05,
        help="target duration of one timed batch: one contender, one case, one round "
        "(default 0.05)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds one batch may take before its contender is marked failed for that "
        "case (default: max(10, 40 x --seconds-per-case))",
    )
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON ('-': stdout)")
    parser.add_argument(
        "--side-env",
        action="append",
        default=[],
        metavar="NAME=VENV",
        help="also run the virtualenv VENV's databasez (or else databases) as contender NAME, "
        "in a subprocess (repeatable)",
    )
    parser.add_argument(
        "--case",
        action="append",
        choices=tuple(bc.CASES),
        help="run only this case (repeatable; default: all)",
    )
    parser.add_argument(
        "--contender",
        action="append",
        help="run only this contender: raw, sqlalchemy, databases or a side-env NAME "
        "(repeatable; raw always runs); databases+savepoints (only when named): this "
        "package with force_rollback_savepoints=True in the force_rollback cases",
    )
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--postgresql-url", default=DEFAULT_URLS["postgresql"])
    parser.add_argument("--mysql-url", default=DEFAULT_URLS["mysql"])
    parser.add_argument(
        "--sqlite-path",
        default=None,
        help="SQLite file (default: a new file under /dev/shm, removed at the end)",
    )
    parser.add_argument(
        "--cpu",
        type=int,
        default=None,
        help="run the benchmark and its side processes on this one CPU (Linux), so that "
        "how the kernel places their threads does not decide the result; the database "
        "servers run where they like",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        if not hasattr(os, "sched_setaffinity"):
            parser.error("--cpu needs os.sched_setaffinity (Linux)")
        if args.cpu not in os.sched_getaffinity(0):
            parser.error(f"--cpu {args.cpu}: not one of this process's CPUs")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.seconds_per_case <= 0:
        parser.error("--seconds-per-case must be positive")
    sides = []
    for spec in args.side_env:
        name, sep, venv = spec.partition("=")
        if not sep or not name or not venv:
            parser.error(f"--side-env wants NAME=VENV, got {spec!r}")
        if name in ("raw", "sqlalchemy", "databases", SAVEPOINTS):
            parser.error(f"--side-env name {name!r} is taken by a built-in contender")
        sides.append((name, os.path.expanduser(venv)))
    args.sides = sides
    chosen = args.backend or ["all"]
    args.backends = [b for b in BACKENDS if "all" in chosen or b in chosen]
    args.cases = [case for case in bc.CASES if not args.case or case in args.case]
    if args.timeout is None:
        args.timeout = max(10.0, 40 * args.seconds_per_case)
    return args


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return typing.cast(asyncio.AbstractEventLoop, uvloop.new_event_loop())
    return asyncio.new_event_loop()


def sqlite_path(args: argparse.Namespace) -> str:
    if args.sqlite_path:
        return os.path.abspath(str(args.sqlite_path))
    directory = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    return os.path.join(directory, f"databases-bench-{os.getpid()}.sqlite")


class Progress:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.start = time.monotonic()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print_progress(f"[{time.monotonic() - self.start:6.1f} s] {message}")


def calibrate(measure: typing.Callable[[int], float], target: float) -> int:
    """Warm up, then find the batch size that takes about `target` seconds;
    `measure(count)` runs a batch and returns its seconds."""
    measure(1)  # first use: connections, statement caches
    count = 1
    elapsed = measure(count)
    while elapsed < target / 4 and count < MAX_BATCH:
        grow = (target / 3) / max(elapsed, 1e-7)
        count = min(MAX_BATCH, max(count * 2, int(count * grow)))
        elapsed = measure(count)
    return max(1, min(MAX_BATCH, round(count * target / max(elapsed, 1e-7))))


def run_backend(
    backend: str, args: argparse.Namespace, progress: Progress
) -> dict[str, typing.Any]:
    import databases

    if backend == "sqlite":
        path = sqlite_path(args)
        bench_admin.remove_sqlite_files(path)
        url_text = f"sqlite:///{path}"
    else:
        url_text = args.postgresql_url if backend == "postgresql" else args.mysql_url
    url = make_url(url_text)
    shown_url = url.render_as_string(hide_password=True)
    if backend != "sqlite" and url.host not in LOOPBACK:
        progress(f"{backend}: {url.host} is not a loopback address: network latency will dominate")
    loop = new_loop(args.loop)
    asyncio.set_event_loop(loop)
    admin = bench_admin.Admin(backend, url)
    result: dict[str, typing.Any] = {"url": shown_url, "rounds": args.rounds, "cpu": args.cpu}
    runners: list[Runner] = []
    setup_errors: dict[str, str] = {}
    wanted = set(args.contender or []) | {"raw"}

    def include(name: str) -> bool:
        return not args.contender or name in wanted

    try:
        progress(f"{backend}: creating tables in {shown_url}")
        loop.run_until_complete(admin.open())
        result["server_version"] = loop.run_until_complete(admin.server_version())
        loop.run_until_complete(admin.create_tables())

        candidates: list[Runner] = [
            InProcessRunner(bench_contenders.RAW_CONTENDERS[backend](url), loop)
        ]
        if include("sqlalchemy"):
            candidates.append(
                InProcessRunner(bench_contenders.SQLAlchemyContender(backend, url), loop)
            )
        if include("databases"):
            this = bench_contenders.DatabasesContender(
                "databases",
                databases,
                url_text,
                bench_contenders.databases_options(backend, "this"),
            )
            candidates.append(InProcessRunner(this, loop))
        if SAVEPOINTS in wanted:
            savepoints = bench_contenders.DatabasesContender(
                SAVEPOINTS,
                databases,
                url_text,
                bench_contenders.databases_options(backend, "this"),
                rollback_options={"force_rollback_savepoints": True},
            )
            candidates.append(InProcessRunner(savepoints, loop))
        for name, venv in args.sides:
            if include(name):
                candidates.append(SideRunner(name, venv, args.loop, backend, url_text))

        for runner in candidates:
            try:
                runner.setup(SETUP_TIMEOUT)
                runners.append(runner)
            except ContenderError as exc:
                setup_errors[runner.name] = str(exc)
                progress(f"{backend}: {runner.name} could not start: {exc}")
                with contextlib.suppress(ContenderError):  # close what it opened
                    runner.teardown(SETUP_TIMEOUT)
        if not runners or runners[0].name != "raw":
            raise RuntimeError(f"the raw driver could not start: {setup_errors.get('raw')}")
        names = [runner.name for runner in runners]
        result["contender_order"] = names
        result["contenders"] = {runner.name: runner.info for runner in runners}
        for name, error in setup_errors.items():
            result["contenders"][name] = {"error": error}

        def measure(runner: Runner, case: str, count: int) -> bench_contenders.Batch:
            """One batch, its result checked."""
            writes = case in bc.WRITE_CASES
            if writes:
                loop.run_until_complete(admin.empty_writes())
            batch = runner.run(case, count, args.timeout)
            rows = loop.run_until_complete(admin.count_writes()) if writes else batch.rows
            expected = count * bc.ROWS_PER_OPERATION[case]
            if rows != expected:
                raise ContenderError(f"wrong result: {rows} rows instead of {expected}")
            return batch

        def measure_seconds(runner: Runner, case: str, count: int) -> float:
            return measure(runner, case, count).seconds

        counts: dict[str, dict[str, int]] = {case: {} for case in args.cases}
        samples: dict[str, dict[str, list[float]]] = {
            case: {name: [] for name in names} for case in args.cases
        }
        cpu_samples: dict[str, dict[str, list[float]]] = {
            case: {name: [] for name in names} for case in args.cases
        }
        errors: dict[str, dict[str, str]] = {case: {} for case in args.cases}

        progress(f"{backend}: calibrating {len(args.cases)} cases x {len(names)} contenders")
        for case in args.cases:
            for runner in runners:
                try:
                    counts[case][runner.name] = calibrate(
                        functools.partial(measure_seconds, runner, case), args.seconds_per_case
                    )
                except ContenderError as exc:
                    errors[case][runner.name] = str(exc)
                    progress(f"{backend}: {case} / {runner.name}: {exc}")

        total = args.warmup_rounds + args.rounds
        for round_index in range(total):
            measured = round_index >= args.warmup_rounds
            label = (
                f"round {round_index - args.warmup_rounds + 1}/{args.rounds}"
                if measured
                else f"warm-up round {round_index + 1}/{args.warmup_rounds}"
            )
            progress(f"{backend}: {label}")
            shift = round_index % len(runners)
            order = runners[shift:] + runners[:shift]
            for case in args.cases:
                for runner in order:
                    if runner.name in errors[case]:
                        continue
                    count = counts[case][runner.name]
                    try:
                        batch = measure(runner, case, count)
                    except ContenderError as exc:
                        errors[case][runner.name] = str(exc)
                        progress(f"{backend}: {case} / {runner.name}: {exc}")
                        continue
                    if measured:
                        samples[case][runner.name].append(batch.seconds / count)
                        cpu_samples[case][runner.name].append(batch.cpu_seconds / count)

        summary = bench_report.summarise(samples, cpu_samples, errors, counts, names)
        result["summary"] = summary
        result["targets"] = bench_report.check_targets(backend, summary)
        result["setup_errors"] = setup_errors
        return result
    finally:
        for runner in reversed(runners):
            try:
                runner.teardown(SETUP_TIMEOUT)
            except ContenderError as exc:
                progress(f"{backend}: {runner.name} teardown: {exc}")
        try:
            if admin.connection is not None:
                loop.run_until_complete(admin.drop_tables())
            loop.run_until_complete(admin.close())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
            asyncio.set_event_loop(None)
            if backend == "sqlite":
                bench_admin.remove_sqlite_files(make_url(url_text).database or "")


def machine_info() -> dict[str, typing.Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import databases

    if args.cpu is not None:
        # Inherited by the side processes started later.
        os.sched_setaffinity(0, {args.cpu})
    progress = Progress(args.quiet)
    report: dict[str, typing.Any] = {
        "command": " ".join(["benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "databases": {"version": databases.__version__, "file": databases.__file__},
        "settings": {
            "rounds": args.rounds,
            "warmup_rounds": args.warmup_rounds,
            "seconds_per_case": args.seconds_per_case,
            "timeout": args.timeout,
            "loop": args.loop,
            "cpu": args.cpu,
            "cases": bc.CASES,
        },
        "backends": {},
    }
    started = time.monotonic()
    tables = []
    table_stream = sys.stderr if args.json == "-" else sys.stdout
    failed = []
    for backend in args.backends:
        try:
            result = run_backend(backend, args, progress)
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            print(f"benchmark: {backend} could not run: {message}", file=sys.stderr, flush=True)
            report["backends"][backend] = {"error": message}
            failed.append(backend)
            continue
        report["backends"][backend] = result
        table = bench_report.format_table(backend, result)
        tables.append(table)
        print("\n" + table + "\n", file=table_stream, flush=True)
    report["seconds"] = round(time.monotonic() - started, 1)
    progress(f"done in {report['seconds']} s")
    if args.json:
        text = json.dumps(report, indent=2, default=str)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as output:
                output.write(text + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
