//! Soak test: one real `heimdall` node forwarding to an in-process authoritative server, fed a
//! mix of cache hits, misses, NXDOMAIN and malformed packets for a bounded time; reports
//! answers, errors, RSS at start and end and whether the node is still healthy.
//!
//! Not part of `cargo test`: run `tests/soak.sh [SECONDS]` (release build; 300 s by default).
//! Set `HEIMDALL_BIN` to the node binary to test (soak.sh does).

use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use heimdall_tests::prom::scrape_parsed;
use heimdall_tests::{AuthServer, Node, NodeOpts, Zone, build_query, query_udp};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, RecordType};
use rand::Rng;

/// Names answered from the cache after their first query (TTL 3600).
const HOT_NAMES: u32 = 100;
/// Names with a 1 s TTL: asked again after it expired, each is a cache miss.
const MISS_NAMES: u32 = 2000;
/// Queries in flight at once.
const WINDOW: usize = 32;
/// A query unanswered for this long is counted as lost.
const LOST_AFTER: Duration = Duration::from_secs(2);
/// How often a progress line is printed.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// What a query was, to judge its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    /// A name cached after its first query.
    Hit,
    /// A name with a 1 s TTL (a miss once expired).
    Miss,
    /// A random name that does not exist.
    NxDomain,
    /// A malformed message with a parsable header: FORMERR or no answer are both fine.
    Malformed,
}

/// Counters of the run.
#[derive(Debug, Default)]
struct Tally {
    /// Messages sent, by kind.
    sent: HashMap<Kind, u64>,
    /// Answers as expected, by kind.
    answered: HashMap<Kind, u64>,
    /// Valid queries answered with an unexpected rcode or no records.
    wrong: u64,
    /// Valid queries not answered within [`LOST_AFTER`].
    lost: u64,
    /// Malformed messages without an answer (dropping them is allowed).
    dropped: u64,
}

impl Tally {
    /// Errors: wrong answers and lost valid queries.
    fn errors(&self) -> u64 {
        self.wrong + self.lost
    }

    /// Answers of every kind.
    fn answered_total(&self) -> u64 {
        self.answered.values().sum()
    }
}

/// The zone served upstream: hot names, short-TTL names, and apex records.
fn zone() -> Zone {
    let mut zone = Zone::new("soak.test.").soa(3600, 60);
    for i in 0..HOT_NAMES {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        zone = zone.add(&format!("hot{i}"), 3600, RData::A(A(ip)));
    }
    for i in 0..MISS_NAMES {
        let ip = std::net::Ipv4Addr::from(0x0b00_0000 + i);
        zone = zone.add(&format!("miss{i}"), 1, RData::A(A(ip)));
    }
    zone
}

/// One message of the mix (60 % hits, 20 % misses, 15 % NXDOMAIN, 5 % malformed) with `id`.
fn next_message(rng: &mut impl Rng, id: u16) -> Result<(Kind, Vec<u8>)> {
    let roll = rng.random_range(0..100);
    let (kind, name) = match roll {
        0..60 => (
            Kind::Hit,
            format!("hot{}.soak.test.", rng.random_range(0..HOT_NAMES)),
        ),
        60..80 => (
            Kind::Miss,
            format!("miss{}.soak.test.", rng.random_range(0..MISS_NAMES)),
        ),
        80..95 => (
            Kind::NxDomain,
            format!("nx{:016x}.soak.test.", rng.random::<u64>()),
        ),
        _ => return Ok((Kind::Malformed, malformed(rng, id))),
    };
    let mut query = build_query(&name, RecordType::A, Some(1232), false)?;
    query.metadata.id = id;
    Ok((kind, query.to_vec()?))
}

/// A malformed query with a parsable header carrying `id`: truncated name, label past the
/// end, a compression loop, QDCOUNT 2 with one question, or trailing garbage.
fn malformed(rng: &mut impl Rng, id: u16) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    out.extend_from_slice(&[0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]);
    match rng.random_range(0..5) {
        0 => out.extend_from_slice(b"\x07exam"),
        1 => out.extend_from_slice(b"\x3fshort\x00\x00\x01\x00\x01"),
        2 => out.extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01"),
        3 => {
            out[5] = 2;
            out.extend_from_slice(b"\x03www\x04soak\x04test\x00\x00\x01\x00\x01");
        }
        _ => {
            out.extend_from_slice(b"\x03www\x04soak\x04test\x00\x00\x01\x00\x01");
            let junk: [u8; 16] = rng.random();
            out.extend_from_slice(&junk);
        }
    }
    out
}

/// Judges one answer to a message of `kind`; true when it is as expected.
fn judge(kind: Kind, reply: &[u8]) -> bool {
    let Ok(msg) = Message::from_vec(reply) else {
        return false;
    };
    let code = msg.response_code;
    match kind {
        Kind::Hit | Kind::Miss => code == ResponseCode::NoError && !msg.answers.is_empty(),
        Kind::NxDomain => code == ResponseCode::NXDomain,
        Kind::Malformed => code == ResponseCode::FormErr,
    }
}

