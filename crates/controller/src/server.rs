//! Assembles a controller: storage, Raft node, gRPC services, heartbeats, leader duties.

use std::future::Future;
use std::sync::Arc;

use shoal_client::channel::Channels;
use shoal_client::controller::ControllerClient;
use shoal_common::config::{ClusterNodes, ControllerConfig, NodeMode};
use shoal_proto::auth::ServerAuth;
use shoal_proto::controller_server::ControllerServer;
use shoal_proto::node_info_server::NodeInfoServer;
use shoal_proto::raft_transport_server::RaftTransportServer;
use shoal_server::node_info::NodeInfoService;
use tokio::sync::watch;

use crate::ControllerError;
use crate::chunks::PlacementPolicy;
use crate::controller_service::{ControllerCore, ControllerService};
use crate::liveness::Liveness;
use crate::raft_network::Network;
use crate::raft_service::RaftService;
use crate::raft_types::Raft;
use crate::topology::Topology;

/// Upper bound for sending and installing a snapshot.
const SNAPSHOT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Largest Raft message (a snapshot holds the whole catalog); tonic's default is 4 MiB.
pub const MAX_RAFT_MESSAGE: usize = 256 * 1024 * 1024;

/// Everything a controller needs to run.
pub struct ControllerOptions {
    pub config: ControllerConfig,
    pub nodes: ClusterNodes,
    pub secret: String,
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    opts: ControllerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ControllerError> {
    let cfg = &opts.config;
    let alias = cfg.local_site.alias.clone();
    let topology = Arc::new(Topology::new(&opts.nodes));
    let id = topology
        .controller_id(&alias)
        .ok_or_else(|| ControllerError::NotDeclared(alias.clone()))?;

    std::fs::create_dir_all(&cfg.dfs_meta_dir).map_err(|e| ControllerError::Io {
        path: cfg.dfs_meta_dir.clone(),
        source: e,
    })?;
    let (log_store, state_machine) = shoal_raft_store::open(&cfg.dfs_meta_dir)?;
    let state = state_machine.state();

    let raft_config = openraft::Config {
        cluster_name: "shoal".into(),
        heartbeat_interval: millis(cfg.raft_heartbeat_interval),
        election_timeout_min: millis(cfg.raft_election_timeout),
        election_timeout_max: millis(cfg.raft_election_timeout) * 2,
        // A whole snapshot travels in one message; give a lagging follower time to take it.
        install_snapshot_timeout: millis(SNAPSHOT_TIMEOUT),
        ..Default::default()
    }
    .validate()
    .map_err(|e| ControllerError::Raft(e.to_string()))?;
    let channels = Channels::new(&opts.secret).map_err(|e| ControllerError::Raft(e.to_string()))?;
    let network = Network::new(channels.clone());
    let raft = Raft::new(id, Arc::new(raft_config), network, log_store, state_machine)
        .await
        .map_err(|e| ControllerError::Raft(e.to_string()))?;

    let listener = shoal_server::serve::bind(&cfg.local_site.addr()).await?;
    tracing::info!(
        "controller {alias} (raft id {id}) version {} listening on {}",
        shoal_common::version::version(),
        cfg.local_site.addr()
    );

    // The first controller of cluster.nodes forms the group on a fresh cluster. A controller
    // that already holds a log or a vote never initializes again.
    if id == 1
        && !raft
            .is_initialized()
            .await
            .map_err(|e| ControllerError::Raft(e.to_string()))?
    {
        tracing::info!(
            "initializing the controller group: {:?}",
            topology.controller_addrs()
        );
        if let Err(e) = raft.initialize(topology.raft_members()).await {
            tracing::warn!("initialize: {e}");
        }
    }

    let core = ControllerCore {
        raft: raft.clone(),
        state,
        liveness: Arc::new(Liveness::default()),
        topology: topology.clone(),
        liveness_writes: Arc::default(),
        placement: PlacementPolicy {
            factor: usize::try_from(cfg.dfs_replication_factor).unwrap_or(usize::MAX),
            level: cfg.dfs_replica_reliability_level,
            recovery_wait: cfg.dfs_recovery_wait_time,
        },
    };
    let auth = ServerAuth::new(&opts.secret);
    let router = tonic::transport::Server::builder()
        .add_service(tonic::service::interceptor::InterceptedService::new(
            RaftTransportServer::new(RaftService::new(raft.clone()))
                .max_decoding_message_size(MAX_RAFT_MESSAGE),
            auth.clone(),
        ))
        .add_service(ControllerServer::with_interceptor(
            ControllerService::new(core.clone()),
            auth.clone(),
        ))
        .add_service(NodeInfoServer::with_interceptor(
            NodeInfoService::new(&alias, shoal_proto::NodeMode::Controller, cfg.entries()),
            auth,
        ));

    let (stop_tx, stop_rx) = watch::channel(false);
    let duties = tokio::spawn(crate::leader_duties::run(
        core.clone(),
        cfg.node_heartbeat_timeout,
        stop_rx.clone(),
    ));
    let client = ControllerClient::new(topology.controller_addrs(), channels);
    let heartbeats = tokio::spawn(shoal_client::heartbeat::run(
        client,
        shoal_client::heartbeat::self_report(&alias, NodeMode::Controller, &cfg.local_site.addr()),
        cfg.raft_heartbeat_interval,
        stop_rx,
        None,
        None,
    ));

    let served = shoal_server::serve::serve(router, listener, async move {
        shutdown.await;
        let _ = stop_tx.send(true);
        // The last "stopping" heartbeat goes out while the server still answers.
        let _ = heartbeats.await;
    })
    .await;
    let _ = duties.await;
    if let Err(e) = raft.shutdown().await {
        tracing::warn!("raft shutdown: {e}");
    }
    served.map_err(|e| ControllerError::Serve(e.to_string()))
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
