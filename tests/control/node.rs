//! One node's control plane: status, cache lookup/flush/dump/load, configuration, upstreams,
//! authentication, health and reflection.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use heimdall_proto::v1::{
    CacheDumpRequest, CacheEntry, CacheFlushRequest, ConfigGetRequest, ConfigHistoryRequest,
    ConfigRollbackRequest, ConfigSetRequest, EntrySource, StatsRequest, StatusReply, StatusRequest,
    UpstreamChangeRequest, UpstreamListRequest, WatchStatsRequest,
};
use heimdall_tests::control::{Control, authed, with_token};
use heimdall_tests::node::TEST_ADMIN_TOKEN;
use heimdall_tests::{NodeOpts, dead_addr, wait_for, wait_until};
use hickory_proto::rr::RecordType;
use tonic::Code;
use tonic::codegen::tokio_stream::StreamExt;

use crate::{Setup, lookup};

/// Deadline for a change to show.
const DEADLINE: Duration = Duration::from_secs(20);

/// The node's status once its one-node cluster has elected itself (the node answers DNS
/// before that election finishes, so a status read right after start may show a Learner).
fn leading_status(s: &Setup) -> Result<StatusReply> {
    let (status, took) = wait_for(DEADLINE, "the one-node cluster to lead itself", || {
        s.ctl
            .call(|mut c| async move { c.status(authed(StatusRequest {})).await })
            .ok()
            .filter(|status| status.role == "Leader")
    })?;
    println!("node led itself after {took:?}");
    Ok(status)
}

/// Status names the node, its listeners, role and cache size.
#[test]
fn status_describes_the_node() -> Result<()> {
    let s = Setup::start()?;
    s.run(|s| {
        s.query("www.example.test", RecordType::A)?;
        let status = leading_status(s)?;
        println!("status: {status:?}");
        ensure!(status.node_id > 0, "no node id: {status:?}");
        ensure!(
            status.dns_addr == s.node.dns_addr().to_string(),
            "{status:?}"
        );
        ensure!(
            status.grpc_addr == s.node.grpc_addr().to_string(),
            "{status:?}"
        );
        ensure!(
            status.role == "Leader",
            "a one-node cluster leads itself: {status:?}"
        );
        ensure!(status.leader_id == Some(status.node_id), "{status:?}");
        ensure!(
            status.cache_entries >= 1 && status.cache_bytes > 0,
            "{status:?}"
        );
        ensure!(status.workers == 1, "{status:?}");
        ensure!(
            ["epoll", "uring"].contains(&status.io_backend.as_str()),
            "{status:?}"
        );
        Ok(())
    })
}

/// GetStats carries the node id and Raft position; WatchStats streams a snapshot per
/// interval until the client stops reading.
#[test]
fn stats_snapshot_and_watch() -> Result<()> {
    let s = Setup::start()?;
    s.run(|s| {
        let status = leading_status(s)?;
        // A new leader applies its first entry a moment after it is elected.
        let (stats, _) = wait_for(
            DEADLINE,
            "Stats showing a term and an applied entry",
            || {
                s.ctl
                    .call(|mut c| async move { c.get_stats(authed(StatsRequest {})).await })
                    .ok()
                    .filter(|stats| stats.raft_term > 0 && stats.raft_last_applied > 0)
            },
        )?;
        ensure!(stats.node_id == status.node_id, "{stats:?}");
        let request = WatchStatsRequest { interval_ms: 1 };
        let stream = s
            .ctl
            .call(|mut c| async move { c.watch_stats(authed(request)).await })?;
        let started = std::time::Instant::now();
        let stamps = s.ctl.block_on(async move {
            let mut stream = stream;
            let mut stamps = Vec::new();
            while stamps.len() < 3 {
                let snapshot = stream.next().await.context("the watch ended")??;
                stamps.push(snapshot.unix_ms);
            }
            anyhow::Ok(stamps)
        })?;
        println!("3 watched snapshots in {:?}: {stamps:?}", started.elapsed());
        ensure!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
        Ok(())
    })
}

/// A flush request.
fn flush(ctl: &Control, name: &str, rtype: &str, subtree: bool) -> Result<u64> {
    let request = CacheFlushRequest {
        name: name.to_owned(),
        subtree,
        rtype: rtype.to_owned(),
        cluster: false,
    };
    Ok(ctl
        .call(|mut c| async move { c.cache_flush(authed(request)).await })?
        .removed)
}

