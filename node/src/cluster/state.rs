//! The replicated cluster state machine: commands, their deterministic application, version
//! history with rollback, and cluster-wide cache-flush epochs.
//!
//! [`ClusterState::apply`] is a pure function of the state and the [`Command`]: the time,
//! node and author of a change come from the command (stamped by the node that proposed it),
//! never from the local clock, so every replica computes the same state. A rejected command
//! changes nothing and says why in its [`CommandResponse`].
//!
//! Each accepted change to the settings gets the next version number and a
//! [`HistoryEntry`] listing every changed key with its old and new value. The last
//! [`HISTORY_LEN`] entries are kept; rolling back to version `V` undoes the entries newer than
//! `V` in reverse order (each holds the key's complete old value), so the reachable versions
//! are those from just before the oldest kept entry up to the current one. A rollback is
//! itself a new version.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::settings::{Change, ClusterSettings, SettingsError};
use super::types::NodeId;

/// How many versions of history the state keeps (and so how far back a rollback reaches).
pub const HISTORY_LEN: usize = 100;

/// How many past flush commands the state keeps for nodes catching up.
pub const FLUSH_EPOCHS_LEN: usize = 1000;

/// What a cluster-wide cache flush removes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FlushScope {
    /// Every entry.
    All,
    /// Entries for exactly this name (any type).
    Name(String),
    /// Entries for this name and every name below it.
    Subtree(String),
    /// Entries of this query type (any name).
    Type(u16),
    /// Entries for exactly this name and query type.
    NameType(String, u16),
}

impl FlushScope {
    /// The name the scope is about, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Name(name) | Self::Subtree(name) | Self::NameType(name, _) => Some(name),
            Self::All | Self::Type(_) => None,
        }
    }

    /// Checks that the name, if any, is a domain name.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(name) = self.name() {
            let mut buf = [0u8; heimdall_wire::MAX_NAME_LEN];
            heimdall_wire::name_from_str(name, &mut buf).map_err(|e| {
                SettingsError::invalid("scope", format!("{name:?} is not a domain name: {e}"))
            })?;
        }
        Ok(())
    }
}

/// A change proposed to the cluster, replicated through the Raft log.
///
/// Every command carries who asked (`author`: the caller's name, e.g. user@host or the
/// client certificate's name), the node that proposed it (`node`) and when (`at_unix_ms`,
/// that node's clock), which end up in the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Set one key (or merge a section) from text, as [`ClusterSettings::set`] does.
    Set {
        /// Dotted key, e.g. `cache.max_ttl`.
        key: String,
        /// The value as text.
        value: String,
        /// Apply only if the current version is this one (optimistic concurrency).
        expected_version: Option<u64>,
        /// Who asked for the change.
        author: String,
        /// The node that proposed it.
        node: NodeId,
        /// When it was proposed, Unix milliseconds.
        at_unix_ms: u64,
    },
    /// Replace all settings (the bootstrapping node seeds the first version with this).
    Replace {
        /// The new settings.
        settings: ClusterSettings,
        /// Apply only if the current version is this one (`Some(0)`: only on a fresh cluster).
        expected_version: Option<u64>,
        /// Who asked for the change.
        author: String,
        /// The node that proposed it.
        node: NodeId,
        /// When it was proposed, Unix milliseconds.
        at_unix_ms: u64,
    },
    /// Restore the settings as they were at `version`; recorded as a new version.
    Rollback {
        /// The version to go back to.
        version: u64,
        /// Apply only if the current version is this one (optimistic concurrency). Absent in
        /// entries written before this field existed.
        #[serde(default)]
        expected_version: Option<u64>,
        /// Who asked for the change.
        author: String,
        /// The node that proposed it.
        node: NodeId,
        /// When it was proposed, Unix milliseconds.
        at_unix_ms: u64,
    },
    /// Flush cache entries on every node; recorded as the next flush epoch.
    Flush {
        /// What to flush.
        scope: FlushScope,
        /// Who asked for the flush.
        author: String,
        /// The node that proposed it.
        node: NodeId,
        /// When it was proposed, Unix milliseconds.
        at_unix_ms: u64,
    },
}

