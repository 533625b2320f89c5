//! Single-node integration suite: a real `heimdall` process forwarding to a real in-process
//! authoritative server, probed with hickory-built queries, raw bytes and `dig`.
//!
//! Every test starts its own upstream and node on unique loopback addresses, prints the
//! times it measures, and waits on conditions with deadlines (never fixed sleeps).

mod answers;
mod backend;
mod cache;
mod config;
mod flood;
mod forwarding;
mod lifecycle;
mod malformed;
mod transport;

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result};
use heimdall_tests::{AuthServer, Node, NodeOpts, Zone, fqdn, large_txt};
use hickory_proto::op::Message;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, TXT};
use hickory_proto::rr::{Name, RData};

/// The zone every test's upstream serves unless the test needs another.
pub fn zone() -> Zone {
    Zone::new("example.test.")
        .soa(3600, 300)
        .add("www", 300, a(192, 0, 2, 1))
        .add("www", 300, a(192, 0, 2, 2))
        .add(
            "www",
            300,
            RData::AAAA(AAAA(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))),
        )
        .add("alias", 300, cname("middle.example.test."))
        .add("middle", 300, cname("www.example.test."))
        .add("@", 300, RData::MX(MX::new(10, name("mail.example.test."))))
        .add(
            "@",
            300,
            RData::MX(MX::new(20, name("backup-mail.example.test."))),
        )
        .add("mail", 300, a(192, 0, 2, 25))
        .add(
            "txt",
            300,
            RData::TXT(TXT::new(vec!["hello world".into(), "v=spf1 -all".into()])),
        )
        .add_all("medium", 300, large_txt(4))
        .add_all("big", 300, large_txt(24))
}

/// An A record's data.
pub fn a(a: u8, b: u8, c: u8, d: u8) -> RData {
    RData::A(A(Ipv4Addr::new(a, b, c, d)))
}

/// A CNAME record's data pointing at `target`.
pub fn cname(target: &str) -> RData {
    RData::CNAME(CNAME(name(target)))
}

/// A literal domain name (the root name if the literal is invalid, which fails the test visibly).
pub fn name(text: &str) -> Name {
    fqdn(text).unwrap_or_else(|_| Name::root())
}

/// The TTL of the first answer record.
pub fn first_ttl(msg: &Message) -> Result<u32> {
    msg.answers
        .first()
        .map(|r| r.ttl)
        .with_context(|| format!("no answer records in:\n{msg}"))
}

/// An authoritative upstream and a node that forwards to it.
#[derive(Debug)]
pub struct Setup {
    /// The upstream, serving [`zone`] unless the test chose another.
    pub auth: AuthServer,
    /// The node under test; its first upstream is `auth`.
    pub node: Node,
}

impl Setup {
    /// Upstream with the standard zone and a node with default options.
    pub fn start() -> Result<Setup> {
        Self::with(zone(), NodeOpts::default())
    }

    /// Upstream serving `zone` and a node started with `opts`, `auth` first in its upstreams.
    pub fn with(zone: Zone, mut opts: NodeOpts) -> Result<Setup> {
        let auth = AuthServer::start(zone)?;
        opts.upstreams.insert(0, auth.addr());
        let node = Node::start(opts)?;
        Ok(Setup { auth, node })
    }

    /// Run the test body; a failure carries the tail of the node's log.
    pub fn run(&self, body: impl FnOnce(&Setup) -> Result<()>) -> Result<()> {
        self.node.attach_log(body(self))
    }
}
