//! Configuration: invalid files, environment values and flags fail with exit code 2 naming
//! the key; precedence is flags > environment > file > defaults.

use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use heimdall_tests::{
    AuthServer, Node, NodeOpts, build_query, dead_addr, exchange_udp, query_udp, run_heimdall,
    unique_addr,
};
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use tempfile::TempDir;

use crate::{a, first_ttl, zone};

/// Run heimdall with a config file holding `toml`, plus otherwise valid flags and `env`.
fn run_with(toml: &str, extra: &[&str], env: &[(&str, &str)]) -> Result<Output> {
    let dir = TempDir::new()?;
    let config = dir.path().join("heimdall.toml");
    std::fs::write(&config, toml)?;
    let mut args = vec![
        "--config".to_string(),
        config.display().to_string(),
        "--dns-listen".into(),
        unique_addr(5353)?.to_string(),
        "--upstream".into(),
        dead_addr(53)?.to_string(),
        "--data-dir".into(),
        dir.path().display().to_string(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_string()));
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    let started = Instant::now();
    let output = run_heimdall(&args, &env)?;
    println!("heimdall exited after {:?}", started.elapsed());
    Ok(output)
}

/// Ask the node for www.example.test. A, printing how long the answer took.
fn ask_www(node: &Node) -> Result<Message> {
    let started = Instant::now();
    let reply = query_udp(
        node.dns_addr(),
        "www.example.test.",
        RecordType::A,
        None,
        false,
    )?;
    println!("www.example.test. A answered in {:?}", started.elapsed());
    Ok(reply)
}

/// Check that heimdall exited with code 2 and its stderr names every one of `needles`.
fn expect_config_error(output: &Output, needles: &[&str]) -> Result<()> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("exit {:?}, stderr: {}", output.status.code(), stderr.trim());
    ensure!(
        output.status.code() == Some(2),
        "exit status {}, want 2; stdout: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    for needle in needles {
        ensure!(
            stderr.contains(needle),
            "stderr does not name {needle:?}: {stderr}"
        );
    }
    Ok(())
}

/// An unknown key in a known section of the file: exit code 2, stderr names the key.
#[test]
fn unknown_key_in_file_is_rejected() -> Result<()> {
    let output = run_with("[cache]\nmax_ttl = 600\nbogus_knob = 1\n", &[], &[])?;
    expect_config_error(&output, &["bogus_knob"])
}

/// An unknown section in the file: exit code 2, stderr names the section.
#[test]
fn unknown_section_in_file_is_rejected() -> Result<()> {
    let output = run_with("[frobnicator]\nlevel = 3\n", &[], &[])?;
    expect_config_error(&output, &["frobnicator"])
}

/// A value of the wrong type in the file: exit code 2, stderr names `cache.max_ttl`.
#[test]
fn bad_value_in_file_is_rejected() -> Result<()> {
    let output = run_with("[cache]\nmax_ttl = \"a long time\"\n", &[], &[])?;
    expect_config_error(&output, &["max_ttl"])
}

/// A bad value from the environment (HEIMDALL_CACHE__MAX_TTL=abc): exit code 2, stderr
/// names `cache.max_ttl`.
#[test]
fn bad_value_in_env_is_rejected() -> Result<()> {
    let output = run_with("", &[], &[("HEIMDALL_CACHE__MAX_TTL", "abc")])?;
    expect_config_error(&output, &["cache.max_ttl"])
}

/// An unknown command line flag is rejected with exit code 2.
#[test]
fn unknown_flag_is_rejected() -> Result<()> {
    let output = run_with("", &["--no-such-flag"], &[])?;
    expect_config_error(&output, &["--no-such-flag"])
}

/// Flags beat the environment, which beats the file: the upstream and listen address
/// come from the flags although env and file name others, and cache.max_ttl from the
/// environment overrides the file's.
#[test]
fn flags_beat_env_beat_file() -> Result<()> {
    let good = AuthServer::start(zone())?;
    let wrong = AuthServer::start(zone())?;
    wrong.set_record("www", 300, a(203, 0, 113, 66));
    let env_listen = unique_addr(5353)?;
    let file_listen = unique_addr(5353)?;
    let toml = format!(
        "[dns]\nlisten = \"{file_listen}\"\n\n[upstream]\nservers = [\"{}\"]\n\n[cache]\nmax_ttl = 5\n",
        wrong.addr()
    );
    let node = Node::start(NodeOpts {
        upstreams: vec![good.addr()],
        env: vec![
            ("HEIMDALL_DNS__LISTEN".into(), env_listen.to_string()),
            (
                "HEIMDALL_UPSTREAM__SERVERS".into(),
                wrong.addr().to_string(),
            ),
            ("HEIMDALL_CACHE__MAX_TTL".into(), "100".into()),
        ],
        config_toml: Some(toml),
        ..NodeOpts::default()
    })?;
    node.attach_log((|| {
        let reply = ask_www(&node)?;
        ensure!(
            reply.answers.len() == 2,
            "answer not from the flag's upstream:\n{reply}"
        );
        ensure!(
            wrong.count("www.example.test.", RecordType::A) == 0,
            "the env/file upstream was asked"
        );
        let ttl = first_ttl(&reply)?;
        println!("served TTL {ttl} (record 300, file max_ttl 5, env max_ttl 100)");
        ensure!(
            ttl > 5 && ttl <= 100,
            "TTL {ttl}: env max_ttl must beat the file's"
        );
        for (source, addr) in [("env", env_listen), ("file", file_listen)] {
            let probe = build_query("www.example.test.", RecordType::A, None, false)?;
            let answered = exchange_udp(addr, &probe, Duration::from_millis(500), 1).is_ok();
            ensure!(
                !answered,
                "the node also listens on the {source} address {addr}"
            );
        }
        Ok(())
    })())
}

/// Without an upstream flag the environment's upstream beats the file's.
#[test]
fn env_upstream_beats_file() -> Result<()> {
    let good = AuthServer::start(zone())?;
    let wrong = AuthServer::start(zone())?;
    wrong.set_record("www", 300, a(203, 0, 113, 66));
    let node = Node::start(NodeOpts {
        env: vec![("HEIMDALL_UPSTREAM__SERVERS".into(), good.addr().to_string())],
        config_toml: Some(format!("[upstream]\nservers = [\"{}\"]\n", wrong.addr())),
        ..NodeOpts::default()
    })?;
    node.attach_log((|| {
        let reply = ask_www(&node).context("querying the node")?;
        ensure!(
            reply.answers.len() == 2,
            "answer not from the env's upstream:\n{reply}"
        );
        Ok(())
    })())
}

/// With only a config file naming the upstream, the node forwards to it.
#[test]
fn file_upstream_is_used() -> Result<()> {
    let good = AuthServer::start(zone())?;
    let node = Node::start(NodeOpts {
        config_toml: Some(format!(
            "[upstream]\nservers = [\"{}\"]\n\n[cache]\nmax_ttl = 60\n",
            good.addr()
        )),
        ..NodeOpts::default()
    })?;
    node.attach_log((|| {
        let reply = ask_www(&node)?;
        ensure!(reply.answers.len() == 2, "{reply}");
        let ttl = first_ttl(&reply)?;
        ensure!(ttl <= 60, "file max_ttl 60 not applied: TTL {ttl}");
        Ok(())
    })())
}
