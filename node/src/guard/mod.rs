//! Access and abuse controls on the query path: the ACL (`acl.allow_from`), DNS cookies
//! (RFC 7873 with RFC 9018 server cookies), per-prefix rate limiting with slip
//! (`rate_limit.*`) and the UDP amplification guard (`rate_limit.max_amplification`).
//!
//! [`Guard`] holds the policy from the cluster settings behind an arc-swap (live apply swaps
//! it, a query reads it without a lock), the cookie secrets and the per-thread rate-limit
//! tables. `Resolver::process` asks it, in this order: ACL, cookie, rate limit, then the answer
//! size cap. See ARCHITECTURE.md, "Access control and abuse limits".

pub mod cookie;
pub mod ratelimit;

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::cluster::settings::{ClusterSettings, IpNet};
pub use cookie::{Cookies, QueryCookie};
pub use ratelimit::{Limits, RateLimiter, Verdict};

/// The access and abuse settings in force, built from the cluster settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardPolicy {
    /// Networks allowed to query (`acl.allow_from`); everyone else gets REFUSED.
    allow: Vec<IpNet>,
    /// The rate limits (`rate_limit.*`); None when `rate_limit.enabled` is false.
    limits: Option<Limits>,
    /// Loopback sources are never rate limited nor size capped (`rate_limit.exempt_loopback`).
    exempt_loopback: bool,
    /// A UDP answer to a client without a valid server cookie is at most this many times the
    /// size of its query (`rate_limit.max_amplification`); 0: no cap.
    max_amplification: u32,
}

impl Default for GuardPolicy {
    /// The policy of the default cluster settings.
    fn default() -> Self {
        GuardPolicy::from(&ClusterSettings::default())
    }
}

impl From<&ClusterSettings> for GuardPolicy {
    /// `acl` and `rate_limit`; networks that do not parse are left out (settings are
    /// validated before they are committed, so that does not happen).
    fn from(settings: &ClusterSettings) -> Self {
        let allow = settings
            .acl
            .allow_from
            .iter()
            .filter_map(|text| text.parse::<IpNet>().ok())
            .collect();
        let r = &settings.rate_limit;
        GuardPolicy {
            allow,
            limits: r.enabled.then_some(Limits {
                qps: r.qps_per_prefix,
                burst: r.burst,
                ipv4_prefix_len: r.ipv4_prefix_len,
                ipv6_prefix_len: r.ipv6_prefix_len,
                slip: r.slip,
            }),
            exempt_loopback: r.exempt_loopback,
            max_amplification: r.max_amplification,
        }
    }
}

impl GuardPolicy {
    /// Whether `ip` may query (IPv4-mapped IPv6 addresses count as IPv4).
    #[inline]
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|net| net.contains(ip))
    }

    /// Whether `ip` is spared rate limiting and the size cap (a loopback address while
    /// `rate_limit.exempt_loopback` holds).
    #[inline]
    pub fn exempt(&self, ip: IpAddr) -> bool {
        self.exempt_loopback && ip.to_canonical().is_loopback()
    }

    /// The rate limits, when rate limiting is on.
    #[inline]
    pub fn limits(&self) -> Option<&Limits> {
        self.limits.as_ref()
    }

    /// The largest UDP answer for a query of `query_len` bytes from a client without a valid
    /// server cookie; None when there is no cap.
    #[inline]
    pub fn amplification_cap(&self, query_len: usize) -> Option<usize> {
        (self.max_amplification > 0)
            .then(|| query_len.saturating_mul(self.max_amplification as usize))
    }
}

/// The node's access and abuse controls.
#[derive(Debug)]
pub struct Guard {
    /// The policy in force, swapped by live apply and read lock-free by every query.
    policy: ArcSwap<GuardPolicy>,
    /// The server cookie secrets.
    cookies: Cookies,
    /// The per-thread token buckets.
    limiter: RateLimiter,
}

impl Guard {
    /// Controls under the default policy, with cookie secrets derived from `master` (the
    /// cluster secret) or random ones without it; cookies of a `retired` master (the previous
    /// cluster secret) are accepted until the given Unix second.
    pub fn new(master: Option<&[u8]>, retired: Option<(&[u8], u64)>) -> Guard {
        let now = cookie::unix_now();
        let cookies = match master {
            Some(key) => Cookies::new(key, now),
            None => Cookies::random(now),
        };
        Guard {
            policy: ArcSwap::from_pointee(GuardPolicy::default()),
            cookies: match retired {
                Some((key, until)) => cookies.with_retired(key, until, now),
                None => cookies,
            },
            limiter: RateLimiter::new(),
        }
    }

    /// The policy in force (a lock-free load; no allocation once the thread has loaded before).
    #[inline]
    pub fn policy(&self) -> arc_swap::Guard<Arc<GuardPolicy>> {
        self.policy.load()
    }

