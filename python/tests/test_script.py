"""The seed's DolphinDB commands through the Python client's ``s.run()``, as typed in the
runbook: scalars come back as Python values, ``pnodeRun`` as ``node, value`` rows, the chunk
check as an empty frame, the DDL as None; anything outside the subset raises, naming it."""

import datetime
import json
import re
import time

import pandas as pd
import pytest

import shoal as ddb
from shoal.errors import ShoalError

# The runbook's three lines. The session's cluster already has its own dfs://stock, so they
# run against another path; `it::script` runs them verbatim on a fresh cluster.
SEED_DDL = """db = database("dfs://stock",VALUE,2023.01.01..2023.01.10,,'TSDB')
tmp = table(1:0,[`time,`name,`id],[TIMESTAMP,SYMBOL,INT])
pt = db.createPartitionedTable(tmp,`stock,`time,,`name,ALL)"""
DB = "dfs://seed_script"

CHUNKS_NOT_COMPLETE = 'select * from rpc(getControllerAlias(), getClusterChunksStatus) where state != "COMPLETE"'


@pytest.fixture
def s(cluster):
    session = ddb.session()
    host, port = cluster.sites[0].split(":")
    session.connect(host, int(port), "admin", cluster.admin_password)
    yield session
    session.close()


def test_the_seeds_checks_answer_in_the_runbooks_shapes(s, cluster):
    version = s.run("version()")
    assert re.fullmatch(r"\d+\.\d+\.\d+ \d{4}\.\d{2}\.\d{2}", version), version

    nodes = s.run("pnodeRun(version)")
    assert list(nodes.columns) == ["node", "value"]
    data_nodes = sorted(n["alias"] for n in cluster.status()["nodes"] if n["mode"] == "datanode")
    assert list(nodes["node"]) == data_nodes
    assert set(nodes["value"]) == {version}

    dirs = s.run("pnodeRun(getConfig{`chunkMetaDir})")
    assert list(dirs.columns) == ["node", "value"]
    assert list(dirs["node"]) == data_nodes
    assert all(d.endswith("storage") for d in dirs["value"]), dirs

    meta = s.run("rpc(getControllerAlias(),getConfig{`dfsMetaDir})")
    assert isinstance(meta, str) and meta.endswith("dfsMeta"), meta

    # Other tests of this session may be writing: a user would look again until it is empty.
    deadline = time.monotonic() + 30
    while True:
        pending = s.run(CHUNKS_NOT_COMPLETE)
        if pending.empty or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert pending.empty, pending
    assert list(pending.columns) == ["chunkId", "file", "size", "version", "state", "replicas"]

    # SQL is answered as before.
    assert s.run("SELECT count(*) AS n FROM cluster.nodes WHERE mode = 'datanode'")["n"][0] == 3


def test_the_seeds_ddl_makes_the_table_and_select_reads_it(s, cluster):
    assert s.run(SEED_DDL.replace("dfs://stock", DB)) is None
    assert s.run(f'[existsDatabase("{DB}"), existsTable("{DB}", `stock)]') == [True, True]
    tables = json.loads(cluster.shoal("sql", f'SHOW TABLES FROM "{DB}"', "--json"))
    assert tables[0]["columns"] == "time TIMESTAMP, name SYMBOL, id INT"
    assert tables[0]["partition column"] == "time"
    assert tables[0]["sort columns"] == "name"

    appender = ddb.tableAppender(dbPath=DB, tableName="stock", ddbSession=s, action="fitColumnType")
    start = datetime.datetime(2023, 1, 1)
    appender.append(
        pd.DataFrame(
            {
                "time": [start + datetime.timedelta(seconds=i) for i in range(1, 6)],
                "name": ["Apple", "Meta", "Apple", "Google", "Apple"],
                "id": list(range(1, 6)),
            }
        )
    )
    counted = s.run(
        f'select name, count(*) as n from loadTable("{DB}", `stock) where id > 1 group by name order by name'
    )
    assert counted.to_dict("records") == [
        {"name": "Apple", "n": 2},
        {"name": "Google", "n": 1},
        {"name": "Meta", "n": 1},
    ]


def test_scripts_outside_the_subset_are_refused_by_name(s):
    with pytest.raises(ShoalError, match=r"function `submitJob` is not supported .* supported: "):
        s.run('db = database("dfs://never",VALUE,1..3)\nsubmitJob(`a, `b, f)')
    assert s.run('existsDatabase("dfs://never")') is False
    with pytest.raises(ShoalError, match=r"pnodeRun with `getClusterChunksStatus` is not supported"):
        s.run("pnodeRun(getClusterChunksStatus)")
