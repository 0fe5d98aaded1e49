"""Starlette below 1.0 with `app.add_event_handler("startup", database.connect)` and
`("shutdown", database.disconnect)`, the arrangement `databases` 0.9 documented.

Starlette 1.0 removed event handlers and the suite runs Starlette 1.x, so the app lives in
`tests.loops._starlette_legacy_app`, run in a subprocess that sees Starlette 0.x (installed
by `scripts/install` into `.venv/compat/starlette0`) first on `sys.path`. The subprocess
runs the scenarios of `tests.loops.webapp` (TestClient sessions, a client entered twice, two
at once, an async test with a TestClient, ASGITransport with and without the app's
startup/shutdown) with force_rollback off and on, checks everything itself and exits non-zero
on the first failure; this test checks its exit code and that it reported every scenario.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.loops import webapp

ROOT = Path(__file__).resolve().parents[2]
# scripts/install puts it inside the virtualenv of the stack that runs the tests.
COMPAT_DIR = Path(sys.prefix) / "compat" / "starlette0"
STARLETTE_0 = "0.52.1"

SCENARIOS = [*webapp.SYNC_SCENARIOS, *webapp.ASYNC_SCENARIOS]

pytestmark = pytest.mark.skipif(
    not (COMPAT_DIR / "starlette" / "__init__.py").is_file(),
    reason=f"Starlette {STARLETTE_0} is not installed in {COMPAT_DIR}: run scripts/install",
)


def test_add_event_handler_app(database_url: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        path for path in (str(COMPAT_DIR), env.get("PYTHONPATH", "")) if path
    )
    env["LEGACY_APP_DATABASE_URL"] = database_url
    result = subprocess.run(
        [sys.executable, "-m", "tests.loops._starlette_legacy_app", *SCENARIOS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    output = f"exit code {result.returncode}\n{result.stdout}\n{result.stderr}"
    lines = result.stdout.splitlines()
    assert lines, output
    assert lines[0] == f"starlette {STARLETTE_0} from {COMPAT_DIR / 'starlette'}", output
    assert lines[1:] == [
        f"ok {scenario} force_rollback={force_rollback}"
        for scenario in SCENARIOS
        for force_rollback in (False, True)
    ], output
    assert result.returncode == 0, output