/// Why a command was not applied; the state is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Rejection {
    /// The command expected another version than the current one.
    #[error("version conflict: expected version {expected}, current version is {current}")]
    VersionConflict {
        /// The version the caller based its change on.
        expected: u64,
        /// The current version.
        current: u64,
    },
    /// The value does not parse or breaks a rule; the error names the field.
    #[error(transparent)]
    Invalid(#[from] SettingsError),
    /// A rollback to a version that is not (or no longer) in the history.
    #[error(
        "unknown version {version}: rollback reaches versions {oldest}..={current} \
         (the last {HISTORY_LEN} are kept)"
    )]
    UnknownVersion {
        /// The version asked for.
        version: u64,
        /// The oldest version that can still be restored.
        oldest: u64,
        /// The current version.
        current: u64,
    },
}

/// The state machine's answer to one log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// The entry carried no command (a blank or membership entry).
    Noop,
    /// The settings are now at `version`; `changed` is false when the command asked for
    /// what was already there (no new version was made).
    Applied {
        /// The current version after the command.
        version: u64,
        /// Whether a new version was made.
        changed: bool,
    },
    /// The flush was recorded as this epoch.
    Flushed {
        /// The new flush epoch.
        epoch: u64,
    },
    /// The command was refused; nothing changed.
    Rejected(Rejection),
}

/// What kind of command produced a version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// A `Set` of one key or section.
    Set {
        /// The key as given by the caller.
        key: String,
    },
    /// A `Replace` of all settings (bootstrap seeding, or a full import).
    Replace,
    /// A `Rollback` to an earlier version.
    Rollback {
        /// The version restored.
        to: u64,
    },
}

/// One version in the history: what changed, when, where and by whom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The version this change produced.
    pub version: u64,
    /// The command that produced it.
    pub kind: ChangeKind,
    /// Every changed leaf key with its complete old and new value (never empty).
    pub changes: Vec<Change>,
    /// When it was proposed, Unix milliseconds (proposing node's clock).
    pub at_unix_ms: u64,
    /// The node that proposed it.
    pub node: NodeId,
    /// Who asked for it.
    pub author: String,
}

/// One recorded cluster-wide flush.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushEpoch {
    /// The epoch number (1 for the first flush, then +1 each).
    pub epoch: u64,
    /// What was flushed.
    pub scope: FlushScope,
    /// When it was proposed, Unix milliseconds.
    pub at_unix_ms: u64,
    /// The node that proposed it.
    pub node: NodeId,
    /// Who asked for it.
    pub author: String,
}

/// The flushes a node has to apply to catch up from an epoch it already applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlushCatchUp<'a> {
    /// These flushes, oldest first (possibly none).
    Flushes(Vec<&'a FlushEpoch>),
    /// Some flushes after the given epoch are no longer recorded: flush everything.
    All,
}

/// The replicated state: settings, their version and history, and flush epochs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterState {
    /// The current settings.
    pub settings: ClusterSettings,
    /// The current version; 0 = never set (defaults, before bootstrap seeding).
    pub version: u64,
    /// The last [`HISTORY_LEN`] versions, oldest first; contiguous up to `version`.
    pub history: VecDeque<HistoryEntry>,
    /// The latest flush epoch; 0 = no flush yet.
    pub flush_epoch: u64,
    /// The last [`FLUSH_EPOCHS_LEN`] flushes, oldest first; contiguous up to `flush_epoch`.
    pub flush_epochs: VecDeque<FlushEpoch>,
}

impl ClusterState {
    /// Applies one command; deterministic, and a rejected command changes nothing.
    pub fn apply(&mut self, command: Command) -> CommandResponse {
        let result = match command {
            Command::Set {
                key,
                value,
                expected_version,
                author,
                node,
                at_unix_ms,
            } => self.check_version(expected_version).and_then(|()| {
                let mut next = self.settings.clone();
                next.set(&key, &value)?;
                Ok(self.commit(ChangeKind::Set { key }, next, at_unix_ms, node, author))
            }),
            Command::Replace {
                settings,
                expected_version,
                author,
                node,
                at_unix_ms,
            } => self.check_version(expected_version).and_then(|()| {
                settings.validate()?;
                Ok(self.commit(ChangeKind::Replace, settings, at_unix_ms, node, author))
            }),
            Command::Rollback {
                version,
                expected_version,
                author,
                node,
                at_unix_ms,
            } => self
                .check_version(expected_version)
                .and_then(|()| self.settings_at(version))
                .and_then(|settings| {
                    settings.validate()?;
                    Ok(self.commit(
                        ChangeKind::Rollback { to: version },
                        settings,
                        at_unix_ms,
                        node,
                        author,
                    ))
                }),
            Command::Flush {
                scope,
                author,
                node,
                at_unix_ms,
            } => scope.validate().map_err(Rejection::from).map(|()| {
                self.flush_epoch += 1;
                self.flush_epochs.push_back(FlushEpoch {
                    epoch: self.flush_epoch,
                    scope,
                    at_unix_ms,
                    node,
                    author,
                });
                while self.flush_epochs.len() > FLUSH_EPOCHS_LEN {
                    self.flush_epochs.pop_front();
                }
                CommandResponse::Flushed {
                    epoch: self.flush_epoch,
                }
            }),
        };
        result.unwrap_or_else(CommandResponse::Rejected)
    }