/// Runs the mix against `node` for `duration`, printing progress with its RSS.
fn run(node: &Node, duration: Duration) -> Result<Tally> {
    let dns = node.dns_addr();
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(dns)?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut rng = rand::rng();
    let mut tally = Tally::default();
    let mut in_flight: HashMap<u16, (Kind, Instant)> = HashMap::new();
    let (started, mut next_report, mut next_id) = (Instant::now(), REPORT_EVERY, 0u16);
    let mut buf = vec![0u8; 65_535];
    let mut last_answered = 0;
    while started.elapsed() < duration || !in_flight.is_empty() {
        let sending = started.elapsed() < duration;
        while sending && in_flight.len() < WINDOW {
            next_id = next_id.wrapping_add(1);
            if in_flight.contains_key(&next_id) {
                break;
            }
            let (kind, bytes) = next_message(&mut rng, next_id)?;
            socket.send(&bytes)?;
            *tally.sent.entry(kind).or_default() += 1;
            in_flight.insert(next_id, (kind, Instant::now()));
        }
        if let Ok(n) = socket.recv(&mut buf)
            && let Some(reply) = buf.get(..n)
            && let [hi, lo, ..] = *reply
            && let Some((kind, _)) = in_flight.remove(&u16::from_be_bytes([hi, lo]))
        {
            if judge(kind, reply) {
                *tally.answered.entry(kind).or_default() += 1;
            } else if kind != Kind::Malformed {
                tally.wrong += 1;
                eprintln!("unexpected answer to a {kind:?} query: {reply:02x?}");
            } else {
                tally.dropped += 1;
            }
        }
        let now = Instant::now();
        in_flight.retain(|_, (kind, sent)| {
            let keep = now.duration_since(*sent) < LOST_AFTER;
            if !keep {
                match kind {
                    Kind::Malformed => tally.dropped += 1,
                    _ => tally.lost += 1,
                }
            }
            keep
        });
        if started.elapsed() >= next_report {
            let answered = tally.answered_total();
            let (rss, peak) = node.rss_kib()?;
            println!(
                "{:>4} s: {answered} answered ({} /s), {} errors, RSS {rss} KiB (peak {peak} KiB)",
                next_report.as_secs(),
                (answered - last_answered) / REPORT_EVERY.as_secs(),
                tally.errors()
            );
            last_answered = answered;
            next_report += REPORT_EVERY;
        }
        if started.elapsed() > duration + LOST_AFTER * 2 {
            break;
        }
    }
    Ok(tally)
}

fn main() -> Result<()> {
    let seconds: u64 = match std::env::args().nth(1) {
        Some(s) => s
            .parse()
            .with_context(|| format!("SECONDS: not a number: {s}"))?,
        None => 300,
    };
    if std::env::var_os("HEIMDALL_BIN").is_none() {
        bail!("set HEIMDALL_BIN to the heimdall binary (tests/soak.sh does)");
    }
    let auth = AuthServer::start(zone())?;
    let node = Node::start(NodeOpts::upstreams(&[auth.addr()]))?;
    let pid = node.pid();
    let (start_rss, start_peak) = node.rss_kib()?;
    println!(
        "soak: {seconds} s against node pid {pid} at {} (upstream {}); RSS {start_rss} KiB, \
         peak {start_peak} KiB",
        node.dns_addr(),
        auth.addr()
    );
    let tally = node.attach_log(run(&node, Duration::from_secs(seconds)))?;
    let (end_rss, end_peak) = node.rss_kib()?;
    let healthy = query_udp(
        node.dns_addr(),
        "hot1.soak.test.",
        RecordType::A,
        None,
        false,
    )
    .is_ok_and(|m| m.response_code == ResponseCode::NoError && !m.answers.is_empty());
    let metrics = scrape_parsed(node.metrics_addr())?;
    let metric = |name: &str| metrics.value(name, &[]).unwrap_or(f64::NAN);
    println!("soak: sent {:?}", tally.sent);
    println!("soak: answered as expected {:?}", tally.answered);
    println!(
        "soak: {} answered, {} errors ({} wrong answers, {} valid queries lost), {} malformed \
         dropped or answered otherwise",
        tally.answered_total(),
        tally.errors(),
        tally.wrong,
        tally.lost,
        tally.dropped
    );
    println!(
        "soak: node counted {} cache hits, {} misses, {} malformed; upstream exchanges {}",
        metric("heimdall_cache_hits_total"),
        metric("heimdall_cache_misses_total"),
        metric("heimdall_malformed_total"),
        metric("heimdall_upstream_exchanges_total")
    );
    println!(
        "soak: RSS {start_rss} KiB at start (peak {start_peak}), {end_rss} KiB at the end \
         (peak {end_peak}); still healthy: {}",
        if healthy { "yes" } else { "NO" }
    );
    if !healthy || tally.errors() > 0 {
        bail!("the soak found problems (see above)");
    }
    Ok(())
}
