//! Users and passwords: the local cluster's generated admin logs in over the Flight SQL
//! handshake and gets a token that queries, appends and DDL accept; wrong credentials, no
//! credentials and forged tokens are refused with nothing done; a user token cannot make the
//! calls reserved for cluster nodes.

use arrow_flight::sql::client::FlightSqlServiceClient;
use shoal_proto::data_node_client::DataNodeClient;
use shoal_proto::{AppendRequest, ListReplicasRequest};
use tonic::transport::Channel;

use crate::data::{Data, create_seed_table, runtime, seed_rows};
use crate::harness::LocalCluster;

fn bearer<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

#[test]
fn the_admin_logs_in_and_wrong_or_missing_credentials_are_refused() {
    let cluster = LocalCluster::start();
    create_seed_table(&cluster);
    let password = std::fs::read_to_string(cluster.dir.join("admin.password")).unwrap();
    let password = password.trim().to_owned();
    let data = Data::connect(&cluster);
    let addr = data.datanodes.values().next().unwrap().clone();
    let rt = runtime();
    rt.block_on(async {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        let rows = seed_rows(&[1, 2, 3], 0);
        let append = AppendRequest {
            db: "dfs://stock".into(),
            table: "stock".into(),
            writer_id: 9,
            seq: 1,
            arrow_ipc: shoal_catalog::rows::encode_ipc(
                rows.schema_ref(),
                std::slice::from_ref(&rows),
            )
            .unwrap(),
        };

        // No credentials: no query, no append.
        let mut anonymous = FlightSqlServiceClient::new(channel.clone());
        let err = anonymous
            .execute("SELECT 1".into(), None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("log in first"), "{err}");
        let mut dn = DataNodeClient::new(channel.clone());
        let err = dn.append(append.clone()).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");

        // A wrong password, an unknown user, a forged token.
        let mut client = FlightSqlServiceClient::new(channel.clone());
        let err = client
            .handshake("admin", "not-the-password")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("wrong user or password"), "{err}");
        let err = client.handshake("root", &password).await.unwrap_err();
        assert!(err.to_string().contains("wrong user or password"), "{err}");
        let forged = "shoal1.admin.admin.99999999999.00";
        let err = dn.append(bearer(append.clone(), forged)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
        assert!(data.table_ids().await.is_empty(), "nothing was written");

        // The right password: a token for queries and appends.
        let token = client.handshake("admin", &password).await.unwrap();
        let token = String::from_utf8(token.to_vec()).unwrap();
        let r = dn.append(bearer(append.clone(), &token)).await.unwrap();
        assert_eq!(r.into_inner().rows, 3);
        let info = client
            .execute(r#"SELECT count(*) FROM "dfs://stock".stock"#.into(), None)
            .await
            .unwrap();
        assert_eq!(info.endpoint.len(), 1);
        assert_eq!(data.table_ids().await, vec![1, 2, 3]);

        // The admin runs DDL over Flight SQL too; it runs once, when planned (fetching the
        // result does not run it again, so a second CREATE is the one refused).
        let create = r#"create table "dfs://stock"."quotes"(time TIMESTAMP, name SYMBOL, price DOUBLE) partitioned by time"#;
        let info = client.execute(create.into(), None).await.unwrap();
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        let batches: Vec<_> = futures::TryStreamExt::try_collect(client.do_get(ticket).await.unwrap())
            .await
            .unwrap();
        let message = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap()
            .value(0)
            .to_owned();
        assert_eq!(message, "created table dfs://stock.quotes");
        let err = client.execute(create.into(), None).await.unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");

        // The writer logs in as a user too; a wrong password writes nothing.
        let dir = cluster.dir_str().to_owned();
        let pw_file = cluster.dir.join("admin.password");
        let wrong_file = cluster.dir.join("wrong.password");
        std::fs::write(&wrong_file, "not-the-password\n").unwrap();
        let write = |file: &std::path::Path| {
            crate::harness::shoal(&[
                "write", "--dir", &dir, "--user", "admin", "--password-file",
                file.to_str().unwrap(), "--count", "1",
            ])
        };
        let out = write(&wrong_file);
        assert!(!out.status.success());
        assert!(crate::harness::stderr(&out).contains("wrong user or password"), "{}", crate::harness::stderr(&out));
        let out = write(&pw_file);
        assert!(out.status.success(), "{}", crate::harness::stderr(&out));
        assert_eq!(data.table_ids().await, vec![1, 1, 2, 3]);

        // A user's token does not open the calls between nodes.
        let err = dn
            .list_replicas(bearer(ListReplicasRequest {}, &token))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    });
}