/// Queries every name of the zone (A, and MX at the apex) so each is cached.
fn fill(s: &Setup) -> Result<()> {
    for name in NAMES {
        s.query(name, RecordType::A)?;
    }
    s.query("example.test", RecordType::MX)?;
    Ok(())
}

/// The names [`fill`] caches with type A.
const NAMES: [&str; 6] = [
    "example.test",
    "www.example.test",
    "sub.example.test",
    "a.sub.example.test",
    "b.sub.example.test",
    "xsub.example.test",
];

/// Queries `name`/`rtype` and says whether the node asked the upstream for it.
fn refetched(s: &Setup, name: &str, rtype: RecordType) -> Result<bool> {
    let before = s.auth.count(name, rtype);
    s.query(name, rtype)?;
    Ok(s.auth.count(name, rtype) == before + 1)
}

/// Whether the cache holds `name`/`rtype`, per the control plane.
fn cached(s: &Setup, name: &str, rtype: &str) -> Result<bool> {
    Ok(!lookup(&s.ctl, name, rtype)?.is_empty())
}

/// Lookup shows what is cached (rcode, TTLs, source, records); flushes by name, subtree and
/// type remove exactly what they cover, and a flushed name goes upstream again.
#[test]
fn lookup_and_flush_by_name_subtree_and_type() -> Result<()> {
    let s = Setup::start()?;
    s.run(|s| {
        ensure!(
            lookup(&s.ctl, "www.example.test", "A")?.is_empty(),
            "cached before any query"
        );
        fill(s)?;
        let entries = lookup(&s.ctl, "WWW.Example.Test.", "")?;
        println!("lookup: {entries:?}");
        let [entry] = entries.as_slice() else {
            bail!("want one entry for www A, got {entries:?}");
        };
        ensure!(
            entry.name == "www.example.test." && entry.rtype == "A",
            "{entry:?}"
        );
        ensure!(entry.rcode == "NOERROR" && !entry.stale, "{entry:?}");
        ensure!(
            entry.ttl_original == 300 && (1..=300).contains(&entry.ttl_remaining),
            "{entry:?}"
        );
        ensure!(entry.source == EntrySource::Upstream as i32, "{entry:?}");
        ensure!(
            entry
                .records
                .iter()
                .any(|r| r.starts_with("www.example.test. ") && r.ends_with(" IN A 192.0.2.1")),
            "{entry:?}"
        );

        // By name: www (every type) goes, the rest stays.
        ensure!(
            flush(&s.ctl, "www.example.test", "", false)? == 1,
            "name flush count"
        );
        ensure!(!cached(s, "www.example.test", "A")?, "www still cached");
        ensure!(
            cached(s, "sub.example.test", "A")?,
            "sub flushed by a name flush"
        );
        ensure!(
            refetched(s, "www.example.test", RecordType::A)?,
            "a flushed name was not asked upstream again"
        );

        // By subtree: sub and below go, xsub (not below) and the apex stay.
        ensure!(
            flush(&s.ctl, "sub.example.test", "", true)? == 3,
            "subtree flush count"
        );
        for name in [
            "sub.example.test",
            "a.sub.example.test",
            "b.sub.example.test",
        ] {
            ensure!(
                !cached(s, name, "A")?,
                "{name} still cached after the subtree flush"
            );
        }
        for name in ["xsub.example.test", "example.test", "www.example.test"] {
            ensure!(cached(s, name, "A")?, "{name} flushed by the subtree flush");
        }

        // By type: the MX goes, the apex A stays.
        ensure!(cached(s, "example.test", "MX")?, "MX not cached");
        ensure!(flush(&s.ctl, "", "MX", false)? == 1, "type flush count");
        ensure!(!cached(s, "example.test", "MX")?, "MX still cached");
        ensure!(
            cached(s, "example.test", "A")?,
            "apex A flushed by the MX flush"
        );
        ensure!(
            refetched(s, "example.test", RecordType::MX)?,
            "MX not refetched"
        );

        // Name and type, then everything.
        ensure!(
            flush(&s.ctl, "example.test", "MX", false)? == 1,
            "name+type count"
        );
        ensure!(
            cached(s, "example.test", "A")?,
            "apex A flushed by a name+type flush"
        );
        let left = flush(&s.ctl, "", "", false)?;
        ensure!(
            left == 3,
            "flush all removed {left}, want apex, www and xsub"
        );
        ensure!(
            !cached(s, "example.test", "A")?,
            "cache not empty after flush all"
        );

        let bad = CacheFlushRequest {
            rtype: "NOSUCHTYPE".to_owned(),
            ..CacheFlushRequest::default()
        };
        let err = s
            .ctl
            .call(|mut c| async move { c.cache_flush(authed(bad)).await })
            .expect_err("an unknown type is refused");
        ensure!(
            err.code() == Code::InvalidArgument && err.message().contains("rtype"),
            "{err:?}"
        );
        Ok(())
    })
}

