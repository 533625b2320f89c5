//! Access and abuse controls suite: the ACL, DNS cookies, rate limiting with slip and the
//! amplification guard of real `heimdall` processes, configured through Raft with the control
//! plane (`ConfigSet`) and applied live, checked with hickory-proto messages, raw datagrams,
//! `dig` and the node's /metrics counters.

mod acl;
mod amplification;
mod cookies;
mod ratelimit;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result};
use heimdall_proto::v1::ConfigSetRequest;
use heimdall_tests::control::{Control, authed};
use heimdall_tests::prom::scrape_parsed;
use heimdall_tests::{AuthServer, Node, NodeOpts, Zone, large_txt};
use hickory_proto::op::Message;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, RecordType};

/// How long a condition may take (a config change to apply, a node to answer).
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The zone the upstream serves: a small A record and a TXT set of about 1,000 bytes.
pub fn zone() -> Zone {
    Zone::new("example.test.")
        .soa(3600, 300)
        .add("www", 300, RData::A(A(Ipv4Addr::new(192, 0, 2, 1))))
        .add_all("big", 300, large_txt(4))
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
        let auth = AuthServer::start(zone())?;
        let node = Node::start(NodeOpts::upstreams(&[auth.addr()]))?;
        let ctl = Control::new(node.grpc_addr())?;
        // A setting written before the bootstrap seed commits would make the seed give up,
        // leaving the cluster without the node's upstreams.
        node.attach_log(ctl.wait_seeded(DEADLINE))?;
        Ok(Setup { auth, node, ctl })
    }

    /// Runs the test body; a failure carries the tail of the node's log.
    pub fn run(&self, body: impl FnOnce(&Setup) -> Result<()>) -> Result<()> {
        self.node.attach_log(body(self))
    }

    /// The node's DNS address.
    pub fn dns(&self) -> SocketAddr {
        self.node.dns_addr()
    }

    /// Sets one cluster setting through Raft (`ConfigSet`), waiting for the single-node
    /// cluster to have a leader first.
    pub fn set(&self, key: &str, value: &str) -> Result<()> {
        let request = ConfigSetRequest {
            key: key.to_owned(),
            value: value.to_owned(),
            expect_version: None,
        };
        heimdall_tests::wait_until(DEADLINE, &format!("config set {key}={value}"), || {
            let request = request.clone();
            self.ctl
                .call(|mut c| async move { c.config_set(authed(request)).await })
                .is_ok()
        })?;
        Ok(())
    }

    /// The value of a /metrics counter (0 when absent).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        let exposition = scrape_parsed(self.node.metrics_addr())?;
        Ok(exposition.get(name, labels).unwrap_or(0.0))
    }
}

/// A query for `name`/`rtype` with EDNS (1232 bytes) carrying a COOKIE option of `cookie`
/// bytes (none when empty).
pub fn cookie_query(name: &str, rtype: RecordType, cookie: &[u8]) -> Result<Message> {
    let mut query = heimdall_tests::build_query(name, rtype, Some(1232), false)?;
    if !cookie.is_empty() {
        let edns = query.edns.as_mut().context("the query has EDNS")?;
        edns.options_mut()
            .insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(
                10,
                cookie.to_vec(),
            ));
    }
    Ok(query)
}

/// The COOKIE option value of a reply, if it has one.
pub fn reply_cookie(reply: &Message) -> Option<Vec<u8>> {
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    match reply.edns.as_ref()?.option(EdnsCode::Cookie)? {
        EdnsOption::Unknown(_, value) => Some(value.clone()),
        _ => None,
    }
}
