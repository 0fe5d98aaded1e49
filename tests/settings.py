"""Which databases the suite runs against.

`TEST_DATABASE_URLS` is a comma-separated list of URLs; every backend-dependent test runs once
per URL. The default is a SQLite file in the working directory, so a bare `pytest` works.
"""

import os

DEFAULT_URLS = "sqlite:///testsuite.sqlite"

DATABASE_URLS: list[str] = [
    url.strip()
    for url in os.environ.get("TEST_DATABASE_URLS", DEFAULT_URLS).split(",")
    if url.strip()
]
