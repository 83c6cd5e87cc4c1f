"""``Table``: what ``session.loadTable`` returns (a DFS table, or a table ``upload()`` kept on
the client)."""

from __future__ import annotations

from typing import Optional

import pandas as pd
import pyarrow as pa

from .errors import ShoalError


class Table:
    """A handle on a table: ``toDF()``, ``toArrow()``, ``rows``, ``cols``, ``colNames``,
    ``schema``, ``tableName()``, ``append(df)``. dolphindb's query builder (``select``,
    ``where``, ``groupby`` …) is not supported: run SQL with ``session.run``."""

    def __init__(self, session, tableName: str, dbPath: Optional[str], data=None) -> None:
        self._session = session
        self._name = tableName
        self._db = dbPath
        self._data = data
        self._appender = None

    def tableName(self) -> str:
        return self._name

    @property
    def dbPath(self) -> Optional[str]:
        return self._db

    def _sql_name(self) -> str:
        from .session import _quote

        return f"{_quote(self._db)}.{_quote(self._name)}"

    def toArrow(self) -> pa.Table:
        if self._db is None:
            if isinstance(self._data, pd.DataFrame):
                return pa.Table.from_pandas(self._data, preserve_index=False)
            if isinstance(self._data, pa.Table):
                return self._data
            raise ShoalError(f"`{self._name}` was uploaded as a {type(self._data).__name__}, not a table")
        return self._session.runArrow(f"SELECT * FROM {self._sql_name()}")

    def toDF(self) -> pd.DataFrame:
        if self._db is None and isinstance(self._data, pd.DataFrame):
            return self._data.copy()
        return self.toArrow().to_pandas()

    @property
    def schema(self) -> pa.Schema:
        if self._db is None:
            return self.toArrow().schema
        return self._session._table_schema(self._db, self._name)

    @property
    def colNames(self):
        return list(self.schema.names)

    @property
    def cols(self) -> int:
        return len(self.schema)

    @property
    def rows(self) -> int:
        if self._db is None:
            return self.toArrow().num_rows
        n = self._session.runArrow(f"SELECT count(*) AS n FROM {self._sql_name()}")
        return int(n.column(0)[0].as_py())

    def append(self, table) -> int:
        """Appends a DataFrame (or a ``Table`` from ``loadTable``) to this DFS table, fitted to
        its column types, exactly once (``tableAppender``). Returns the number of rows."""
        if self._db is None:
            raise ShoalError(f"`{self._name}` is a client-side uploaded table: append to a DFS table")
        if isinstance(table, Table):
            table = table.toArrow()
        if self._appender is None:
            from .appender import tableAppender

            self._appender = tableAppender(self._db, self._name, self._session)
        return self._appender.append(table)

    def __repr__(self) -> str:
        where = f"{self._db}.{self._name}" if self._db else f"{self._name} (uploaded, client-side)"
        return f"<shoal.Table {where}>"
