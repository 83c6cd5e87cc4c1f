"""``PartitionedTableAppender``: appends a DataFrame to a DFS table over a ``DBConnectionPool``,
split by partition and sent in parallel, each part exactly once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .connection_pool import DBConnectionPool
from .errors import ShoalError
from .fit import fit_table


class PartitionedTableAppender:
    """``PartitionedTableAppender(dbPath, tableName, partitionColName, dbConnectionPool)``;
    ``append(table)`` fits a DataFrame (or pyarrow Table) to the table's columns (as
    ``tableAppender``'s fitColumnType), splits its rows by the partition column (times by day)
    over the pool's sessions and appends the parts in parallel. Each part is one append under
    its session's ``(writer id, seq)``: applied exactly once, also across failover. If a part
    fails, ``append`` raises ``ShoalError`` after the other parts finished, saying how many rows
    were appended; those parts stay appended."""

    def __init__(
        self,
        dbPath: str = "",
        tableName: str = "",
        partitionColName: str = "",
        dbConnectionPool: Optional[DBConnectionPool] = None,
    ) -> None:
        if dbConnectionPool is None:
            raise ShoalError("PartitionedTableAppender needs dbConnectionPool")
        if not dbPath or not tableName or not partitionColName:
            raise ShoalError("PartitionedTableAppender needs dbPath, tableName and partitionColName")
        self._pool = dbConnectionPool
        self._db = dbPath
        self._table = tableName
        self._schema = dbConnectionPool._session()._table_schema(dbPath, tableName)
        names = [f.name.lower() for f in self._schema]
        if partitionColName.lower() not in names:
            raise ShoalError(
                f"`{partitionColName}` is not a column of {dbPath}.{tableName} ({', '.join(self._schema.names)})"
            )
        self._pcol = self._schema.names[names.index(partitionColName.lower())]

    def append(self, table) -> int:
        """Appends ``table``; returns the number of rows appended."""
        data = fit_table(table, self._schema)
        if data.num_rows == 0:
            return 0
        sessions = self._pool.sessions
        parts = _split(data, self._pcol, len(sessions))
        jobs = [(sessions[i], part) for i, part in enumerate(parts) if part.num_rows]
        with ThreadPoolExecutor(max_workers=len(jobs)) as ex:
            futures = [ex.submit(s._append, self._db, self._table, part) for s, part in jobs]
        done, errors = 0, []
        for f in futures:
            try:
                done += f.result()
            except Exception as e:
                errors.append(e)
        if errors:
            raise ShoalError(
                f"{len(errors)} of {len(jobs)} parts failed ({done} of {data.num_rows} rows appended): {errors[0]}"
            ) from errors[0]
        return done


def _split(data: pa.Table, column: str, n: int):
    """``data``'s rows in ``n`` parts by ``column``'s value (its day, for times)."""
    if n == 1:
        return [data]
    col = data.column(column)
    if pa.types.is_timestamp(col.type):
        col = pc.cast(col, pa.timestamp("s"), safe=False).cast(pa.int64())
        keys = pd.Series(col.to_numpy(zero_copy_only=False) // 86400)
    else:
        keys = col.to_pandas()
    bucket = (pd.util.hash_pandas_object(keys, index=False).to_numpy() % n).astype("int64")
    return [data.filter(pa.array(bucket == i)) for i in range(n)]
