//! The heartbeat loop every node runs: report itself to the controller leader at a fixed
//! interval, so the leader knows it is up and which version it runs.

use std::sync::Arc;
use std::time::Duration;

use shoal_common::config::NodeMode;
use shoal_common::users::{Directory, Role, UserRecord, Users};
use shoal_common::version;
use shoal_proto::{HeartbeatRequest, HeartbeatResponse};
use tokio::sync::watch;

use crate::controller::ControllerClient;

/// What this process reports about itself: who it is, where it serves, what it runs.
pub fn self_report(alias: &str, mode: NodeMode, addr: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        alias: alias.to_owned(),
        mode: shoal_proto::NodeMode::from(mode).into(),
        addr: addr.to_owned(),
        version: version::version().to_owned(),
        build_date: version::build_date().to_owned(),
        pid: std::process::id(),
        stopping: false,
        users_revision: 0,
    }
}

/// Sends `report` every `interval` until `shutdown` turns true, then sends one last heartbeat
/// with `stopping = true` so the leader learns of a graceful stop at once. The cluster version
/// each answer carries is published on `cluster_version` when given; a data node passes its
/// `users` and gets the controllers' users table whenever it changes.
pub async fn run(
    client: ControllerClient,
    report: HeartbeatRequest,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
    draining: Option<watch::Receiver<bool>>,
    cluster_version: Option<watch::Sender<u32>>,
    users: Option<Arc<Directory>>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
        // A heartbeat must not outlive its interval by much: the next one supersedes it.
        // A draining node says it is stopping: nothing new is placed on it.
        let mut report = report.clone();
        report.stopping = draining.as_ref().is_some_and(|d| *d.borrow());
        report.users_revision = users.as_ref().map_or(0, |u| u.revision());
        let sent = tokio::time::timeout(interval * 4, client.heartbeat(report)).await;
        if let (Ok(Ok(answer)), Some(v)) = (&sent, &cluster_version) {
            v.send_if_modified(|known| {
                let newer = answer.cluster_version > *known;
                *known = (*known).max(answer.cluster_version);
                newer
            });
        }
        if let (Ok(Ok(answer)), Some(users)) = (&sent, &users) {
            install_users(users, answer);
        }
        match sent {
            Ok(Ok(_)) if failing => {
                tracing::info!("heartbeats reach the controller leader again");
                failing = false;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) if !failing => {
                tracing::warn!("heartbeat failed: {e}");
                failing = true;
            }
            Err(_) if !failing => {
                tracing::warn!("heartbeat timed out");
                failing = true;
            }
            _ => {}
        }
    }
    let last = HeartbeatRequest {
        stopping: true,
        ..report
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), client.heartbeat(last)).await;
}

/// Installs the users table an answer carries (when its revision is not the one held).
fn install_users(users: &Directory, answer: &HeartbeatResponse) {
    if answer.users_revision == 0 || answer.users_revision == users.revision() {
        return;
    }
    let records = answer.users.iter().map(|u| {
        Ok(UserRecord {
            name: u.name.clone(),
            role: u.role.parse::<Role>()?,
            hash: u.password_hash.clone(),
            generation: u.generation,
        })
    });
    match records
        .collect::<Result<Vec<_>, String>>()
        .and_then(Users::from_records)
    {
        Ok(table) => {
            tracing::info!(
                revision = answer.users_revision,
                "users table from the controllers: {} users",
                table.records().count()
            );
            if let Err(e) = users.replace(answer.users_revision, table) {
                tracing::error!("users table from the controllers not installed: {e}");
            }
        }
        Err(e) => tracing::error!("users table from the controllers unreadable: {e}"),
    }
}
