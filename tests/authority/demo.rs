//! `heimdall demo --nodes 3`: prints working `dig` and `heimdallctl` lines, elects a leader,
//! keeps its secrets off command lines, and on SIGINT stops every child and removes its
//! directory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail, ensure};
use heimdall_tests::addr::random_loopback_ip;
use heimdall_tests::node::heimdall_bin;
use heimdall_tests::{query_udp, wait_until};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::{CONVERGE, serial};

/// What the demo printed once ready.
#[derive(Debug, Default)]
struct Printed {
    /// Every line, for error messages.
    lines: Vec<String>,
    /// (address, name) of each `dig @ADDR -p PORT NAME` line.
    digs: Vec<(SocketAddr, String)>,
    /// The `heimdallctl` lines.
    ctl: Vec<String>,
    /// The leader the demo reported.
    leader: Option<u64>,
    /// The admin token.
    token: Option<String>,
    /// The child pids.
    pids: Vec<i32>,
    /// The demo's directory.
    dir: Option<PathBuf>,
}

impl Printed {
    /// Reads one printed line into the fields it fills.
    fn take(&mut self, line: &str) -> Result<()> {
        self.lines.push(line.to_owned());
        let node_line = line.starts_with("node ");
        if let Some(rest) = line
            .split_once(": dig @")
            .filter(|_| node_line)
            .map(|(_, r)| r)
        {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let [addr, "-p", port, name] = fields.as_slice() else {
                bail!("unexpected dig line {line:?}");
            };
            self.digs
                .push((format!("{addr}:{port}").parse()?, (*name).to_owned()));
        } else if line.contains(": heimdallctl --endpoint http://") {
            self.ctl.push(line.to_owned());
        } else if let Some(token) = line.strip_prefix("admin token: ") {
            self.token = Some(token.to_owned());
        } else if let Some(pids) = line.strip_prefix("processes: ") {
            self.pids = pids
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()?;
        } else if let Some(dir) = line.strip_prefix("files: ") {
            self.dir = Some(PathBuf::from(dir));
        }
        if let Some((_, rest)) = line.split_once("leader node ") {
            let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
            self.leader = Some(id.parse()?);
        }
        Ok(())
    }
}

/// Whether process `pid` still exists (not yet reaped, or running).
fn exists(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Kills the demo (and so, through their parent-death signal, its children) if a test fails.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The demo comes up on fresh loopback addresses, every node answers the printed `dig`
/// query with the zone's record, the lines name a leader and the token (which no child has
/// on its command line), and SIGINT ends the demo with exit 0, every child gone and its
/// directory removed.
#[test]
fn demo_starts_answers_and_cleans_up_on_sigint() -> Result<()> {
    let _serial = serial();
    let [_, a, b, _] = random_loopback_ip().octets();
    let base = format!("127.{a}.{b}.10");
    let started = Instant::now();
    let mut child = Command::new(heimdall_bin()?)
        .args(["demo", "--nodes", "3", "--base-addr", &base])
        .env_remove("HEIMDALL_TEST_IO_BACKEND")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting heimdall demo")?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let mut guard = Guard(child);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let errors = thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });

    let mut printed = Printed::default();
    let deadline = Instant::now() + CONVERGE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                printed.take(&line)?;
                if line.contains("heimdall demo: ready") {
                    break;
                }
            }
            Err(_) => bail!(
                "the demo did not get ready within {CONVERGE:?}; printed {:?}; exit {:?}",
                printed.lines,
                guard.0.try_wait()
            ),
        }
    }
    println!(
        "demo ready after {:?}:\n{}",
        started.elapsed(),
        printed.lines.join("\n")
    );

    ensure!(printed.digs.len() == 3, "dig lines: {:?}", printed.lines);
    ensure!(
        printed.ctl.len() == 3,
        "heimdallctl lines: {:?}",
        printed.lines
    );
    let leader = printed.leader.ok_or_else(|| anyhow!("no leader printed"))?;
    ensure!((1..=3).contains(&leader), "leader {leader}");
    let token = printed
        .token
        .clone()
        .ok_or_else(|| anyhow!("no admin token printed"))?;
    ensure!(token.len() >= 16, "token {token:?}");
    ensure!(
        printed.ctl.iter().all(|l| l.contains(&token)),
        "{:?}",
        printed.ctl
    );
    ensure!(printed.pids.len() == 4, "pids {:?}", printed.pids);
    let dir = printed
        .dir
        .clone()
        .ok_or_else(|| anyhow!("no directory printed"))?;
    ensure!(dir.is_dir(), "{} is not a directory", dir.display());
    for pid in &printed.pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
        ensure!(
            !String::from_utf8_lossy(&cmdline).contains(&token),
            "the admin token is on the command line of pid {pid}"
        );
    }
    for (addr, name) in &printed.digs {
        ensure!(
            addr.ip().to_string().starts_with(&format!("127.{a}.{b}.")),
            "{addr}"
        );
        let reply = query_udp(*addr, name, RecordType::A, None, false)?;
        ensure!(
            reply.metadata.response_code == ResponseCode::NoError && !reply.answers.is_empty(),
            "{addr} {name}: {reply:?}"
        );
    }

    let pid = i32::try_from(guard.0.id())?;
    // SAFETY: kill(2) on our own unreaped child.
    ensure!(unsafe { libc::kill(pid, libc::SIGINT) } == 0, "kill SIGINT");
    let stopping = Instant::now();
    wait_until(CONVERGE, "the demo to exit", || {
        matches!(guard.0.try_wait(), Ok(Some(_)))
    })?;
    let status = guard.0.wait()?;
    println!(
        "demo exited with {status} {:?} after SIGINT",
        stopping.elapsed()
    );
    let stderr_text = errors
        .join()
        .map_err(|_| anyhow!("stderr reader panicked"))?;
    ensure!(
        status.success(),
        "demo exit {status}; stderr: {stderr_text}"
    );
    for pid in &printed.pids {
        ensure!(
            !exists(*pid),
            "child {pid} still exists after the demo exited"
        );
    }
    ensure!(!dir.exists(), "{} still exists", dir.display());
    Ok(())
}

/// A port the demo needs that is already taken ends it at once: one line on stderr naming
/// the address and a non-zero exit, before anything is started.
#[test]
fn demo_refuses_a_port_in_use() -> Result<()> {
    let [_, a, b, _] = random_loopback_ip().octets();
    let taken = std::net::TcpListener::bind(format!("127.{a}.{b}.12:50051"))
        .context("binding the port the demo's node 2 needs")?;
    let output = Command::new(heimdall_bin()?)
        .args([
            "demo",
            "--nodes",
            "3",
            "--base-addr",
            &format!("127.{a}.{b}.10"),
        ])
        .env_remove("HEIMDALL_TEST_IO_BACKEND")
        .stdin(Stdio::null())
        .output()
        .context("running heimdall demo")?;
    drop(taken);
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(!output.status.success(), "exit {}", output.status);
    ensure!(stderr.lines().count() == 1, "not one line: {stderr}");
    ensure!(
        stderr.contains(&format!("127.{a}.{b}.12:50051/tcp (gRPC) is not free")),
        "{stderr}"
    );
    println!("{}", stderr.trim());
    Ok(())
}
