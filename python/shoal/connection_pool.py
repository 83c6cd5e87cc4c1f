"""``DBConnectionPool``: several sessions to a cluster's data nodes, for
``PartitionedTableAppender`` (appends in parallel) and for running scripts concurrently."""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import List, Optional

from .errors import ShoalError
from .session import session


class DBConnectionPool:
    """``DBConnectionPool(host, port, threadNum=10, userid=None, password=None, ...)``:
    ``threadNum`` sessions, each with its own connection, writer id and failover.

    ``highAvailability=True`` fails over between the data nodes (``highAvailabilitySites``,
    Shoal's keyword, or else every data node the cluster lists in ``cluster.nodes``);
    ``loadBalance=True`` starts the sessions on the sites in turn instead of all on ``host``.
    ``compress``, ``reConnect``, ``protocol``, ``show_output``, ``sqlStd``,
    ``tryReconnectNums`` are accepted and ignored (sessions always reconnect); ``python=True``
    is refused; an unknown keyword is a ``TypeError``. ``enableSSL=True`` (with ``sslCAFile``,
    ``sslCertFile``, ``sslKeyFile``, as ``session`` takes them) makes every session TLS."""

    def __init__(
        self,
        host: str,
        port: int,
        threadNum: int = 10,
        userid: Optional[str] = None,
        password: Optional[str] = None,
        loadBalance: bool = False,
        highAvailability: bool = False,
        compress: bool = False,
        reConnect: bool = False,
        python: bool = False,
        protocol: Optional[int] = None,
        show_output: bool = True,
        sqlStd=None,
        tryReconnectNums: int = -1,
        *,
        highAvailabilitySites: Optional[List[str]] = None,
        retryTimeout: float = 60.0,
        enableSSL: bool = False,
        sslCAFile: Optional[str] = None,
        sslCertFile: Optional[str] = None,
        sslKeyFile: Optional[str] = None,
    ) -> None:
        if python:
            raise ShoalError("python=True is not supported: scripts are SQL or DolphinDB script")
        if int(threadNum) < 1:
            raise ShoalError("threadNum must be at least 1")
        tls = dict(enableSSL=enableSSL, sslCAFile=sslCAFile, sslCertFile=sslCertFile, sslKeyFile=sslKeyFile)
        first = session(**tls)
        first.connect(host, port, userid, password, retryTimeout=retryTimeout)
        sites = [first.site]
        if highAvailability or loadBalance:
            if highAvailabilitySites:
                listed = [s.strip() for s in highAvailabilitySites if s.strip()]
            else:
                nodes = first.run("SELECT address FROM cluster.nodes WHERE mode = 'datanode' ORDER BY node")
                listed = [str(a) for a in nodes["address"]]
            sites += [s for s in listed if s not in sites]
        self._sessions: List[session] = []
        try:
            for i in range(int(threadNum)):
                start = sites[i % len(sites)] if loadBalance else sites[0]
                h, p = start.rsplit(":", 1)
                if i == 0 and start == first.site and not highAvailability:
                    s = first
                else:
                    s = session(**tls)
                    s.connect(
                        h,
                        int(p),
                        userid,
                        password,
                        highAvailability=highAvailability,
                        highAvailabilitySites=sites,
                        retryTimeout=retryTimeout,
                    )
                self._sessions.append(s)
        finally:
            if first not in self._sessions:
                first.close()
        self._next = itertools.cycle(range(len(self._sessions)))
        self._lock = threading.Lock()
        self._shut = False

    @property
    def sessions(self) -> List[session]:
        return list(self._sessions)

    def _session(self) -> session:
        if self._shut:
            raise ShoalError("the connection pool is shut down")
        with self._lock:
            return self._sessions[next(self._next)]

    async def run(self, script: str):
        """Runs ``script`` (as ``session.run``) on the pool's next session, in a thread:
        ``await pool.run("...")``, as dolphindb's pool does."""
        s = self._session()
        return await asyncio.to_thread(s.run, script)

    def shutDown(self) -> None:
        self._shut = True
        for s in self._sessions:
            s.close()

    def isShutDown(self) -> bool:
        return self._shut

    def __enter__(self) -> "DBConnectionPool":
        return self

    def __exit__(self, *exc) -> None:
        self.shutDown()
