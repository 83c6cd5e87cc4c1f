"""dolphindb's ingest API against a real local cluster: MultithreadedTableWriter (several threads,
every row exactly once, also while the data node in use is killed with SIGKILL twice; getStatus
and getUnwrittenData), PartitionedTableAppender over a DBConnectionPool, session.upload and
loadTable, the Session / TableAppender spellings, and refused arguments."""

import datetime
import threading
import time

import pandas as pd
import pytest

import shoal as ddb
from conftest import wait_until
from test_ha_append import NAMES, create_table, ids_and_counts

DAY0 = datetime.datetime(2023, 1, 1)


def row(i: int):
    """Row `i`: a time on one of the database's ten days, a name, the id."""
    return (DAY0 + datetime.timedelta(days=i % 10, milliseconds=i), NAMES[i % 5], i)


def writer(cluster, table: str, **kwargs) -> ddb.MultithreadedTableWriter:
    host, port = cluster.sites[0].split(":")
    args = dict(
        enableHighAvailability=True,
        highAvailabilitySites=cluster.sites,
        batchSize=1000,
        throttle=0.1,
        threadCount=4,
        partitionCol="time",
    )
    args.update(kwargs)
    return ddb.MultithreadedTableWriter(host, int(port), "admin", cluster.admin_password, "dfs://stock", table, **args)


def session_of(cluster) -> ddb.session:
    host, port = cluster.sites[0].split(":")
    return ddb.Session(host, int(port), "admin", cluster.admin_password)


def assert_exactly_once(s, table: str, n: int) -> None:
    got = ids_and_counts(s, table)
    dup = got[got["n"] != 1]
    assert dup.empty, f"ids not exactly once:\n{dup}"
    assert got["id"].tolist() == list(range(1, n + 1)), (
        f"ids are not 1..{n}: {len(got)} distinct, min {got['id'].min()}, max {got['id'].max()}"
    )


def test_the_writer_appends_every_row_once_through_four_threads(cluster):
    N = 40_000
    create_table(cluster, "mtw")
    mtw = writer(cluster, "mtw")
    started = time.monotonic()
    for i in range(1, N + 1):
        res = mtw.insert(*row(i))
        assert not res.hasError(), res
    mtw.waitForThreadCompletion()
    elapsed = time.monotonic() - started
    print(f"MultithreadedTableWriter: {N} rows in {elapsed:.2f} s ({N / elapsed:.0f} rows/s), 4 threads, batchSize 1000")

    status = mtw.getStatus()
    assert not status.hasError() and status.succeed(), status
    assert status.isExiting
    assert (status.sentRows, status.unsentRows, status.sendFailedRows) == (N, 0, 0), status
    assert len(status.threadStatus) == 4
    # Rows were routed by day: every thread had some (ten days over four threads).
    assert all(t.sentRows > 0 for t in status.threadStatus), status
    assert sum(t.sentRows for t in status.threadStatus) == N
    assert mtw.getUnwrittenData() == []
    # After waitForThreadCompletion the writer takes no rows.
    assert mtw.insert(*row(N + 1)).errorCode == "A1"

    s = session_of(cluster)
    assert_exactly_once(s, "mtw", N)
    s.close()


