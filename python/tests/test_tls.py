"""TLS from Python against a cluster made with `shoal local up --tls`: `session(enableSSL=True)`
queries and appends, trusting the cluster's CA (keyword or $SHOAL_TLS_CA);
`MultithreadedTableWriter(useSSL=True)` writes every row; a `DBConnectionPool(enableSSL=True)`
appends through every session and one without TLS is refused; a plaintext session and a session
trusting only the system's CAs are refused; a missing CA file is named; with `--mutual-tls`
a session presenting the client certificate works and one without is refused; ADBC's Flight SQL
driver (what DBeaver and Grafana use) queries over `grpc+tls` trusting the CA, and is refused
over plaintext."""

import datetime
import os

import adbc_driver_flightsql.dbapi as flight_sql
import pandas as pd
import pytest

import shoal as ddb
from conftest import local_cluster
from test_ha_append import create_table


@pytest.fixture(scope="module")
def tls_cluster():
    with local_cluster("--tls") as c:
        create_table(c, "tls")
        yield c


def ca_of(cluster) -> str:
    return os.path.join(cluster.dir, "tls", "ca.pem")


def tls_session(cluster, **kwargs) -> ddb.session:
    host, port = cluster.sites[0].split(":")
    return ddb.session(host, int(port), "admin", cluster.admin_password, enableSSL=True, **kwargs)


def count(s: ddb.session) -> int:
    return int(s.run('SELECT count(*) AS n FROM "dfs://stock"."tls"')["n"][0])


def test_an_ssl_session_queries_and_appends(tls_cluster):
    s = tls_session(tls_cluster, sslCAFile=ca_of(tls_cluster))
    nodes = s.run("SELECT node FROM cluster.nodes")
    assert len(nodes) == 9
    before = count(s)
    df = pd.DataFrame(
        {
            "time": [datetime.datetime(2023, 1, 1, 0, 0, i) for i in range(3)],
            "name": ["Apple", "Meta", "Google"],
            "id": [1, 2, 3],
        }
    )
    appender = ddb.tableAppender(dbPath="dfs://stock", tableName="tls", ddbSession=s, action="fitColumnType")
    assert appender.append(df) == 3
    assert count(s) == before + 3
    s.close()


def test_a_connection_pool_with_ssl_appends_through_every_session(tls_cluster):
    host, port = tls_cluster.sites[0].split(":")
    pool = ddb.DBConnectionPool(
        host, int(port), 3, "admin", tls_cluster.admin_password, loadBalance=True,
        enableSSL=True, sslCAFile=ca_of(tls_cluster),
    )
    assert len(pool.sessions) == 3
    before = count(pool.sessions[0])
    df = pd.DataFrame(
        {
            "time": [datetime.datetime(2023, 1, d, 0, 0, 0) for d in (1, 2, 3)],
            "name": ["Apple", "Meta", "Google"],
            "id": [11, 12, 13],
        }
    )
    appender = ddb.PartitionedTableAppender("dfs://stock", "tls", "time", pool)
    assert appender.append(df) == 3
    assert all(count(s) == before + 3 for s in pool.sessions)
    pool.shutDown()


def test_a_connection_pool_without_ssl_is_refused_by_a_tls_cluster(tls_cluster, monkeypatch):
    monkeypatch.delenv("SHOAL_TLS_CA", raising=False)
    host, port = tls_cluster.sites[0].split(":")
    with pytest.raises(ddb.ShoalError):
        ddb.DBConnectionPool(host, int(port), 2, "admin", tls_cluster.admin_password, retryTimeout=2.0)


def test_the_ca_may_come_from_the_environment(tls_cluster, monkeypatch):
    monkeypatch.setenv("SHOAL_TLS_CA", ca_of(tls_cluster))
    s = tls_session(tls_cluster)
    assert len(s.run("SELECT node FROM cluster.nodes")) == 9
    s.close()