    /// What applying `command` would answer, without changing anything: the leader uses it
    /// to refuse an invalid or conflicting change before it enters the log. The state machine
    /// checks again when the entry commits (the state may have moved on in between), so a
    /// command that passed here can still be rejected there, identically on every replica.
    pub fn dry_run(&self, command: &Command) -> CommandResponse {
        self.clone().apply(command.clone())
    }

    /// The oldest version a rollback can reach.
    pub fn oldest_version(&self) -> u64 {
        self.history
            .front()
            .map_or(self.version, |first| first.version.saturating_sub(1))
    }

    /// The settings as they were at `version`, rebuilt by undoing the newer history entries.
    pub fn settings_at(&self, version: u64) -> Result<ClusterSettings, Rejection> {
        let unknown = || Rejection::UnknownVersion {
            version,
            oldest: self.oldest_version(),
            current: self.version,
        };
        if version > self.version || version < self.oldest_version() {
            return Err(unknown());
        }
        let mut settings = self.settings.clone();
        for entry in self
            .history
            .iter()
            .rev()
            .take_while(|e| e.version > version)
        {
            for change in entry.changes.iter().rev() {
                settings = settings
                    .with_value(&change.key, change.old.clone())
                    .map_err(|_| unknown())?;
            }
        }
        Ok(settings)
    }

