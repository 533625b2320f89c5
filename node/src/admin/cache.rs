//! The cache calls of the control plane: lookup, flush (local or through Raft), dump and load.

use std::time::{Duration, Instant};

use heimdall_control::EntryStream;
use heimdall_proto::v1::{
    CacheEntry, CacheEntryInfo, CacheFlushRequest, CacheLoadReply, CacheLookupReply,
    CacheLookupRequest, EntrySource,
};
use heimdall_wire::{MAX_NAME_LEN, Message, class, name_from_str, rtype};
use tonic::Status;
use tonic::codegen::tokio_stream::StreamExt;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

use super::present::{rcode_name, records_text, type_code, type_name, wire_name_text};
use crate::cache::{
    Cache, Entry, FlushTarget, KEY_CHECKING_DISABLED, KEY_DNSSEC_OK, MAX_KEY_LEN, Source, write_key,
};
use crate::cluster::FlushScope;

/// Largest DNS message: the buffer a dumped entry is written into.
const MAX_MESSAGE_LEN: usize = 65_535;

/// Entries a dump buffers ahead of a slow reader.
const DUMP_QUEUE: usize = 64;

/// The flag bytes of the four DO/CD variants of a question, in display order.
const VARIANTS: [u8; 4] = [
    0,
    KEY_DNSSEC_OK,
    KEY_CHECKING_DISABLED,
    KEY_DNSSEC_OK | KEY_CHECKING_DISABLED,
];

/// A name given by an operator as lower-cased uncompressed wire bytes; the error names `field`.
pub fn wire_name(field: &str, text: &str) -> Result<Vec<u8>, Status> {
    let mut buf = [0u8; MAX_NAME_LEN];
    let len = name_from_str(text.trim(), &mut buf).map_err(|e| {
        Status::invalid_argument(format!("{field}: {text:?} is not a domain name: {e}"))
    })?;
    let mut wire = buf[..len].to_vec();
    wire.make_ascii_lowercase();
    Ok(wire)
}

/// A type mnemonic given by an operator; empty means `default`; the error names `field`.
pub fn type_arg(field: &str, text: &str, default: Option<u16>) -> Result<Option<u16>, Status> {
    if text.trim().is_empty() {
        return Ok(default);
    }
    type_code(text).map(Some).ok_or_else(|| {
        Status::invalid_argument(format!(
            "{field}: {text:?} is not a record type (A, AAAA, MX, TYPE123, ...)"
        ))
    })
}

/// The protobuf form of an entry's source.
fn source_message(source: Source) -> EntrySource {
    match source {
        Source::Upstream => EntrySource::Upstream,
        Source::Prefetch => EntrySource::Prefetch,
        Source::Gossip => EntrySource::Gossip,
        Source::Loaded => EntrySource::Loaded,
    }
}

