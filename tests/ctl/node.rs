//! Node-local views: status, stats (and --watch), top --once, health, completions, and a fleet
//! of endpoints answered with a row or section per node.

use anyhow::{Result, ensure};
use heimdall_tests::dead_addr;
use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::{Ctl, Setup, endpoint, only_result, start_node};

/// `status` shows the node's id, role, config version and DNS address in a table row, and the
/// same fields in JSON.
#[test]
fn status_in_table_and_json() -> Result<()> {
    let setup = Setup::start()?;
    setup.run(|s| {
        let ctl = s.ctl();
        let table = ctl.ok(&["status"])?;
        print!("{table}");
        let lines: Vec<&str> = table.lines().collect();
        ensure!(lines.len() == 2, "want a header and one row:\n{table}");
        ensure!(
            lines[0].starts_with("ENDPOINT") && lines[0].contains("ROLE"),
            "{table}"
        );
        ensure!(
            lines[1].starts_with(&endpoint(&s.node))
                && lines[1].contains(&s.node.dns_addr().to_string()),
            "{table}"
        );
        let json = ctl.json(&["status"])?;
        let status = only_result(&json)?;
        ensure!(
            status["node_id"].as_u64().is_some_and(|id| id > 0)
                && status["dns_addr"] == s.node.dns_addr().to_string()
                && status["role"].as_str().is_some_and(|r| !r.is_empty())
                && status["workers"] == 1,
            "{json:#}"
        );
        Ok(())
    })
}

/// `stats` counts the queries sent to the node (table and JSON), and `stats --watch` prints
/// one line (or JSON document) per pushed snapshot.
#[test]
fn stats_and_watch() -> Result<()> {
    let setup = Setup::start()?;
    setup.run(|s| {
        for _ in 0..5 {
            s.resolve("www.example.test.", RecordType::A)?;
        }
        let ctl = s.ctl();
        let text = ctl.ok(&["stats"])?;
        print!("{text}");
        ensure!(
            text.contains("queries:") && text.contains("latency:"),
            "{text}"
        );
        let json = ctl.json(&["stats"])?;
        let stats = only_result(&json)?;
        let total = stats["queries_total"].as_u64().unwrap_or(0);
        ensure!(
            total >= 5,
            "queries_total {total} after 5 queries: {json:#}"
        );
        ensure!(stats["cache"]["hits"].as_u64() >= Some(4), "{json:#}");
        let upstreams = stats["upstreams"].as_array().map_or(0, Vec::len);
        ensure!(upstreams == 1, "one upstream expected: {json:#}");

        let watch = ctl.ok(&["stats", "--watch", "--count", "2", "--interval", "0.2"])?;
        print!("{watch}");
        let lines: Vec<&str> = watch.lines().collect();
        ensure!(
            lines.len() == 3 && lines[0].starts_with("TIME"),
            "want a header and two snapshot lines:\n{watch}"
        );
        let watch = ctl.ok(&[
            "stats",
            "--watch",
            "--count",
            "2",
            "--interval",
            "0.2",
            "-o",
            "json",
        ])?;
        let docs: Vec<Value> = watch
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        ensure!(docs.len() == 2, "want two JSON lines:\n{watch}");
        ensure!(
            docs.iter()
                .all(|d| d["stats"]["queries_total"].as_u64() >= Some(total)),
            "{watch}"
        );
        Ok(())
    })
}

/// `top --once` prints one frame with the node's row and its most queried name; JSON carries
/// the rates and the names.
#[test]
fn top_once() -> Result<()> {
    let setup = Setup::start()?;
    setup.run(|s| {
        // The node samples one query in eight into its top-names sketch: send enough that
        // www is sampled several times and leads.
        for _ in 0..48 {
            s.resolve("www.example.test.", RecordType::A)?;
        }
        s.resolve("mail.example.test.", RecordType::A)?;
        let ctl = s.ctl();
        let frame = ctl.ok(&["top", "--once", "--interval", "0.3"])?;
        print!("{frame}");
        ensure!(
            frame.contains("QPS") && frame.contains("HIT%") && frame.contains("P99"),
            "{frame}"
        );
        ensure!(
            frame.contains("www.example.test"),
            "top name missing:\n{frame}"
        );
        let json = ctl.json(&["top", "--once", "--interval", "0.3", "--names", "1"])?;
        let frame = only_result(&json)?;
        let names = frame["top"]["names"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        ensure!(
            names.len() == 1
                && names[0]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("www.example.test")),
            "{json:#}"
        );
        ensure!(frame["qps"].as_f64().is_some(), "{json:#}");
        Ok(())
    })
}

