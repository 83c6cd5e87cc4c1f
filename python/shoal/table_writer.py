"""``MultithreadedTableWriter``: dolphindb's row-at-a-time asynchronous writer, with Shoal's
exactly-once appends.

``insert(*row)`` queues one row (checking only its column count) and returns an
``ErrorCodeInfo``. ``threadCount`` writer threads, each with its own session (so its own
connection and writer id), send the queued rows in batches: a batch leaves once ``batchSize``
rows wait, or ``throttle`` seconds after its first row arrived, or at
``waitForThreadCompletion``. With ``threadCount > 1`` rows are routed by the value of
``partitionCol`` (times and dates by their day), so one partition's rows go through one thread.

Each batch is one append under its thread's ``(writer id, seq)``: when the data node in use
fails, the batch is re-sent to the next site with the same key and the cluster applies it once.
With ``reconnect=True`` (the default) a batch is re-sent until it is acknowledged; with
``reconnect=False`` for at most ``retryTimeout`` seconds (default 60), then the writer stops.

Errors stop the writer, as in dolphindb: a batch whose values do not fit the table (see
``fit_table``) or that the cluster refused, or one not acknowledged in time, stops every thread;
``getStatus()`` has the error, ``getUnwrittenData()`` the rows not written (the failed batch
first, then the queued ones). A batch that failed because no data node answered may still have
been applied (its outcome is unknown): it is reported in ``sendFailedRows``.
"""

from __future__ import annotations

import datetime
import threading
import time
from typing import List, Optional

import pandas as pd
import pyarrow as pa

from .errors import ErrorCodeInfo, ShoalError
from .fit import fit_table
from .session import session

# A batch carries every row waiting when it leaves, up to this many (or batchSize, if more).
MAX_BATCH_ROWS = 10_000


class MultithreadedTableWriterThreadStatus:
    """One writer thread's counts."""

    def __init__(self, threadId: int, sentRows: int, unsentRows: int, sendFailedRows: int) -> None:
        self.threadId = threadId
        self.sentRows = sentRows
        self.unsentRows = unsentRows
        self.sendFailedRows = sendFailedRows

    def __repr__(self) -> str:
        return (
            f"threadId: {self.threadId}, sentRows: {self.sentRows}, unsentRows: {self.unsentRows}, "
            f"sendFailedRows: {self.sendFailedRows}"
        )


class MultithreadedTableWriterStatus(ErrorCodeInfo):
    """``getStatus()``: ``isExiting``, ``errorCode``, ``errorInfo``, ``sentRows`` (acknowledged),
    ``unsentRows`` (queued or being sent), ``sendFailedRows`` (in batches that failed),
    ``threadStatus`` (a list of ``MultithreadedTableWriterThreadStatus``)."""

    def __init__(self, isExiting: bool, errorCode: str, errorInfo: str, threadStatus) -> None:
        super().__init__(errorCode, errorInfo)
        self.isExiting = isExiting
        self.threadStatus = list(threadStatus)
        self.sentRows = sum(t.sentRows for t in self.threadStatus)
        self.unsentRows = sum(t.unsentRows for t in self.threadStatus)
        self.sendFailedRows = sum(t.sendFailedRows for t in self.threadStatus)

    def __repr__(self) -> str:
        lines = [
            f"errorCode     : {self.errorCode}",
            f"errorInfo     : {self.errorInfo}",
            f"isExiting     : {self.isExiting}",
            f"sentRows      : {self.sentRows}",
            f"unsentRows    : {self.unsentRows}",
            f"sendFailedRows: {self.sendFailedRows}",
            "threadStatus  :",
            "\tthreadId\tsentRows\tunsentRows\tsendFailedRows",
        ]
        for t in self.threadStatus:
            lines.append(f"\t{t.threadId}\t{t.sentRows}\t{t.unsentRows}\t{t.sendFailedRows}")
        return "\n".join(lines) + "\n"


class _Worker:
    """One writer thread: its queue, its session, its counts."""

    def __init__(self, index: int, sess: session) -> None:
        self.index = index
        self.session = sess
        self.cond = threading.Condition(threading.Lock())
        self.pending: List[tuple] = []
        self.first_at = 0.0  # when the oldest queued row arrived
        self.inflight = 0
        self.sent = 0
        self.failed: List[tuple] = []  # rows of batches that failed
        self.thread: Optional[threading.Thread] = None


