"""``tableAppender``: appends pandas DataFrames to a table, fitted to its column types."""

from __future__ import annotations

from typing import Optional

import pyarrow as pa

from .errors import ShoalError
from .fit import fit_table
from .session import session


class tableAppender:
    """``ddb.tableAppender(dbPath="dfs://stock", tableName="stock", ddbSession=s,
    action="fitColumnType").append(df)``: each ``append`` is applied exactly once, also when
    the session fails over to another data node meanwhile (see ``shoal.session``)."""

    def __init__(
        self,
        dbPath: str = "",
        tableName: str = "",
        ddbSession: Optional[session] = None,
        action: str = "fitColumnType",
    ) -> None:
        if ddbSession is None:
            raise ShoalError("tableAppender needs ddbSession")
        if not dbPath or not tableName:
            raise ShoalError("tableAppender needs dbPath and tableName")
        if action != "fitColumnType":
            raise ShoalError(f"unsupported action {action!r} (only \"fitColumnType\")")
        self._session = ddbSession
        self._db = dbPath
        self._table = tableName
        self._schema: Optional[pa.Schema] = None

    def schema(self) -> pa.Schema:
        """The table's Arrow schema (read once, with a query)."""
        if self._schema is None:
            self._schema = self._session._table_schema(self._db, self._table)
        return self._schema

    def append(self, data) -> int:
        """Appends a pandas DataFrame (or pyarrow Table); returns the number of rows."""
        table = fit_table(data, self.schema())
        if table.num_rows == 0:
            return 0
        return self._session._append(self._db, self._table, table)
