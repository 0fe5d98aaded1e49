"""The `databases` pytest plugin (databases/testing/pytest_plugin.py), run as users run it:
whole pytest runs in subprocesses of their own (`scripts/plugin_suite`, see its modules).

- It is off unless enabled: this very suite has the entry point loaded but no URL given.
- Pointed at an app's module-global `Database` built without force_rollback, each test's
  writes from every kind of loop (pytest-asyncio function/module/session loops, anyio,
  `TestClient`, `asyncio.run()` in threads) are rolled back after it, a session fixture's at
  the end of the run, and nothing is ever committed: whether the app's lifespan connected
  its database before the plugin took it over or not.
- Enabled by `--databases-url`, it builds the database itself; without a URL it says what
  to do; a savepoint a test keeps open from a loop still running fails the teardown within
  `databases_timeout` instead of hanging.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import sqlalchemy

from databases import DatabaseURL
from tests import admin
from tests.loops import is_sqlite
from tests.subprocesses import run_pytest

SUITE = Path(__file__).parent / "scripts" / "plugin_suite"
PLUGIN = "databases.testing.pytest_plugin"

rows = sqlalchemy.Table(
    f"plugin_rows_{os.getpid()}",
    sqlalchemy.MetaData(),
    sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
    sqlalchemy.Column("label", sqlalchemy.String(100)),
)

INI = (
    "[pytest]\n"
    "asyncio_mode = strict\n"
    "asyncio_default_fixture_loop_scope = function\n"
    "asyncio_default_test_loop_scope = function\n"
    "filterwarnings =\n"
    "    error\n"
)


@pytest.fixture(scope="module")
def database_url(database_url: str) -> Iterator[str]:
    """The suite's URL, with `rows` created (empty) on it for the module."""
    admin.create_tables(database_url, rows)
    yield database_url
    admin.drop_tables(database_url, rows)


def absolute(database_url: str) -> str:
    """A SQLite file URL made absolute, so that a subprocess elsewhere finds the file."""
    if not is_sqlite(database_url):
        return database_url
    return "sqlite:///" + os.path.abspath(DatabaseURL(database_url).database)


def copy_suite(tmp_path: Path, ini: str = INI) -> Path:
    """The plugin suite in a directory of its own (no conftest of ours above it)."""
    suite = tmp_path / "suite"
    shutil.copytree(SUITE, suite)
    (suite / "pytest.ini").write_text(ini)
    return suite


def committed(database_url: str) -> list[str]:
    return [row[0] for row in admin.raw_fetch_all(database_url, f"SELECT label FROM {rows.name}")]


def test_entry_point_only_adds_options(pytestconfig: pytest.Config) -> None:
    """Installed with the package, so loaded here, but with no URL given the fixtures are
    not registered: this suite's own fixtures stay as they are."""
    (entry_point,) = (ep for ep in entry_points(group="pytest11") if ep.name == "databases")
    assert entry_point.value == "databases.testing.pytest_options"
    assert pytestconfig.pluginmanager.has_plugin("databases")
    assert not pytestconfig.pluginmanager.has_plugin(PLUGIN)
    assert pytestconfig.getoption("databases_url") is None
    assert pytestconfig.getini("databases_url") == ""


@pytest.mark.parametrize("app_started_first", [False, True], ids=["plugin_first", "app_first"])
def test_each_test_rolled_back_in_every_loop(
    database_url: str, app_started_first: bool, tmp_path: Path
) -> None:
    suite = copy_suite(tmp_path)
    env = dict(
        os.environ,
        PLUGIN_APP_URL=absolute(database_url),
        PLUGIN_TABLE=rows.name,
        PLUGIN_APP_STARTED_FIRST="1" if app_started_first else "0",
    )
    result = run_pytest(".", suite, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "14 passed" in result.stdout, result.stdout
    assert committed(database_url) == []


@pytest.mark.dialects("sqlite")  # the option's handling does not depend on the backend
def test_enabled_by_the_url_option(tmp_path: Path, database_url: str) -> None:
    """`--databases-url` builds the database; a savepoint kept open by a transaction that a
    test left in the session loop (still running) fails the teardown within the bound."""
    suite = tmp_path / "option_suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text(INI + "databases_timeout = 1\n")
    (suite / "test_option.py").write_text(
        "import pytest\n"
        "from databases import Database\n"
        f"TABLE = {rows.name!r}\n"
        "\n"
        "@pytest.mark.asyncio\n"
        "async def test_write(databases_db: Database) -> None:\n"
        "    await databases_db.execute(f\"INSERT INTO {TABLE} (label) VALUES ('x')\")\n"
        "    assert await databases_db.fetch_val(f'SELECT count(*) FROM {TABLE}') == 1\n"
        "\n"
        "@pytest.mark.asyncio\n"
        "async def test_rolled_back(databases_db: Database) -> None:\n"
        "    assert await databases_db.fetch_val(f'SELECT count(*) FROM {TABLE}') == 0\n"
        "\n"
        "@pytest.mark.asyncio(loop_scope='session')\n"
        "async def test_leaves_a_transaction_open(databases_db: Database) -> None:\n"
        "    await databases_db.transaction()\n"
    )
    env = dict(os.environ)
    result = run_pytest(".", suite, env, extra_args=["--databases-url", absolute(database_url)])
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "3 passed, 1 error" in result.stdout, output
    assert "Rolling back the test's savepoint" in output
    assert "did not finish within 1 s" in output
    assert committed(database_url) == []


def test_enabled_without_a_url_says_what_to_do(tmp_path: Path) -> None:
    suite = tmp_path / "no_url_suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text(INI)
    (suite / "test_no_url.py").write_text(
        "def test_needs_a_database(databases_db: object) -> None:\n    pass\n"
    )
    result = run_pytest(".", suite, dict(os.environ), extra_args=["-p", PLUGIN])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "pass --databases-url URL, set the ini option databases_url" in result.stdout


def test_a_bad_timeout_stops_the_run_at_once(tmp_path: Path) -> None:
    suite = tmp_path / "bad_timeout_suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text(INI + "databases_timeout = soon\n")
    (suite / "test_nothing.py").write_text("def test_nothing() -> None:\n    pass\n")
    result = run_pytest(".", suite, dict(os.environ), extra_args=["-p", PLUGIN])
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert "databases_timeout must be a positive number of seconds, got 'soon'" in result.stderr
