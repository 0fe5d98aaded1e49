"""The README's quickstart runs as written, against SQLite, and prints what it says."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.check_docs_script import check_docs

README = Path(__file__).resolve().parent.parent / "README.md"


def quickstart() -> str:
    """The first Python block after the "## Quickstart" heading, at its lines of the README
    (for tracebacks)."""
    heading = README.read_text().splitlines().index("## Quickstart") + 1
    blocks, _ = check_docs.python_blocks(README)
    block = next(block for block in blocks if block.fence_line > heading)
    return "\n" * block.fence_line + block.code


def test_the_quickstart_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # its database file is relative: example.sqlite
    exec(compile(quickstart(), str(README), "exec"), {"__name__": "quickstart"})
    printed = capsys.readouterr().out.splitlines()

    with sqlite3.connect(tmp_path / "example.sqlite") as db:
        scores = db.execute("SELECT id, name, score FROM highscores ORDER BY id").fetchall()
    # Carol's 43 went up by one in the transaction at the end.
    assert scores == [(1, "Daisy", 92), (2, "Neil", 87), (3, "Carol", 44)]
    assert printed == [
        "Daisy 92 {'id': 1, 'name': 'Daisy', 'score': 92}",
        "Neil 87 {'id': 2, 'name': 'Neil', 'score': 87}",
        "3 scores, best: Daisy",
        "1 Daisy",
        "2 Neil",
        "3 Carol",
        "3 rows in this batch",
    ]
