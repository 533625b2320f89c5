//! The configuration and upstream calls of the control plane: reads (linearizable through the
//! leader unless local), validated changes through Raft, history, rollback, and upstream
//! changes as edits of the `upstreams` key.

use std::net::SocketAddr;

use heimdall_proto::v1::{
    ConfigChange, ConfigChangeReply, ConfigGetReply, ConfigHistoryEntry, ConfigHistoryReply,
    ConfigValue, UpstreamStatus,
};
use tokio::time::Instant;
use tonic::Status;

use super::NodeAdmin;
use crate::cluster::settings::parse_upstream;
use crate::cluster::state::HISTORY_LEN;
use crate::cluster::{
    Change, ChangeKind, ClusterState, Command, CommandResponse, KEYS, Origin, Rejection,
};
use crate::upstream::UpstreamSnapshot;

/// How long a change's reply waits for this node to apply it (to report what changed).
const APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How often an upstream edit is retried when another change slipped in between.
const EDIT_ATTEMPTS: usize = 5;

/// The protobuf form of a changed key.
fn change_message(change: &Change) -> ConfigChange {
    ConfigChange {
        key: change.key.clone(),
        old_json: change.old.to_string(),
        new_json: change.new.to_string(),
    }
}

/// The gRPC status of a refused command, naming the node.
fn rejection_status(node: u64, rejection: &Rejection) -> Status {
    let message = format!("node {node}: {rejection}");
    match rejection {
        Rejection::VersionConflict { .. } => Status::failed_precondition(message),
        Rejection::Invalid(_) | Rejection::UnknownVersion { .. } => {
            Status::invalid_argument(message)
        }
    }
}

/// The protobuf form of an upstream as the forwarder sees it.
pub fn upstream_message(u: &UpstreamSnapshot) -> UpstreamStatus {
    UpstreamStatus {
        addr: u.addr.to_string(),
        healthy: u.healthy,
        srtt_us: u64::try_from(u.srtt.as_micros()).unwrap_or(u64::MAX),
        queries: u.answers + u.failures,
        failures: u.failures,
    }
}

impl NodeAdmin {
    /// The cluster state, through the leader (read index) unless `local`.
    async fn read_state(&self, local: bool) -> Result<std::sync::Arc<ClusterState>, Status> {
        self.cluster
            .read_state(!local, Origin::Local)
            .await
            .map_err(|e| self.cluster_status(&e))
    }

    /// The value of `key` (or everything) and every leaf under it.
    pub(super) async fn config_get(
        &self,
        key: &str,
        local: bool,
    ) -> Result<ConfigGetReply, Status> {
        let key = key.trim();
        let state = self.read_state(local).await?;
        let settings = &state.settings;
        let value = settings
            .get(key)
            .map_err(|e| Status::invalid_argument(format!("node {}: {e}", self.cluster.id())))?;
        let prefix = format!("{key}.");
        let mut values: Vec<ConfigValue> = KEYS
            .iter()
            .filter(|k| key.is_empty() || **k == key || k.starts_with(&prefix))
            .filter_map(|k| {
                settings.get(k).ok().map(|v| ConfigValue {
                    key: (*k).to_owned(),
                    value_json: v.to_string(),
                })
            })
            .collect();
        if values.is_empty() {
            values.push(ConfigValue {
                key: key.to_owned(),
                value_json: value.to_string(),
            });
        }
        Ok(ConfigGetReply {
            version: state.version,
            value_json: value.to_string(),
            values,
        })
    }

