"""The names `databases.core` has always offered, kept importable from here.

The code lives in modules with one job each (see docs/architecture.md, "Layout"):
`Database` in `_database`, `Connection` in `_connection`, `Transaction` in
`_transaction`, per-loop state in `_loops`. Names outside `__all__` are re-exported
explicitly (`import name as name`) for code that imported them from here.
"""

from sqlalchemy.sql import ClauseElement as ClauseElement

from databases._connection import _NO_LOCK as _NO_LOCK
from databases._connection import Connection
from databases._connection import _NoLock as _NoLock
from databases._database import Database
from databases._logging import CONNECT_EXTRA, DISCONNECT_EXTRA, LOG_EXTRA, logger
from databases._loops import MAX_STATEMENT_CONNECTIONS
from databases._loops import LoopRegistry as LoopRegistry
from databases._loops import LoopState as LoopState
from databases._query import build_query as build_query
from databases._query import has_expression as has_expression
from databases._query import has_expressions as has_expressions
from databases._query import takes_values as takes_values
from databases._run_to_end import run_to_end as run_to_end
from databases._transaction import _ACTIVE_TRANSACTIONS as _ACTIVE_TRANSACTIONS
from databases._transaction import Transaction
from databases._transaction import _InnerTransactionOpenError as _InnerTransactionOpenError
from databases._transaction_stack import _OpenTransaction as _OpenTransaction
from databases.errors import ConnectionLoopError as ConnectionLoopError
from databases.errors import DatabaseNotConnectedError as DatabaseNotConnectedError
from databases.errors import TransactionOpenError as TransactionOpenError
from databases.errors import UnsupportedDatabaseURLError as UnsupportedDatabaseURLError
from databases.importer import import_from_string as import_from_string
from databases.interfaces import ConnectionBackend as ConnectionBackend
from databases.interfaces import DatabaseBackend as DatabaseBackend
from databases.interfaces import QueryValues as QueryValues
from databases.interfaces import Record as Record
from databases.interfaces import Statement as Statement
from databases.interfaces import StatementCancellation as StatementCancellation
from databases.interfaces import TransactionBackend as TransactionBackend
from databases.interfaces import capabilities_of as capabilities_of
from databases.interfaces import each_record as each_record
from databases.url import DatabaseURL

# The old name of the limit on kept statement connections per loop.
MAX_SPARE = MAX_STATEMENT_CONNECTIONS

__all__ = [
    "CONNECT_EXTRA",
    "DISCONNECT_EXTRA",
    "LOG_EXTRA",
    "Connection",
    "Database",
    "DatabaseURL",
    "Transaction",
    "logger",
]
