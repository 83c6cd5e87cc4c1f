"""The Python package against a real local cluster: the seed's high-availability writer keeps
every append exactly once while the data node it talks to is killed (kill -9) twice, and a
retried (writer id, seq) is applied once."""

import datetime
import random
import threading
import time

import adbc_driver_manager
import pandas as pd
import pytest

import shoal as ddb
from shoal.fit import fit_table

NAMES = ["Apple", "Microsoft", "Meta", "Google", "Amazon"]


def create_table(cluster, name: str) -> None:
    cluster.sql(
        f'create table "dfs://stock"."{name}"(time TIMESTAMP, name SYMBOL, id INT) '
        "partitioned by time, sortColumns=[`name], keepDuplicates=ALL"
    )


def connect(cluster, first: int = 0, retry_timeout: float = 60.0) -> ddb.session:
    s = ddb.session()
    host, port = cluster.sites[first].split(":")
    s.connect(
        host,
        int(port),
        "admin",
        cluster.admin_password,
        highAvailability=True,
        highAvailabilitySites=cluster.sites,
        retryTimeout=retry_timeout,
    )
    return s


def ids_and_counts(s: ddb.session, table: str) -> pd.DataFrame:
    return s.run(f'SELECT id, count(*) AS n FROM "dfs://stock"."{table}" GROUP BY id ORDER BY id')


def test_appends_are_exactly_once_while_the_data_node_in_use_is_killed_twice(cluster):
    """The seed's writer, faster: WRITERS sessions (all starting at the first site) append one
    row each, ids 1, 2, ... from one counter, at about RATE appends/s for DURATION s, while
    the data node they talk to is killed with SIGKILL twice (its agent restarts it). Every
    acknowledged id must be in the table exactly once, and no append may fail."""
    WRITERS, RATE, DURATION = 8, 100.0, 15.0
    create_table(cluster, "stock")
    sessions = [connect(cluster) for _ in range(WRITERS)]
    appenders = [
        ddb.tableAppender(dbPath="dfs://stock", tableName="stock", ddbSession=s, action="fitColumnType")
        for s in sessions
    ]

    lock = threading.Lock()
    next_id = [1]
    acked, failed = [], []
    stop = threading.Event()
    kills = []  # (site, pid) killed
    killer_error = []
    started = time.monotonic()

    def writer(appender):
        while not stop.is_set():
            with lock:
                i = next_id[0]
                next_id[0] += 1
            df = pd.DataFrame({"time": datetime.datetime.now(), "name": random.sample(NAMES, 1), "id": i})
            try:
                assert appender.append(df) == 1
                with lock:
                    acked.append(i)
            except Exception as e:  # counted; the writer goes on with the next id
                with lock:
                    failed.append((i, repr(e)))
            pause = started + i / RATE - time.monotonic()
            if pause > 0:
                time.sleep(pause)

    def killer():
        try:
            for at in (4.0, 9.0):
                time.sleep(max(0.0, at - (time.monotonic() - started)))
                site = sessions[0].site
                kills.append((site, cluster.kill_data_node(site)))
        except BaseException as e:  # reported by the main thread
            killer_error.append(e)

    threads = [threading.Thread(target=writer, args=(a,), daemon=True) for a in appenders]
    k = threading.Thread(target=killer, daemon=True)
    for t in threads + [k]:
        t.start()
    k.join(timeout=150)
    time.sleep(max(0.0, DURATION - (time.monotonic() - started)))
    stop.set()
    for t in threads:
        t.join(timeout=90)
    elapsed = time.monotonic() - started

    assert not killer_error, f"killer: {killer_error[0]!r}"
    assert not k.is_alive() and not any(t.is_alive() for t in threads)
    assert len(kills) == 2, kills
    assert kills[0][0] != kills[1][0], f"the sessions did not move on after the first kill: {kills}"
    assert failed == [], f"{len(failed)} failed appends, first: {failed[:3]}"
    failovers = sum(s.failovers for s in sessions)
    assert failovers >= 2, "no append was retried on another data node"
    n = len(acked)
    assert sorted(acked) == list(range(1, n + 1))
    print(f"{n} appends in {elapsed:.1f} s ({n / elapsed:.0f}/s), {failovers} failovers, killed {kills}")
    assert n / elapsed > 10, f"only {n} appends in {elapsed:.1f} s"

    got = ids_and_counts(sessions[0], "stock")
    dup = got[got["n"] != 1]
    assert dup.empty, f"ids not exactly once:\n{dup}"
    assert got["id"].tolist() == list(range(1, n + 1)), (
        f"ids are not 1..{n}: {len(got)} distinct, min {got['id'].min()}, max {got['id'].max()}"
    )
    for s in sessions:
        s.close()


