"""``session``: a connection to a Shoal cluster's data nodes over Arrow Flight SQL (ADBC), with
failover between them.

Exactly-once appends: a session has a random writer id and numbers its appends 1, 2, ...; each
append is sent with that ``(writer id, seq)`` (the gRPC headers ``x-shoal-writer-id`` and
``x-shoal-seq``) and the cluster applies a pair at most once. When the data node the session
talks to fails at the connection level (ADBC OperationalError: IO / UNAVAILABLE, CANCELLED,
TIMEOUT, or UNKNOWN), the session connects to the next site of ``highAvailabilitySites`` and
sends the same append again, until ``retryTimeout`` seconds have passed. Queries fail over the
same way. Any other error (a bad column, an unknown table, bad SQL) is raised at once.

TLS: ``session(enableSSL=True)`` connects with ``grpc+tls://``, trusting the CA file
``sslCAFile`` (keyword, else ``$SHOAL_TLS_CA``, else the system's trust store) and, for a cluster
with ``sslMutualAuth=1``, presenting ``sslCertFile`` / ``sslKeyFile`` (else ``$SHOAL_TLS_CERT`` /
``$SHOAL_TLS_KEY``): the same names as the cluster's own keys and the CLI's variables.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from typing import Callable, List, Optional, TypeVar

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pandas as pd
import pyarrow as pa

from .errors import ShoalError

T = TypeVar("T")

WRITER_ID_HEADER = "x-shoal-writer-id"
SEQ_HEADER = "x-shoal-seq"
_CALL_HEADER = adbc_driver_flightsql.DatabaseOptions.RPC_CALL_HEADER_PREFIX.value
# Schema metadata of a script's answer: its DolphinDB form (scalar, vector, table, void).
_FORM_KEY = b"shoal.script.form"

_RETRYABLE = {
    adbc_driver_manager.AdbcStatusCode.IO,  # UNAVAILABLE, connection refused or reset
    adbc_driver_manager.AdbcStatusCode.CANCELLED,  # the first call after a server's GOAWAY
    adbc_driver_manager.AdbcStatusCode.TIMEOUT,  # DEADLINE_EXCEEDED
    adbc_driver_manager.AdbcStatusCode.UNKNOWN,  # transport errors gRPC could not classify
}

# Per-call deadline: above the data node's own deadline for an append (24 s), so the side that
# knows the outcome answers first.
RPC_TIMEOUT_SECONDS = 30.0
RETRY_PAUSE_SECONDS = 0.1


CA_ENV = "SHOAL_TLS_CA"
CERT_ENV = "SHOAL_TLS_CERT"
KEY_ENV = "SHOAL_TLS_KEY"


def _read_pem(path: str, what: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        raise ShoalError(f"{what} {path}: cannot read: {e}") from e


def _tls_options(ca_file: Optional[str], cert_file: Optional[str], key_file: Optional[str]) -> dict:
    """The Flight SQL driver's TLS options: the CA to trust (none: the system's trust store)
    and the certificate to present (both files or neither)."""
    ca_file = ca_file or os.environ.get(CA_ENV)
    cert_file = cert_file or os.environ.get(CERT_ENV)
    key_file = key_file or os.environ.get(KEY_ENV)
    opts = {}
    if ca_file:
        opts[adbc_driver_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value] = _read_pem(ca_file, "sslCAFile")
    if bool(cert_file) != bool(key_file):
        raise ShoalError("sslCertFile and sslKeyFile go together: give both or neither")
    if cert_file:
        opts[adbc_driver_flightsql.DatabaseOptions.MTLS_CERT_CHAIN.value] = _read_pem(cert_file, "sslCertFile")
        opts[adbc_driver_flightsql.DatabaseOptions.MTLS_PRIVATE_KEY.value] = _read_pem(key_file, "sslKeyFile")
    return opts


def _retryable(e: BaseException) -> bool:
    """Whether ``e`` says the data node could not be reached or did not answer: then the
    request is sent again elsewhere (appends with the same idempotency key)."""
    if isinstance(e, adbc_driver_manager.Error):
        code = getattr(e, "status_code", None)
        return code in _RETRYABLE
    return isinstance(e, (ConnectionError, TimeoutError))


class session:
    """A DolphinDB-API-style session (``import shoal as ddb; s = ddb.session()``)."""

    def __init__(
        self,
        host: Optional[str] = None,
        port: Optional[int] = None,
        userid: str = "",
        password: str = "",
        enableSSL: bool = False,
        enableASYNC: bool = False,
        keepAliveTime: int = 30,
        enableChunkGranularityConfig: bool = False,
        compress: bool = False,
        enablePickle: bool = True,
        protocol: Optional[int] = None,
        python: bool = False,
        show_output: bool = True,
        sqlStd=None,
        tryReconnectNums: int = -1,
        *,
        sslCAFile: Optional[str] = None,
        sslCertFile: Optional[str] = None,
        sslKeyFile: Optional[str] = None,
    ) -> None:
        """``dolphindb.session``'s parameters. With ``host`` and ``port`` it connects at once
        (as dolphindb does). Parameters that would change what the session does and that
        Shoal cannot honour are refused: ``enableASYNC=True``, ``python=True`` (Python-syntax
        scripts). The others only tune dolphindb's own wire protocol and are accepted and
        ignored. An unknown keyword is a ``TypeError`` naming it.

        ``enableSSL=True``: TLS, with ``sslCAFile`` / ``sslCertFile`` / ``sslKeyFile`` (keyword
        only; see the module docs); the files are read here, a missing one is a ``ShoalError``.
        Without ``enableSSL`` they are refused rather than ignored."""
        if enableSSL:
            self._tls: Optional[dict] = _tls_options(sslCAFile, sslCertFile, sslKeyFile)
        elif sslCAFile or sslCertFile or sslKeyFile:
            raise ShoalError("sslCAFile, sslCertFile and sslKeyFile need enableSSL=True")
        else:
            self._tls = None
        if enableASYNC:
            raise ShoalError("enableASYNC=True is not supported: run() waits for its answer")
        if python:
            raise ShoalError("python=True is not supported: run() takes SQL or DolphinDB script")
        self._sites: List[str] = []
        self._site_index = 0
        self._conn = None
        self._db_kwargs: dict = {}
        self._retry_timeout = 60.0
        self._lock = threading.RLock()
        self._writer_id = secrets.randbits(63) or 1
        self._seq = 0
        self._closed = False
        self._failovers = 0
        # upload()ed objects: kept here, client-side (Shoal has no server-side session
        # variables); loadTable(name) without dbPath reads them back.
        self._uploaded: dict = {}
        if host is not None and port is not None:
            self.connect(host, port, userid or None, password or None)

    # -- connection -------------------------------------------------------------------------

    def connect(
        self,
        host: str,
        port: int,
        userid: Optional[str] = None,
        password: Optional[str] = None,
        startup: Optional[str] = None,
        highAvailability: bool = False,
        highAvailabilitySites: Optional[List[str]] = None,
        keepAliveTime: Optional[int] = None,
        reconnect: bool = False,
        tryReconnectNums: int = -1,
        readTimeout: float = -1,
        writeTimeout: float = -1,
        usePublicName: bool = False,
        *,
        token: Optional[str] = None,
        retryTimeout: float = 60.0,
    ) -> bool:
        """Connects to the data node ``host:port``; with ``highAvailability``, fails over to
        the other ``highAvailabilitySites`` ("host:port" strings) in order.

        ``userid`` / ``password`` are passed to the Flight SQL driver (Flight Handshake, basic
        auth, then the bearer token it returns). ``token`` instead sends ``authorization:
        Bearer <token>`` on every call. ``retryTimeout``: how long one request keeps trying
        the sites before it fails. ``startup``, ``keepAliveTime``, ``reconnect``,
        ``tryReconnectNums``, ``readTimeout``, ``writeTimeout`` and ``usePublicName`` are
        accepted for compatibility and ignored; an unknown keyword is a ``TypeError``. Raises ``ShoalError`` if no site answers."""
        first = f"{host}:{int(port)}"
        sites = [first]
        if highAvailability:
            for site in highAvailabilitySites or []:
                site = site.strip()
                if site and site not in sites:
                    sites.append(site)
        opts = {
            adbc_driver_flightsql.DatabaseOptions.TIMEOUT_QUERY.value: str(RPC_TIMEOUT_SECONDS),
            adbc_driver_flightsql.DatabaseOptions.TIMEOUT_FETCH.value: str(RPC_TIMEOUT_SECONDS),
            adbc_driver_flightsql.DatabaseOptions.TIMEOUT_UPDATE.value: str(RPC_TIMEOUT_SECONDS),
        }
        if self._tls is not None:
            opts.update(self._tls)
        if token is not None:
            opts[adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {token}"
        elif userid:
            opts["username"] = userid
            opts["password"] = password or ""
        with self._lock:
            self._close_connection()
            self._sites = sites
            self._site_index = 0
            self._db_kwargs = opts
            self._retry_timeout = float(retryTimeout)
            self._closed = False
            self._connection(time.monotonic() + self._retry_timeout)
        return True

    @property
    def site(self) -> Optional[str]:
        """The "host:port" of the data node the session talks to now."""
        return self._sites[self._site_index] if self._sites else None

    @property
    def writerId(self) -> int:
        """This session's writer id (appends are numbered 1, 2, ... under it)."""
        return self._writer_id

    @property
    def failovers(self) -> int:
        """How many times a request moved on to the next site after a connection-level
        failure."""
        return self._failovers

    def isClosed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._lock:
            self._close_connection()
            self._closed = True

    def __enter__(self) -> "session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _connection(self, deadline: float):
        """The open connection, or a new one to the current site or the ones after it."""
        if self._conn is not None:
            return self._conn
        if not self._sites:
            raise ShoalError("not connected: call connect() first")
        last: Optional[BaseException] = None
        while True:
            site = self._sites[self._site_index]
            try:
                scheme = "grpc" if self._tls is None else "grpc+tls"
                conn = flightsql.connect(f"{scheme}://{site}", db_kwargs=dict(self._db_kwargs), autocommit=True)
                self._conn = conn
                return conn
            except Exception as e:
                if not _retryable(e):
                    raise ShoalError(f"cannot connect to {site}: {e}") from e
                last = e
                self._next_site()
            if time.monotonic() >= deadline:
                raise ShoalError(
                    f"no data node of {', '.join(self._sites)} answered within "
                    f"{self._retry_timeout:g} s; last error: {last}"
                ) from last
            time.sleep(RETRY_PAUSE_SECONDS)

    def _next_site(self) -> None:
        self._site_index = (self._site_index + 1) % len(self._sites)

    def _with_failover(self, what: str, op: Callable[[object], T]) -> T:
        """Runs ``op(connection)``; on a connection-level failure, again on the next site,
        until the retry timeout."""
        with self._lock:
            if self._closed:
                raise ShoalError("the session is closed")
            deadline = time.monotonic() + self._retry_timeout
            while True:
                conn = self._connection(deadline)
                try:
                    return op(conn)
                except Exception as e:
                    if not _retryable(e):
                        if isinstance(e, adbc_driver_manager.Error):
                            raise ShoalError(f"{what}: {e}") from e
                        raise
                    failed = self.site
                    self._close_connection()
                    self._next_site()
                    self._failovers += 1
                    if time.monotonic() >= deadline:
                        raise ShoalError(
                            f"{what}: no data node answered within {self._retry_timeout:g} s; "
                            f"last error (from {failed}): {e}"
                        ) from e
                    time.sleep(RETRY_PAUSE_SECONDS)

    # -- queries ----------------------------------------------------------------------------

    def run(self, script: str):
        """Runs SQL or a DolphinDB script (``pnodeRun(version)``, ``db = database(...)``; see
        the README's "DolphinDB script") on a data node. A table comes back as a pandas
        DataFrame; a script's scalar as a Python value (``version()`` → ``"0.2.0 2026.11.25"``),
        its vector as a list, and a script ending in an assignment as None, as in DolphinDB's
        API. Each call is one script: variables do not carry over to the next call."""
        table = self.runArrow(script)
        form = (table.schema.metadata or {}).get(_FORM_KEY)
        if form == b"scalar":
            return table.column(0)[0].as_py()
        if form == b"vector":
            return table.column(0).to_pylist()
        if form == b"void":
            return None
        return table.to_pandas()

    def runArrow(self, sql: str) -> pa.Table:
        """Like ``run``, as a pyarrow Table."""

        def op(conn) -> pa.Table:
            # A fresh cursor per query: one that ran an ingest keeps its ingest options.
            cur = conn.cursor()
            try:
                cur.execute(sql)
                return cur.fetch_arrow_table()
            finally:
                cur.close()

        return self._with_failover("query", op)

    # -- client-side objects ------------------------------------------------------------------

    def upload(self, nameObjectDict: dict) -> None:
        """``s.upload({"t": df})``. Shoal has no server-side session variables, so the objects
        stay in this client: ``s.loadTable("t")`` gives the uploaded table back as a ``Table``
        (``toDF()``), to append with ``tableAppender`` / ``PartitionedTableAppender``. Scripts
        run by ``run()`` do not see them. Names must be identifiers."""
        if not isinstance(nameObjectDict, dict):
            raise TypeError(f"upload takes a dict of name -> object, not a {type(nameObjectDict).__name__}")
        for name in nameObjectDict:
            if not isinstance(name, str) or not name.isidentifier():
                raise ShoalError(f"cannot upload {name!r}: a name must be an identifier")
        self._uploaded.update(nameObjectDict)

    def loadTable(self, tableName: str, dbPath: Optional[str] = None, partitions=None, memoryMode: bool = False):
        """``s.loadTable("stock", "dfs://stock")``: a ``Table`` for a DFS table (``toDF()``
        reads it all, ``rows`` counts it, ``append(df)`` appends exactly once). Without
        ``dbPath``, the table ``upload()``ed under ``tableName``. ``partitions`` (loading only
        some partitions) is not supported; ``memoryMode`` is ignored."""
        from .table import Table

        if partitions is not None:
            raise ShoalError("loadTable(partitions=...) is not supported: select with a WHERE on the partition column")
        if not dbPath:
            if tableName not in self._uploaded:
                raise ShoalError(
                    f"no uploaded table `{tableName}` (loadTable without dbPath reads what upload() kept; "
                    "for a DFS table give dbPath)"
                )
            return Table(self, tableName, None, data=self._uploaded[tableName])
        return Table(self, tableName, dbPath)

    def _table_schema(self, db_path: str, table_name: str) -> pa.Schema:
        sql = f"SELECT * FROM {_quote(db_path)}.{_quote(table_name)} LIMIT 0"
        return self.runArrow(sql).schema

    # -- appends ----------------------------------------------------------------------------

    def _append(self, db_path: str, table_name: str, data: pa.Table) -> int:
        """Appends ``data`` exactly once under this session's next sequence number; returns
        the number of rows appended."""
        with self._lock:
            self._seq += 1
            return self._ingest(db_path, table_name, data, self._writer_id, self._seq)

    def _ingest(self, db_path: str, table_name: str, data: pa.Table, writer_id: int, seq: int) -> int:
        """One idempotent ingest with an explicit ``(writer_id, seq)``, retried elsewhere
        until it is acknowledged or the retry timeout passes."""

        def op(conn) -> int:
            cur = conn.cursor()
            try:
                cur.adbc_statement.set_options(
                    **{
                        _CALL_HEADER + WRITER_ID_HEADER: str(writer_id),
                        _CALL_HEADER + SEQ_HEADER: str(seq),
                    }
                )
                return cur.adbc_ingest(table_name, data, mode="append", db_schema_name=db_path)
            finally:
                cur.close()

        return self._with_failover(f"append to {db_path}.{table_name}", op)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
