"""Packaging for `databases`: a maintained, drop-in successor of encode/databases."""

import re
from pathlib import Path

from setuptools import Extension, find_packages, setup

HERE = Path(__file__).parent


def read_version() -> str:
    text = (HERE / "databases" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if match is None:
        raise RuntimeError("databases/__init__.py has no __version__")
    return match.group(1)


# Each range is exactly what CI proves: the suite runs on requirements.txt (the lower
# bounds) and on requirements-latest.txt (the newest releases below the upper bounds).
# [asyncio]: greenlet, which run_sync(), create_all() and drop_all() run on.
SQLALCHEMY = ["sqlalchemy[asyncio]>=2.0.44,<2.2"]
# 0.32 fixed a pool slot leaked by a query that meets a connection the server just closed
# (MagicStack/asyncpg#1307): with it, a small pool could end up waiting forever.
ASYNCPG = ["asyncpg>=0.32,<0.33"]
AIOMYSQL = ["aiomysql>=0.3.2,<0.4", "PyMySQL>=1.1,<1.3"]
AIOSQLITE = ["aiosqlite>=0.20,<0.23"]
# psycopg 3 with its binary (libpq bundled) wheels. 3.2.0 cannot be installed with
# [binary] (its metadata asks for psycopg-binary 3.2.0.dev1), so 3.2.1 is the oldest.
PSYCOPG = ["psycopg[binary]>=3.2.1,<3.4"]
# aiopg 1.4 is its last release; it needs psycopg2 2.9.5 or later.
AIOPG = ["aiopg>=1.4,<1.5", "psycopg2-binary>=2.9.5,<2.10"]

# Result rows in C. Optional: without a compiler the package installs and uses the same
# code in Python (databases/backends/common/record_base.py).
SPEEDUPS = Extension("databases._speedups", ["databases/_speedups.c"], optional=True)

setup(
    name="databases",
    version=read_version(),
    description="Async database support for Python, safe across event loops.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.9",
    packages=find_packages(include=["databases", "databases.*"]),
    package_data={"databases": ["py.typed", "_speedups.pyi"]},
    ext_modules=[SPEEDUPS],
    include_package_data=True,
    zip_safe=False,
    install_requires=SQLALCHEMY,
    extras_require={
        "postgresql": ASYNCPG,
        "asyncpg": ASYNCPG,
        "mysql": AIOMYSQL,
        "aiomysql": AIOMYSQL,
        "sqlite": AIOSQLITE,
        "aiosqlite": AIOSQLITE,
        "aiopg": AIOPG,
        "psycopg": PSYCOPG,
        "asyncmy": ["asyncmy>=0.2.9"],
    },
    classifiers=[
        "Development Status :: 4 - Beta",
        "Framework :: AsyncIO",
        "Intended Audience :: Developers",
        "Programming Language :: Python :: 3",
        "Topic :: Database",
        "Typing :: Typed",
    ],
)