/// Every entry a dump streams.
fn dump(ctl: &Control) -> Result<Vec<CacheEntry>> {
    let stream =
        ctl.call(|mut c| async move { c.cache_dump(authed(CacheDumpRequest {})).await })?;
    ctl.block_on(async move {
        let mut stream = stream;
        let mut out = Vec::new();
        while let Some(entry) = stream.next().await {
            out.push(entry?);
        }
        Ok(out)
    })
}

/// A dump loaded into a fresh node restores the entries with their remaining TTLs: the
/// fresh node answers from its cache without asking the upstream, with TTLs no higher than
/// they were at dump time; expired and malformed entries are skipped.
#[test]
fn dump_then_load_into_a_fresh_node() -> Result<()> {
    let s = Setup::start()?;
    let fresh = Setup::start()?;
    s.run(|s| {
        fill(s)?;
        let entries = dump(&s.ctl)?;
        println!("dumped {} entries", entries.len());
        ensure!(entries.len() == NAMES.len() + 1, "dumped {entries:?}");
        let www = entries
            .iter()
            .find(|e| e.name == "www.example.test." && e.rtype == "A")
            .context("www A not in the dump")?;
        ensure!(
            www.ttl_remaining_ms <= 300_000 && www.ttl_remaining_ms > 200_000,
            "{www:?}"
        );
        ensure!(www.source == EntrySource::Upstream as i32, "{www:?}");

        let mut load = entries.clone();
        load.push(CacheEntry {
            ttl_remaining_ms: 0,
            ..www.clone()
        });
        load.push(CacheEntry {
            message: vec![1, 2, 3],
            ..www.clone()
        });
        let mut mismatched = www.clone();
        mismatched.key[1] ^= 0x20;
        mismatched.key[2] = b'z';
        load.push(mismatched);
        let stream = tonic::codegen::tokio_stream::iter(load);
        let reply = fresh
            .ctl
            .call(|mut c| async move { c.cache_load(authed(stream)).await })?;
        println!("load: {reply:?}");
        ensure!(
            reply.loaded == entries.len() as u64 && reply.skipped == 3,
            "{reply:?}"
        );

        let before = fresh.auth.queries();
        let answer = fresh.query("www.example.test", RecordType::A)?;
        ensure!(
            fresh.auth.queries() == before,
            "the loaded entry was not served from cache"
        );
        let ttl = answer.answers.first().context("no answer")?.ttl;
        ensure!(
            u64::from(ttl) * 1000 <= www.ttl_remaining_ms + 999,
            "TTL {ttl} above the {} ms left at dump time",
            www.ttl_remaining_ms
        );
        let loaded = crate::lookup(&fresh.ctl, "www.example.test", "A")?;
        ensure!(
            loaded
                .first()
                .is_some_and(|e| e.source == EntrySource::Loaded as i32),
            "{loaded:?}"
        );
        Ok(())
    })
}

