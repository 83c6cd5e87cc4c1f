//! Assembles a controller: storage, Raft node, gRPC services, heartbeats, leader duties.

use shoal_common::secret::Keys;
use shoal_common::tls::ServerTls;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use shoal_client::channel::Channels;
use shoal_client::controller::ControllerClient;
use shoal_common::config::{ClusterNodes, ControllerConfig, NodeMode};
use shoal_proto::auth::{ServerAuth, UserAuth};
use shoal_proto::controller_server::ControllerServer;
use shoal_proto::node_info_server::NodeInfoServer;
use shoal_proto::raft_transport_server::RaftTransportServer;
use shoal_proto::user_admin_server::UserAdminServer;
use shoal_server::http::Readiness;
use shoal_server::node_info::NodeInfoService;
use tokio::sync::watch;

use crate::ControllerError;
use crate::admission::{Admission, Start};
use crate::chunks::PlacementPolicy;
use crate::console::Console;
use crate::controller_service::{ControllerCore, ControllerService};
use crate::liveness::Liveness;
use crate::metrics::ControllerMetrics;
use crate::raft_network::Network;
use crate::raft_service::RaftService;
use crate::raft_types::Raft;
use crate::topology::Topology;
use crate::user_admin::UserAdminService;
use shoal_common::users::{Directory, Users};

/// Upper bound for sending and installing a snapshot.
const SNAPSHOT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Largest Raft message (a snapshot holds the whole catalog); tonic's default is 4 MiB.
pub const MAX_RAFT_MESSAGE: usize = 256 * 1024 * 1024;

/// Everything a controller needs to run.
pub struct ControllerOptions {
    pub config: ControllerConfig,
    pub nodes: ClusterNodes,
    /// The cluster secret(s): the first is sent, all are accepted.
    pub secret: Keys,
    /// Who may log in to the console (`cluster.users`).
    pub users: Users,
    /// The TLS material of `enableSSL=1` (served with, and used to reach the other nodes);
    /// `None`: plaintext.
    pub tls: Option<ServerTls>,
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

    // The Raft store holds every user's password hash: only this machine's shoal user reads it.
    std::fs::create_dir_all(&cfg.dfs_meta_dir)
        .and_then(|()| {
            std::fs::set_permissions(&cfg.dfs_meta_dir, std::fs::Permissions::from_mode(0o700))
        })
        .map_err(|e| ControllerError::Io {
            path: cfg.dfs_meta_dir.clone(),
            source: e,
        })?;
    let (log_store, state_machine) = shoal_raft_store::open(&cfg.dfs_meta_dir)?;
    let state = state_machine.state();
    // Before the Raft node exists, so before it answers anything (see `admission`).
    let (admission, start) = Admission::open(id, log_store.identity())?;

    let raft_config = openraft::Config {
        cluster_name: "shoal".into(),
        heartbeat_interval: millis(cfg.raft_heartbeat_interval),
        election_timeout_min: millis(cfg.raft_election_timeout),
        election_timeout_max: millis(cfg.raft_election_timeout) * 2,
        // A whole snapshot travels in one message; give a lagging follower time to take it.
        install_snapshot_timeout: millis(SNAPSHOT_TIMEOUT),
        // A controller whose store was lost answers the leader with an empty log. Without this
        // openraft (debug builds) asserts that a follower's log never goes back; with it the
        // leader replicates to it from the start. What it acknowledged before is not counted
        // again (openraft never lowers a value a quorum accepted), and it cannot vote until it
        // is re-admitted (`admission`, `readmission`).
        allow_log_reversion: Some(true),
        // An election would count this controller's own vote: none until it is admitted
        // (`Admission::admit` turns them on).
        enable_elect: admission.is_admitted(),
        ..Default::default()
    }
    .validate()
    .map_err(|e| ControllerError::Raft(e.to_string()))?;
    let channels = Channels::new(opts.secret.signing())
        .map_err(|e| ControllerError::Raft(e.to_string()))?
        .with_tls(opts.tls.as_ref().map(ServerTls::client));
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

