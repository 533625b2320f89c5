//! Runs each command against the fleet and prints its result.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::CommandFactory;
use heimdall_client::v1::CacheFlushRequest;
use heimdall_client::{Client, ServingStatus};
use serde::Serialize;

use crate::args::{
    CacheCommand, Cli, ClusterCommand, Command, ConfigCommand, Output, UpstreamCommand,
};
use crate::fleet::{Fleet, NodeResult};
use crate::format::{self, Table};
use crate::views::{
    ChangedView, ConfigView, EntryView, HistoryView, LeaderView, MembersView, StatsView,
    StatusView, UpstreamView, changed_text, config_text, entries_text, history_text, leader_text,
    members_text, stats_text, status_table, upstream_table,
};
use crate::{top, transfer};

/// Runs `command` (every command but `completions` talks to the fleet).
pub async fn run(command: Command, fleet: &Fleet) -> Result<()> {
    match command {
        Command::Status => status(fleet).await,
        Command::Stats { watch: false, .. } => stats(fleet).await,
        Command::Stats {
            watch: true,
            interval,
            count,
        } => watch_stats(fleet, interval, count).await,
        Command::Top {
            once: true,
            interval,
            names,
        } => top::once(fleet, interval, names).await,
        Command::Top {
            once: false,
            interval,
            names,
        } => top::live(fleet, interval, names).await,
        Command::Cache(cache) => run_cache(cache, fleet).await,
        Command::Config(config) => run_config(config, fleet).await,
        Command::Upstream(upstream) => run_upstream(upstream, fleet).await,
        Command::Cluster(cluster) => run_cluster(cluster, fleet).await,
        Command::Health { service } => health(fleet, &service).await,
        Command::Completions { shell } => {
            completions(shell);
            Ok(())
        }
    }
}

/// Writes the completion script for `shell` to stdout.
pub fn completions(shell: clap_complete::Shell) {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "heimdallctl", &mut std::io::stdout());
}

/// `status`: one row per node.
async fn status(fleet: &Fleet) -> Result<()> {
    let results = fleet
        .each(async |c: &Client| c.status().await.map(StatusView::from))
        .await;
    fleet.print_rows(&results, status_table)
}

/// `stats`: each node's counters.
async fn stats(fleet: &Fleet) -> Result<()> {
    let results = fleet
        .each(async |c: &Client| c.stats().await.map(StatsView::from))
        .await;
    fleet.print_each(&results, stats_text)
}

/// One line of `stats --watch`.
#[derive(Debug, Serialize)]
struct WatchLine<'a> {
    /// The endpoint.
    endpoint: &'a str,
    /// Queries per second since the node's previous snapshot (0 for its first).
    qps: f64,
    /// The snapshot.
    stats: &'a StatsView,
}

/// The columns of `stats --watch`.
const WATCH_HEADER: [&str; 8] = [
    "TIME", "NODE", "QPS", "QUERIES", "HIT%", "P50", "P99", "ENTRIES",
];

/// The widths of the `stats --watch` columns (lines are printed as snapshots arrive, so the
/// widths cannot come from the data; a wider cell just pushes its line).
const WATCH_WIDTHS: [usize; 8] = [20, 20, 9, 10, 6, 8, 8, 0];

/// One `stats --watch` line, padded to [`WATCH_WIDTHS`].
fn watch_row(cells: [String; 8]) -> String {
    let mut line = String::new();
    for (cell, width) in cells.iter().zip(WATCH_WIDTHS) {
        line.push_str(&format!("{cell:<width$}  "));
    }
    line.trim_end().to_owned()
}

