"""How the orchestrator drives a contender: in this process, or in a side process."""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import tempfile
import time
import typing

import bench_contenders

HERE = os.path.dirname(os.path.abspath(__file__))
SIDE_RUNNER = os.path.join(HERE, "side_runner.py")


class ContenderError(Exception):
    """A contender failed to set up or to run a batch."""


class Runner:
    name = "?"
    info: dict[str, typing.Any]

    def setup(self, timeout: float) -> None:
        raise NotImplementedError

    def run(self, case: str, count: int, timeout: float) -> bench_contenders.Batch:
        """Run a batch: its wall and CPU seconds, and the rows it got back."""
        raise NotImplementedError

    def teardown(self, timeout: float) -> None:
        raise NotImplementedError


class InProcessRunner(Runner):
    """A contender on the orchestrator's event loop, one `run_until_complete` per batch."""

    def __init__(self, contender: bench_contenders.Contender, loop: asyncio.AbstractEventLoop):
        self.contender = contender
        self.loop = loop
        self.name = contender.name
        self.info = {"in_process": True, **contender.describe()}

    def _call(self, coroutine: typing.Awaitable[typing.Any], timeout: float) -> typing.Any:
        try:
            return self.loop.run_until_complete(asyncio.wait_for(coroutine, timeout))
        except asyncio.TimeoutError:
            raise ContenderError(f"timed out after {timeout:.0f} s") from None
        except Exception as exc:
            raise ContenderError(f"{type(exc).__name__}: {exc}") from exc

    def setup(self, timeout: float) -> None:
        self._call(self.contender.setup(), timeout)

    def run(self, case: str, count: int, timeout: float) -> bench_contenders.Batch:
        batch: bench_contenders.Batch = self._call(self.contender.run_case(case, count), timeout)
        return batch

    def teardown(self, timeout: float) -> None:
        self._call(self.contender.teardown(), timeout)


def side_python(venv: str) -> str:
    """The interpreter of a side environment given as a venv directory or a python path."""
    if os.path.isfile(venv) and os.access(venv, os.X_OK):
        return venv
    for candidate in ("bin/python", "bin/python3", "Scripts/python.exe"):
        path = os.path.join(venv, candidate)
        if os.path.isfile(path):
            return path
    raise ContenderError(f"no Python interpreter in {venv!r}")


class SideRunner(Runner):
    """A contender in a subprocess running `side_runner.py` with another venv's Python."""

    def __init__(self, name: str, venv: str, loop_kind: str, backend: str, url: str) -> None:
        self.name = name
        self.venv = venv
        self.loop_kind = loop_kind
        self.backend = backend
        self.url = url
        self.info = {"in_process": False, "venv": venv}
        self.process: subprocess.Popen[bytes] | None = None
        # The side process's stderr, for error messages; closed by stop().
        self.log = tempfile.TemporaryFile()  # noqa: SIM115
        self.buffer = b""
        self.dead: str | None = None

    def start(self, timeout: float) -> None:
        python = side_python(self.venv)
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            [python, SIDE_RUNNER, "--loop", self.loop_kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=HERE,
            env=env,
        )
        hello = self.request({"op": "hello"}, timeout)
        self.info.update({key: value for key, value in hello.items() if key != "ok"})

    def _log_tail(self, lines: int = 8) -> str:
        self.log.seek(0)
        text = self.log.read().decode(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])

    def _kill(self, reason: str) -> None:
        self.dead = reason
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _read_line(self, timeout: float) -> bytes:
        assert self.process is not None and self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._kill(f"no reply within {timeout:.0f} s")
                raise ContenderError(f"{self.name}: no reply within {timeout:.0f} s (killed)")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self._kill("exited")
                tail = self._log_tail()
                raise ContenderError(f"{self.name}: side process exited\n{tail}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def request(self, message: dict[str, typing.Any], timeout: float) -> dict[str, typing.Any]:
        if self.dead is not None:
            raise ContenderError(f"{self.name}: side process is gone ({self.dead})")
        assert self.process is not None and self.process.stdin is not None
        try:
            self.process.stdin.write((json.dumps(message) + "\n").encode())
            self.process.stdin.flush()
        except OSError as exc:
            self._kill("exited")
            raise ContenderError(f"{self.name}: side process exited: {exc}") from exc
        # The side process applies `timeout` itself; this margin covers its own overhead.
        reply: dict[str, typing.Any] = json.loads(self._read_line(timeout + 15.0))
        if not reply.get("ok"):
            raise ContenderError(str(reply.get("error", "failed")))
        return reply

    def setup(self, timeout: float) -> None:
        if self.process is None:
            self.start(timeout)
        self.request(
            {
                "op": "setup",
                "backend": self.backend,
                "url": self.url,
                "name": self.name,
                "timeout": timeout,
            },
            timeout,
        )

    def run(self, case: str, count: int, timeout: float) -> bench_contenders.Batch:
        reply = self.request(
            {"op": "run", "case": case, "count": count, "timeout": timeout}, timeout
        )
        return bench_contenders.Batch(
            float(reply["seconds"]), float(reply["cpu_seconds"]), int(reply["rows"])
        )

    def teardown(self, timeout: float) -> None:
        try:
            if self.process is not None and self.dead is None:
                self.request({"op": "teardown", "timeout": timeout}, timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            self.log.close()
            return
        if process.poll() is None:
            try:
                assert process.stdin is not None
                process.stdin.close()
                process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        self.log.close()


def print_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