    match start {
        Start::Member => {}
        Start::Legacy => tracing::info!(
            "metadata store written before 0.2: recorded as an admitted member of its group"
        ),
        Start::NotAdmitted => tracing::info!(
            "metadata store is new (first start, or the disk was lost or replaced): this \
             controller does not vote until {}",
            if id == 1 {
                "it forms the group (every controller answers with a new store) or the leader re-admits it"
            } else {
                "the leader has made it a learner, found it caught up and admitted it"
            }
        ),
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
        channels: channels.clone(),
        drop_holds: Arc::default(),
        users_file: Arc::new(opts.users.clone()),
        users: Arc::new(Directory::from_file(opts.users.clone())),
    };
    let auth = ServerAuth::new(&opts.secret);
    // Users reach UserAdmin with a token or their password, checked against the current table.
    let user_gate = {
        let core = core.clone();
        let mut auth = UserAuth::new(&opts.secret, core.users.clone());
        move |req: tonic::Request<()>| {
            crate::user_admin::directory(&core);
            tonic::service::Interceptor::call(&mut auth, req)
        }
    };
    let router = shoal_server::serve::builder(opts.tls.as_ref())
        .map_err(|e| ControllerError::Serve(e.to_string()))?
        .add_service(tonic::service::interceptor::InterceptedService::new(
            RaftTransportServer::new(RaftService::new(raft.clone(), admission.clone()))
                .max_decoding_message_size(MAX_RAFT_MESSAGE),
            auth.clone(),
        ))
        .add_service(ControllerServer::with_interceptor(
            ControllerService::new(core.clone()),
            auth.clone(),
        ))
        .add_service(UserAdminServer::with_interceptor(
            UserAdminService::new(core.clone()),
            user_gate,
        ))
        .add_service(NodeInfoServer::with_interceptor(
            NodeInfoService::new(&alias, shoal_proto::NodeMode::Controller, cfg.entries()),
            auth,
        ));

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut registry = shoal_server::http::registry("controller", &alias);
    let metrics = ControllerMetrics::register(&mut registry);
    let (ready_tx, ready_rx) = watch::channel(Readiness::NotReady("starting".into()));
    let http = shoal_server::http::spawn(
        &cfg.local_site.addr(),
        cfg.http_port,
        registry,
        ready_rx,
        stop_rx.clone(),
        Console::new(
            core.clone(),
            &opts.secret,
            ControllerClient::new(topology.controller_addrs(), channels.clone()),
            channels.clone(),
        )
        .router(),
        opts.tls.as_ref(),
    )
    .await?;
    let sampler = tokio::spawn(metrics.run(core.clone(), ready_tx, stop_rx.clone()));
    let duties = tokio::spawn(crate::leader_duties::run(
        core.clone(),
        cfg.node_heartbeat_timeout,
        stop_rx.clone(),
    ));
    let readmission = tokio::spawn(crate::readmission::run(
        core.clone(),
        admission.clone(),
        channels.clone(),
        stop_rx.clone(),
    ));
    // Controller 1 with a new store decides whether to form the group, once serving (its
    // peers ask nothing of it, but a leader may already be sending it entries).
    let bootstrap = (id == 1 && start == Start::NotAdmitted).then(|| {
        tokio::spawn(crate::bootstrap::run(
            raft.clone(),
            admission.clone(),
            topology.clone(),
            channels.clone(),
            stop_rx.clone(),
        ))
    });
    let client = ControllerClient::new(topology.controller_addrs(), channels);
    let heartbeats = tokio::spawn(shoal_client::heartbeat::run(
        client,
        shoal_client::heartbeat::self_report(&alias, NodeMode::Controller, &cfg.local_site.addr()),
        cfg.raft_heartbeat_interval,
        stop_rx,
        None,
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
    let _ = readmission.await;
    let _ = sampler.await;
    let _ = http.await;
    if let Some(b) = bootstrap {
        let _ = b.await;
    }
    if let Err(e) = raft.shutdown().await {
        tracing::warn!("raft shutdown: {e}");
    }
    served.map_err(|e| ControllerError::Serve(e.to_string()))
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
