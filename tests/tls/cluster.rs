//! A three-node cluster whose members reach each other over TLS with client certificates
//! required: it elects a leader, and a config set through a follower over mTLS reaches every
//! node with the client certificate's name as the author.

use std::time::Duration;

use anyhow::{Result, anyhow, ensure};
use heimdall_tests::cluster::{ClusterClient, ClusterSpec, wait_leader};
use heimdall_tests::wait_for;

use crate::{Pki, args, ctl_ok, https_at, tls_flags};

/// How long an election or a change may take to reach every node.
const CONVERGE: Duration = Duration::from_secs(30);

/// Members of a TLS cluster (client certificates required on every listener) elect a leader
/// over TLS, and a change made through a follower with a client certificate is forwarded to
/// the leader and applied on every node, authored by the certificate's name.
#[test]
fn tls_cluster_elects_and_replicates() -> Result<()> {
    let pki = Pki::new("heimdall cluster CA")?;
    let mut spec = ClusterSpec::new(3)?;
    let ips: Vec<_> = spec.dns.values().map(|a| a.ip()).collect();
    let node_cert = pki.node_cert("nodes", &ips)?;
    let path = |p: &std::path::Path| p.display().to_string();
    spec.extra_toml = format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\n\
         require_client_cert = true\n",
        path(&node_cert.cert),
        path(&node_cert.key),
        path(&pki.ca_file()),
    );
    let nodes = spec.start_all()?;
    let result = (|| {
        let operator = pki.client_cert("carol", "carol-oncall")?;
        let client = ClusterClient::with_test_secret()?.with_tls(pki.client_config(&operator)?);
        let (leader, _) = wait_leader(&client, &spec, &[1, 2, 3], CONVERGE)?;
        println!("leader over TLS: node {leader}");
        let follower = (1..=3)
            .find(|id| *id != leader)
            .ok_or_else(|| anyhow!("no follower"))?;
        let endpoint = https_at(spec.grpc(follower)?);
        let flags = tls_flags(&pki, Some(&operator));
        let out = ctl_ok(&args(
            &flags,
            &["-e", &endpoint, "config", "set", "cache.max_ttl", "1234"],
        ))?;
        print!("{out}");
        for id in 1..=3 {
            let addr = spec.grpc(id)?;
            let (state, _) = wait_for(CONVERGE, "the change applied on every node", || {
                client
                    .state(addr, false)
                    .ok()
                    .filter(|s| s.settings.cache.max_ttl == 1234)
            })?;
            let author = state
                .history
                .back()
                .map(|h| h.author.clone())
                .unwrap_or_default();
            ensure!(
                author == "carol-oncall",
                "node {id}: the change is authored by {author:?}"
            );
        }
        let members = ctl_ok(&args(&flags, &["-e", &endpoint, "cluster", "members"]))?;
        print!("{members}");
        Ok(())
    })();
    if result.is_err() {
        for (id, node) in &nodes {
            println!("--- node {id} log ---\n{}", node.log_tail());
        }
    }
    result
}