def test_the_writer_appends_every_row_once_while_the_data_node_in_use_is_killed_twice(cluster):
    """The seed's writer rewritten for MultithreadedTableWriter (threadCount 4, batchSize 1000):
    rows with ids 1, 2, ... are inserted as fast as the writer takes them (at most 50,000
    queued, 2,000,000 in all) for about 20 s, while the data node the writer's threads talk to is killed with
    SIGKILL twice (its agent restarts it). Every row must be in the table exactly once."""
    MAX_QUEUED, MAX_ROWS, DURATION = 50_000, 2_000_000, 20.0
    create_table(cluster, "mtw_kill")
    mtw = writer(cluster, "mtw_kill", throttle=0.05)
    kills, killer_error = [], []
    started = time.monotonic()

    def killer():
        try:
            for at in (5.0, 11.0):
                time.sleep(max(0.0, at - (time.monotonic() - started)))
                site = mtw._workers[0].session.site
                kills.append((site, cluster.kill_data_node(site)))
        except BaseException as e:
            killer_error.append(e)

    k = threading.Thread(target=killer, daemon=True)
    k.start()
    i = 0
    while time.monotonic() - started < DURATION or k.is_alive():
        if time.monotonic() - started > 150 or i >= MAX_ROWS:
            break
        for _ in range(1000):
            i += 1
            res = mtw.insert(*row(i))
            assert not res.hasError(), res
        while mtw.getStatus().unsentRows > MAX_QUEUED:
            time.sleep(0.005)
    inserted = time.monotonic() - started
    mtw.waitForThreadCompletion()
    elapsed = time.monotonic() - started
    k.join(timeout=5)

    assert not killer_error, f"killer: {killer_error[0]!r}"
    assert len(kills) == 2, kills
    status = mtw.getStatus()
    assert not status.hasError(), status
    assert (status.sentRows, status.unsentRows, status.sendFailedRows) == (i, 0, 0), status
    assert mtw.getUnwrittenData() == []
    failovers = sum(w.session.failovers for w in mtw._workers)
    assert failovers >= 2, "no batch was re-sent to another data node"
    print(
        f"MultithreadedTableWriter through two kill -9s: {i} rows in {elapsed:.1f} s "
        f"({i / elapsed:.0f} rows/s; inserts done after {inserted:.1f} s), {failovers} failovers, killed {kills}"
    )

    s = session_of(cluster)
    assert_exactly_once(s, "mtw_kill", i)
    s.close()


def test_the_writer_reports_errors_and_hands_back_unwritten_rows(cluster):
    create_table(cluster, "mtw_errors")
    mtw = writer(cluster, "mtw_errors", threadCount=1, partitionCol="", batchSize=10, throttle=0.05)
    # The column count is checked at once; the row is not queued.
    res = mtw.insert(DAY0, "Apple")
    assert res.hasError() and res.errorCode == "A2" and "3 columns" in res.errorInfo, res

    for i in range(1, 11):
        assert mtw.insert(*row(i)).succeed()
    wait_until("10 rows are sent", lambda: mtw.getStatus().sentRows == 10, timeout=30)

    # A value that does not fit INT stops the writer when its batch is converted; the batch
    # (rows 11..15) comes back unwritten, with the rows queued after it.
    for i in range(11, 16):
        assert mtw.insert(*row(i) if i != 13 else (DAY0, "Apple", "thirteen")).succeed()
    wait_until("the writer stops", lambda: mtw.getStatus().isExiting, timeout=30)
    status = mtw.getStatus()
    assert status.hasError() and status.errorCode == "A4" and "`id`" in status.errorInfo, status
    assert (status.sentRows, status.sendFailedRows) == (10, 5), status
    assert "sendFailedRows" in repr(status)
    unwritten = mtw.getUnwrittenData()
    assert [r[2] for r in unwritten] == [11, 12, "thirteen", 14, 15]
    res = mtw.insert(*row(16))
    assert res.errorCode == "A1" and "stopped after an error" in res.errorInfo, res
    mtw.waitForThreadCompletion()

    s = session_of(cluster)
    assert_exactly_once(s, "mtw_errors", 10)
    s.close()


