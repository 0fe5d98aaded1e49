"""Async database support for Python on SQLAlchemy Core, safe across event loops."""

from databases.core import Database, DatabaseURL

__version__ = "0.9.1"
__all__ = ["Database", "DatabaseURL"]
