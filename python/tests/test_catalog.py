"""What a tool browsing the cluster over Flight SQL sees: the calls ADBC's `adbc_get_objects`,
`adbc_get_table_schema` and `adbc_get_table_types` make, as DBeaver's and Grafana's Flight SQL
connectors do."""

import adbc_driver_flightsql.dbapi as flight_sql


def test_tools_browse_databases_tables_and_columns(cluster):
    cluster.sql(
        'create table "dfs://stock"."browsed"(time TIMESTAMP, name SYMBOL, id INT) '
        "partitioned by time, sortColumns=[`name], keepDuplicates=ALL"
    )
    conn = flight_sql.connect(
        f"grpc://{cluster.sites[1]}",
        db_kwargs={"username": "admin", "password": cluster.admin_password},
    )
    try:
        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        assert [o["catalog_name"] for o in objects] == ["shoal"]
        schemas = {s["db_schema_name"]: s for s in objects[0]["catalog_db_schemas"]}
        assert {"dfs://stock", "cluster"} <= set(schemas), schemas.keys()

        tables = {t["table_name"]: t for t in schemas["dfs://stock"]["db_schema_tables"]}
        assert tables["browsed"]["table_type"] == "TABLE"
        columns = [c["column_name"] for c in tables["browsed"]["table_columns"]]
        assert columns == ["time", "name", "id"]
        system = {t["table_name"]: t["table_type"] for t in schemas["cluster"]["db_schema_tables"]}
        assert system == {
        "chunks": "SYSTEM TABLE",
        "config": "SYSTEM TABLE",
        "nodes": "SYSTEM TABLE",
        "upgrade": "SYSTEM TABLE",
    }

        # Filters narrow the answer on the server's side.
        only = conn.adbc_get_objects(depth="tables", db_schema_filter="cluster", table_name_filter="no%")
        only = only.read_all().to_pylist()[0]["catalog_db_schemas"]
        assert [(s["db_schema_name"], [t["table_name"] for t in s["db_schema_tables"]]) for s in only] == [
            ("cluster", ["nodes"])
        ]

        schema = conn.adbc_get_table_schema("browsed", db_schema_filter="dfs://stock")
        assert schema.names == ["time", "name", "id"]
        assert {"TABLE", "SYSTEM TABLE"} <= set(conn.adbc_get_table_types())
    finally:
        conn.close()


def test_tools_list_the_column_types(cluster):
    """GetXdbcTypeInfo: the types DDL accepts, as JDBC/ODBC tools ask for them."""
    import pyarrow.flight as flight

    host, port = cluster.sites[1].split(":")
    client = flight.FlightClient(f"grpc://{host}:{port}")
    token = client.authenticate_basic_token("admin", cluster.admin_password)
    options = flight.FlightCallOptions(headers=[token])
    # CommandGetXdbcTypeInfo with no data_type filter, packed in a google.protobuf.Any.
    any_msg = b"\x0a" + bytes([len(TYPE_URL)]) + TYPE_URL.encode()
    info = client.get_flight_info(flight.FlightDescriptor.for_command(any_msg), options)
    table = client.do_get(info.endpoints[0].ticket, options).read_all()
    types = dict(zip(table.column("type_name").to_pylist(), table.column("data_type").to_pylist()))
    # JDBC's codes: BIT -7, INTEGER 4, BIGINT -5, DOUBLE 8, DATE 91, TIMESTAMP 93, VARCHAR 12.
    assert types == {
        "BOOL": -7, "INT": 4, "LONG": -5, "DOUBLE": 8, "DATE": 91, "TIMESTAMP": 93, "SYMBOL": 12, "STRING": 12,
    }


TYPE_URL = "type.googleapis.com/arrow.flight.protocol.sql.CommandGetXdbcTypeInfo"