/// `stats --watch`: a line per snapshot from every node until Ctrl-C or `count` from each.
async fn watch_stats(fleet: &Fleet, interval: Duration, count: Option<u64>) -> Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    for endpoint in &fleet.endpoints {
        let tx = tx.clone();
        let endpoint = heimdall_client::normalize_endpoint(endpoint);
        let client = fleet.connect(&endpoint).await;
        tokio::spawn(async move {
            let mut stream = match client {
                Ok(client) => match client.watch_stats(interval).await {
                    Ok(stream) => stream,
                    Err(e) => return drop(tx.send((endpoint, Err(e))).await),
                },
                Err(e) => return drop(tx.send((endpoint, Err(e))).await),
            };
            let mut seen = 0;
            while count.is_none_or(|n| seen < n) {
                let next = stream.next().await;
                let end = !matches!(next, Ok(Some(_)));
                if tx.send((endpoint.clone(), next)).await.is_err() || end {
                    return;
                }
                seen += 1;
            }
        });
    }
    drop(tx);
    let mut previous: std::collections::HashMap<String, (u64, u64)> = Default::default();
    let mut failed = None;
    if fleet.output == Output::Table {
        println!("{}", watch_row(WATCH_HEADER.map(str::to_owned)));
    }
    loop {
        let next = tokio::select! {
            next = rx.recv() => next,
            _ = tokio::signal::ctrl_c() => break,
        };
        let Some((endpoint, item)) = next else { break };
        let snapshot = match item {
            Ok(Some(snapshot)) => snapshot,
            Ok(None) => {
                failed = Some(anyhow::anyhow!(
                    "{endpoint}: the node ended the stats stream"
                ));
                continue;
            }
            Err(e) => {
                if let Some(earlier) = failed.replace(e.into()) {
                    eprintln!("heimdallctl: {earlier}");
                }
                continue;
            }
        };
        let view = StatsView::from(snapshot);
        let qps = match previous.insert(endpoint.clone(), (view.unix_ms, view.queries_total)) {
            Some((ms, queries)) if view.unix_ms > ms => {
                view.queries_total.saturating_sub(queries) as f64 * 1000.0
                    / (view.unix_ms - ms) as f64
            }
            _ => 0.0,
        };
        match fleet.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string(&WatchLine {
                    endpoint: &endpoint,
                    qps,
                    stats: &view,
                })?
            ),
            Output::Table => println!(
                "{}",
                watch_row([
                    format::unix_ms(view.unix_ms),
                    view.node_id.to_string(),
                    format::rate(qps),
                    view.queries_total.to_string(),
                    format::percent(view.cache.hit_ratio),
                    format::micros(view.latency.p50_us),
                    format::micros(view.latency.p99_us),
                    view.cache.entries.to_string(),
                ])
            ),
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `cache ...`.
async fn run_cache(command: CacheCommand, fleet: &Fleet) -> Result<()> {
    match command {
        CacheCommand::Lookup { name, rtype } => {
            let rtype = rtype.unwrap_or_default();
            let results = fleet
                .each(async |c: &Client| {
                    let reply = c.cache_lookup(&name, &rtype).await?;
                    Ok(reply
                        .entries
                        .into_iter()
                        .map(EntryView::from)
                        .collect::<Vec<_>>())
                })
                .await;
            fleet.print_each(&results, |entries| entries_text(entries))
        }
        CacheCommand::Flush {
            name,
            subtree,
            rtype,
            cluster,
        } => {
            let request = CacheFlushRequest {
                name: name.unwrap_or_default(),
                subtree,
                rtype: rtype.unwrap_or_default(),
                cluster,
            };
            let flush = async |c: &Client| {
                let reply = c.cache_flush(request.clone()).await?;
                Ok(FlushView {
                    removed: reply.removed,
                    epoch: cluster.then_some(reply.epoch),
                })
            };
            if cluster {
                let view = fleet.first(flush).await?;
                fleet.print_one(&view, flush_text)
            } else {
                let results = fleet.each(flush).await;
                fleet.print_rows(&results, |rows| {
                    let mut table = Table::new(&["ENDPOINT", "REMOVED"]);
                    for (endpoint, view) in rows {
                        table.row(vec![(*endpoint).to_owned(), view.removed.to_string()]);
                    }
                    table.render()
                })
            }
        }
        CacheCommand::Dump { file } => {
            let endpoint = fleet.single("cache dump")?;
            let client = fleet.connect(endpoint).await?;
            let view = transfer::dump(&client, &file).await?;
            fleet.print_one(&view, |v| {
                format!(
                    "dumped {} entries from {} to {}\n",
                    v.entries,
                    client.endpoint(),
                    v.file.display()
                )
            })
        }
        CacheCommand::Load { file } => {
            let total = transfer::validate(&file)?;
            let mut results = Vec::new();
            for endpoint in &fleet.endpoints {
                let result = match fleet.connect(endpoint).await {
                    Ok(client) => transfer::load(&client, &file, total).await,
                    Err(e) => Err(e.into()),
                };
                results.push(NodeResult {
                    endpoint: heimdall_client::normalize_endpoint(endpoint),
                    result,
                });
            }
            fleet.print_rows(&results, |rows| {
                let mut table = Table::new(&["ENDPOINT", "LOADED", "SKIPPED"]);
                for (endpoint, view) in rows {
                    table.row(vec![
                        (*endpoint).to_owned(),
                        view.loaded.to_string(),
                        view.skipped.to_string(),
                    ]);
                }
                table.render()
            })
        }
    }
}

/// The outcome of a flush.
#[derive(Debug, Serialize)]
struct FlushView {
    /// Entries removed on the answering node.
    removed: u64,
    /// For a cluster flush: the flush epoch it was committed as.
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<u64>,
}

/// `flushed cluster-wide as epoch N (M entries removed here)`.
fn flush_text(v: &FlushView) -> String {
    format!(
        "flushed cluster-wide as epoch {} ({} entries removed on the answering node)\n",
        format::opt(v.epoch),
        v.removed
    )
}

