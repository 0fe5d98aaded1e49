"""The app's database and tables.

The `Database` is created at import time, as most apps do; its URL comes from the
environment. Tests point the `databases` pytest plugin at this very object
(`memos_tests/conftest.py`), so the app's code runs in force-rollback mode under test.
"""

from __future__ import annotations

import os

import sqlalchemy

from databases import Database

DATABASE_URL = os.environ.get("MEMOS_DATABASE_URL", "sqlite:///memos.sqlite")

database = Database(DATABASE_URL)

metadata = sqlalchemy.MetaData()

memos_table = sqlalchemy.Table(
    "memos",
    metadata,
    sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True, autoincrement=True),
    sqlalchemy.Column("title", sqlalchemy.String(200), nullable=False),
    sqlalchemy.Column("done", sqlalchemy.Boolean, nullable=False, default=False),
)
