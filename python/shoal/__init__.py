"""Shoal's Python client: the DolphinDB API's ``session`` and ``tableAppender`` over Arrow
Flight SQL (ADBC), with high-availability failover and exactly-once appends.

    import shoal as ddb
    s = ddb.session()
    s.connect(host, port, userid, password, highAvailability=True, highAvailabilitySites=sites)
    ddb.tableAppender(dbPath="dfs://stock", tableName="stock", ddbSession=s,
                      action="fitColumnType").append(df)
    s.run('SELECT count(*) FROM "dfs://stock".stock')   # a pandas DataFrame
"""

from .appender import tableAppender
from .errors import ShoalError
from .fit import fit_table
from .session import session

__all__ = ["session", "tableAppender", "ShoalError", "fit_table"]
__version__ = "0.1.0"
