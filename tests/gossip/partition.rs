//! A partitioned node keeps serving from its own cache, and gossip resumes after the link
//! heals. The link is cut with iptables rules that drop loopback packets between the node's
//! address and its peers' (both directions); the test is skipped, saying so, where iptables
//! cannot be used (not root, no iptables).

use std::net::IpAddr;
use std::process::Command as Process;

use super::*;

/// iptables rules dropping the packets between one address and others; removed on drop.
struct Cut {
    /// Each rule as `(source, destination)`.
    rules: Vec<(IpAddr, IpAddr)>,
}

impl Cut {
    /// Whether iptables works here (the rules need root and the iptables tool).
    fn available() -> Result<(), String> {
        match Process::new("iptables")
            .args(["-w", "-L", "INPUT", "-n"])
            .output()
        {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!(
                "iptables -L failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Err(format!("iptables not runnable: {e}")),
        }
    }

    /// Drops every packet between `node` and each of `peers`, both ways.
    fn between(node: IpAddr, peers: &[IpAddr]) -> Result<Cut> {
        let mut cut = Cut { rules: Vec::new() };
        for peer in peers {
            for (source, destination) in [(node, *peer), (*peer, node)] {
                iptables("-I", source, destination)?;
                cut.rules.push((source, destination));
            }
        }
        Ok(cut)
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        for (source, destination) in self.rules.drain(..) {
            if let Err(e) = iptables("-D", source, destination) {
                eprintln!("could not remove the iptables rule {source} -> {destination}: {e:#}");
            }
        }
    }
}

/// Inserts (`-I`) or deletes (`-D`) the INPUT rule dropping `source` -> `destination`.
fn iptables(action: &str, source: IpAddr, destination: IpAddr) -> Result<()> {
    let (source, destination) = (source.to_string(), destination.to_string());
    let out = Process::new("iptables")
        .args([
            "-w",
            action,
            "INPUT",
            "-s",
            &source,
            "-d",
            &destination,
            "-m",
            "comment",
            "--comment",
            "heimdall-gossip-test",
            "-j",
            "DROP",
        ])
        .output()?;
    ensure!(
        out.status.success(),
        "iptables {action} {source} -> {destination}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Node 3, cut off its peers, answers a name it holds from its cache (no upstream query) and
/// is declared down by SWIM; once the link heals SWIM sees it up again, and a name made hot
/// on node 1 reaches node 3 by gossip (the upstream saw one query for it).
#[test]
fn partitioned_node_serves_cache_and_gossip_resumes() -> Result<()> {
    if let Err(reason) = Cut::available() {
        println!("SKIPPED partitioned_node_serves_cache_and_gossip_resumes: {reason}");
        return Ok(());
    }
    let _serial = serial();
    let auth = AuthServer::start(zone())?;
    let (_spec, nodes) = cluster(3, &auth)?;
    let result = (|| {
        let cached = "www.example.test.";
        answer(nodes[&3].dns_addr(), cached)?;
        let ip = |id: u64| nodes[&id].dns_addr().ip();
        let seen = |line: &str| nodes[&1].log().matches(line).count();
        let (down, up) = (
            "gossip peer down (SWIM): skipped peer=3",
            "gossip peer up again (SWIM) peer=3",
        );
        let (downs, ups) = (seen(down), seen(up));
        let cut = Cut::between(ip(3), &[ip(1), ip(2)])?;
        let cut_at = Instant::now();
        for _ in 0..3 {
            let (ips, _) = answer(nodes[&3].dns_addr(), cached)?;
            ensure!(ips == ["192.0.2.1"], "{ips:?}");
        }
        one_upstream_query(&auth, cached)?;
        wait_until(CONVERGE, "node 1 declaring node 3 down (SWIM)", || {
            seen(down) > downs
        })?;
        println!("node 3 cut off: declared down after {:?}", cut_at.elapsed());

        drop(cut);
        let healed_at = Instant::now();
        let received = counter(&nodes[&3], "heimdall_gossip_received_total");
        wait_until(CONVERGE, "node 1 seeing node 3 up again (SWIM)", || {
            seen(up) > ups
        })?;
        println!(
            "link healed: node 3 up again after {:?}",
            healed_at.elapsed()
        );
        let hot = "other.example.test.";
        for _ in 0..3 {
            answer(nodes[&1].dns_addr(), hot)?;
        }
        wait_until(CONVERGE, "node 3 accepting gossip again", || {
            counter(&nodes[&3], "heimdall_gossip_received_total") > received
        })?;
        println!(
            "gossip reached node 3 {:?} after the heal",
            healed_at.elapsed()
        );
        let (ips, _) = answer(nodes[&3].dns_addr(), hot)?;
        ensure!(ips == ["192.0.2.1"], "{ips:?}");
        one_upstream_query(&auth, hot)
    })();
    with_logs(result, &nodes)
}