def test_a_retried_append_is_applied_once_through_any_data_node(cluster):
    create_table(cluster, "retry")
    s1 = connect(cluster, first=0)
    s2 = connect(cluster, first=1)
    appender = ddb.tableAppender(dbPath="dfs://stock", tableName="retry", ddbSession=s1)
    rows = pd.DataFrame(
        {
            "time": [datetime.datetime(2023, 1, 2, 9, 30), datetime.datetime(2023, 1, 5, 9, 30)],
            "name": ["Apple", "Meta"],
            "id": [1, 2],
        }
    )
    data = fit_table(rows, appender.schema())
    writer = random.getrandbits(63)  # not a session's: those number their own appends

    # The same (writer, seq) three times, through two data nodes: applied once, each answered
    # with the rows of the append.
    assert s1._ingest("dfs://stock", "retry", data, writer, 1) == 2
    assert s1._ingest("dfs://stock", "retry", data, writer, 1) == 2
    assert s2._ingest("dfs://stock", "retry", data, writer, 1) == 2
    assert ids_and_counts(s2, "retry").to_dict("list") == {"id": [1, 2], "n": [1, 1]}

    # The next seq is a new append.
    assert s2._ingest("dfs://stock", "retry", data, writer, 2) == 2
    assert ids_and_counts(s1, "retry").to_dict("list") == {"id": [1, 2], "n": [2, 2]}

    # The session's own numbering: appends through the appender are each applied once.
    assert appender.append(rows.assign(id=[3, 4])) == 2
    assert appender.append(rows.assign(id=[5, 6])) == 2
    assert ids_and_counts(s1, "retry")["id"].tolist() == [1, 2, 3, 4, 5, 6]
    s1.close()
    s2.close()


def test_bad_appends_are_refused_naming_the_problem(cluster):
    create_table(cluster, "refusals")
    s = connect(cluster, retry_timeout=10)
    appender = ddb.tableAppender(dbPath="dfs://stock", tableName="refusals", ddbSession=s)
    now = datetime.datetime(2023, 1, 3)

    with pytest.raises(ddb.ShoalError, match="column `id`"):
        appender.append(pd.DataFrame({"time": [now], "name": ["a"], "id": [2**40]}))
    with pytest.raises(ddb.ShoalError, match="column `time`"):
        appender.append(pd.DataFrame({"time": ["yesterday"], "name": ["a"], "id": [1]}))
    with pytest.raises(ddb.ShoalError, match="no column `price`"):
        appender.append(pd.DataFrame({"time": [now], "name": ["a"], "id": [1], "price": [1.5]}))
    with pytest.raises(ddb.ShoalError, match="not found"):
        ddb.tableAppender(dbPath="dfs://stock", tableName="nope", ddbSession=s).append(
            pd.DataFrame({"time": [now], "name": ["a"], "id": [1]})
        )

    # Straight to the server: the ingest modes that create tables are refused, an unknown
    # table is NOT_FOUND, rows that do not fit are INVALID_ARGUMENT naming the column.
    data = fit_table(pd.DataFrame({"time": [now], "name": ["a"], "id": [1]}), appender.schema())
    conn = s._connection(time.monotonic() + 10)
    for mode in ("create", "replace"):
        cur = conn.cursor()
        with pytest.raises(adbc_driver_manager.ProgrammingError, match="created by DDL"):
            cur.adbc_ingest("refusals", data, mode=mode, db_schema_name="dfs://stock")
        cur.close()
    cur = conn.cursor()
    with pytest.raises(adbc_driver_manager.ProgrammingError, match="`nope` does not exist") as e:
        cur.adbc_ingest("nope", data, mode="append", db_schema_name="dfs://stock")
    assert e.value.status_code == adbc_driver_manager.AdbcStatusCode.NOT_FOUND
    cur.close()
    cur = conn.cursor()
    with pytest.raises(adbc_driver_manager.ProgrammingError, match="`time`") as e:
        cur.adbc_ingest("refusals", data.set_column(0, "time", data.column("id")), mode="append", db_schema_name="dfs://stock")
    assert e.value.status_code == adbc_driver_manager.AdbcStatusCode.INVALID_ARGUMENT
    cur.close()

    assert s.run('SELECT count(*) AS n FROM "dfs://stock".refusals')["n"].tolist() == [0]
    s.close()


def test_a_wrong_password_is_refused_and_nothing_is_done(cluster):
    s = ddb.session()
    host, port = cluster.sites[0].split(":")
    with pytest.raises(ddb.ShoalError, match="wrong user or password"):
        s.connect(
            host,
            int(port),
            "admin",
            "not-the-password",
            highAvailability=True,
            highAvailabilitySites=cluster.sites,
            retryTimeout=5,
        )


def test_the_admin_runs_ddl_through_the_session(cluster):
    s = connect(cluster)
    out = s.run(
        'create table "dfs://stock"."by_session"(time TIMESTAMP, name SYMBOL, id INT) '
        "partitioned by time"
    )
    assert list(out["message"]) == ["created table dfs://stock.by_session"]
    tables = s.run('SHOW TABLES FROM "dfs://stock"')
    assert "by_session" in set(tables["table"])
    with pytest.raises(ddb.ShoalError, match="already exists"):
        s.run('create table "dfs://stock"."by_session"(time TIMESTAMP, id INT) partitioned by time')
