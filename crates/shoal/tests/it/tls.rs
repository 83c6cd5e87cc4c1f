//! TLS on every connection (`shoal local up --tls` / `--mutual-tls`): the nodes form the
//! cluster over TLS, the CLI and the Rust client write and query through it, the HTTP
//! endpoints answer over HTTPS; a plaintext client, a client trusting another CA and (with
//! mutual TLS) a client without a certificate are refused; `--tls` on an existing plaintext
//! cluster, and `--mutual-tls` on one `--tls` made, are refused.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use shoal_client::channel::Channels;
use shoal_client::node_info::config_of;
use shoal_common::tls::ClientTls;
use tonic::transport::Channel;

use crate::data::{Data, create_seed_table, runtime, seed_rows};
use crate::harness::{LocalCluster, stderr, stdout};
use crate::metrics::http_addr;

const CALL: Duration = Duration::from_secs(5);

/// `GET path` over HTTPS, trusting `tls`'s CA and presenting its certificate if any: the
/// status code and body, or the TLS error.
fn https_get(addr: &str, path: &str, tls: &ClientTls) -> Result<(u16, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&tls.ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(shoal_common::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match &tls.identity {
        Some(id) => {
            let chain = rustls_pki_types::CertificateDer::pem_slice_iter(&id.cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(&id.key_pem).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let host = addr.rsplit_once(':').unwrap().0.to_owned();
    let name = rustls_pki_types::ServerName::try_from(host).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(CALL)).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    Ok((code, body.unwrap_or_default()))
}

/// What a plaintext HTTP/1.1 client gets from `addr`.
fn plaintext_http_answer(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(CALL)).unwrap();
    let _ = s.write_all(format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// A CA nobody in the cluster was signed by.
fn other_ca() -> ClientTls {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, params.self_signed(&key).unwrap().pem()).unwrap();
    ClientTls::load(&ca, None).unwrap()
}

fn secret(cluster: &LocalCluster) -> String {
    shoal_common::secret::load(&cluster.dir.join(shoal_common::secret::SECRET_FILE))
        .unwrap()
        .signing()
        .to_owned()
}

#[test]
fn a_tls_cluster_serves_the_cli_and_the_rust_client_and_refuses_plaintext() {
    let cluster = LocalCluster::start_with(&["--tls"]);
    let tls = cluster.client_tls().expect("local up --tls made a CA");
    // Every node is UP: controllers, agents and data nodes found each other over TLS.
    let status = cluster.status();
    assert!(crate::harness::all_up(&status), "{status:#}");

    // The CLI (DDL to the controllers, `--dir` finding the CA) and the Rust client (appends).
    create_seed_table(&cluster);
    let data = Data::connect(&cluster);
    let rt = runtime();
    rt.block_on(async {
        data.client
            .append(
                "dfs://stock",
                "stock",
                1,
                1,
                &seed_rows(&[1, 2, 3, 4, 5], 0),
            )
            .await
            .unwrap();
    });
    let out = cluster.run(&[
        "sql",
        "--csv",
        "SELECT count(*) AS n FROM \"dfs://stock\".stock",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().nth(1), Some("5"), "{}", stdout(&out));

    let secret = secret(&cluster);
    let datanode = data.datanodes.values().next().unwrap().clone();
    let controller = status["nodes"][0]["addr"].as_str().unwrap().to_owned();
    rt.block_on(async {
        for addr in [&datanode, &controller] {
            // Plaintext gRPC: the server answers only TLS.
            let plain = Channels::new(&secret).unwrap();
            let answer = config_of(&plain, addr, CALL).await;
            assert!(answer.is_err(), "{addr} answered a plaintext client");
            // TLS trusting another CA: the client refuses the server's certificate.
            let wrong = Channels::new(&secret).unwrap().with_tls(Some(other_ca()));
            let err = config_of(&wrong, addr, CALL).await.unwrap_err();
            assert!(err.contains("UnknownIssuer"), "{addr}: {err}");
            // The cluster's CA: answered.
            let right = Channels::new(&secret).unwrap().with_tls(Some(tls.clone()));
            config_of(&right, addr, CALL).await.unwrap();
        }
        // Flight SQL without TLS (what a generic client dialling grpc:// does).
        let channel = Channel::from_shared(format!("http://{datanode}"))
            .unwrap()
            .connect_lazy();
        let mut flight = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
        assert!(flight.handshake("admin", "x").await.is_err());
    });

    // The CLI without the CA (`--sites`, no `--tls-ca`) cannot reach the cluster.
    let secret_file = cluster.dir.join(shoal_common::secret::SECRET_FILE);
    let out = crate::harness::shoal(&[
        "config",
        "get",
        "enableSSL",
        "--sites",
        &controller,
        "--secret-file",
        secret_file.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out)
            .contains("the server may require TLS (enableSSL=1): give its CA with --tls-ca"),
        "{}",
        stderr(&out)
    );
    // With it, it can, and every node reports `enableSSL=1`.
    let out = crate::harness::shoal(&[
        "config",
        "get",
        "enableSSL",
        "--json",
        "--sites",
        &controller,
        "--secret-file",
        secret_file.to_str().unwrap(),
        "--tls-ca",
        cluster.dir.join("tls/ca.pem").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let on: Vec<&serde_json::Value> = rows.as_array().unwrap().iter().collect();
    assert_eq!(on.len(), 9, "{rows:#}");
    assert!(on.iter().all(|r| r["value"] == "1"), "{rows:#}");

    // The HTTP endpoints: HTTPS with the CA, nothing for plaintext or another CA.
    let http = http_addr(&datanode);
    let (code, body) = https_get(&http, "/metrics", &tls).unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("shoal_build_info{"), "{body}");
    let answer = plaintext_http_answer(&http);
    assert!(!answer.starts_with("HTTP/"), "{answer}");
    let err = https_get(&http, "/health", &other_ca()).unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");

    // --mutual-tls on this directory, which --tls made, would run without client
    // certificates: refused, saying what to do, and the files stay as they are.
    let agent_cfg = cluster.dir.join(&cluster.hosts[0]).join("agent.cfg");
    let before = std::fs::read_to_string(&agent_cfg).unwrap();
    let out = crate::harness::shoal(&["local", "up", "--dir", cluster.dir_str(), "--mutual-tls"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("made with --tls, without mutual TLS")
            && err.contains("give --mutual-tls a new --dir"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&agent_cfg).unwrap(), before);
    assert!(crate::harness::all_up(&cluster.status()));
}

#[test]
fn mutual_tls_refuses_a_client_without_a_certificate() {
    let cluster = LocalCluster::start_with(&["--mutual-tls"]);
    // The nodes present their certificates to each other: the cluster formed.
    let status = cluster.status();
    assert!(crate::harness::all_up(&status), "{status:#}");
    // The CLI presents DIR/tls/client.pem.
    create_seed_table(&cluster);

    let tls = cluster.client_tls().unwrap();
    let anonymous = ClientTls {
        ca_pem: tls.ca_pem.clone(),
        identity: None,
    };
    let secret = secret(&cluster);
    let rt = runtime();
    rt.block_on(async {
        for node in crate::harness::nodes(&status) {
            let addr = node["addr"].as_str().unwrap();
            // The right CA and the cluster secret, but no certificate: refused.
            let without = Channels::new(&secret)
                .unwrap()
                .with_tls(Some(anonymous.clone()));
            let answer = config_of(&without, addr, CALL).await;
            assert!(
                answer.is_err(),
                "{addr} answered a client without a certificate"
            );
            let with = Channels::new(&secret).unwrap().with_tls(Some(tls.clone()));
            config_of(&with, addr, CALL).await.unwrap();
        }
    });
    let http = http_addr(crate::harness::nodes(&status)[0]["addr"].as_str().unwrap());
    assert_eq!(https_get(&http, "/health", &tls).unwrap().0, 200);
    let err = https_get(&http, "/health", &anonymous).unwrap_err();
    assert!(err.contains("CertificateRequired"), "{err}");
}

#[test]
fn local_up_tls_on_a_plaintext_cluster_is_refused_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    crate::harness::write(
        &dir.path().join("cluster.nodes"),
        "localSite,mode\n127.0.0.1:8920:ctl1,controller\n127.0.0.1:8921:agent1,agent\n",
    );
    let out = crate::harness::shoal(&[
        "local",
        "up",
        "--dir",
        dir.path().to_str().unwrap(),
        "--tls",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("holds a plaintext cluster"),
        "{}",
        stderr(&out)
    );
}
