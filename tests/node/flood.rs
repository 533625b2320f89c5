//! A flood of random names: the cache stays within its byte bound and the node's memory stops
//! growing once the cache is full.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use heimdall_tests::prom::scrape_parsed;
use heimdall_tests::{NodeOpts, build_query};
use hickory_proto::rr::RecordType;
use rand::Rng;

use crate::{Setup, zone};

/// The cache bound the flooded node runs with (1 MiB).
const MAX_BYTES: u64 = 1 << 20;

/// Queries kept in flight by the flooding client.
const WINDOW: usize = 64;

/// Sends `count` queries for random names under example.test (NXDOMAIN, negatively cached)
/// with [`WINDOW`] in flight; returns how many were answered. Bounded by `deadline`.
fn flood(addr: SocketAddr, count: usize, deadline: Instant) -> Result<usize> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(addr)?;
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut rng = rand::rng();
    let (mut sent, mut answered, mut in_flight, mut buf) = (0, 0, 0, [0u8; 4096]);
    while (sent < count || in_flight > 0) && Instant::now() < deadline {
        while sent < count && in_flight < WINDOW {
            let name = format!("r{:016x}.example.test.", rng.random::<u64>());
            let query = build_query(&name, RecordType::A, Some(1232), false)?.to_vec()?;
            socket.send(&query)?;
            sent += 1;
            in_flight += 1;
        }
        match socket.recv(&mut buf) {
            Ok(_) => {
                answered += 1;
                in_flight -= 1;
            }
            // Replies lost or late: stop waiting for them and keep the window moving.
            Err(_) => in_flight = 0,
        }
    }
    Ok(answered)
}

/// 24,000 random names through a node whose cache holds 1 MiB: the cache's bytes never exceed
/// the bound, and the node's resident memory grows little between the first 8,000 names (the
/// cache full) and the end. Prints the RSS and its peak.
#[test]
fn random_name_flood_stays_within_bounds() -> Result<()> {
    let setup = Setup::with(
        zone(),
        NodeOpts {
            config_toml: Some(format!("[cache]\nmax_bytes = {MAX_BYTES}\n")),
            ..NodeOpts::default()
        },
    )?;
    setup.run(|s| {
        let addr = s.node.dns_addr();
        let deadline = Instant::now() + Duration::from_secs(240);
        let cache_bytes = || -> Result<f64> {
            scrape_parsed(s.node.metrics_addr())?.value("heimdall_cache_bytes", &[])
        };
        let (start_rss, _) = s.node.rss_kib()?;
        let started = Instant::now();
        let first = flood(addr, 8_000, deadline)?;
        let (warm_rss, _) = s.node.rss_kib()?;
        let warm_bytes = cache_bytes()?;
        let second = flood(addr, 16_000, deadline)?;
        let (end_rss, peak_rss) = s.node.rss_kib()?;
        let end_bytes = cache_bytes()?;
        println!(
            "{} of 24000 random names answered in {:?}; cache {warm_bytes} then {end_bytes} \
             bytes (bound {MAX_BYTES}); RSS {start_rss} KiB at start, {warm_rss} KiB after \
             8000, {end_rss} KiB at the end, peak {peak_rss} KiB",
            first + second,
            started.elapsed()
        );
        ensure!(
            first + second >= 20_000,
            "the node answered only {} of 24000",
            first + second
        );
        ensure!(
            warm_bytes <= MAX_BYTES as f64 && end_bytes <= MAX_BYTES as f64,
            "the cache outgrew its bound: {warm_bytes} then {end_bytes} > {MAX_BYTES}"
        );
        ensure!(
            end_rss < warm_rss + 16 * 1024,
            "RSS kept growing with a full cache: {warm_rss} KiB -> {end_rss} KiB over 16000 names"
        );
        Ok(())
    })
}