/// Config get/set/history/rollback; a stale expected version is refused and an invalid
/// value names the field.
#[test]
fn config_set_get_history_rollback() -> Result<()> {
    let s = Setup::start()?;
    s.run(|s| {
        let ctl = &s.ctl;
        let get = |key: &str| {
            let request = ConfigGetRequest {
                key: key.to_owned(),
                local: false,
            };
            ctl.call(|mut c| async move { c.config_get(authed(request)).await })
        };
        ctl.wait_seeded(DEADLINE)?;
        let whole = get("")?;
        ensure!(
            whole.values.iter().any(|v| v.key == "cache.max_ttl"),
            "{whole:?}"
        );
        let section = get("cache")?;
        ensure!(
            section.values.iter().all(|v| v.key.starts_with("cache.")),
            "{section:?}"
        );
        let version = whole.version;

        let set = |key: &str, value: &str, expect: Option<u64>| {
            let request = ConfigSetRequest {
                key: key.to_owned(),
                value: value.to_owned(),
                expect_version: expect,
            };
            ctl.call(|mut c| async move { c.config_set(authed(request)).await })
        };
        let changed = set("cache.max_ttl", "1234", Some(version))?;
        ensure!(changed.version == version + 1, "{changed:?}");
        ensure!(
            changed.changes.len() == 1
                && changed.changes[0].key == "cache.max_ttl"
                && changed.changes[0].new_json == "1234",
            "{changed:?}"
        );
        let one = get("cache.max_ttl")?;
        ensure!(
            one.value_json == "1234" && one.version == version + 1,
            "{one:?}"
        );

        let stale = set("cache.max_ttl", "99", Some(version)).expect_err("stale version");
        ensure!(stale.code() == Code::FailedPrecondition, "{stale:?}");
        let invalid = set("cache.max_ttl", "abc", None).expect_err("invalid value");
        ensure!(
            invalid.code() == Code::InvalidArgument && invalid.message().contains("cache.max_ttl"),
            "{invalid:?}"
        );
        let unknown = set("cache.nonsense", "1", None).expect_err("unknown key");
        ensure!(unknown.code() == Code::InvalidArgument, "{unknown:?}");
        ensure!(
            get("cache.max_ttl")?.value_json == "1234",
            "a refused change took effect"
        );

        let history = ctl.call(|mut c| async move {
            c.config_history(authed(ConfigHistoryRequest { limit: 0 }))
                .await
        })?;
        let last = history.entries.last().context("empty history")?;
        ensure!(
            last.version == version + 1
                && last.kind == "set"
                && last.actor == "tester@heimdall-tests",
            "{last:?}"
        );

        let rollback = ConfigRollbackRequest {
            version,
            expect_version: Some(version + 1),
        };
        let rolled = ctl.call(|mut c| async move { c.config_rollback(authed(rollback)).await })?;
        ensure!(rolled.version == version + 2, "{rolled:?}");
        ensure!(
            get("cache.max_ttl")?.value_json
                == whole
                    .values
                    .iter()
                    .find(|v| v.key == "cache.max_ttl")
                    .map(|v| v.value_json.clone())
                    .unwrap_or_default(),
            "rollback did not restore max_ttl"
        );
        let stale = ConfigRollbackRequest {
            version,
            expect_version: Some(version),
        };
        let err = ctl
            .call(|mut c| async move { c.config_rollback(authed(stale)).await })
            .expect_err("stale rollback");
        ensure!(err.code() == Code::FailedPrecondition, "{err:?}");
        Ok(())
    })
}

/// Without the token, or with a wrong one, mutating calls are UNAUTHENTICATED and change
/// nothing; reads stay open by default.
#[test]
fn wrong_or_missing_token_is_refused() -> Result<()> {
    let s = Setup::start()?;
    s.run(|s| {
        s.query("www.example.test", RecordType::A)?;
        for token in [None, Some("not-the-token"), Some("")] {
            let request = CacheFlushRequest::default();
            let err = s
                .ctl
                .call(|mut c| async move { c.cache_flush(with_token(request, token)).await })
                .expect_err("flush without the token");
            ensure!(err.code() == Code::Unauthenticated, "{token:?}: {err:?}");
            let request = ConfigSetRequest {
                key: "cache.max_ttl".to_owned(),
                value: "77".to_owned(),
                expect_version: None,
            };
            let err = s
                .ctl
                .call(|mut c| async move { c.config_set(with_token(request, token)).await })
                .expect_err("set without the token");
            ensure!(err.code() == Code::Unauthenticated, "{token:?}: {err:?}");
        }
        ensure!(crate::node_cached(s)?, "a refused flush removed entries");
        let get = ConfigGetRequest {
            key: "cache.max_ttl".to_owned(),
            local: true,
        };
        let value = s
            .ctl
            .call(|mut c| async move { c.config_get(with_token(get, None)).await })?;
        ensure!(
            value.value_json != "77",
            "a refused set took effect: {value:?}"
        );
        Ok(())
    })?;

    // A node that requires the token for reads refuses an anonymous status.
    let closed = Setup::with(NodeOpts {
        env: vec![(
            "HEIMDALL_ADMIN__REQUIRE_TOKEN_FOR_READS".to_owned(),
            "true".to_owned(),
        )],
        ..NodeOpts::default()
    })?;
    closed.run(|c| {
        let err = c
            .ctl
            .call(|mut cl| async move { cl.status(with_token(StatusRequest {}, None)).await })
            .expect_err("anonymous read");
        ensure!(err.code() == Code::Unauthenticated, "{err:?}");
        c.ctl.call(|mut cl| async move {
            cl.status(with_token(StatusRequest {}, Some(TEST_ADMIN_TOKEN)))
                .await
        })?;
        Ok(())
    })
}

