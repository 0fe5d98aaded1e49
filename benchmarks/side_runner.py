"""Run the `databases`-API cases under another virtualenv's Python, for `run.py`.

    /path/to/venv/bin/python benchmarks/side_runner.py [--loop asyncio|uvloop]

Imports `databasez` if that venv has it, else `databases` (e.g. 0.9.0), never this
repository's package. Talks JSON lines: one request on stdin, one reply on stdout.

    {"op": "hello"}                      -> {"ok": true, "library": ..., "version": ...}
    {"op": "setup", "backend": "postgresql", "url": "...", "name": "databases-0.9.0"}
    {"op": "run", "case": "fetch_val", "count": 120, "timeout": 10.0}
                         -> {"ok": true, "seconds": 0.0513, "cpu_seconds": 0.049, "rows": 120}
    {"op": "teardown"}
Errors reply {"ok": false, "error": "..."}. The batch is timed here, so the pipe costs
nothing to the result; "rows" is what the batch got back, checked by `run.py`. Exits at
end of input.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
import traceback
import typing
from types import ModuleType

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _hide_repository() -> None:
    """Keep this repository's `databases` out of reach: only the venv's may be imported."""
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.getcwd()) != REPO]


def _import_library() -> ModuleType:
    errors = []
    for name in ("databasez", "databases"):
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
            continue
        location = os.path.abspath(getattr(module, "__file__", "") or "")
        if location.startswith(REPO + os.sep):
            raise RuntimeError(f"{name} was imported from this repository ({location})")
        return module
    raise RuntimeError("neither databasez nor databases can be imported: " + "; ".join(errors))


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return typing.cast(asyncio.AbstractEventLoop, uvloop.new_event_loop())
    return asyncio.new_event_loop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()

    # Replies go to a private copy of stdout; anything the library prints goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def reply(**message: typing.Any) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    _hide_repository()
    sys.path.insert(0, HERE)
    import bench_contenders as contenders

    loop: asyncio.AbstractEventLoop | None = None
    module: ModuleType | None = None
    contender: contenders.DatabasesContender | None = None

    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        op = request.get("op")
        try:
            if loop is None:
                loop = _new_loop(args.loop)
                asyncio.set_event_loop(loop)
            if op == "hello":
                module = _import_library()
                probe = contenders.DatabasesContender("probe", module, "sqlite://")
                reply(ok=True, python=sys.version.split()[0], **probe.describe())
            elif op == "setup":
                if module is None:
                    module = _import_library()
                library = module.__name__
                contender = contenders.DatabasesContender(
                    request["name"],
                    module,
                    contenders.databases_url(request["url"], library),
                    contenders.databases_options(request["backend"], library),
                )
                loop.run_until_complete(
                    asyncio.wait_for(contender.setup(), request.get("timeout", 60))
                )
                reply(ok=True)
            elif op == "run":
                if contender is None:
                    raise RuntimeError("run before setup")
                batch = loop.run_until_complete(
                    asyncio.wait_for(
                        contender.run_case(request["case"], int(request["count"])),
                        request.get("timeout", 60),
                    )
                )
                reply(ok=True, **batch._asdict())
            elif op == "teardown":
                if contender is not None:
                    current, contender = contender, None
                    loop.run_until_complete(
                        asyncio.wait_for(current.teardown(), request.get("timeout", 60))
                    )
                reply(ok=True)
            else:
                reply(ok=False, error=f"unknown op {op!r}")
        except Exception as exc:
            traceback.print_exc()
            reply(ok=False, error=f"{type(exc).__name__}: {exc}")

    if loop is not None:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
