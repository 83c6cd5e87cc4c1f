//! Loads the fixture files from disk through the public API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use shoal_common::config::{
    AgentConfig, ClusterCfg, ClusterNodes, ConfigError, ControllerConfig, NodeMode,
    ReliabilityLevel, Site,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn seed_controller_cfg_loads() {
    let path = fixture("controller.cfg");
    let c = ControllerConfig::load(&path).expect("controller.cfg");
    assert_eq!(c.local_site, Site::new("10.10.11.2", 8920, "HActl44"));
    assert_eq!(c.dfs_replication_factor, 2);
    assert_eq!(
        c.dfs_replica_reliability_level,
        ReliabilityLevel::MustDiffer
    );
    assert_eq!(c.dfs_recovery_wait_time, Duration::from_secs(30));
    assert_eq!(c.dfs_meta_dir, fixture("dfsMeta"));
}

#[test]
fn seed_cluster_nodes_loads() {
    let nodes = ClusterNodes::load(&fixture("cluster.nodes")).expect("cluster.nodes");
    assert_eq!(nodes.controllers().count(), 3);
    assert_eq!(nodes.machines(), ["10.10.11.1", "10.10.11.2", "10.10.11.3"]);
    let agent = nodes.agent_of("10.10.11.2").expect("agent on .2");
    assert_eq!(agent.site.alias, "agent44");
    assert_eq!(agent.mode, NodeMode::Agent);
    let text = std::fs::read_to_string(fixture("cluster.nodes")).expect("read");
    assert_eq!(nodes.to_text(), text);
}

#[test]
fn cluster_cfg_with_nodes() {
    let nodes = ClusterNodes::load(&fixture("cluster.nodes")).expect("cluster.nodes");
    let cfg = ClusterCfg::load(&fixture("cluster.cfg")).expect("cluster.cfg");
    cfg.check_aliases(&nodes).expect("aliases");
    let n43 = cfg.for_node("node43").expect("node43");
    assert_eq!(
        n43.volumes,
        [PathBuf::from("/ssd1/node43"), PathBuf::from("/ssd2/node43")]
    );
    let n45 = cfg.for_node("node45").expect("node45");
    assert_eq!(n45.chunk_meta_dir, PathBuf::from("/data/node45/storage"));
    assert_eq!(n45.volumes, [PathBuf::from("/data/node45/volumes")]);
    assert_eq!(n45.worker_num, 8);
    assert_eq!(n45.max_mem_size_gb, 16.0);
    assert!(n45.entries().iter().any(|(k, _)| k == "chunkMetaDir"));
}

#[test]
fn agent_cfg_loads() {
    let a = AgentConfig::load(&fixture("agent.cfg")).expect("agent.cfg");
    assert_eq!(a.controller_site.alias, "HActl43");
    assert_eq!(a.sites.len(), 4);
}

#[test]
fn bad_file_on_disk_reports_path_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("controller.cfg");
    let text = std::fs::read_to_string(fixture("controller.cfg"))
        .expect("read")
        .replace("dfsReplicationFactor=2", "dfsReplicationFactor=two");
    std::fs::write(&path, text).expect("write");
    let e: ConfigError = ControllerConfig::load(&path).expect_err("bad value");
    assert_eq!(e.file, path);
    assert_eq!(e.line, Some(4));
    assert_eq!(e.key.as_deref(), Some("dfsReplicationFactor"));
    assert!(
        e.to_string().ends_with(
            "controller.cfg:4: dfsReplicationFactor: expected a positive integer, got \"two\""
        ),
        "{e}"
    );
}

#[test]
fn missing_file_is_a_config_error() {
    let e = ClusterNodes::load(Path::new("/nonexistent/cluster.nodes")).expect_err("missing");
    assert_eq!(e.file, PathBuf::from("/nonexistent/cluster.nodes"));
    assert!(
        e.to_string()
            .starts_with("/nonexistent/cluster.nodes: cannot read file"),
        "{e}"
    );
}