/// UpstreamAdd and UpstreamRemove change the cluster's upstream list, which the forwarder
/// applies live (UpstreamList shows it); adding twice or removing an unknown one is refused.
#[test]
fn upstream_add_and_remove() -> Result<()> {
    let s = Setup::start()?;
    s.run(|s| {
        let ctl = &s.ctl;
        let list = || {
            ctl.call(|mut c| async move { c.upstream_list(authed(UpstreamListRequest {})).await })
                .map(|r| r.upstreams.into_iter().map(|u| u.addr).collect::<Vec<_>>())
        };
        let first = list()?;
        ensure!(
            first.first() == Some(&s.auth.addr().to_string()),
            "{first:?}"
        );
        let extra = dead_addr(53)?.to_string();
        let change = |add: bool| {
            let request = UpstreamChangeRequest {
                addr: extra.clone(),
                expect_version: None,
            };
            ctl.call(|mut c| async move {
                if add {
                    c.upstream_add(authed(request)).await
                } else {
                    c.upstream_remove(authed(request)).await
                }
            })
        };
        ctl.wait_seeded(DEADLINE)?;
        let added = change(true)?;
        ensure!(
            added.changes.iter().any(|c| c.key == "upstreams"),
            "{added:?}"
        );
        wait_until(DEADLINE, "the added upstream applied", || {
            list().is_ok_and(|l| l.contains(&extra))
        })?;
        let again = change(true).expect_err("added twice");
        ensure!(again.code() == Code::AlreadyExists, "{again:?}");
        change(false)?;
        wait_until(DEADLINE, "the removed upstream gone", || {
            list().is_ok_and(|l| !l.contains(&extra) && l.len() == first.len())
        })?;
        let missing = change(false).expect_err("removed twice");
        ensure!(missing.code() == Code::NotFound, "{missing:?}");
        Ok(())
    })
}

/// grpc.health.v1 reports SERVING for the node and for heimdall.v1.Control.
#[test]
fn health_check_serves() -> Result<()> {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let s = Setup::start()?;
    s.run(|s| {
        for service in ["", "heimdall.v1.Control"] {
            let mut client = HealthClient::new(s.ctl.channel());
            let reply = s.ctl.block_on(client.check(HealthCheckRequest {
                service: service.to_owned(),
            }))?;
            ensure!(
                reply.get_ref().status == ServingStatus::Serving as i32,
                "{service:?}: {reply:?}"
            );
        }
        Ok(())
    })
}

/// Server reflection (v1 and v1alpha) lists heimdall.v1.Control, as `grpcurl list` shows.
#[test]
fn reflection_lists_the_control_service() -> Result<()> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let s = Setup::start()?;
    s.run(|s| {
        let mut client = ServerReflectionClient::new(s.ctl.channel());
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let names = s.ctl.block_on(async move {
            let mut stream = client
                .server_reflection_info(tonic::codegen::tokio_stream::iter(vec![request]))
                .await?
                .into_inner();
            let mut names = Vec::new();
            while let Some(reply) = stream.next().await {
                if let Some(MessageResponse::ListServicesResponse(list)) = reply?.message_response {
                    names.extend(list.service.into_iter().map(|s| s.name));
                }
            }
            anyhow::Ok(names)
        })?;
        println!("reflection lists: {names:?}");
        for want in ["heimdall.v1.Control", "grpc.health.v1.Health"] {
            ensure!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
        Ok(())
    })
}

/// A node without a cluster secret refuses to add members, saying why.
#[test]
fn add_node_needs_a_cluster_secret() -> Result<()> {
    use heimdall_proto::v1::ClusterAddNodeRequest;
    let s = Setup::start()?;
    s.run(|s| {
        let request = ClusterAddNodeRequest {
            id: 77,
            grpc_addr: "127.0.0.1:1".to_owned(),
        };
        let err = s
            .ctl
            .call(|mut c| async move { c.cluster_add_node(authed(request)).await })
            .expect_err("no secret");
        ensure!(
            err.code() == Code::FailedPrecondition && err.message().contains("cluster secret"),
            "{err:?}"
        );
        Ok(())
    })
}
