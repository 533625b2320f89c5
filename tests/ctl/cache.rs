//! The cache commands: lookup, flush by name / type / subtree / everything (exactly what each
//! covers), and dump then load into a fresh node with the remaining TTLs; a corrupt dump is
//! refused before anything is loaded.

use std::fs;

use anyhow::{Result, ensure};
use hickory_proto::rr::RecordType;

use crate::{Ctl, Setup, lookup_entries, only_result, resolve, start_node};

/// Every cached name and type the flush test works with.
const CACHED: [(&str, &str); 5] = [
    ("www.example.test", "A"),
    ("www.example.test", "AAAA"),
    ("mail.example.test", "A"),
    ("a.sub.example.test", "A"),
    ("b.sub.example.test", "A"),
];

/// Which of [`CACHED`] the node's cache holds now.
fn cached(ctl: &Ctl) -> Result<Vec<(&'static str, &'static str)>> {
    let mut out = Vec::new();
    for (name, rtype) in CACHED {
        if !lookup_entries(ctl, name, rtype)?.is_empty() {
            out.push((name, rtype));
        }
    }
    Ok(out)
}

/// Presentation-format records with the TTL field (the second) left out.
fn without_ttls(records: &serde_json::Value) -> Vec<String> {
    records
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str())
        .map(|r| {
            let fields: Vec<&str> = r.split_whitespace().collect();
            [
                &fields[..1.min(fields.len())],
                fields.get(2..).unwrap_or_default(),
            ]
            .concat()
            .join(" ")
        })
        .collect()
}

/// `cache lookup` shows a resolved answer (table and JSON: TTL, hits, source, records), and
/// "not cached" for a name never asked.
#[test]
fn lookup_shows_entries() -> Result<()> {
    let setup = Setup::start()?;
    setup.run(|s| {
        s.resolve("www.example.test.", RecordType::A)?;
        s.resolve("www.example.test.", RecordType::A)?;
        let ctl = s.ctl();
        let table = ctl.ok(&["cache", "lookup", "www.example.test"])?;
        print!("{table}");
        ensure!(
            table.starts_with("NAME") && table.contains("www.example.test.  A     NOERROR"),
            "{table}"
        );
        ensure!(table.contains("192.0.2.1"), "records missing:\n{table}");
        let entries = lookup_entries(&ctl, "WWW.Example.Test.", "A")?;
        ensure!(entries.len() == 1, "{entries:?}");
        let e = &entries[0];
        ensure!(
            e["source"] == "upstream"
                && e["rcode"] == "NOERROR"
                && e["ttl_original"] == 300
                && e["ttl_remaining"].as_u64().is_some_and(|t| t <= 300)
                // Per-entry hits are buffered per worker, so they may lag a query or two.
                && e["hits"].as_u64().is_some(),
            "{e:#}"
        );
        let none = ctl.ok(&["cache", "lookup", "mail.example.test", "A"])?;
        ensure!(none == "not cached\n", "{none}");
        Ok(())
    })
}

/// Flush by name and type, by subtree, by name, and everything: each removes exactly what it
/// covers (looked up before and after), on a table and a JSON run.
#[test]
fn flush_removes_exactly_its_scope() -> Result<()> {
    let setup = Setup::start()?;
    setup.run(|s| {
        let ctl = s.ctl();
        for (name, rtype) in CACHED {
            let rtype = if rtype == "A" {
                RecordType::A
            } else {
                RecordType::AAAA
            };
            s.resolve(&format!("{name}."), rtype)?;
        }
        ensure!(cached(&ctl)? == CACHED, "all five cached first");

        let table = ctl.ok(&["cache", "flush", "www.example.test", "--type", "AAAA"])?;
        print!("{table}");
        ensure!(
            table.lines().nth(1).is_some_and(|l| l.ends_with("  1")),
            "{table}"
        );
        ensure!(
            cached(&ctl)? == [CACHED[0], CACHED[2], CACHED[3], CACHED[4]],
            "name+type flush took more or less than www AAAA"
        );

        let json = ctl.json(&["cache", "flush", "sub.example.test", "--subtree"])?;
        ensure!(only_result(&json)?["removed"] == 2, "{json:#}");
        ensure!(
            cached(&ctl)? == [CACHED[0], CACHED[2]],
            "subtree flush took more or less than a.sub and b.sub"
        );

        ctl.ok(&["cache", "flush", "www.example.test"])?;
        ensure!(
            cached(&ctl)? == [CACHED[2]],
            "name flush took more than www"
        );

        s.resolve("www.example.test.", RecordType::AAAA)?;
        ctl.ok(&["cache", "flush", "--type", "A"])?;
        ensure!(
            cached(&ctl)? == [CACHED[1]],
            "type flush must take every A and leave www AAAA"
        );

        let json = ctl.json(&["cache", "flush"])?;
        ensure!(
            only_result(&json)?["removed"].as_u64() >= Some(1),
            "{json:#}"
        );
        ensure!(cached(&ctl)?.is_empty(), "a full flush left entries");
        Ok(())
    })
}