/// `config ...`: cluster-wide, on the first endpoint that answers.
async fn run_config(command: ConfigCommand, fleet: &Fleet) -> Result<()> {
    match command {
        ConfigCommand::Get { key, local } => {
            let key = key.unwrap_or_default();
            fleet
                .one(
                    async |c: &Client| c.config_get(&key, local).await.map(ConfigView::from),
                    config_text,
                )
                .await
        }
        ConfigCommand::Set {
            key,
            value,
            expect_version,
        } => {
            fleet
                .one(
                    async |c: &Client| {
                        c.config_set(&key, &value, expect_version)
                            .await
                            .map(ChangedView::from)
                    },
                    changed_text,
                )
                .await
        }
        ConfigCommand::History { limit } => {
            fleet
                .one(
                    async |c: &Client| {
                        let reply = c.config_history(limit).await?;
                        Ok(reply
                            .entries
                            .into_iter()
                            .map(HistoryView::from)
                            .collect::<Vec<_>>())
                    },
                    |v: &Vec<HistoryView>| history_text(v),
                )
                .await
        }
        ConfigCommand::Rollback {
            target,
            expect_version,
        } => {
            fleet
                .one(
                    async |c: &Client| {
                        c.config_rollback(target, expect_version)
                            .await
                            .map(ChangedView::from)
                    },
                    changed_text,
                )
                .await
        }
    }
}

/// `upstream ...`: list on each node, changes cluster-wide.
async fn run_upstream(command: UpstreamCommand, fleet: &Fleet) -> Result<()> {
    match command {
        UpstreamCommand::List => {
            let results = fleet
                .each(async |c: &Client| {
                    let reply = c.upstream_list().await?;
                    Ok(reply
                        .upstreams
                        .into_iter()
                        .map(UpstreamView::from)
                        .collect::<Vec<_>>())
                })
                .await;
            fleet.print_each(&results, |list| upstream_table(list))
        }
        UpstreamCommand::Add {
            addr,
            expect_version,
        } => {
            fleet
                .one(
                    async |c: &Client| {
                        c.upstream_add(&addr, expect_version)
                            .await
                            .map(ChangedView::from)
                    },
                    changed_text,
                )
                .await
        }
        UpstreamCommand::Remove {
            addr,
            expect_version,
        } => {
            fleet
                .one(
                    async |c: &Client| {
                        c.upstream_remove(&addr, expect_version)
                            .await
                            .map(ChangedView::from)
                    },
                    changed_text,
                )
                .await
        }
    }
}

/// `cluster ...`: on the first endpoint that answers.
async fn run_cluster(command: ClusterCommand, fleet: &Fleet) -> Result<()> {
    match command {
        ClusterCommand::Members => {
            fleet
                .one(
                    async |c: &Client| c.cluster_members().await.map(MembersView::from),
                    members_text,
                )
                .await
        }
        ClusterCommand::Leader => {
            fleet
                .one(
                    async |c: &Client| c.cluster_leader().await.map(LeaderView::from),
                    leader_text,
                )
                .await
        }
        ClusterCommand::AddNode { id, addr } => {
            fleet
                .one(
                    async |c: &Client| c.cluster_add_node(id, &addr).await.map(MembersView::from),
                    members_text,
                )
                .await
        }
        ClusterCommand::RemoveNode { id } => {
            fleet
                .one(
                    async |c: &Client| c.cluster_remove_node(id).await.map(MembersView::from),
                    members_text,
                )
                .await
        }
    }
}

/// One node's health.
#[derive(Debug, Serialize)]
struct HealthView {
    /// `SERVING`, `NOT_SERVING`, `UNKNOWN` or `SERVICE_UNKNOWN`.
    status: &'static str,
}

/// `health`: a row per node; an error unless every node serves.
async fn health(fleet: &Fleet, service: &str) -> Result<()> {
    let results = fleet
        .each(async |c: &Client| {
            Ok(HealthView {
                status: c.health(service).await?.as_str_name(),
            })
        })
        .await;
    fleet.print_rows(&results, |rows| {
        let mut table = Table::new(&["ENDPOINT", "STATUS"]);
        for (endpoint, view) in rows {
            table.row(vec![(*endpoint).to_owned(), view.status.to_owned()]);
        }
        table.render()
    })?;
    let serving = ServingStatus::Serving.as_str_name();
    let mut not_serving = results
        .iter()
        .filter_map(|n| n.result.as_ref().ok().map(|v| (n, v.status)))
        .filter(|(_, status)| *status != serving)
        .map(|(n, status)| format!("{}: not serving ({status})", n.endpoint))
        .collect::<Vec<_>>();
    match not_serving.pop() {
        None => Ok(()),
        Some(last) => {
            for line in not_serving {
                eprintln!("heimdallctl: {line}");
            }
            bail!("{last}")
        }
    }
}