def test_the_writer_with_use_ssl_writes_every_row(tls_cluster):
    s = tls_session(tls_cluster, sslCAFile=ca_of(tls_cluster))
    before = count(s)
    host, port = tls_cluster.sites[0].split(":")
    mtw = ddb.MultithreadedTableWriter(
        host,
        int(port),
        "admin",
        tls_cluster.admin_password,
        "dfs://stock",
        "tls",
        useSSL=True,
        sslCAFile=ca_of(tls_cluster),
        batchSize=100,
        threadCount=2,
        partitionCol="time",
    )
    for i in range(1, 501):
        res = mtw.insert(datetime.datetime(2023, 1, 1 + i % 10, 0, 0, 0, i), "Apple", 1000 + i)
        assert res.succeed(), res.errorInfo
    mtw.waitForThreadCompletion()
    status = mtw.getStatus()
    assert status.errorCode == "" and status.sentRows == 500, status
    assert count(s) == before + 500
    s.close()


def test_plaintext_and_untrusted_sessions_are_refused(tls_cluster, monkeypatch):
    monkeypatch.delenv("SHOAL_TLS_CA", raising=False)
    host, port = tls_cluster.sites[0].split(":")
    # No TLS: the data node answers nothing a plaintext client can read.
    with pytest.raises(ddb.ShoalError):
        ddb.session().connect(host, int(port), "admin", tls_cluster.admin_password, retryTimeout=2)
    # TLS trusting only the system's CAs: the cluster's own CA is not among them (the driver
    # may connect lazily, then the first call fails).
    s = ddb.session(enableSSL=True)
    with pytest.raises(ddb.ShoalError, match="certificate"):
        s.connect(host, int(port), "admin", tls_cluster.admin_password, retryTimeout=2)
        s.run("SELECT 1")


def test_a_missing_ca_file_is_named(tmp_path):
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(ddb.ShoalError, match=f"sslCAFile {missing}: cannot read"):
        ddb.session(enableSSL=True, sslCAFile=missing)
    with pytest.raises(ddb.ShoalError, match="give both or neither"):
        ddb.session(enableSSL=True, sslCertFile="client.pem")


def test_mutual_tls_needs_the_client_certificate():
    with local_cluster("--mutual-tls") as c:
        tls = os.path.join(c.dir, "tls")
        ca = ca_of(c)
        host, port = c.sites[0].split(":")
        s = tls_session(
            c,
            sslCAFile=ca,
            sslCertFile=os.path.join(tls, "client.pem"),
            sslKeyFile=os.path.join(tls, "client.key"),
        )
        assert len(s.run("SELECT node FROM cluster.nodes")) == 9
        s.close()
        # The right CA, no certificate: the data node refuses the connection. Under TLS 1.3 the
        # client learns it after its handshake, as the alert "certificate required" or, when the
        # server closed first, a broken pipe: the message is not asserted, the difference from
        # the session above (only the certificate) is what the test is about.
        anonymous = ddb.session(enableSSL=True, sslCAFile=ca)
        with pytest.raises(ddb.ShoalError):
            anonymous.connect(host, int(port), "admin", c.admin_password, retryTimeout=2)
            anonymous.run("SELECT 1")


def test_adbc_queries_over_tls_trusting_the_ca_and_plaintext_is_refused(tls_cluster):
    with open(ca_of(tls_cluster)) as f:
        ca = f.read()
    login = {"username": "admin", "password": tls_cluster.admin_password}
    conn = flight_sql.connect(
        f"grpc+tls://{tls_cluster.sites[0]}",
        db_kwargs={**login, "adbc.flight.sql.client_option.tls_root_certs": ca},
    )
    try:
        cur = conn.cursor()
        cur.execute('SELECT count(*) AS n FROM "dfs://stock"."tls"')
        got = cur.fetchone()[0]
        cur.close()
        # What a session of the Python API counts over its own TLS connection.
        assert got == count(tls_session(tls_cluster, sslCAFile=ca_of(tls_cluster)))
    finally:
        conn.close()
    with pytest.raises(Exception):
        plain = flight_sql.connect(f"grpc://{tls_cluster.sites[0]}", db_kwargs=login)
        try:
            plain.cursor().execute("SELECT 1")
        finally:
            plain.close()
