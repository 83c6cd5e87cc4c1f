//! Assembles a data node.

use shoal_common::secret::Keys;
use shoal_common::tls::ServerTls;
use std::future::Future;

use shoal_client::channel::Channels;
use shoal_client::controller::ControllerClient;
use shoal_common::config::{ClusterNodes, DataNodeConfig, NodeMode};
use std::sync::Arc;
use std::time::Duration;

use shoal_common::users::{Directory, USERS_TABLE_FILE, Users};
use shoal_proto::MAX_MESSAGE;
use shoal_proto::auth::{ServerAuth, UserAuth};
use shoal_proto::data_node_server::DataNodeServer;
use shoal_proto::node_info_server::NodeInfoServer;
use shoal_server::http::Readiness;
use shoal_server::node_info::NodeInfoService;
use shoal_storage::StoreOptions;
use tokio::sync::watch;

use crate::catalog_cache::CatalogCache;
use crate::flush_policy::{FlushPolicy, MemoryBudget};
use crate::metrics::DataNodeMetrics;
use crate::node::Node;
use crate::replicas::LocalReplicas;
use crate::replication::Links;
use crate::service::DataNodeService;
use crate::store_failure::StoreFailures;

/// How often the catalog is refreshed and replicas that fell behind are looked after.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

pub struct DataNodeOptions {
    pub config: DataNodeConfig,
    pub nodes: ClusterNodes,
    /// The cluster secret(s): the first is sent, all are accepted.
    pub secret: Keys,
    /// Who may log in (`cluster.users`).
    pub users: Users,
    /// The TLS material of `enableSSL=1` (served with, and used to reach the other nodes);
    /// `None`: plaintext.
    pub tls: Option<ServerTls>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataNodeError {
    #[error("data node `{0}` is not a datanode in cluster.nodes")]
    NotDeclared(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("chunk replicas: {0}")]
    Replicas(String),
    #[error("users table: {0}")]
    Users(String),
    #[error(transparent)]
    Client(#[from] shoal_client::ClientError),
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// A chunk store's WAL write or fdatasync failed; a restart reopens it from the disk.
    #[error("stopped after a chunk store failed: {0}")]
    StoreFailed(String),
}

pub async fn run(
    opts: DataNodeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DataNodeError> {
    let cfg = &opts.config;
    let site = match opts.nodes.by_alias(&cfg.alias) {
        Some(n) if n.mode == NodeMode::DataNode => n.site.clone(),
        _ => return Err(DataNodeError::NotDeclared(cfg.alias.clone())),
    };
    for dir in std::iter::once(&cfg.chunk_meta_dir).chain(&cfg.volumes) {
        std::fs::create_dir_all(dir).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display()))
        })?;
    }
    let listener = shoal_server::serve::bind(&site.addr()).await?;
    let volume = cfg.volumes.first().unwrap_or(&cfg.chunk_meta_dir);
    // Queries past `memLimitOfQueryResult` spill here; what a crash left behind is garbage.
    let spill_dir = volume.join("spill");
    let _ = std::fs::remove_dir_all(&spill_dir);
    std::fs::create_dir_all(&spill_dir).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot create {}: {e}", spill_dir.display()),
        )
    })?;
    let store_failures = StoreFailures::default();
    let memory = MemoryBudget::new(cfg.cache_engine_bytes());
    let mut registry = shoal_server::http::registry("datanode", &site.alias);
    let metrics = DataNodeMetrics::register(&mut registry);
    let replicas = LocalReplicas::open(
        &cfg.chunk_meta_dir,
        volume,
        StoreOptions {
            data_sync: cfg.data_sync,
            on_failure: Some(store_failures.hook()),
            on_sync: Some(metrics.wal_sync_hook()),
            memory: memory.gauge().clone(),
            ..StoreOptions::default()
        },
    )
    .await
    .map_err(DataNodeError::Replicas)?;
    let channels =
        Channels::new(opts.secret.signing())?.with_tls(opts.tls.as_ref().map(ServerTls::client));
    let controllers = ControllerClient::new(
        opts.nodes.controllers().map(|n| n.site.addr()).collect(),
        channels.clone(),
    );
    let (ready_tx, ready_rx) = watch::channel(Readiness::NotReady("starting".into()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let http = shoal_server::http::spawn(
        &site.addr(),
        cfg.http_port,
        registry,
        ready_rx,
        stop_rx.clone(),
        shoal_server::http::Router::new(),
        opts.tls.as_ref(),
    )
    .await?;
    // Unknown (0) until the first heartbeat answer: nothing newer than the oldest format.
    let (cluster_version, cluster_version_rx) = watch::channel(0);
    let node = Arc::new(Node {
        alias: site.alias.clone(),
        catalog: CatalogCache::new(controllers.clone()),
        replicas,
        channels,
        links: Links::default(),
        draining: watch::channel(false).0,
        cluster_version: cluster_version_rx,
        memory,
        query_memory: shoal_query::QueryMemory {
            limit: usize::try_from(cfg.query_memory_bytes()).unwrap_or(usize::MAX),
            spill_dir: spill_dir.clone(),
        },
        metrics,
    });
    tracing::info!(
        "data node {} version {} listening on {}",
        site.alias,
        shoal_common::version::version(),
        site.addr()
    );
    // Before serving or heartbeating: no replica of this node may act as the truth before a
    // peer that can vouch for the data has filled it again (see `restart`).
    tokio::pin!(shutdown);
    ready_tx.send_replace(Readiness::NotReady(
        "taking its replicas out of the in-sync sets after a restart".into(),
    ));
    tokio::select! {
        _ = crate::restart::leave_in_sync_sets(&node) => {}
        _ = &mut shutdown => {
            let _ = stop_tx.send(true);
            let _ = http.await;
            return Ok(());
        }
    }

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    ready_tx.send_replace(Readiness::Ready);
    let ready = ready_tx.clone();
    let mut draining = node.draining.subscribe();
    let reporter = health_reporter.clone();
    tokio::spawn(async move {
        if draining.wait_for(|d| *d).await.is_ok() {
            reporter
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
            ready_tx.send_replace(Readiness::NotReady("draining before a restart".into()));
        }
    });
    // Who may log in: the last table the controllers sent (heartbeats), else the file's users.
    let users = Arc::new(
        Directory::kept_at(
            opts.users.clone(),
            cfg.chunk_meta_dir.join(USERS_TABLE_FILE),
        )
        .map_err(DataNodeError::Users)?,
    );
    // Flight SQL is only for clients: all of it is refused while draining.
    let flight_gate = {
        let node = node.clone();
        let mut auth = UserAuth::new(&opts.secret, users.clone());
        move |req: tonic::Request<()>| {
            if node.is_draining() {
                return Err(node.draining_status());
            }
            tonic::service::Interceptor::call(&mut auth, req)
        }
    };
    let router = shoal_server::serve::builder(opts.tls.as_ref())?
        .add_service(health_service)
        .add_service(NodeInfoServer::with_interceptor(
            NodeInfoService::new(&site.alias, shoal_proto::NodeMode::Datanode, cfg.entries()),
            ServerAuth::new(&opts.secret),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            DataNodeServer::new(DataNodeService::new(node.clone()))
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            UserAuth::new(&opts.secret, users.clone()),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            shoal_query::flight_service(
                Arc::new(shoal_query::QueryEngine::new(
                    controllers.clone(),
                    shoal_query::Replicas {
                        channels: node.channels.clone(),
                        local: Some(Arc::new(crate::chunk_scan::LocalScans(node.clone()))),
                        cluster_version: node.cluster_version.clone(),
                    },
                    node.query_memory.clone(),
                )),
                Arc::new(crate::ingest::CoordinatorAppender(node.clone())),
                shoal_query::Login {
                    users: users.clone(),
                    secret: opts.secret.clone(),
                },
                site.alias.clone(),
                node.metrics.query_observer(),
            )
            .max_decoding_message_size(MAX_MESSAGE),
            flight_gate,
        ));

    let upkeep = tokio::spawn(upkeep(node.clone(), stop_rx.clone()));
    let heartbeats = tokio::spawn(shoal_client::heartbeat::run(
        controllers,
        shoal_client::heartbeat::self_report(&site.alias, NodeMode::DataNode, &site.addr()),
        cfg.heartbeat_interval,
        stop_rx.clone(),
        Some(node.draining.subscribe()),
        Some(cluster_version),
        Some(users.clone()),
    ));
    let flushes = tokio::spawn(crate::flush_policy::run(
        node.clone(),
        FlushPolicy {
            idle: cfg.flush_idle_time,
        },
        stop_rx,
    ));

    let failed = store_failures.clone();
    let served = shoal_server::serve::serve(router, listener, async move {
        tokio::select! {
            () = shutdown => {}
            () = failed.occurred() => {}
        }
        // Tell load balancers and the controller before the socket closes.
        health_reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        ready.send_replace(Readiness::NotReady("stopping".into()));
        let _ = stop_tx.send(true);
        let _ = heartbeats.await;
        let _ = upkeep.await;
        let _ = flushes.await;
        let _ = http.await;
    })
    .await;
    served?;
    match store_failures.first() {
        Some(failure) => Err(DataNodeError::StoreFailed(failure)),
        None => Ok(()),
    }
}

/// Keeps the catalog fresh, replication links running for every chunk this node leads, and
/// deletes replicas no longer placed here.
async fn upkeep(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    loop {
        match node.catalog.refresh().await {
            Ok(()) => {
                node.links.sweep(&node);
                discard_unplaced(&node).await;
                node.metrics.set_replicas(node.replicas.ids().len());
            }
            Err(e) => tracing::debug!("catalog refresh: {e}"),
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(UPKEEP_INTERVAL) => {}
        }
    }
}

/// Deletes local replicas the (just refreshed) catalog no longer places on this node: their
/// chunk was dropped, or the replica moved to another node. Never a replica whose chunk the
/// catalog merely lacks (see [`Snapshot::dropped`](crate::catalog_cache::Snapshot::dropped)).
async fn discard_unplaced(node: &Node) {
    let snapshot = node.catalog.snapshot();
    for id in node.replicas.ids() {
        let unplaced = match snapshot.chunks.get(&id) {
            Some(c) => !c.replicas.iter().any(|r| r.node == node.alias),
            None => snapshot.dropped(id),
        };
        if !unplaced {
            continue;
        }
        if let Err(e) = node.replicas.discard(id).await {
            tracing::warn!("chunk {id}: cannot delete the unplaced replica: {e}");
        }
    }
}
