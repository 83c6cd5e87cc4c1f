"""Shoal's Python client: the DolphinDB API over Arrow Flight SQL (ADBC), with
high-availability failover and exactly-once appends.

    import shoal as ddb
    s = ddb.session()
    s.connect(host, port, userid, password, highAvailability=True, highAvailabilitySites=sites)
    ddb.tableAppender(dbPath="dfs://stock", tableName="stock", ddbSession=s,
                      action="fitColumnType").append(df)
    s.run('SELECT count(*) FROM "dfs://stock".stock')   # a pandas DataFrame

Also ``MultithreadedTableWriter``, ``PartitionedTableAppender`` with ``DBConnectionPool``,
``session.upload`` / ``session.loadTable``, and the newer spellings ``Session`` and
``TableAppender``.
"""

from .appender import tableAppender
from .connection_pool import DBConnectionPool
from .errors import ErrorCodeInfo, ShoalError
from .fit import fit_table
from .partitioned_appender import PartitionedTableAppender
from .session import session
from .table import Table
from .table_writer import (
    MultithreadedTableWriter,
    MultithreadedTableWriterStatus,
    MultithreadedTableWriterThreadStatus,
)

# The spellings of newer dolphindb releases: the same classes.
Session = session
TableAppender = tableAppender

__all__ = [
    "session",
    "Session",
    "tableAppender",
    "TableAppender",
    "MultithreadedTableWriter",
    "MultithreadedTableWriterStatus",
    "MultithreadedTableWriterThreadStatus",
    "PartitionedTableAppender",
    "DBConnectionPool",
    "Table",
    "ErrorCodeInfo",
    "ShoalError",
    "fit_table",
]
# The release of Shoal this client ships with: the workspace's version (Cargo.toml), checked by
# tests/test_package.py; the wheel takes its version from here (pyproject.toml).
__version__ = "0.2.0"