/// Whole seconds of TTL left, as a client would be served (the partial second counts).
fn remaining_secs(entry: &Entry, now: Instant) -> u32 {
    let left = entry.remaining(now);
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// What the cache holds for `name` and type (default A): every DO/CD variant, class IN.
pub fn lookup(cache: &Cache, request: &CacheLookupRequest) -> Result<CacheLookupReply, Status> {
    let name = wire_name("name", &request.name)?;
    let qtype = type_arg("rtype", &request.rtype, Some(rtype::A))?.unwrap_or(rtype::A);
    let name_text = wire_name_text(&name).unwrap_or_else(|| request.name.clone());
    let now = Instant::now();
    let mut message = vec![0u8; MAX_MESSAGE_LEN];
    let mut entries = Vec::new();
    for flags in VARIANTS {
        let mut key = name.clone();
        key.extend_from_slice(&qtype.to_be_bytes());
        key.extend_from_slice(&class::IN.to_be_bytes());
        key.push(flags);
        let info = cache.inspect(&key, now, |entry, stale| {
            let len = entry.to_message(&key, now, &mut message);
            CacheEntryInfo {
                name: name_text.clone(),
                rtype: type_name(qtype),
                rcode: rcode_name(entry.rcode()),
                ttl_remaining: if stale { 0 } else { remaining_secs(entry, now) },
                ttl_original: entry.ttl(),
                hits: u64::from(entry.hits()),
                source: source_message(entry.source()).into(),
                stale,
                records: records_text(&message[..len]),
                dnssec_ok: flags & KEY_DNSSEC_OK != 0,
                checking_disabled: flags & KEY_CHECKING_DISABLED != 0,
            }
        });
        entries.extend(info);
    }
    Ok(CacheLookupReply { entries })
}

/// What a flush request covers, as the cluster's scope (names in presentation form).
pub fn flush_scope(request: &CacheFlushRequest) -> Result<FlushScope, Status> {
    let name = request.name.trim();
    let qtype = type_arg("rtype", &request.rtype, None)?;
    if name.is_empty() {
        if request.subtree {
            return Err(Status::invalid_argument("subtree: needs a name"));
        }
        return Ok(qtype.map_or(FlushScope::All, FlushScope::Type));
    }
    let wire = wire_name("name", name)?;
    let text = wire_name_text(&wire).unwrap_or_else(|| name.to_owned());
    Ok(match (request.subtree, qtype) {
        (false, None) => FlushScope::Name(text),
        (true, None) => FlushScope::Subtree(text),
        (false, Some(t)) => FlushScope::NameType(text, t),
        (true, Some(_)) => {
            return Err(Status::invalid_argument(
                "rtype: a subtree flush removes every type; flush the subtree, or one name and type",
            ));
        }
    })
}

/// Removes what `scope` covers from `cache`; returns how many entries went.
pub fn flush_local(cache: &Cache, scope: &FlushScope) -> Result<usize, Status> {
    let wire = |name: &str| wire_name("name", name);
    Ok(match scope {
        FlushScope::All => cache.flush(FlushTarget::All),
        FlushScope::Type(t) => cache.flush(FlushTarget::Type(*t)),
        FlushScope::Name(n) => cache.flush(FlushTarget::Name(&wire(n)?)),
        FlushScope::Subtree(n) => cache.flush(FlushTarget::Subtree(&wire(n)?)),
        FlushScope::NameType(n, t) => cache.flush(FlushTarget::NameType(&wire(n)?, *t)),
    })
}

/// Streams every fresh entry of `cache` as a [`CacheEntry`], built on a task so a slow reader
/// only holds the snapshot of keys and entries (shared, not copied).
pub fn dump(cache: &Cache) -> EntryStream {
    let now = Instant::now();
    let entries = cache.fresh_entries(now);
    let (tx, rx) = tokio::sync::mpsc::channel(DUMP_QUEUE);
    tokio::spawn(async move {
        let mut message = vec![0u8; MAX_MESSAGE_LEN];
        for (key, entry) in entries {
            let len = entry.to_message(&key, now, &mut message);
            if len == 0 {
                continue;
            }
            let name_len = key.len().saturating_sub(5);
            let qtype = key
                .get(name_len..name_len + 2)
                .map_or(0, |t| u16::from_be_bytes([t[0], t[1]]));
            let item = CacheEntry {
                key: key.to_vec(),
                message: message[..len].to_vec(),
                ttl_remaining_ms: u64::try_from(entry.remaining(now).as_millis())
                    .unwrap_or(u64::MAX),
                source: source_message(entry.source()).into(),
                name: wire_name_text(&key[..name_len]).unwrap_or_default(),
                rtype: type_name(qtype),
            };
            if tx.send(Ok(item)).await.is_err() {
                return;
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

/// Why a loaded entry was skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Skip {
    /// Less than a second of TTL left.
    Expired,
    /// The message does not parse, or cannot become an entry.
    Malformed,
    /// The message's question is not the key's.
    Mismatched,
    /// The answer is not cacheable (e.g. truncated).
    Uncacheable,
}

/// Checks one dumped entry and builds the cache entry with its remaining TTL (seconds).
fn loadable(cache: &Cache, item: &CacheEntry, now: Instant) -> Result<(Entry, u32), Skip> {
    let remaining = Duration::from_millis(item.ttl_remaining_ms).as_secs();
    let remaining = u32::try_from(remaining).unwrap_or(u32::MAX);
    if remaining == 0 {
        return Err(Skip::Expired);
    }
    if item.key.len() > MAX_KEY_LEN || item.key.len() < 6 {
        return Err(Skip::Mismatched);
    }
    let msg = Message::parse(&item.message).map_err(|_| Skip::Malformed)?;
    let question = msg.question().ok_or(Skip::Malformed)?;
    let flags = item.key[item.key.len() - 1];
    let mut key = [0u8; MAX_KEY_LEN];
    let len = write_key(
        &question.name,
        question.qtype,
        question.qclass,
        flags & KEY_DNSSEC_OK != 0,
        flags & KEY_CHECKING_DISABLED != 0,
        &mut key,
    );
    if key.get(..len) != Some(item.key.as_slice()) {
        return Err(Skip::Mismatched);
    }
    match Entry::from_dump(&msg, &cache.policy(), now, remaining) {
        Ok((entry, Some(ttl))) => Ok((entry, ttl)),
        Ok((_, None)) => Err(Skip::Uncacheable),
        Err(_) => Err(Skip::Malformed),
    }
}

/// Inserts every entry of `entries` that is still fresh and well-formed, with no more TTL
/// than it had left; counts the rest by reason (logged).
pub async fn load(cache: &Cache, mut entries: EntryStream) -> Result<CacheLoadReply, Status> {
    let mut reply = CacheLoadReply::default();
    let mut skipped = [0u64; 4];
    while let Some(item) = entries.next().await {
        let item = item?;
        let now = Instant::now();
        match loadable(cache, &item, now) {
            Ok((entry, ttl)) => {
                cache.insert(&item.key, entry, ttl, now);
                reply.loaded += 1;
            }
            Err(skip) => {
                skipped[skip as usize] += 1;
                reply.skipped += 1;
            }
        }
    }
    tracing::info!(
        loaded = reply.loaded,
        expired = skipped[Skip::Expired as usize],
        malformed = skipped[Skip::Malformed as usize],
        mismatched = skipped[Skip::Mismatched as usize],
        uncacheable = skipped[Skip::Uncacheable as usize],
        "cache load finished"
    );
    Ok(reply)
}
