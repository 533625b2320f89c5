//! Failures read as one line naming the endpoint and the reason, with a non-zero exit: a wrong
//! or missing token (nothing changes), an unreachable endpoint, a dump to a fleet.

use anyhow::{Result, ensure};
use heimdall_client::{Client, ClientOptions, Error};
use heimdall_tests::dead_addr;

use crate::{Ctl, Setup, endpoint};

/// A wrong token and a missing token are refused with "unauthenticated" naming the endpoint,
/// and the configuration keeps its version.
#[test]
fn wrong_token_is_refused() -> Result<()> {
    let setup = Setup::start()?;
    setup.run(|s| {
        let ctl = s.ctl();
        // Setup waited for the seeded version 1; compare against that.
        let before = ctl.json(&["config", "get"])?["version"].clone();
        ensure!(before.as_u64() >= Some(1), "not seeded: version {before}");
        for token in [Some("not-the-admin-token-0123456789"), None] {
            let line = ctl
                .with_token(token)
                .fail(&["config", "set", "cache.max_ttl", "77"])?;
            println!("{line}");
            ensure!(
                line.contains(&endpoint(&s.node)) && line.contains("unauthenticated"),
                "{line}"
            );
            ensure!(
                !line.contains("not-the-admin-token"),
                "the token leaked: {line}"
            );
        }
        let line = ctl
            .with_token(Some("not-the-admin-token-0123456789"))
            .fail(&["cache", "flush"])?;
        ensure!(line.contains("unauthenticated"), "{line}");
        let after = ctl.json(&["config", "get"])?["version"].clone();
        ensure!(
            before == after,
            "refused calls changed the version: {before} -> {after}"
        );
        Ok(())
    })
}

/// The library reports a refused token as [`Error::Unauthenticated`] for the endpoint.
#[test]
fn library_maps_unauthenticated() -> Result<()> {
    let setup = Setup::start()?;
    setup.run(|s| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let endpoint = endpoint(&s.node);
        let err = runtime.block_on(async {
            let options = ClientOptions {
                token: Some("wrong-token-wrong-token".to_owned()),
                ..ClientOptions::default()
            };
            let client = Client::connect(&endpoint, options).await?;
            client
                .config_set("cache.max_ttl", "70", None)
                .await
                .map(|_| ())
        });
        match err {
            Err(e @ Error::Unauthenticated { .. }) => {
                ensure!(e.endpoint() == endpoint, "{e}");
                println!("{e}");
                Ok(())
            }
            other => anyhow::bail!("expected unauthenticated, got {other:?}"),
        }
    })
}

/// A closed port fails with one "unreachable" line naming the endpoint, in either output.
#[test]
fn unreachable_endpoint() -> Result<()> {
    let dead = format!("http://{}", dead_addr(50051)?);
    let ctl = Ctl {
        endpoints: vec![dead.clone()],
        token: None,
    };
    for args in [
        &["status"][..],
        &["config", "get"],
        &["status", "-o", "json"],
    ] {
        let line = ctl.fail(args)?;
        println!("{line}");
        ensure!(
            line.starts_with(&format!("heimdallctl: {dead}: unreachable: ")),
            "{args:?}: {line}"
        );
    }
    Ok(())
}

/// `cache dump` reads one node: several endpoints are refused before any call.
#[test]
fn dump_needs_one_endpoint() -> Result<()> {
    let ctl = Ctl {
        endpoints: vec!["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()],
        token: None,
    };
    let line = ctl.fail(&["cache", "dump", "/nonexistent/dump"])?;
    ensure!(line.contains("exactly one --endpoint"), "{line}");
    Ok(())
}
