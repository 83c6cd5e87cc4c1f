"""Prepared statements with parameters over Flight SQL (`WHERE id > ?`), as ADBC's DB-API
cursor, DBeaver and Grafana send them: the values are bound with DoPut and the query answers
with them; a statement prepared once runs again with other values."""

import datetime

import adbc_driver_flightsql.dbapi as flight_sql
import pandas as pd
import pytest

import shoal as ddb

NAMES = ["Apple", "Microsoft", "Meta", "Google", "Amazon"]


@pytest.fixture(scope="module")
def rows(cluster):
    cluster.sql(
        'create table "dfs://stock"."params"(time TIMESTAMP, name SYMBOL, id INT) '
        "partitioned by time, sortColumns=[`name], keepDuplicates=ALL"
    )
    s = ddb.session()
    host, port = cluster.sites[0].split(":")
    s.connect(host, int(port), "admin", cluster.admin_password)
    appender = ddb.tableAppender(dbPath="dfs://stock", tableName="params", ddbSession=s, action="fitColumnType")
    start = datetime.datetime(2023, 1, 1)
    df = pd.DataFrame(
        {
            "time": [start + datetime.timedelta(seconds=i) for i in range(1, 101)],
            "name": [NAMES[i % 5] for i in range(1, 101)],
            "id": list(range(1, 101)),
        }
    )
    assert appender.append(df) == 100
    s.close()
    return df


@pytest.fixture
def cur(cluster, rows):
    conn = flight_sql.connect(
        f"grpc://{cluster.sites[1]}",
        db_kwargs={"username": "admin", "password": cluster.admin_password},
    )
    cursor = conn.cursor()
    yield cursor
    cursor.close()
    conn.close()


def test_parameters_bind_to_question_marks(cur):
    query = 'SELECT id FROM "dfs://stock"."params" WHERE id > ? AND name = ? ORDER BY id'
    cur.execute(query, parameters=(90, "Apple"))
    assert [r[0] for r in cur.fetchall()] == [95, 100]
    # The same statement again with other values: nothing of the first binding remains.
    cur.execute(query, parameters=(10, "Meta"))
    want = [i for i in range(11, 101) if NAMES[i % 5] == "Meta"]
    assert [r[0] for r in cur.fetchall()] == want
    # A `?` inside a string literal is text, not a parameter.
    cur.execute(
        'SELECT count(*) AS n, \'?\' AS q FROM "dfs://stock"."params" WHERE id <= ?',
        parameters=(7,),
    )
    assert cur.fetchall() == [(7, "?")]


def test_a_prepared_statement_reports_its_parameters(cur):
    schema = cur.adbc_prepare('SELECT id FROM "dfs://stock"."params" WHERE id > ? AND name = ?')
    assert schema.names == ["$1", "$2"]
    assert str(schema.field("$1").type) == "int32"


def test_a_missing_parameter_is_a_clear_error(cur):
    with pytest.raises(Exception) as e:
        cur.execute('SELECT id FROM "dfs://stock"."params" WHERE id > ? AND id < ?', parameters=(3,))
        cur.fetchall()
    assert "$2" in str(e.value), str(e.value)