/// `health` reports SERVING for a running node, in a table and in JSON.
#[test]
fn health_serving() -> Result<()> {
    let setup = Setup::start()?;
    setup.run(|s| {
        let ctl = s.ctl();
        let table = ctl.ok(&["health"])?;
        print!("{table}");
        ensure!(
            table.lines().nth(1).is_some_and(|l| l.ends_with("SERVING")),
            "{table}"
        );
        let json = ctl.json(&["health"])?;
        ensure!(only_result(&json)?["status"] == "SERVING", "{json:#}");
        Ok(())
    })
}

/// `completions` prints a script naming the commands for each shell, without any endpoint.
#[test]
fn completions() -> Result<()> {
    let ctl = Ctl {
        endpoints: Vec::new(),
        token: None,
    };
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = ctl.ok(&["completions", shell])?;
        ensure!(
            script.contains("heimdallctl") && script.contains("add-node"),
            "{shell} completions:\n{script}"
        );
    }
    Ok(())
}

/// Several endpoints give a row per node; a dead one adds one stderr line and a non-zero exit
/// while the others are still shown (and JSON carries its error).
#[test]
fn fleet_rows_per_node() -> Result<()> {
    let setup = Setup::start()?;
    let second = start_node(&[setup.auth.addr()])?;
    setup.run(|s| {
        let ctl = Ctl::new(&[&s.node, &second]);
        let table = ctl.ok(&["status"])?;
        print!("{table}");
        ensure!(table.lines().count() == 3, "want two rows:\n{table}");
        ensure!(
            table.contains(&endpoint(&s.node)) && table.contains(&endpoint(&second)),
            "{table}"
        );
        let sections = ctl.ok(&["upstream", "list"])?;
        ensure!(
            sections.matches("== http://").count() == 2,
            "want a section per node:\n{sections}"
        );

        let dead = format!("http://{}", dead_addr(50051)?);
        let mut with_dead = ctl.clone();
        with_dead.endpoints.push(dead.clone());
        let run = with_dead.run(&["status"])?;
        print!("{}{}", run.stdout, run.stderr);
        ensure!(!run.success, "a dead node must fail the command");
        ensure!(run.stdout.lines().count() == 3, "{}", run.stdout);
        let errors: Vec<&str> = run.stderr.lines().collect();
        ensure!(
            errors.len() == 1 && errors[0].contains(&dead) && errors[0].contains("unreachable"),
            "{}",
            run.stderr
        );
        let run = with_dead.run(&["status", "-o", "json"])?;
        let json: Value = serde_json::from_str(&run.stdout)?;
        let nodes = json.as_array().cloned().unwrap_or_default();
        ensure!(
            nodes.len() == 3
                && nodes[2]["endpoint"] == dead
                && nodes[2]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("unreachable")),
            "{json:#}"
        );
        Ok(())
    })
}

/// Whether util-linux `script` (which gives a command a pseudo-terminal) is installed.
fn script_available() -> bool {
    std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The live `top` view in a pseudo-terminal: it draws frames with the node's row and its top
/// name in the alternate screen, and q quits it with exit code 0, restoring the screen.
#[test]
fn top_live_view_quits_on_q() -> Result<()> {
    if !script_available() {
        println!("skipped: util-linux `script` is not installed");
        return Ok(());
    }
    let setup = Setup::start()?;
    setup.run(|s| {
        for _ in 0..48 {
            s.resolve("www.example.test.", RecordType::A)?;
        }
        let dir = tempfile::tempdir()?;
        let typescript = dir.path().join("top.typescript");
        let command = format!(
            "{} --endpoint {} --token {} top --interval 0.3",
            crate::ctl_bin()?.display(),
            endpoint(&s.node),
            crate::TOKEN
        );
        let mut child = std::process::Command::new("script")
            .arg("-qfc")
            .arg(&command)
            .arg(&typescript)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()?;
        let drawn =
            heimdall_tests::wait_until(crate::CONVERGE, "a frame with the top name", || {
                std::fs::read_to_string(&typescript)
                    .is_ok_and(|t| t.contains("QPS") && t.contains("www.example.test"))
            });
        if let Some(stdin) = child.stdin.as_mut() {
            use std::io::Write as _;
            stdin.write_all(b"q")?;
            stdin.flush()?;
        }
        let exited = heimdall_tests::wait_for(crate::CONVERGE, "top to quit on q", || {
            child.try_wait().ok().flatten()
        });
        if exited.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let screen = std::fs::read_to_string(&typescript).unwrap_or_default();
        drawn.map_err(|e| e.context(format!("screen:\n{screen}")))?;
        let (status, took) = exited?;
        println!("top quit {took:?} after q");
        ensure!(status.success(), "top exited with {status}:\n{screen}");
        ensure!(
            screen.contains("\x1b[?1049h") && screen.contains("\x1b[?1049l"),
            "the alternate screen was not entered and left:\n{screen}"
        );
        Ok(())
    })
}
