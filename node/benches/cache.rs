//! Micro-benchmarks of the cache-hit path: key building, the keyed hash the store uses for its
//! read-side map and its shards (std's SipHash-1-3 against faster keyed candidates),
//! `Cache::lookup` + `Entry::write_response`, and the whole `Resolver::process` on a hit, warm
//! (the same query again and again) and cold (`*_cold_batch4`: batches of 4 hits on different
//! names after other memory has evicted the CPU caches, as on a worker woken for a few queries;
//! criterion only, they have no `BENCH_ITERS` mode).
//!
//! `cargo bench -p heimdall-node --bench cache` runs them under criterion (`-- <filter>` selects
//! some). For repeatable instruction counts, set `BENCH_ITERS` and run the bench executable
//! under callgrind: it then runs each selected case that many times without criterion, e.g.
//! `BENCH_ITERS=100000 valgrind --tool=callgrind target/release/deps/cache-<hash> cache_hit`.

use std::hash::{BuildHasher, RandomState};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use heimdall_node::cache::{
    Cache, CachePolicy, ClientOpt, ClientQuery, Entry, MAX_KEY_LEN, Source, write_key,
};
use heimdall_node::cluster::settings::ClusterSettings;
use heimdall_node::guard::GuardPolicy;
use heimdall_node::resolver::{Client, Outcome, Resolver};
use heimdall_node::upstream::{Forwarder, ForwarderTimeouts};
use heimdall_wire::{
    Message, MessageWriter, Name, Section, class, flags, name_from_str, parse_query, rtype,
};

/// One iteration of a workload, returning a value that depends on the work.
type Run = Box<dyn FnMut() -> usize>;

/// One named workload. Its setup runs only when the case is selected, so a callgrind count of
/// one case is not blurred by the (randomly seeded) setup of the others.
struct Case {
    /// The criterion benchmark id (and the `BENCH_ITERS` filter target).
    name: String,
    /// Builds the inputs and returns the iteration.
    setup: Box<dyn FnOnce() -> Run>,
}

impl Case {
    /// A case named `name` whose `setup` returns the iteration to measure.
    fn new<R: FnMut() -> usize + 'static>(
        name: impl Into<String>,
        setup: impl FnOnce() -> R + 'static,
    ) -> Case {
        Case {
            name: name.into(),
            setup: Box::new(move || Box::new(setup()) as Run),
        }
    }
}

/// The question name of the typical query (17 bytes in wire form).
const QNAME: &str = "www.Example.com";
/// An IPv6 reverse name: 34 one-byte labels (74 bytes).
const REVERSE_NAME: &str =
    "B.A.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6.arpa";
/// Entries in the cache besides the one looked up, so the maps have a realistic size.
const FILLER_ENTRIES: u32 = 10_000;
/// The EDNS UDP payload size of the client and of the node.
const UDP_SIZE: u16 = 1232;
/// The address the benchmarked queries come from (loopback: not rate limited by default).
const LOCALHOST: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A presentation name in uncompressed wire form.
fn wire_name(s: &str) -> Vec<u8> {
    let mut buf = [0u8; 255];
    let len = name_from_str(s, &mut buf).expect("bench names are valid");
    buf[..len].to_vec()
}

/// A typical stub query for `qname` A: RD, EDNS (1232 bytes, a client cookie).
fn query(qname: &str) -> Vec<u8> {
    query_with_options(qname, &[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])
}

/// A query for `qname` A with RD and an OPT record carrying `options` (raw option bytes).
fn query_with_options(qname: &str, options: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; 512];
    let mut w = MessageWriter::new(&mut buf).expect("room");
    w.set_header(0x1234, flags::RD);
    w.question(&wire_name(qname), rtype::A, class::IN)
        .expect("room");
    w.opt(UDP_SIZE, 0, 0, 0, options).expect("room");
    let len = w.finish();
    buf[..len].to_vec()
}

/// A resolver over a filled cache (see [`filled_cache`]) with no upstream, under the default
/// guard policy.
fn plain_resolver(now: Instant) -> Resolver {
    let forwarder = Forwarder::new(
        &[],
        ForwarderTimeouts {
            attempt: Duration::from_secs(1),
            total: Duration::from_secs(2),
        },
    );
    Resolver::new(filled_cache(now), forwarder, UDP_SIZE)
}

