//! The cluster configuration through heimdallctl: get, set (with and without a version check),
//! history with the caller's name, rollback, and the upstream list, add and remove.

use anyhow::{Result, anyhow, ensure};
use heimdall_tests::{AuthServer, wait_until};
use serde_json::Value;

use crate::{ACTOR, CONVERGE, Ctl, Setup, endpoint, only_result, zone};

/// The version and `cache.max_ttl` the node reports now.
fn max_ttl(ctl: &Ctl) -> Result<(u64, u64)> {
    let json = ctl.json(&["config", "get", "cache.max_ttl"])?;
    let version = json["version"]
        .as_u64()
        .ok_or_else(|| anyhow!("no version: {json}"))?;
    let ttl = json["values"]["cache.max_ttl"]
        .as_u64()
        .ok_or_else(|| anyhow!("no cache.max_ttl: {json}"))?;
    Ok((version, ttl))
}

/// Get, set, a refused stale compare-and-set, history naming the caller, and rollback, in
/// table and JSON output.
#[test]
fn config_get_set_history_rollback() -> Result<()> {
    let setup = Setup::start()?;
    setup.run(|s| {
        let ctl = s.ctl();
        let whole = ctl.ok(&["config", "get"])?;
        ensure!(
            whole.starts_with("version ") && whole.contains("cache.max_ttl"),
            "{whole}"
        );
        let whole_json = ctl.json(&["config", "get"])?;
        ensure!(
            whole_json["values"]
                .as_object()
                .is_some_and(|v| v.len() > 3),
            "{whole_json:#}"
        );
        let (v0, ttl0) = max_ttl(&ctl)?;
        let wanted = if ttl0 == 900 { 901 } else { 900 };

        let out = ctl.ok(&[
            "config",
            "set",
            "cache.max_ttl",
            &wanted.to_string(),
            "--expect-version",
            &v0.to_string(),
        ])?;
        print!("{out}");
        ensure!(
            out.contains("cache.max_ttl") && out.contains(&format!("{ttl0}  ")),
            "{out}"
        );
        let (v1, ttl1) = max_ttl(&ctl)?;
        ensure!(
            v1 > v0 && ttl1 == wanted,
            "after set: version {v1}, max_ttl {ttl1}"
        );

        let line = ctl.fail(&[
            "config",
            "set",
            "cache.max_ttl",
            "60",
            "--expect-version",
            &v0.to_string(),
        ])?;
        println!("{line}");
        ensure!(
            line.contains(&endpoint(&s.node)) && line.contains("stale version"),
            "{line}"
        );
        ensure!(
            max_ttl(&ctl)? == (v1, wanted),
            "a stale set changed the config"
        );

        let line = ctl.fail(&["config", "set", "cache.max_ttl", "not-a-number"])?;
        println!("{line}");
        ensure!(
            line.contains("invalid request") && line.contains("cache.max_ttl"),
            "{line}"
        );

        let history = ctl.ok(&["config", "history"])?;
        print!("{history}");
        ensure!(
            history.lines().any(|l| l.starts_with(&format!("{v1} "))
                && l.contains(ACTOR)
                && l.contains("cache.max_ttl")),
            "history does not show version {v1} by {ACTOR}:\n{history}"
        );
        let json = ctl.json(&["config", "history", "--limit", "1"])?;
        let entries = json.as_array().cloned().unwrap_or_default();
        ensure!(
            entries.len() == 1 && entries[0]["version"] == v1 && entries[0]["actor"] == ACTOR,
            "{json:#}"
        );

        let out = ctl.ok(&["config", "rollback", &v0.to_string()])?;
        print!("{out}");
        let (v2, ttl2) = max_ttl(&ctl)?;
        ensure!(
            v2 > v1 && ttl2 == ttl0,
            "after rollback: version {v2}, max_ttl {ttl2}"
        );
        let json = ctl.json(&[
            "config",
            "rollback",
            &v1.to_string(),
            "--expect-version",
            &v2.to_string(),
        ])?;
        ensure!(
            json["version"].as_u64() > Some(v2)
                && json["changes"][0]["key"] == "cache.max_ttl"
                && json["changes"][0]["new"] == wanted,
            "{json:#}"
        );
        let set = ctl.json(&["config", "set", "cache.max_ttl", &ttl0.to_string()])?;
        ensure!(set["changes"][0]["new"] == ttl0, "{set:#}");
        Ok(())
    })
}

/// The upstream addresses a node lists.
fn upstreams(ctl: &Ctl) -> Result<Vec<String>> {
    let json = ctl.json(&["upstream", "list"])?;
    Ok(only_result(&json)?
        .as_array()
        .ok_or_else(|| anyhow!("no upstream array: {json}"))?
        .iter()
        .filter_map(|u| u["addr"].as_str().map(str::to_owned))
        .collect())
}

/// `upstream list` shows the upstream healthy after use; `upstream add` and `remove` change
/// the cluster configuration and the node's list follows.
#[test]
fn upstream_list_add_remove() -> Result<()> {
    let setup = Setup::start()?;
    let second = AuthServer::start(zone())?;
    setup.run(|s| {
        s.resolve("www.example.test.", hickory_proto::rr::RecordType::A)?;
        let ctl = s.ctl();
        let first = s.auth.addr().to_string();
        let table = ctl.ok(&["upstream", "list"])?;
        print!("{table}");
        ensure!(
            table
                .lines()
                .nth(1)
                .is_some_and(|l| l.starts_with(&first) && l.contains("yes")),
            "{table}"
        );
        let json = ctl.json(&["upstream", "list"])?;
        let listed: &Value = &only_result(&json)?[0];
        ensure!(
            listed["healthy"] == true && listed["queries"].as_u64() >= Some(1),
            "{json:#}"
        );

        let added = second.addr().to_string();
        let out = ctl.ok(&["upstream", "add", &added])?;
        print!("{out}");
        ensure!(out.contains("upstream"), "{out}");
        wait_until(CONVERGE, "the node listing the added upstream", || {
            upstreams(&ctl).is_ok_and(|u| u == [first.clone(), added.clone()])
        })?;
        let line = ctl.fail(&["upstream", "add", &added])?;
        println!("{line}");
        ensure!(line.contains(&endpoint(&s.node)), "{line}");

        let json = ctl.json(&["upstream", "remove", &added])?;
        ensure!(json["version"].as_u64().is_some(), "{json:#}");
        wait_until(CONVERGE, "the node dropping the removed upstream", || {
            upstreams(&ctl).is_ok_and(|u| u == [first.clone()])
        })?;
        Ok(())
    })
}
