"""The runbook through the Python client around a rolling upgrade, as its operators would run
it: the seed's DDL and checks with ``s.run()`` on a cluster of this code, ``shoal upgrade`` to
the next version (target/upgrade/shoal-next, from scripts/build-upgrade-binaries) while a
high-availability session keeps appending, then the same checks in the same session: every
data node on the new version, no chunk that is not COMPLETE, every acknowledged row there
exactly once, no append failed."""

import datetime
import json
import os
import subprocess
import tempfile
import threading
import time

import pandas as pd
import pytest

import shoal as ddb
from conftest import REPO, local_cluster
from test_ha_append import connect
from test_script import CHUNKS_NOT_COMPLETE, SEED_DDL

NEXT = REPO / "target" / "upgrade" / "shoal-next"
# Appends the writer makes at most, and their rate: bounded whatever the upgrade takes.
MAX_APPENDS, RATE = 20_000, 50.0
COUNT = 'select count(*) as n from loadTable("dfs://stock", `stock)'


def versions(s: ddb.session) -> set:
    nodes = s.run("pnodeRun(version)")
    assert list(nodes.columns) == ["node", "value"] and len(nodes) == 3, nodes
    return {v.split(" ")[0] for v in nodes["value"]}


def no_chunk_pending(s: ddb.session) -> pd.DataFrame:
    """The runbook's chunk check, looked at again until it is empty (recovery after a machine
    returns takes a moment), at most 60 s."""
    deadline = time.monotonic() + 60
    while True:
        pending = s.run(CHUNKS_NOT_COMPLETE)
        if pending.empty or time.monotonic() > deadline:
            return pending
        time.sleep(0.5)


def test_the_runbook_in_python_holds_before_and_after_an_upgrade_the_session_writes_through():
    if not NEXT.exists():
        pytest.fail(f"{NEXT} is missing: run scripts/build-upgrade-binaries (scripts/test does)")
    # A cluster of its own: the runbook's DDL creates dfs://stock as typed.
    with local_cluster(seed_db=False) as cluster:
        old, new = (
            json.loads(subprocess.run([b, "build-info"], capture_output=True, text=True, check=True).stdout)["version"]
            for b in (cluster.bin, str(NEXT))
        )
        assert old != new
        s = connect(cluster)
        assert s.run(SEED_DDL) is None
        assert versions(s) == {old}
        assert s.run("version()").startswith(f"{old} ")
        assert no_chunk_pending(s).empty

        appender = ddb.tableAppender(dbPath="dfs://stock", tableName="stock", ddbSession=s, action="fitColumnType")
        acked, failed = [], []
        stop = threading.Event()

        def write():
            started = time.monotonic()
            for i in range(1, MAX_APPENDS + 1):
                if stop.is_set():
                    return
                row = pd.DataFrame({"time": [datetime.datetime(2023, 1, 1 + i % 9)], "name": ["Apple"], "id": [i]})
                try:
                    assert appender.append(row) == 1
                    acked.append(i)
                except Exception as e:  # counted; checked below
                    failed.append((i, repr(e)))
                time.sleep(max(0.0, started + i / RATE - time.monotonic()))

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        with tempfile.TemporaryDirectory(prefix="shoal-pytest-pkg-") as tmp:
            pkg = os.path.join(tmp, "next.pkg")
            subprocess.run([cluster.bin, "package", "build", "--binary", str(NEXT), "--out", pkg], check=True)
            while len(acked) < 20 and writer.is_alive():
                time.sleep(0.05)
            cluster.shoal("upgrade", "--package", pkg, "--probe-rate", "0", timeout=600)
        stop.set()
        writer.join(timeout=60)
        assert not writer.is_alive()

        assert versions(s) == {new}
        assert s.run("version()").startswith(f"{new} ")
        assert no_chunk_pending(s).empty
        assert failed == [], f"{len(failed)} failed appends, first: {failed[:3]}"
        assert acked == list(range(1, len(acked) + 1))
        assert s.run(COUNT)["n"][0] == len(acked)
        ids = s.run('select id, count(*) as n from loadTable("dfs://stock", `stock) group by id')
        assert sorted(ids["id"]) == acked and set(ids["n"]) == {1}
        print(f"{len(acked)} appends through the upgrade, {s.failovers} failovers")
        s.close()