class MultithreadedTableWriter:
    """``MultithreadedTableWriter(host, port, userId, password, dbPath, tableName, ...)``, with
    dolphindb's parameters. ``useSSL=True``: TLS, as ``session(enableSSL=True)`` with the
    keyword-only ``sslCAFile`` / ``sslCertFile`` / ``sslKeyFile``; ``mode`` must be "" or
    "append" (no upsert); ``compressMethods`` is checked (one per column) and otherwise ignored
    (it tunes dolphindb's wire format); an unknown keyword is a ``TypeError``.
    ``retryTimeout`` (Shoal's, keyword only): with ``reconnect=False``, how long a batch keeps
    trying the sites."""

    def __init__(
        self,
        host: str,
        port: int,
        userId: Optional[str],
        password: Optional[str],
        dbPath: str,
        tableName: str,
        useSSL: bool = False,
        enableHighAvailability: bool = False,
        highAvailabilitySites: Optional[List[str]] = None,
        batchSize: int = 1,
        throttle: float = 0.01,
        threadCount: int = 1,
        partitionCol: str = "",
        compressMethods: Optional[List[str]] = None,
        mode: str = "",
        modeOption: Optional[List[str]] = None,
        reconnect: bool = True,
        *,
        retryTimeout: Optional[float] = None,
        sslCAFile: Optional[str] = None,
        sslCertFile: Optional[str] = None,
        sslKeyFile: Optional[str] = None,
    ) -> None:
        if mode not in ("", "append", "APPEND", "Append"):
            raise ShoalError(f"mode {mode!r} is not supported: only appends (mode=\"\" or \"append\")")
        if modeOption:
            raise ShoalError("modeOption is not supported (it configures upserts)")
        if not dbPath or not tableName:
            raise ShoalError("MultithreadedTableWriter needs dbPath and tableName (a DFS table)")
        if int(batchSize) < 1:
            raise ShoalError("batchSize must be at least 1")
        if float(throttle) < 0:
            raise ShoalError("throttle must not be negative")
        if int(threadCount) < 1:
            raise ShoalError("threadCount must be at least 1")
        if int(threadCount) > 1 and not partitionCol:
            raise ShoalError("partitionCol must be given when threadCount is greater than 1")
        self._db = dbPath
        self._table = tableName
        self._batch = int(batchSize)
        self._throttle = float(throttle)
        self._cap = max(self._batch, MAX_BATCH_ROWS)
        if retryTimeout is None:
            retryTimeout = float("inf") if reconnect else 60.0

        sites = list(highAvailabilitySites or []) if enableHighAvailability else []

        def connect() -> session:
            s = session(
                enableSSL=useSSL, sslCAFile=sslCAFile, sslCertFile=sslCertFile, sslKeyFile=sslKeyFile
            )
            s.connect(
                host,
                port,
                userId,
                password,
                highAvailability=enableHighAvailability,
                highAvailabilitySites=sites,
                retryTimeout=retryTimeout if retryTimeout != float("inf") else 60.0,
            )
            s._retry_timeout = float(retryTimeout)
            return s

        first = connect()
        self._schema = first._table_schema(dbPath, tableName)
        self._ncols = len(self._schema)
        if compressMethods and len(compressMethods) != self._ncols:
            raise ShoalError(
                f"compressMethods has {len(compressMethods)} entries; the table has {self._ncols} columns"
            )
        self._pidx = 0
        if partitionCol:
            names = [f.name.lower() for f in self._schema]
            if partitionCol.lower() not in names:
                raise ShoalError(f"partitionCol `{partitionCol}` is not a column of {dbPath}.{tableName} ({', '.join(self._schema.names)})")
            self._pidx = names.index(partitionCol.lower())

        self._workers = [_Worker(0, first)] + [_Worker(i, connect()) for i in range(1, int(threadCount))]
        self._state_lock = threading.Lock()
        self._exiting = False  # set by an error or by waitForThreadCompletion
        self._stopping = False  # waitForThreadCompletion: send what is queued, then stop
        self._error = ErrorCodeInfo()
        for w in self._workers:
            w.thread = threading.Thread(target=self._run, args=(w,), name=f"shoal-mtw-{w.index}", daemon=True)
            w.thread.start()

    # -- the caller's side ------------------------------------------------------------------

    def insert(self, *args) -> ErrorCodeInfo:
        """Queues one row (values in the table's column order). Checks only the number of
        columns; types are checked when its batch is converted."""
        if self._exiting:
            if self._error.hasError():
                return ErrorCodeInfo("A1", f"the writer has stopped after an error: {self._error.errorInfo}")
            return ErrorCodeInfo("A1", "the writer has stopped (waitForThreadCompletion was called)")
        if len(args) != self._ncols:
            return ErrorCodeInfo(
                "A2",
                f"Column counts don't match: got {len(args)} values, the table has {self._ncols} columns "
                f"({', '.join(self._schema.names)})",
            )
        workers = self._workers
        w = workers[0] if len(workers) == 1 else workers[_route(args[self._pidx]) % len(workers)]
        with w.cond:
            pending = w.pending
            pending.append(args)
            n = len(pending)
            if n == 1:
                w.first_at = time.monotonic()
                w.cond.notify()
            elif n == self._batch:
                w.cond.notify()
        return ErrorCodeInfo()

    def getStatus(self) -> MultithreadedTableWriterStatus:
        threads = []
        for w in self._workers:
            with w.cond:
                threads.append(
                    MultithreadedTableWriterThreadStatus(
                        w.thread.ident or w.index, w.sent, len(w.pending) + w.inflight, len(w.failed)
                    )
                )
        return MultithreadedTableWriterStatus(self._exiting, self._error.errorCode, self._error.errorInfo, threads)

    def getUnwrittenData(self) -> List[list]:
        """The rows not written: those of batches that failed (maybe applied, if no data node
        answered; see ``sendFailedRows``), then those still queued, as lists of values."""
        failed, queued = [], []
        for w in self._workers:
            with w.cond:
                failed.extend(list(r) for r in w.failed)
                queued.extend(list(r) for r in w.pending)
        return failed + queued

    def waitForThreadCompletion(self) -> None:
        """Sends every queued row (unless an error stopped the writer), waits for the threads to
        end and closes their sessions. The writer takes no rows afterwards."""
        with self._state_lock:
            self._stopping = True
            self._exiting = True
        for w in self._workers:
            with w.cond:
                w.cond.notify_all()
        for w in self._workers:
            w.thread.join()
        for w in self._workers:
            w.session.close()

    # -- the writer threads -----------------------------------------------------------------

    def _run(self, w: _Worker) -> None:
        while True:
            with w.cond:
                while True:
                    n = len(w.pending)
                    if self._error.hasError():
                        return  # another thread failed: leave the rows queued (unwritten)
                    if n >= self._batch or (n and self._stopping):
                        break
                    if not n:
                        if self._stopping:
                            return
                        w.cond.wait()
                        continue
                    wait = w.first_at + self._throttle - time.monotonic()
                    if wait <= 0:
                        break
                    w.cond.wait(wait)
                batch = w.pending[: self._cap]
                del w.pending[: self._cap]
                if w.pending:
                    w.first_at = time.monotonic()
                w.inflight = len(batch)
            error = self._send(w, batch)
            with w.cond:
                w.inflight = 0
                if error is None:
                    w.sent += len(batch)
                else:
                    w.failed.extend(batch)
            if error is not None:
                self._fail(error)
                return

    def _send(self, w: _Worker, batch: List[tuple]) -> Optional[ErrorCodeInfo]:
        try:
            data = self._to_arrow(batch)
        except ShoalError as e:
            return ErrorCodeInfo("A4", str(e))
        try:
            w.session._append(self._db, self._table, data)
            return None
        except ShoalError as e:
            return ErrorCodeInfo("A5", str(e))
        except Exception as e:  # not expected: reported, not lost
            return ErrorCodeInfo("A5", repr(e))

    def _to_arrow(self, batch: List[tuple]) -> pa.Table:
        arrays = []
        for field, values in zip(self._schema, zip(*batch)):
            try:
                arrays.append(pa.array(values, type=field.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                try:
                    arrays.append(pa.array(values))  # fitted (or refused, naming the column) below
                except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as e:
                    raise ShoalError(f"column `{field.name}` ({field.type}): cannot convert the values: {e}") from None
        return fit_table(pa.Table.from_arrays(arrays, names=self._schema.names), self._schema)

    def _fail(self, error: ErrorCodeInfo) -> None:
        with self._state_lock:
            if not self._error.hasError():
                self._error = error
            self._exiting = True
        for w in self._workers:
            with w.cond:
                w.cond.notify_all()

    def __repr__(self) -> str:
        return f"<shoal.MultithreadedTableWriter {self._db}.{self._table}, {len(self._workers)} threads>"


def _route(value) -> int:
    """The routing key of a partition column's value: the day of a time or date (tables are
    partitioned by day), the hash of anything else."""
    if isinstance(value, datetime.datetime):
        return value.toordinal()
    if isinstance(value, datetime.date):
        return value.toordinal()
    if isinstance(value, pd.Timestamp):
        return value.toordinal()
    try:
        return hash(value)
    except TypeError:
        return hash(str(value))
