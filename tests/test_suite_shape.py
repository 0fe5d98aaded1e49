"""The suite's own rules: readable test ids per database URL, no database for tests that
need none, and assertions rewritten in every helper module that asserts."""

from __future__ import annotations

import ast
import importlib
import os
from pathlib import Path

from databases import Database
from tests import admin, conftest
from tests.settings import url_ids
from tests.subprocesses import run_pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def test_url_ids_are_schemes_made_unique() -> None:
    urls = [
        "sqlite:///testsuite.sqlite",
        "postgresql://postgres:secret@127.0.0.1:5432/test",
        "postgresql+aiopg://postgres@127.0.0.1:5432/test",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        "mysql://root@127.0.0.1:3306/test",
        "postgresql://postgres@127.0.0.1:5433/other",
    ]
    assert url_ids(urls) == [
        "sqlite",
        "postgresql",
        "postgresql+aiopg",
        "postgresql+psycopg",
        "mysql",
        "postgresql-2",
    ]


def test_unit_tests_touch_no_database(tmp_path: Path) -> None:
    """Pure unit tests pass with servers that cannot be reached listed, and the SQLite file
    listed is never created: only tests that ask for `database_url` set up a database."""
    sqlite_file = tmp_path / "untouched.sqlite"
    env = dict(
        os.environ,
        TEST_DATABASE_URLS=(
            f"sqlite:///{sqlite_file},"
            "postgresql://nobody@127.0.0.1:9/unreachable,"
            "mysql://nobody@127.0.0.1:9/unreachable"
        ),
    )
    result = run_pytest("tests/test_bind_plan.py", ROOT, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "error" not in result.stdout, result.stdout
    assert not sqlite_file.exists()


def helper_modules_that_assert() -> list[str]:
    """The modules of the `tests` package, other than test modules and conftests, that hold
    an `assert` statement (the scripts run in subprocesses of their own: not those)."""
    names: list[str] = []
    for path in sorted(TESTS.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if path.name.startswith("test_") or path.name == "conftest.py":
            continue
        if "scripts" in relative.parts:
            continue
        tree = ast.parse(path.read_text(), str(path))
        if any(isinstance(node, ast.Assert) for node in ast.walk(tree)):
            parts = relative.with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_helper_modules_that_assert_are_rewritten() -> None:
    """A plain `assert` in a helper says only `AssertionError` when it fails; pytest
    rewrites it to show the values, if the module was registered before its first import
    (`tests/conftest.py`). A rewritten module carries pytest's `@py_builtins` global."""
    names = helper_modules_that_assert()
    assert "tests.loops.webapp" in names
    not_rewritten = [
        name for name in names if "@py_builtins" not in vars(importlib.import_module(name))
    ]
    assert not_rewritten == []


def test_backend_names_of_urls() -> None:
    """A URL without `+driver` names its dialect's default driver (`postgres://` is 0.9's
    spelling of PostgreSQL)."""
    urls = {
        "sqlite:///testsuite.sqlite": "sqlite+sqlite3",
        "sqlite+aiosqlite:///testsuite.sqlite": "sqlite+aiosqlite",
        "postgresql://postgres@127.0.0.1:5432/db": "postgresql+asyncpg",
        "postgres://postgres@127.0.0.1:5432/db": "postgresql+asyncpg",
        "postgresql+psycopg://postgres@127.0.0.1:5432/db": "postgresql+psycopg",
        "postgresql+aiopg://postgres@127.0.0.1:5432/db": "postgresql+aiopg",
        "mysql://root@127.0.0.1:3306/db": "mysql+aiomysql",
        "mysql+asyncmy://root@127.0.0.1:3306/db": "mysql+asyncmy",
    }
    assert {url: admin.backend_name(url) for url in urls} == urls


def test_dialects_marker_takes_a_dialect_or_one_driver() -> None:
    asyncpg_url = "postgresql://postgres@127.0.0.1:5432/db"
    psycopg_url = "postgresql+psycopg://postgres@127.0.0.1:5432/db"
    assert conftest._selects(asyncpg_url, ("postgresql",))
    assert conftest._selects(psycopg_url, ("postgresql",))
    assert conftest._selects(asyncpg_url, ("postgresql+asyncpg",))
    assert not conftest._selects(psycopg_url, ("postgresql+asyncpg",))
    assert not conftest._selects(asyncpg_url, ("mysql", "postgresql+psycopg"))


def test_dialects_marker_knows_every_registered_driver() -> None:
    """Every `dialect+driver` scheme `Database` serves can be named in the marker (a name it
    does not know is a usage error, not a test that silently never runs)."""
    registered = {scheme for scheme in Database.SUPPORTED_BACKENDS if scheme != "postgres"}
    assert registered <= conftest._known_backend_names()
