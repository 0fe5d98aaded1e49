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


ASYNCPG = ["asyncpg>=0.29"]
# aiomysql 0.3.2 calls a PyMySQL helper that PyMySQL 1.2 removed; every bytes
# parameter breaks with it, so PyMySQL stays below 1.2.
AIOMYSQL = ["aiomysql>=0.2", "PyMySQL>=1.1,<1.2"]
AIOSQLITE = ["aiosqlite>=0.22"]

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
    install_requires=["sqlalchemy>=2.0.11,<2.2"],
    extras_require={
        "postgresql": ASYNCPG,
        "asyncpg": ASYNCPG,
        "mysql": AIOMYSQL,
        "aiomysql": AIOMYSQL,
        "sqlite": AIOSQLITE,
        "aiosqlite": AIOSQLITE,
        "aiopg": ["aiopg>=1.4"],
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
