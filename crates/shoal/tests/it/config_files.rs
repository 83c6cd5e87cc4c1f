//! A role given a bad file refuses to start and names the file, the line (when it has one) and
//! the key.

use crate::harness::{shoal, stderr, write};

fn home_with(controller_cfg: &str, cluster_nodes: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    write(&home.path().join("controller.cfg"), controller_cfg);
    write(&home.path().join("cluster.nodes"), cluster_nodes);
    write(
        &home.path().join("cluster.secret"),
        "0123456789abcdef0123456789abcdef\n",
    );
    home
}

const NODES: &str = "localSite,mode\n127.0.0.1:8920:ctl1,controller\n127.0.0.1:8921:agent1,agent\n";

#[test]
fn a_controller_with_a_bad_value_refuses_to_start() {
    let home = home_with(
        "mode=controller\nlocalSite=127.0.0.1:8920:ctl1\ndfsReplicationFactor=two\n",
        NODES,
    );
    let out = shoal(&["controller", "--home", home.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("controller.cfg:3"), "{err}");
    assert!(err.contains("dfsReplicationFactor"), "{err}");
}

#[test]
fn a_controller_with_an_unknown_mode_in_cluster_nodes_refuses_to_start() {
    let home = home_with(
        "mode=controller\nlocalSite=127.0.0.1:8920:ctl1\n",
        "localSite,mode\n127.0.0.1:8920:ctl1,controller\n127.0.0.1:8921:agent1,agent\n127.0.0.1:8923:c1,computenode\n",
    );
    let out = shoal(&["controller", "--home", home.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("cluster.nodes:4"), "{err}");
    assert!(err.contains("computenode"), "{err}");
}

#[test]
fn a_role_without_a_cluster_secret_refuses_to_start() {
    let home = home_with("mode=controller\nlocalSite=127.0.0.1:8920:ctl1\n", NODES);
    std::fs::remove_file(home.path().join("cluster.secret")).unwrap();
    let out = shoal(&["controller", "--home", home.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cluster.secret"), "{}", stderr(&out));
}

#[test]
fn a_controller_whose_tls_files_are_missing_refuses_to_start_and_writes_nothing() {
    let home = home_with(
        "mode=controller\nlocalSite=127.0.0.1:8920:ctl1\nenableSSL=1\nsslCertFile=tls/node.pem\nsslKeyFile=tls/node.key\nsslCAFile=tls/ca.pem\n",
        NODES,
    );
    let out = shoal(&["controller", "--home", home.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let cert = home.path().join("tls/node.pem");
    assert!(
        err.contains(&format!("sslCertFile: {}: cannot read", cert.display())),
        "{err}"
    );
    assert!(!home.path().join("dfsMeta").exists(), "{err}");
}