/// A resolver over a filled cache whose rate limiting covers loopback too (at a rate the
/// bench never reaches), so every hit pays for the ACL, the limiter and the size cap.
fn guarded_resolver(now: Instant) -> Resolver {
    let resolver = plain_resolver(now);
    let mut settings = ClusterSettings::default();
    settings.rate_limit.exempt_loopback = false;
    settings.rate_limit.qps_per_prefix = u32::MAX;
    settings.rate_limit.burst = u32::MAX;
    resolver.guard().set_policy(GuardPolicy::from(&settings));
    resolver
}

/// A typical upstream answer for `qname` A: a CNAME to `web.example.com` and two A records for
/// it, with EDNS.
fn response(qname: &str) -> Vec<u8> {
    let (qname, target) = (wire_name(qname), wire_name("web.example.com"));
    let mut buf = [0u8; 512];
    let mut w = MessageWriter::new(&mut buf).expect("room");
    w.set_header(0x4321, flags::QR | flags::RD | flags::RA);
    w.question(&qname, rtype::A, class::IN).expect("room");
    w.record(
        Section::Answer,
        &qname,
        rtype::CNAME,
        class::IN,
        300,
        &target,
    )
    .expect("room");
    for last in [1, 2] {
        w.record(
            Section::Answer,
            &target,
            rtype::A,
            class::IN,
            300,
            &[192, 0, 2, last],
        )
        .expect("room");
    }
    w.opt(UDP_SIZE, 0, 0, 0, &[]).expect("room");
    let len = w.finish();
    buf[..len].to_vec()
}

/// The cache key of `qname` A IN with DO and CD clear.
fn key(qname: &str) -> Vec<u8> {
    let wire = wire_name(qname);
    let name = Name::from_wire(&wire).expect("valid");
    let mut out = [0u8; MAX_KEY_LEN];
    let len = write_key(&name, rtype::A, class::IN, false, false, &mut out);
    out[..len].to_vec()
}

/// Build an entry for the typical answer to `qname` and insert it under its key.
fn insert(cache: &Cache, qname: &str, now: Instant) {
    let bytes = response(qname);
    let msg = Message::parse(&bytes).expect("valid response");
    let (entry, ttl) =
        Entry::from_response(&msg, &cache.policy(), now, Source::Upstream).expect("entry");
    cache.insert(&key(qname), entry, ttl.expect("cacheable"), now);
}

/// A cache holding the typical answer for `QNAME` among `FILLER_ENTRIES` others.
fn filled_cache(now: Instant) -> Cache {
    let cache = Cache::new(256 << 20, CachePolicy::default());
    for i in 0..FILLER_ENTRIES {
        insert(&cache, &format!("host{i}.example.net"), now);
    }
    insert(&cache, QNAME, now);
    cache
}

/// A map shaped like the store's read side (a `papaya` map from key bytes to a value) under
/// hasher `S`, filled with the keys of `FILLER_ENTRIES` names.
fn filled_map<S: BuildHasher + Default>() -> papaya::HashMap<Arc<[u8]>, u32, S> {
    let map = papaya::HashMap::builder().hasher(S::default()).build();
    {
        let pinned = map.pin();
        for i in 0..FILLER_ENTRIES {
            pinned.insert(Arc::from(key(&format!("host{i}.example.net"))), i);
        }
    }
    map
}

/// Cases hashing keys with `S` (one keyed `hash_one`, as the store picks a shard on writes) and
/// looking keys up in a map shaped like the store's read side (each iteration looks up the next
/// of 1000 keys, so probe lengths under the random seed average out).
fn hasher_cases<S: BuildHasher + Default + 'static>(label: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for (size, qname) in [("key_22B", QNAME), ("key_79B", REVERSE_NAME)] {
        cases.push(Case::new(format!("key_hash/{label}/{size}"), move || {
            let state = S::default();
            let k = key(qname);
            move || state.hash_one(black_box(&k[..])) as usize
        }));
    }
    cases.push(Case::new(format!("map_get/{label}"), || {
        let map = filled_map::<S>();
        let keys: Vec<Vec<u8>> = (0..1000)
            .map(|i| key(&format!("host{i}.example.net")))
            .collect();
        let mut next = 0;
        move || {
            next = (next + 1) % keys.len();
            let guard = map.guard();
            map.get(black_box(&keys[next][..]), &guard)
                .map_or(0, |&i| i as usize)
        }
    }));
    cases
}

