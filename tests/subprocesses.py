"""pytest run in a subprocess of its own, for tests of what a whole pytest run does (its
fixtures, its plugins, its environment)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def run_pytest(
    target: str,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float = 120,
    extra_args: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """`python -m pytest -q -p no:cacheprovider <extra_args> <target>` in `cwd` with exactly
    `env`; its output is captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra_args, target],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