def test_the_partitioned_table_appender_appends_over_a_pool(cluster):
    N = 3000
    create_table(cluster, "pta")
    host, port = cluster.sites[0].split(":")
    pool = ddb.DBConnectionPool(host, int(port), 3, "admin", cluster.admin_password, loadBalance=True, highAvailability=True)
    # loadBalance: the sessions start on the three data nodes the cluster lists.
    assert sorted(s.site for s in pool.sessions) == sorted(cluster.sites)
    appender = ddb.PartitionedTableAppender("dfs://stock", "pta", "time", pool)
    df = pd.DataFrame([row(i) for i in range(1, N + 1)], columns=["time", "name", "id"])
    assert appender.append(df.iloc[: N // 2]) == N // 2
    assert appender.append(df.iloc[N // 2 :]) == N - N // 2
    # Several sessions were used (one per part).
    assert sum(1 for s in pool.sessions if s._seq > 0) >= 2

    import asyncio

    got = asyncio.run(pool.run('SELECT count(*) AS n FROM "dfs://stock".pta'))
    assert got["n"].tolist() == [N]
    assert_exactly_once(pool.sessions[0], "pta", N)
    with pytest.raises(ddb.ShoalError, match="no column `price`"):
        appender.append(df.assign(price=1.0))
    pool.shutDown()
    assert pool.isShutDown()


def test_upload_and_load_table(cluster):
    create_table(cluster, "loaded")
    s = session_of(cluster)
    df = pd.DataFrame([row(i) for i in range(1, 6)], columns=["time", "name", "id"])
    s.upload({"t": df})
    uploaded = s.loadTable("t")
    assert uploaded.toDF().equals(df) and uploaded.rows == 5 and uploaded.colNames == ["time", "name", "id"]
    with pytest.raises(ddb.ShoalError, match="no uploaded table `nope`"):
        s.loadTable("nope")

    table = s.loadTable("loaded", "dfs://stock")
    assert table.tableName() == "loaded" and table.rows == 0
    assert table.append(uploaded) == 5
    assert table.rows == 5
    got = table.toDF().sort_values("id").reset_index(drop=True)
    assert got["id"].tolist() == [1, 2, 3, 4, 5]
    assert got["name"].tolist() == df["name"].tolist()
    s.close()


def test_new_spellings_are_the_same_classes(cluster):
    assert ddb.Session is ddb.session
    assert ddb.TableAppender is ddb.tableAppender
    create_table(cluster, "spelled")
    s = session_of(cluster)
    appender = ddb.TableAppender(dbPath="dfs://stock", tableName="spelled", ddbSession=s, action="fitColumnType")
    assert appender.append(pd.DataFrame([row(1)], columns=["time", "name", "id"])) == 1
    s.close()


def test_unknown_arguments_and_ssl_files_without_ssl_are_refused(cluster):
    host, port = cluster.sites[0].split(":")
    pw = cluster.admin_password
    with pytest.raises(TypeError, match="enableSSl"):
        ddb.session(enableSSl=True)
    with pytest.raises(TypeError, match="highAvailabilitySite"):
        ddb.session().connect(host, int(port), "admin", pw, highAvailabilitySite=cluster.sites)
    with pytest.raises(TypeError, match="batch_size"):
        ddb.MultithreadedTableWriter(host, int(port), "admin", pw, "dfs://stock", "t", batch_size=10)
    with pytest.raises(TypeError, match="threads"):
        ddb.DBConnectionPool(host, int(port), threads=2)
    with pytest.raises(TypeError, match="pool"):
        ddb.PartitionedTableAppender("dfs://stock", "t", "time", pool=None)
    with pytest.raises(TypeError, match="session"):
        ddb.tableAppender("dfs://stock", "t", session=None)

    # TLS files without TLS would be ignored: refused (TLS itself: test_tls.py).
    with pytest.raises(ddb.ShoalError, match="need enableSSL=True"):
        ddb.session(host, int(port), "admin", pw, sslCAFile="ca.pem")
    with pytest.raises(ddb.ShoalError, match="partitionCol must be given"):
        ddb.MultithreadedTableWriter(host, int(port), "admin", pw, "dfs://stock", "t", threadCount=2)
    with pytest.raises(ddb.ShoalError, match="upsert"):
        ddb.MultithreadedTableWriter(host, int(port), "admin", pw, "dfs://stock", "t", mode="upsert")