/// A dump of one node loaded into a fresh node (whose upstream is dead) restores the entries
/// with no more TTL than they had left, answered from the cache; a corrupted copy of the dump
/// is refused with one line naming the file and loads nothing.
#[test]
fn dump_then_load_into_fresh_node() -> Result<()> {
    let setup = Setup::start()?;
    let fresh = start_node(&[heimdall_tests::dead_addr(53)?])?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("cache.dump");
    let file_arg = file.to_string_lossy().into_owned();
    setup.run(|s| {
        for name in [
            "www.example.test.",
            "mail.example.test.",
            "a.sub.example.test.",
        ] {
            s.resolve(name, RecordType::A)?;
        }
        let ctl = s.ctl();
        let before = lookup_entries(&ctl, "www.example.test", "A")?;
        // The three names, plus whatever the harness' readiness probe left in the cache.
        let status = ctl.json(&["status"])?;
        let held = only_result(&status)?["cache_entries"].as_u64().unwrap_or(0);
        ensure!(held >= 3, "{status:#}");
        let out = ctl.ok(&["cache", "dump", &file_arg])?;
        print!("{out}");
        ensure!(
            out.starts_with(&format!("dumped {held} entries from")),
            "{out}"
        );
        let json = ctl.json(&["cache", "dump", &file_arg])?;
        ensure!(json["entries"] == held, "{json:#}");

        let target = Ctl::new(&[&fresh]);
        let mut corrupt = fs::read(&file)?;
        let middle = corrupt.len() / 2;
        corrupt[middle] ^= 0x40;
        let bad = dir.path().join("corrupt.dump");
        fs::write(&bad, &corrupt)?;
        let line = target.fail(&["cache", "load", &bad.to_string_lossy()])?;
        println!("{line}");
        ensure!(line.contains("corrupt.dump cannot be loaded"), "{line}");
        ensure!(
            lookup_entries(&target, "www.example.test", "A")?.is_empty(),
            "a refused dump loaded entries"
        );

        let table = target.ok(&["cache", "load", &file_arg])?;
        print!("{table}");
        ensure!(
            table.lines().nth(1).is_some_and(|l| {
                let cells: Vec<&str> = l.split_whitespace().collect();
                cells[1..] == [held.to_string().as_str(), "0"]
            }),
            "want {held} loaded, 0 skipped:\n{table}"
        );
        let after = lookup_entries(&target, "www.example.test", "A")?;
        ensure!(after.len() == 1, "{after:?}");
        let (was, now) = (&before[0], &after[0]);
        ensure!(
            now["source"] == "loaded"
                && now["ttl_remaining"].as_u64() <= was["ttl_remaining"].as_u64()
                && now["ttl_remaining"].as_u64() >= Some(1)
                && !without_ttls(&was["records"]).is_empty()
                && without_ttls(&now["records"]) == without_ttls(&was["records"]),
            "before {was:#} after {now:#}"
        );
        // The fresh node's upstream is dead: an answer can only come from the loaded cache.
        resolve(fresh.dns_addr(), "mail.example.test.", RecordType::A)?;
        let json = target.json(&["cache", "load", &file_arg])?;
        ensure!(only_result(&json)?["loaded"] == held, "{json:#}");
        Ok(())
    })
}
