//! Process lifecycle: SIGTERM ends the node with exit code 0, finishing in-flight queries.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use heimdall_tests::{build_query, exchange_udp, wait_until};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::Setup;

/// An idle node exits with code 0 promptly on SIGTERM.
#[test]
fn sigterm_exits_zero_when_idle() -> Result<()> {
    let mut setup = Setup::start()?;
    let started = Instant::now();
    setup.node.signal(libc::SIGTERM)?;
    let Some(status) = setup.node.wait_exit(Duration::from_secs(10)) else {
        return setup
            .node
            .attach_log(Err(anyhow::anyhow!("still running 10 s after SIGTERM")));
    };
    println!("exited with {status} {:?} after SIGTERM", started.elapsed());
    setup.node.attach_log(if status.code() == Some(0) {
        Ok(())
    } else {
        Err(anyhow::anyhow!("exit status {status}, want 0"))
    })
}

/// SIGTERM while a query waits on a 300 ms upstream: that query still gets its answer and
/// the node then exits with code 0.
#[test]
fn sigterm_finishes_in_flight_query_then_exits_zero() -> Result<()> {
    let mut setup = Setup::start()?;
    setup.auth.set_delay(Duration::from_millis(300));
    let name = "www.example.test.";
    let addr = setup.node.dns_addr();
    let query = build_query(name, RecordType::A, None, false)?;
    let result = thread::scope(|scope| -> Result<()> {
        let client = scope.spawn(|| exchange_udp(addr, &query, Duration::from_secs(5), 1));
        let setup_ref = &setup;
        wait_until(
            Duration::from_secs(5),
            "the query to reach the upstream",
            || setup_ref.auth.count(name, RecordType::A) >= 1,
        )?;
        let signalled = Instant::now();
        setup.node.signal(libc::SIGTERM)?;
        let reply = match client.join() {
            Ok(reply) => reply.context("the in-flight query got no answer")?,
            Err(_) => bail!("the client thread panicked"),
        };
        println!(
            "in-flight query answered {:?} after SIGTERM",
            signalled.elapsed()
        );
        ensure!(reply.response_code == ResponseCode::NoError, "{reply}");
        ensure!(reply.answers.len() == 2, "{reply}");
        let Some(status) = setup.node.wait_exit(Duration::from_secs(10)) else {
            bail!("still running 10 s after SIGTERM");
        };
        println!(
            "exited with {status} {:?} after SIGTERM",
            signalled.elapsed()
        );
        ensure!(status.code() == Some(0), "exit status {status}, want 0");
        Ok(())
    });
    setup.node.attach_log(result)
}