    /// Installs a new policy; later queries use it. Returns whether it changed.
    pub fn set_policy(&self, policy: GuardPolicy) -> bool {
        if **self.policy.load() == policy {
            return false;
        }
        self.policy.store(Arc::new(policy));
        true
    }

    /// The cookie secrets.
    pub fn cookies(&self) -> &Cookies {
        &self.cookies
    }

    /// The rate limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }
}

/// Appends a COOKIE option carrying `value` (client cookie and server cookie) to the answer
/// of `len` bytes in `out`, whose last record must be our OPT record without options (every
/// answer writer puts it last). Returns the new length; `len` unchanged when the answer does
/// not end in such an OPT record or the option does not fit `out`.
pub fn append_cookie(out: &mut [u8], len: usize, value: &[u8; cookie::REPLY_LEN]) -> usize {
    /// An OPT record without options: root owner, type, class, TTL, zero RDLENGTH.
    const OPT_LEN: usize = 11;
    let Some(opt_start) = len.checked_sub(OPT_LEN) else {
        return len;
    };
    let end = len + cookie::REPLY_OPTION_LEN;
    let (Some(opt), true) = (out.get(opt_start..len), end <= out.len()) else {
        return len;
    };
    let is_empty_opt = opt.first() == Some(&0)
        && opt.get(1..3) == Some(&[0, 41][..])
        && opt.get(9..11) == Some(&[0, 0][..]);
    if opt_start < heimdall_wire::HEADER_LEN || !is_empty_opt {
        return len;
    }
    let [l0, l1] = (cookie::REPLY_OPTION_LEN as u16).to_be_bytes();
    let [c0, c1] = cookie::OPTION_COOKIE.to_be_bytes();
    let [v0, v1] = (cookie::REPLY_LEN as u16).to_be_bytes();
    if let Some(rdlen) = out.get_mut(len - 2..len) {
        rdlen.copy_from_slice(&[l0, l1]);
    }
    if let Some(option) = out.get_mut(len..end) {
        let (head, tail) = option.split_at_mut(4);
        head.copy_from_slice(&[c0, c1, v0, v1]);
        tail.copy_from_slice(value);
    }
    end
}

/// [`append_cookie`] on an answer held in a `Vec` (the miss path), growing it.
pub fn append_cookie_vec(answer: &mut Vec<u8>, value: &[u8; cookie::REPLY_LEN]) {
    let len = answer.len();
    answer.resize(len + cookie::REPLY_OPTION_LEN, 0);
    let new_len = append_cookie(answer, len, value);
    answer.truncate(new_len);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ACL admits its networks only; the default admits loopback and private ranges.
    #[test]
    fn acl_and_exemptions() {
        let default = GuardPolicy::default();
        for ip in ["127.0.0.1", "127.42.3.4", "10.1.2.3", "192.168.1.1", "::1"] {
            assert!(default.allows(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["8.8.8.8", "2001:db8::1"] {
            assert!(!default.allows(ip.parse().expect("ip")), "{ip}");
        }
        assert!(default.exempt("127.9.9.9".parse().expect("ip")));
        assert!(default.exempt("::ffff:127.0.0.1".parse().expect("ip")));
        assert!(!default.exempt("10.0.0.1".parse().expect("ip")));

        let mut settings = ClusterSettings::default();
        settings.acl.allow_from = vec!["10.0.0.0/8".into()];
        settings.rate_limit.exempt_loopback = false;
        settings.rate_limit.max_amplification = 0;
        let policy = GuardPolicy::from(&settings);
        assert!(!policy.allows("127.0.0.1".parse().expect("ip")));
        assert!(policy.allows("::ffff:10.9.8.7".parse().expect("ip")));
        assert!(!policy.exempt("127.0.0.1".parse().expect("ip")));
        assert_eq!(policy.amplification_cap(40), None);
        assert_eq!(default.amplification_cap(40), Some(400));
    }

    /// The COOKIE option lands in an empty trailing OPT record, and nowhere else.
    #[test]
    fn append_cookie_extends_the_opt_record() {
        let mut out = [0u8; 64];
        // Header, then our empty OPT record.
        let opt = [0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0];
        out[12..23].copy_from_slice(&opt);
        let value = [7u8; cookie::REPLY_LEN];
        let len = append_cookie(&mut out, 23, &value);
        assert_eq!(len, 23 + 28);
        assert_eq!(&out[21..23], &[0, 28]);
        assert_eq!(&out[23..27], &[0, 10, 0, 24]);
        assert_eq!(&out[27..51], &value);
        // Not an empty OPT at the end: unchanged.
        assert_eq!(append_cookie(&mut out, 51, &value), 51);
        // No room: unchanged.
        let mut small = [0u8; 30];
        small[12..23].copy_from_slice(&opt);
        assert_eq!(append_cookie(&mut small, 23, &value), 23);
        let mut answer = small[..23].to_vec();
        append_cookie_vec(&mut answer, &value);
        assert_eq!(answer.len(), 51);
    }
}