    /// Proposes a settings command and answers with the new version and what changed.
    pub(super) async fn change(&self, command: Command) -> Result<ConfigChangeReply, Status> {
        match self.propose(command).await? {
            CommandResponse::Applied { version, changed } => {
                let deadline = Instant::now() + APPLY_WAIT;
                let state = self
                    .cluster
                    .wait_applied(deadline, |s| s.version >= version)
                    .await;
                let changes = if changed {
                    state
                        .history
                        .iter()
                        .find(|h| h.version == version)
                        .map(|h| h.changes.iter().map(change_message).collect())
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
                Ok(ConfigChangeReply { version, changes })
            }
            CommandResponse::Rejected(rejection) => {
                Err(rejection_status(self.cluster.id(), &rejection))
            }
            other => Err(Status::internal(format!(
                "node {}: unexpected answer to a settings change: {other:?}",
                self.cluster.id()
            ))),
        }
    }

    /// Sets `key` to `value` as `author`, only at `expect_version` when given.
    pub(super) async fn config_set(
        &self,
        author: &str,
        key: &str,
        value: &str,
        expect_version: Option<u64>,
    ) -> Result<ConfigChangeReply, Status> {
        self.change(Command::Set {
            key: key.trim().to_owned(),
            value: value.to_owned(),
            expected_version: expect_version,
            author: author.to_owned(),
            node: self.cluster.id(),
            at_unix_ms: crate::cluster::auth::unix_ms(),
        })
        .await
    }

    /// Rolls back to `version` as `author`, only if the version is still `expect_version`
    /// when the rollback commits (compare-and-set in the state machine).
    pub(super) async fn config_rollback(
        &self,
        author: &str,
        version: u64,
        expect_version: Option<u64>,
    ) -> Result<ConfigChangeReply, Status> {
        self.change(Command::Rollback {
            version,
            expected_version: expect_version,
            author: author.to_owned(),
            node: self.cluster.id(),
            at_unix_ms: crate::cluster::auth::unix_ms(),
        })
        .await
    }

    /// The newest `limit` versions (0: all kept), oldest first.
    pub(super) async fn config_history(&self, limit: u32) -> Result<ConfigHistoryReply, Status> {
        let state = self.read_state(false).await?;
        let limit = match usize::try_from(limit) {
            Ok(0) | Err(_) => HISTORY_LEN,
            Ok(n) => n,
        };
        let skip = state.history.len().saturating_sub(limit);
        let entries = state
            .history
            .iter()
            .skip(skip)
            .map(|h| ConfigHistoryEntry {
                version: h.version,
                unix_ms: h.at_unix_ms,
                node_id: h.node,
                actor: h.author.clone(),
                kind: match &h.kind {
                    ChangeKind::Set { .. } => "set",
                    ChangeKind::Replace if h.author == "bootstrap" => "bootstrap",
                    ChangeKind::Replace => "replace",
                    ChangeKind::Rollback { .. } => "rollback",
                }
                .to_owned(),
                changes: h.changes.iter().map(change_message).collect(),
            })
            .collect();
        Ok(ConfigHistoryReply { entries })
    }

    /// Adds (`add`) or removes `addr` in the cluster's upstream list. With `expect_version`
    /// the edit is made only at that version; without, it is made against the version read
    /// just before and retried if another change slipped in.
    pub(super) async fn upstream_edit(
        &self,
        author: &str,
        addr: &str,
        add: bool,
        expect_version: Option<u64>,
    ) -> Result<ConfigChangeReply, Status> {
        let node = self.cluster.id();
        let target: SocketAddr =
            parse_upstream(addr).map_err(|e| Status::invalid_argument(format!("addr: {e}")))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let state = self.read_state(false).await?;
            let mut upstreams = state.settings.upstreams.clone();
            let present = upstreams.contains(&target);
            if add && present {
                return Err(Status::already_exists(format!(
                    "node {node}: upstream {target} is already configured"
                )));
            }
            if !add && !present {
                return Err(Status::not_found(format!(
                    "node {node}: upstream {target} is not configured (upstreams: {upstreams:?})"
                )));
            }
            if add {
                upstreams.push(target);
            } else {
                upstreams.retain(|u| *u != target);
            }
            let value = serde_json::to_string(
                &upstreams
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
            )
            .map_err(|e| Status::internal(format!("node {node}: encoding upstreams: {e}")))?;
            let result = self
                .config_set(
                    author,
                    "upstreams",
                    &value,
                    Some(expect_version.unwrap_or(state.version)),
                )
                .await;
            match result {
                Err(s)
                    if s.code() == tonic::Code::FailedPrecondition
                        && expect_version.is_none()
                        && attempt < EDIT_ATTEMPTS => {}
                other => return other,
            }
        }
    }
}