/// Every benchmark case (inputs are built when a case is set up).
fn cases() -> Vec<Case> {
    let mut cases = Vec::new();

    for (size, qname) in [("short_17B", QNAME), ("reverse_74B", REVERSE_NAME)] {
        cases.push(Case::new(format!("write_key/{size}"), move || {
            let packet: &'static [u8] = query(qname).leak();
            let name = parse_query(packet).expect("valid query").question.name;
            let mut out = [0u8; MAX_KEY_LEN];
            move || {
                write_key(
                    &black_box(name),
                    rtype::A,
                    class::IN,
                    false,
                    false,
                    &mut out,
                ) + usize::from(out[1])
            }
        }));
    }

    cases.extend(hasher_cases::<RandomState>("siphash13_std"));
    cases.extend(hasher_cases::<foldhash::fast::RandomState>("foldhash_fast"));
    cases.extend(hasher_cases::<foldhash::quality::RandomState>(
        "foldhash_quality",
    ));
    cases.extend(hasher_cases::<ahash::RandomState>("ahash"));

    // The hit path after parsing: key in hand, lookup and replay into the send buffer.
    cases.push(Case::new("cache_hit/lookup_write_response", || {
        let now = Instant::now();
        let cache = filled_cache(now);
        let k = key(QNAME);
        let packet = query(QNAME);
        let q = parse_query(&packet).expect("valid query");
        let question = packet[q.question.start..q.question.end].to_vec();
        let mut out = vec![0u8; usize::from(UDP_SIZE)];
        move || {
            let client = ClientQuery {
                id: 0x1234,
                flags: flags::RD,
                question: &question,
                opt: Some(ClientOpt {
                    dnssec_ok: false,
                    our_udp_size: UDP_SIZE,
                }),
            };
            let out = &mut out;
            cache
                .lookup(black_box(&k), now, false, |entry, _| {
                    entry.write_response(out, &client, now, false, usize::from(UDP_SIZE))
                })
                .unwrap_or(0)
        }
    }));

    // The whole hit path: parse, key, lookup, replay.
    cases.push(Case::new("resolver/process_hit", || {
        let now = Instant::now();
        let resolver = plain_resolver(now);
        let packet = query(QNAME);
        let mut out = vec![0u8; usize::from(UDP_SIZE)];
        let check = resolver.process(&packet, &mut out, Client::udp(LOCALHOST), now);
        assert!(
            matches!(check, Outcome::Reply { len, .. } if len > packet.len()),
            "the resolver bench query must hit the cache: {check:?}"
        );
        move || match resolver.process(black_box(&packet), &mut out, Client::udp(LOCALHOST), now) {
            Outcome::Reply { len, .. } => len,
            _ => 0,
        }
    }));

    // The hit path for a client without a cookie under the default policy (loopback: the ACL
    // is checked, rate limiting and the size cap are not applied), as in the perf benchmark.
    cases.push(Case::new("resolver/process_hit_no_cookie", || {
        let now = Instant::now();
        let resolver = plain_resolver(now);
        let packet = query_with_options(QNAME, &[]);
        let mut out = vec![0u8; usize::from(UDP_SIZE)];
        move || match resolver.process(black_box(&packet), &mut out, Client::udp(LOCALHOST), now) {
            Outcome::Reply { len, .. } => len,
            _ => 0,
        }
    }));

    // The hit path for a client that is rate limited (no cookie, loopback not exempt).
    cases.push(Case::new("resolver/process_hit_limited", || {
        let now = Instant::now();
        let resolver = guarded_resolver(now);
        let packet = query_with_options(QNAME, &[]);
        let mut out = vec![0u8; usize::from(UDP_SIZE)];
        move || match resolver.process(black_box(&packet), &mut out, Client::udp(LOCALHOST), now) {
            Outcome::Reply { len, .. } => len,
            _ => 0,
        }
    }));

    // The hit path for a client with a valid server cookie (checked and echoed).
    cases.push(Case::new("resolver/process_hit_valid_cookie", || {
        let now = Instant::now();
        let resolver = guarded_resolver(now);
        let mut out = vec![0u8; usize::from(UDP_SIZE)];
        let first = query(QNAME);
        let Outcome::Reply { len, .. } =
            resolver.process(&first, &mut out, Client::udp(LOCALHOST), now)
        else {
            panic!("the bench query must hit the cache");
        };
        // The answer ends with the COOKIE option: client cookie and server cookie.
        let mut options = vec![0, 10, 0, 24];
        options.extend_from_slice(&out[len - 24..len]);
        let packet = query_with_options(QNAME, &options);
        move || match resolver.process(black_box(&packet), &mut out, Client::udp(LOCALHOST), now) {
            Outcome::Reply { len, .. } => len,
            _ => 0,
        }
    }));

    cases
}

