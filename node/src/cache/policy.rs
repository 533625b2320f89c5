//! Cache policy: TTL clamps, negative and SERVFAIL caching, prefetch and serve-stale knobs.

/// Longest time a SERVFAIL may be cached, whatever the policy says (RFC 2308 section 7.1).
pub const MAX_SERVFAIL_TTL: u32 = 300;

/// How the cache treats the TTLs of what it stores and serves.
///
/// Applied when an entry is built ([`Entry::from_response`](super::Entry::from_response)) and
/// when it is looked up ([`Cache::lookup`](super::Cache::lookup)); a new policy set with
/// [`Cache::set_policy`](super::Cache::set_policy) applies to entries built afterwards and to
/// every later lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachePolicy {
    /// Floor for every stored record TTL (seconds); raises short positive TTLs.
    pub min_ttl: u32,
    /// Ceiling for every stored record TTL (seconds); wins over `min_ttl` if they cross.
    pub max_ttl: u32,
    /// Ceiling for NXDOMAIN and NODATA answers (seconds), RFC 2308.
    pub max_negative_ttl: u32,
    /// How long a SERVFAIL is cached (seconds, at most [`MAX_SERVFAIL_TTL`]; 0 = not cached).
    pub servfail_ttl: u32,
    /// How long a negative answer without an SOA is cached (seconds; 0 = not cached).
    pub nosoa_negative_ttl: u32,
    /// Signal a refresh on a hit in the last 10% of an entry's TTL.
    pub prefetch: bool,
    /// Keep expired entries for `stale_max` seconds so they can be served when upstreams fail
    /// (RFC 8767); when off, expired entries are dropped.
    pub serve_stale: bool,
    /// How long past its expiry an entry may still be served stale (seconds).
    pub stale_max: u32,
    /// The TTL put on every record of a stale answer (seconds; RFC 8767 suggests 30).
    pub stale_ttl: u32,
}

impl Default for CachePolicy {
    /// One day at most for positive answers, three hours for negative ones (RFC 2308), five
    /// seconds for SERVFAIL, no caching of negative answers without an SOA, prefetch on, and
    /// serve-stale for one day with a 30 second TTL (RFC 8767).
    fn default() -> Self {
        CachePolicy {
            min_ttl: 0,
            max_ttl: 86_400,
            max_negative_ttl: 10_800,
            servfail_ttl: 5,
            nosoa_negative_ttl: 0,
            prefetch: true,
            serve_stale: true,
            stale_max: 86_400,
            stale_ttl: 30,
        }
    }
}

impl CachePolicy {
    /// Clamp a record TTL to `[min_ttl, max_ttl]` (`max_ttl` wins if the bounds cross).
    pub fn clamp_ttl(&self, ttl: u32) -> u32 {
        ttl.max(self.min_ttl).min(self.max_ttl)
    }

    /// The TTL of a negative answer whose authority SOA has record TTL `soa_ttl` and MINIMUM
    /// field `soa_minimum`: the smaller of the two (RFC 2308 section 5), capped at
    /// `max_negative_ttl`. `min_ttl` does not apply: a floor on negative answers would hide
    /// names that get created.
    pub fn negative_ttl(&self, soa_ttl: u32, soa_minimum: u32) -> u32 {
        soa_ttl.min(soa_minimum).min(self.max_negative_ttl)
    }

    /// The TTL of a SERVFAIL answer: `servfail_ttl`, at most [`MAX_SERVFAIL_TTL`].
    pub fn servfail_ttl(&self) -> u32 {
        self.servfail_ttl.min(MAX_SERVFAIL_TTL)
    }

    /// How long an entry outlives its expiry: `stale_max` when serving stale, else zero.
    pub fn stale_window(&self) -> u32 {
        if self.serve_stale { self.stale_max } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Record TTLs are raised to `min_ttl` and lowered to `max_ttl`; `max_ttl` wins when crossed.
    #[test]
    fn clamp_ttl_applies_both_bounds() {
        let p = CachePolicy {
            min_ttl: 60,
            max_ttl: 3600,
            ..CachePolicy::default()
        };
        assert_eq!(p.clamp_ttl(5), 60);
        assert_eq!(p.clamp_ttl(600), 600);
        assert_eq!(p.clamp_ttl(100_000), 3600);
        let crossed = CachePolicy {
            min_ttl: 100,
            max_ttl: 10,
            ..CachePolicy::default()
        };
        assert_eq!(crossed.clamp_ttl(50), 10);
    }

    /// The negative TTL is min(SOA TTL, MINIMUM) capped by `max_negative_ttl`; SERVFAIL is capped at 300 s.
    #[test]
    fn negative_and_servfail_ttls() {
        let p = CachePolicy {
            max_negative_ttl: 900,
            servfail_ttl: 10_000,
            ..CachePolicy::default()
        };
        assert_eq!(p.negative_ttl(3600, 300), 300);
        assert_eq!(p.negative_ttl(120, 300), 120);
        assert_eq!(p.negative_ttl(3600, 7200), 900);
        assert_eq!(p.servfail_ttl(), MAX_SERVFAIL_TTL);
    }
}
