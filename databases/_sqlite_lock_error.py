"""`ForceRollbackLockError`: SQLite's "database is locked" from outside a force-rollback
session, with what to do. Its own module, as it subclasses `sqlite3.OperationalError`:
`databases.errors` imports it on first use, so that `import databases` needs no `sqlite3`.
"""

from __future__ import annotations

import sqlite3


class ForceRollbackLockError(sqlite3.OperationalError):
    """A statement on a SQLite file needed the lock that a force-rollback session's
    transaction holds on that file, from outside the session: it would wait in vain, as
    the session keeps the lock until it ends.

    An `sqlite3.OperationalError`, as SQLite's "database is locked" it replaces (the
    `__cause__`, whose `sqlite_errorcode` and `sqlite_errorname` it copies), so code
    that catches that goes on catching it. Raised after a short wait instead of SQLite's
    busy timeout (5 seconds by default).
    """

    def __init__(self, holder: str, cause: sqlite3.OperationalError) -> None:
        super().__init__(
            f"{cause}: {holder} holds a lock on this SQLite file until that session "
            "ends (the last `disconnect()`), and this statement runs outside the "
            "session, on another connection. Run it in the session: through that "
            "database, inside its `with database.force_rollback():` block (or a task or "
            "thread started in the block); or use another database file for it; or end "
            "the session first."
        )
        for name in ("sqlite_errorcode", "sqlite_errorname"):
            if hasattr(cause, name):
                setattr(self, name, getattr(cause, name))
