//! Control-plane integration suite: the `heimdall.v1.Control` gRPC service, health and
//! reflection of real `heimdall` processes, called with the generated tonic clients.
//!
//! Single-node tests ([`node`]) each start their own authoritative upstream and node; the
//! cluster tests ([`cluster`]) start three-node clusters and run one at a time. Every node has
//! the harness's admin token ([`heimdall_tests::node::TEST_ADMIN_TOKEN`]); every wait is a
//! condition with a deadline.

mod cluster;
mod node;

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use heimdall_proto::v1::{CacheEntryInfo, CacheLookupRequest};
use heimdall_tests::control::{Control, authed};
use heimdall_tests::{AuthServer, Node, NodeOpts, Zone, query_udp};
use hickory_proto::op::Message;
use hickory_proto::rr::rdata::{A, MX};
use hickory_proto::rr::{RData, RecordType};

/// The zone the upstream serves: names at and under `sub.example.test` for subtree flushes,
/// and an MX at the apex for type flushes.
pub fn zone() -> Zone {
    Zone::new("example.test.")
        .soa(3600, 300)
        .add("www", 300, a(192, 0, 2, 1))
        .add("sub", 300, a(192, 0, 2, 10))
        .add("a.sub", 300, a(192, 0, 2, 11))
        .add("b.sub", 300, a(192, 0, 2, 12))
        .add("xsub", 300, a(192, 0, 2, 13))
        .add("@", 300, a(192, 0, 2, 20))
        .add(
            "@",
            300,
            RData::MX(MX::new(
                10,
                heimdall_tests::fqdn("mail.example.test.")
                    .unwrap_or_else(|_| hickory_proto::rr::Name::root()),
            )),
        )
}

/// An A record's data.
pub fn a(a: u8, b: u8, c: u8, d: u8) -> RData {
    RData::A(A(Ipv4Addr::new(a, b, c, d)))
}

/// An upstream, a node forwarding to it, and a control client of the node.
#[derive(Debug)]
pub struct Setup {
    /// The authoritative upstream serving [`zone`].
    pub auth: AuthServer,
    /// The node under test.
    pub node: Node,
    /// Its control plane.
    pub ctl: Control,
}

impl Setup {
    /// Upstream with [`zone`] and a node with default options.
    pub fn start() -> Result<Setup> {
        Self::with(NodeOpts::default())
    }

    /// Upstream with [`zone`] and a node started with `opts` (the upstream first).
    pub fn with(mut opts: NodeOpts) -> Result<Setup> {
        let auth = AuthServer::start(zone())?;
        opts.upstreams.insert(0, auth.addr());
        let node = Node::start(opts)?;
        let ctl = Control::new(node.grpc_addr())?;
        Ok(Setup { auth, node, ctl })
    }

    /// Runs the test body; a failure carries the tail of the node's log.
    pub fn run(&self, body: impl FnOnce(&Setup) -> Result<()>) -> Result<()> {
        self.node.attach_log(body(self))
    }

    /// Queries the node over UDP.
    pub fn query(&self, name: &str, rtype: RecordType) -> Result<Message> {
        query_udp(self.node.dns_addr(), name, rtype, None, false)
    }
}

/// What the control plane of `ctl` shows cached for `name`/`rtype`.
pub fn lookup(ctl: &Control, name: &str, rtype: &str) -> Result<Vec<CacheEntryInfo>> {
    let request = CacheLookupRequest {
        name: name.to_owned(),
        rtype: rtype.to_owned(),
    };
    Ok(ctl
        .call(|mut c| async move { c.cache_lookup(authed(request)).await })
        .with_context(|| format!("CacheLookup {name} {rtype} on {}", ctl.addr()))?
        .entries)
}

/// Whether the node of `s` still has `www.example.test` A cached.
pub fn node_cached(s: &Setup) -> Result<bool> {
    Ok(!lookup(&s.ctl, "www.example.test", "A")?.is_empty())
}
