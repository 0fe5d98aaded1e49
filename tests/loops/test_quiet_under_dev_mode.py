"""A script that uses one `Database` from 20 event loops and then disconnects prints nothing
to stderr under `python -X dev -W always`: no "Task was destroyed but it is pending",
"coroutine ... was never awaited", "Event loop is closed", unclosed connection, socket or
transport, nor anything the garbage collector finds at the end.

The loops (see `scripts/twenty_loops.py`): asyncio.run() loops one after another and in
threads at the same time, an `asyncio.Runner`, and one loop closed by a bare `loop.close()`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import admin
from tests.loops import (
    committed_rows,
    make_table,
)
from tests.loops.support import database_url_with_table

items = make_table("loops_quiet_items")

SCRIPT = Path(__file__).parent / "scripts" / "twenty_loops.py"
REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60


database_url = database_url_with_table(items)


@pytest.fixture(params=[False, True], ids=["plain", "force_rollback"])
def force_rollback(request: pytest.FixtureRequest) -> bool:
    return request.param


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        # Our own flags decide: nothing from the environment may silence a warning.
        if key not in ("PYTHONWARNINGS", "PYTHONASYNCIODEBUG", "PYTHONDEVMODE")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, "-X", "dev", "-W", "always", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=os.getcwd(),  # relative SQLite paths resolve as in the tests
        env=env,
    )


def test_twenty_loops_then_disconnect_print_nothing_to_stderr(
    request: pytest.FixtureRequest, database_url: str, force_rollback: bool
) -> None:
    admin.clear_tables(database_url, items)
    try:
        result = run_script(str(SCRIPT), database_url, "1" if force_rollback else "0", items.name)
        assert result.stderr == "", f"stderr of the script:\n{result.stderr}"
        assert result.returncode == 0
        assert result.stdout.split() == ["ok"], result.stdout

        rows = committed_rows(database_url, items)
        if force_rollback:
            assert rows == []
        else:
            # Every writing loop committed its 3 + 2 rows; the rolled-back one is not there.
            tags = {tag for tag, _ in rows}
            expected = {f"run-{n}" for n in range(8)} | {f"thread-{k}" for k in range(6)}
            expected |= {"bare", "runner-a", "runner-b", "late-0", "late-1"}
            assert tags == expected
            assert len(rows) == 5 * len(expected)
            assert all(value != 12 for _, value in rows)
    finally:
        admin.clear_tables(database_url, items)


def test_the_harness_shows_what_a_script_leaks() -> None:
    """In the same mode, what the script must not do does reach stderr (no database needed)."""
    code = (
        "import asyncio, gc\n"
        "async def never():\n"
        "    pass\n"
        "never()\n"
        "loop = asyncio.new_event_loop()\n"
        "loop.create_task(asyncio.sleep(10))\n"
        "loop.close()\n"
        "del loop\n"
        "handle = open('setup.py')\n"
        "del handle\n"
        "gc.collect()\n"
    )
    result = run_script("-c", code)
    assert result.returncode == 0, result.stderr
    assert "was never awaited" in result.stderr
    assert "Task was destroyed but it is pending" in result.stderr
    assert "unclosed file" in result.stderr