    /// The flushes after `applied_epoch` that a node still has to apply.
    pub fn flushes_after(&self, applied_epoch: u64) -> FlushCatchUp<'_> {
        let oldest_known = self
            .flush_epochs
            .front()
            .map_or(self.flush_epoch, |f| f.epoch);
        if applied_epoch < self.flush_epoch && applied_epoch + 1 < oldest_known {
            return FlushCatchUp::All;
        }
        FlushCatchUp::Flushes(
            self.flush_epochs
                .iter()
                .filter(|f| f.epoch > applied_epoch)
                .collect(),
        )
    }

    /// Refuses when `expected` is given and is not the current version.
    fn check_version(&self, expected: Option<u64>) -> Result<(), Rejection> {
        match expected {
            Some(expected) if expected != self.version => Err(Rejection::VersionConflict {
                expected,
                current: self.version,
            }),
            _ => Ok(()),
        }
    }

    /// Makes `next` the current settings as a new version, unless nothing changes.
    fn commit(
        &mut self,
        kind: ChangeKind,
        next: ClusterSettings,
        at_unix_ms: u64,
        node: NodeId,
        author: String,
    ) -> CommandResponse {
        let changes = self.settings.diff(&next);
        if changes.is_empty() {
            return CommandResponse::Applied {
                version: self.version,
                changed: false,
            };
        }
        self.version += 1;
        self.settings = next;
        self.history.push_back(HistoryEntry {
            version: self.version,
            kind,
            changes,
            at_unix_ms,
            node,
            author,
        });
        while self.history.len() > HISTORY_LEN {
            self.history.pop_front();
        }
        CommandResponse::Applied {
            version: self.version,
            changed: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Set` command from node 1 by "alice" at time `at`.
    fn set(key: &str, value: &str, expected: Option<u64>, at: u64) -> Command {
        Command::Set {
            key: key.to_owned(),
            value: value.to_owned(),
            expected_version: expected,
            author: "alice@host".to_owned(),
            node: 1,
            at_unix_ms: at,
        }
    }

    /// A `Rollback` command to `version`.
    fn rollback(version: u64) -> Command {
        Command::Rollback {
            version,
            expected_version: None,
            author: "bob".to_owned(),
            node: 2,
            at_unix_ms: 9,
        }
    }

    /// A `Flush` command for `scope`.
    fn flush(scope: FlushScope) -> Command {
        Command::Flush {
            scope,
            author: "carol".to_owned(),
            node: 3,
            at_unix_ms: 7,
        }
    }

    /// A set makes a version with a history entry naming key, old and new value, time, node
    /// and author.
    #[test]
    fn set_records_history() {
        let mut state = ClusterState::default();
        let r = state.apply(set("cache.max_ttl", "600", Some(0), 1000));
        assert_eq!(
            r,
            CommandResponse::Applied {
                version: 1,
                changed: true
            }
        );
        assert_eq!(state.settings.cache.max_ttl, 600);
        let entry = state.history.back().expect("history entry");
        assert_eq!(entry.version, 1);
        assert_eq!(entry.at_unix_ms, 1000);
        assert_eq!(entry.node, 1);
        assert_eq!(entry.author, "alice@host");
        assert_eq!(
            entry.changes,
            vec![Change {
                key: "cache.max_ttl".to_owned(),
                old: 86_400.into(),
                new: 600.into()
            }]
        );
        // Setting the same value again makes no version.
        let r = state.apply(set("cache.max_ttl", "600", None, 1001));
        assert_eq!(
            r,
            CommandResponse::Applied {
                version: 1,
                changed: false
            }
        );
        assert_eq!(state.history.len(), 1);
    }

    /// A stale expected_version is refused and nothing changes.
    #[test]
    fn stale_expected_version_is_refused() {
        let mut state = ClusterState::default();
        state.apply(set("cache.min_ttl", "5", None, 1));
        let before = state.clone();
        let r = state.apply(set("cache.min_ttl", "10", Some(0), 2));
        assert_eq!(
            r,
            CommandResponse::Rejected(Rejection::VersionConflict {
                expected: 0,
                current: 1
            })
        );
        assert_eq!(state, before);
        let r = state.apply(Command::Replace {
            settings: ClusterSettings::default(),
            expected_version: Some(7),
            author: "x".to_owned(),
            node: 1,
            at_unix_ms: 3,
        });
        assert!(matches!(
            r,
            CommandResponse::Rejected(Rejection::VersionConflict { .. })
        ));
        assert_eq!(state, before);
    }

    /// An invalid value is refused with an error naming the field; nothing changes.
    #[test]
    fn invalid_value_names_the_field() {
        let mut state = ClusterState::default();
        let before = state.clone();
        let r = state.apply(set("cache.servfail_ttl", "99", None, 1));
        let CommandResponse::Rejected(Rejection::Invalid(err)) = r else {
            panic!("expected a validation rejection, got {r:?}");
        };
        assert_eq!(err.key(), "cache.servfail_ttl");
        assert!(err.to_string().starts_with("cache.servfail_ttl: "), "{err}");
        assert_eq!(state, before);
        // A dry run answers the same without touching the state.
        assert_eq!(
            state.dry_run(&set("cache.servfail_ttl", "99", None, 1)),
            CommandResponse::Rejected(Rejection::Invalid(err))
        );
        assert_eq!(
            state.dry_run(&set("cache.servfail_ttl", "9", None, 1)),
            CommandResponse::Applied {
                version: 1,
                changed: true
            }
        );
        assert_eq!(state, before);

        let mut bad = ClusterSettings::default();
        bad.gossip.fanout = 0;
        let r = state.apply(Command::Replace {
            settings: bad,
            expected_version: None,
            author: "x".to_owned(),
            node: 1,
            at_unix_ms: 3,
        });
        let CommandResponse::Rejected(Rejection::Invalid(err)) = r else {
            panic!("expected a validation rejection, got {r:?}");
        };
        assert_eq!(err.key(), "gossip.fanout");
        assert_eq!(state, before);
    }

    /// Replace seeds a fresh cluster once (expected version 0) and records every changed key.
    #[test]
    fn replace_seeds_and_records_changes() {
        let mut state = ClusterState::default();
        let mut seed = ClusterSettings {
            upstreams: vec!["192.0.2.53:53".parse().expect("addr")],
            ..ClusterSettings::default()
        };
        seed.cache.min_ttl = 30;
        let replace = |settings: ClusterSettings| Command::Replace {
            settings,
            expected_version: Some(0),
            author: "bootstrap".to_owned(),
            node: 4,
            at_unix_ms: 5,
        };
        assert_eq!(
            state.apply(replace(seed.clone())),
            CommandResponse::Applied {
                version: 1,
                changed: true
            }
        );
        assert_eq!(state.settings, seed);
        let entry = state.history.back().expect("entry");
        assert_eq!(entry.kind, ChangeKind::Replace);
        let keys: Vec<&str> = entry.changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, vec!["upstreams", "cache.min_ttl"]);
        // A second seeding (another node racing to bootstrap) is refused.
        assert!(matches!(
            state.apply(replace(ClusterSettings::default())),
            CommandResponse::Rejected(Rejection::VersionConflict { .. })
        ));
    }

    /// Rollback restores the settings of an earlier version exactly, as a new version.
    #[test]
    fn rollback_restores_earlier_versions() {
        let mut state = ClusterState::default();
        let mut snapshots = vec![state.settings.clone()];
        let steps = [
            ("cache.max_ttl", "3600"),
            ("upstreams", "192.0.2.1,192.0.2.2"),
            ("cache", r#"{"min_ttl": 60, "prefetch": false}"#),
            ("acl.allow_from", "10.0.0.0/8"),
            ("upstreams", "192.0.2.3"),
        ];
        for (i, (key, value)) in steps.iter().enumerate() {
            state.apply(set(key, value, None, i as u64));
            snapshots.push(state.settings.clone());
        }
        assert_eq!(state.version, 5);
        for (version, expected) in snapshots.iter().enumerate() {
            let version = version as u64;
            assert_eq!(
                state.settings_at(version).as_ref(),
                Ok(expected),
                "v{version}"
            );
        }
        let r = state.apply(rollback(2));
        assert_eq!(
            r,
            CommandResponse::Applied {
                version: 6,
                changed: true
            }
        );
        assert_eq!(&state.settings, snapshots.get(2).expect("v2"));
        let entry = state.history.back().expect("entry");
        assert_eq!(entry.kind, ChangeKind::Rollback { to: 2 });
        assert_eq!(entry.author, "bob");
        // The rollback itself can be rolled back.
        state.apply(rollback(5));
        assert_eq!(&state.settings, snapshots.get(5).expect("v5"));
        // Rolling back to the current version changes nothing.
        assert_eq!(
            state.apply(rollback(7)),
            CommandResponse::Applied {
                version: 7,
                changed: false
            }
        );
    }

    /// A rollback with an expected version commits only while the version is still that one,
    /// and a refused one changes nothing.
    #[test]
    fn rollback_compares_the_expected_version() {
        let mut state = ClusterState::default();
        state.apply(set("cache.max_ttl", "3600", None, 1));
        state.apply(set("cache.max_ttl", "7200", None, 2));
        let before = state.clone();
        let stale = Command::Rollback {
            version: 1,
            expected_version: Some(1),
            author: "bob".to_owned(),
            node: 2,
            at_unix_ms: 9,
        };
        assert_eq!(
            state.apply(stale),
            CommandResponse::Rejected(Rejection::VersionConflict {
                expected: 1,
                current: 2
            })
        );
        assert_eq!(state, before);
        let current = Command::Rollback {
            version: 1,
            expected_version: Some(2),
            author: "bob".to_owned(),
            node: 2,
            at_unix_ms: 9,
        };
        assert_eq!(
            state.apply(current),
            CommandResponse::Applied {
                version: 3,
                changed: true
            }
        );
    }

    /// Rollback to a version outside the history (future or forgotten) is refused.
    #[test]
    fn rollback_to_unknown_version_is_refused() {
        let mut state = ClusterState::default();
        for i in 0..(HISTORY_LEN as u64 + 20) {
            state.apply(set("cache.min_ttl", &i.to_string(), None, i));
        }
        // Version 1 set min_ttl 0 (unchanged from default), so versions start at i = 1.
        let current = state.version;
        let before = state.clone();
        let oldest = state.oldest_version();
        assert_eq!(oldest, current - HISTORY_LEN as u64);
        for version in [current + 1, oldest - 1, 0] {
            assert_eq!(
                state.apply(rollback(version)),
                CommandResponse::Rejected(Rejection::UnknownVersion {
                    version,
                    oldest,
                    current
                })
            );
            assert_eq!(state, before);
        }
        // The oldest reachable version works and restores its value.
        let expected = state.settings_at(oldest).expect("oldest reachable");
        state.apply(rollback(oldest));
        assert_eq!(state.settings, expected);
        assert_eq!(
            state.settings.cache.min_ttl,
            u32::try_from(oldest).expect("small")
        );
    }

    /// History keeps the last 100 versions, contiguous and ending at the current version.
    #[test]
    fn history_is_capped() {
        let mut state = ClusterState::default();
        for i in 1..=250u64 {
            state.apply(set("cache.stale_ttl", &i.to_string(), None, i));
        }
        assert_eq!(state.version, 250);
        assert_eq!(state.history.len(), HISTORY_LEN);
        let versions: Vec<u64> = state.history.iter().map(|e| e.version).collect();
        let expected: Vec<u64> = (state.version - HISTORY_LEN as u64 + 1..=state.version).collect();
        assert_eq!(versions, expected);
    }

    /// Flush epochs increase by one per flush, are capped, and invalid names are refused.
    #[test]
    fn flush_epochs_increase() {
        let mut state = ClusterState::default();
        assert_eq!(
            state.apply(flush(FlushScope::All)),
            CommandResponse::Flushed { epoch: 1 }
        );
        assert_eq!(
            state.apply(flush(FlushScope::Subtree("example.org.".to_owned()))),
            CommandResponse::Flushed { epoch: 2 }
        );
        assert_eq!(
            state.apply(flush(FlushScope::NameType(
                "www.example.org".to_owned(),
                28
            ))),
            CommandResponse::Flushed { epoch: 3 }
        );
        assert_eq!(state.version, 0, "a flush is not a config version");
        let before = state.clone();
        let r = state.apply(flush(FlushScope::Name("bad..name".to_owned())));
        let CommandResponse::Rejected(Rejection::Invalid(err)) = r else {
            panic!("expected a rejection, got {r:?}");
        };
        assert_eq!(err.key(), "scope");
        assert_eq!(state, before);

        match state.flushes_after(1) {
            FlushCatchUp::Flushes(f) => {
                assert_eq!(f.iter().map(|f| f.epoch).collect::<Vec<_>>(), vec![2, 3]);
            }
            FlushCatchUp::All => panic!("all flushes are still recorded"),
        }
        for _ in 0..FLUSH_EPOCHS_LEN {
            state.apply(flush(FlushScope::Type(1)));
        }
        assert_eq!(state.flush_epoch, FLUSH_EPOCHS_LEN as u64 + 3);
        assert_eq!(state.flush_epochs.len(), FLUSH_EPOCHS_LEN);
        assert_eq!(state.flushes_after(1), FlushCatchUp::All);
        assert_eq!(
            state.flushes_after(3),
            FlushCatchUp::Flushes(state.flush_epochs.iter().collect())
        );
        assert_eq!(
            state.flushes_after(state.flush_epoch),
            FlushCatchUp::Flushes(Vec::new())
        );
    }

    /// Two replicas applying the same commands end in the same state, byte for byte.
    #[test]
    fn apply_is_deterministic() {
        let commands = vec![
            set("upstreams", "192.0.2.1", None, 1),
            set("cache.max_ttl", "oops", None, 2),
            flush(FlushScope::All),
            set("gossip.fanout", "3", Some(1), 3),
            rollback(1),
        ];
        let mut a = ClusterState::default();
        let mut b = ClusterState::default();
        let ra: Vec<_> = commands.iter().cloned().map(|c| a.apply(c)).collect();
        let rb: Vec<_> = commands.into_iter().map(|c| b.apply(c)).collect();
        assert_eq!(ra, rb);
        assert_eq!(
            serde_json::to_vec(&a).expect("json"),
            serde_json::to_vec(&b).expect("json")
        );
    }

    /// A serialized state (settings, history, flushes) contains no secret-looking keys.
    #[test]
    fn serialized_state_has_no_secrets() {
        let mut state = ClusterState::default();
        state.apply(set("upstreams", "192.0.2.1", None, 1));
        state.apply(flush(FlushScope::All));
        let text = serde_json::to_string(&state).expect("json").to_lowercase();
        for word in ["token", "secret", "password", "key_file", "private"] {
            assert!(
                !text.contains(word),
                "serialized state mentions {word:?}: {text}"
            );
        }
        let back: ClusterState =
            serde_json::from_str(&serde_json::to_string(&state).expect("json"))
                .expect("round trip");
        assert_eq!(back, state);
    }
}