/// Bytes written between the batches of the cold-cache cases: more than this machine's L2,
/// as the kernel's network path between two wake-ups of a lightly loaded worker is.
const EVICT_BYTES: usize = 8 << 20;
/// Queries per batch in the cold-cache cases (what a worker receives per wake-up at 40k qps
/// offered in the perf benchmark).
const COLD_BATCH: usize = 4;

/// Cache hits with cold CPU caches, as on a worker woken for a few queries: before each timed
/// batch of [`COLD_BATCH`] hits on names drawn from the `FILLER_ENTRIES` cached ones,
/// [`EVICT_BYTES`] of other memory are written and the batch's queries are copied into the
/// receive buffers (as the kernel does; neither is timed). Two cases, time per batch:
/// `resolver/process_hit_cold_batch4`, the whole `Resolver::process`, and
/// `cache_hit/lookup_cold_batch4`, only `Cache::lookup` on keys already built (the part of the
/// first that is the cache's).
fn cold_cases(criterion: &mut Criterion) {
    let now = Instant::now();
    let resolver = plain_resolver(now);
    let names: Vec<String> = (0..FILLER_ENTRIES)
        .map(|i| format!("host{i}.example.net"))
        .collect();
    let packets: Vec<Vec<u8>> = names.iter().map(|n| query_with_options(n, &[])).collect();
    let keys: Vec<Vec<u8>> = names.iter().map(|n| key(n)).collect();
    let mut evict = vec![0u8; EVICT_BYTES];
    let mut received: Vec<Vec<u8>> = (0..COLD_BATCH).map(|_| Vec::with_capacity(512)).collect();
    let mut next: u64 = 0x2545_f491_4f6c_dd1d;
    // Evict the caches, then fill the receive buffers with the next batch from `inputs`.
    let mut prepare = |round: u64, inputs: &[Vec<u8>], received: &mut [Vec<u8>]| {
        for line in evict.chunks_mut(64) {
            line[0] = round as u8;
        }
        black_box(&evict);
        for buf in received.iter_mut() {
            next ^= next << 13;
            next ^= next >> 7;
            next ^= next << 17;
            buf.clear();
            buf.extend_from_slice(&inputs[(next % inputs.len() as u64) as usize]);
        }
        black_box(&*received);
    };
    // Time `work` on `iters` batches from `inputs`, each prepared (untimed) as above.
    let mut timed = |iters: u64, inputs: &[Vec<u8>], work: &mut dyn FnMut(&[u8])| {
        let mut total = Duration::ZERO;
        for round in 0..iters {
            prepare(round, inputs, &mut received);
            let start = Instant::now();
            for item in &received {
                work(item);
            }
            total += start.elapsed();
        }
        total
    };
    let mut out = vec![0u8; usize::from(UDP_SIZE)];
    criterion.bench_function("resolver/process_hit_cold_batch4", |b| {
        b.iter_custom(|iters| {
            timed(iters, &packets, &mut |packet| {
                match resolver.process(black_box(packet), &mut out, Client::udp(LOCALHOST), now) {
                    Outcome::Reply { len, .. } => black_box(len),
                    _ => panic!("every cold-case query is a cached name"),
                };
            })
        })
    });
    criterion.bench_function("cache_hit/lookup_cold_batch4", |b| {
        b.iter_custom(|iters| {
            timed(iters, &keys, &mut |key| {
                let ttl = resolver
                    .cache()
                    .lookup(black_box(key), now, false, |e, _| e.ttl());
                assert!(ttl.is_some(), "every cold-case key is cached");
            })
        })
    });
}

/// Run every case `iters` times whose name contains `filter` (no criterion; for callgrind).
fn count_mode(iters: u64, filter: Option<&str>) {
    for case in cases() {
        if filter.is_some_and(|f| !case.name.contains(f)) {
            continue;
        }
        let mut run = (case.setup)();
        let mut sum = 0usize;
        for _ in 0..iters {
            sum = sum.wrapping_add(run());
        }
        println!("{}: {iters} iterations (checksum {sum})", case.name);
    }
}

/// Criterion unless `BENCH_ITERS` asks for the fixed-count mode.
fn main() {
    if let Some(iters) = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
        count_mode(iters, filter.as_deref());
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    for case in cases() {
        let mut run = (case.setup)();
        criterion.bench_function(&case.name, |b| b.iter(&mut run));
    }
    cold_cases(&mut criterion);
    criterion.final_summary();
}
