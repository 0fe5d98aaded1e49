"""The `databases` pytest plugin's entry point: its options, and nothing else.

Installed with the package (the `pytest11` entry point `databases`), so it runs in every
pytest session of an environment that has `databases`; that is why it only adds options. The
fixtures (`databases.testing.pytest_plugin`) are registered only when asked for: a URL given
by `--databases-url` or the ini option `databases_url`, or
`pytest_plugins = ["databases.testing.pytest_plugin"]` in a conftest.
"""

from __future__ import annotations

import pytest

FIXTURES_PLUGIN = "databases.testing.pytest_plugin"
DEFAULT_TIMEOUT = "30"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("databases", "databases: force-rollback test fixtures")
    group.addoption(
        "--databases-url",
        dest="databases_url",
        default=None,
        metavar="URL",
        help="Database URL for the databases_* fixtures; enables them "
        "(or the ini option databases_url).",
    )
    parser.addini(
        "databases_url",
        "Database URL for the databases_* fixtures; enables them.",
        default="",
    )
    parser.addini(
        "databases_timeout",
        "Seconds the databases_* fixtures wait for connecting, beginning and rolling back "
        f"(default {DEFAULT_TIMEOUT}).",
        default=DEFAULT_TIMEOUT,
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("databases_url") or config.getini("databases_url"):
        config.pluginmanager.import_plugin(FIXTURES_PLUGIN)
