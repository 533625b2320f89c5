//! One node serving gRPC over TLS: heimdallctl over https with the CA, plain http and an
//! untrusted CA refused with one clear line, bad PEM files refused at start (exit 2 naming the
//! key), and client certificates (required or optional) authenticating and naming the caller.

use std::fs;
use std::process::Output;

use anyhow::{Result, ensure};
use heimdall_tests::node::TEST_ADMIN_TOKEN;
use heimdall_tests::{dead_addr, run_heimdall, unique_addr};
use serde_json::Value;
use tempfile::TempDir;

use crate::{
    ACTOR, ClientCerts, Pki, args, ctl_fail, ctl_ok, https, start_tls_node, tls_env, tls_flags,
};

/// The actor of the newest config history entry, read over `flags` from `endpoint`.
fn last_actor(endpoint: &str, flags: &[String]) -> Result<String> {
    let out = ctl_ok(&args(
        flags,
        &[
            "-e", endpoint, "config", "history", "--limit", "1", "-o", "json",
        ],
    ))?;
    let json: Value = serde_json::from_str(&out)?;
    Ok(json[0]["actor"].as_str().unwrap_or_default().to_owned())
}

/// heimdallctl reaches a TLS node over https with --ca-cert (status and a token-authenticated
/// config set); plain http, https without the CA and https with another CA fail with one line
/// naming the endpoint and what to check.
#[test]
fn https_with_ca_and_clear_failures() -> Result<()> {
    let pki = Pki::new("heimdall test CA")?;
    let node = start_tls_node(&pki, ClientCerts::Off, &[])?;
    node.attach_log((|| {
        let endpoint = https(&node);
        let ca = tls_flags(&pki, None);
        let status = ctl_ok(&args(&ca, &["-e", &endpoint, "status"]))?;
        print!("{status}");
        ensure!(status.contains(&endpoint), "{status}");
        ctl_ok(&args(
            &ca,
            &[
                "-e",
                &endpoint,
                "--token",
                TEST_ADMIN_TOKEN,
                "config",
                "set",
                "cache.max_ttl",
                "700",
            ],
        ))?;
        let actor = last_actor(&endpoint, &ca)?;
        ensure!(actor == ACTOR, "a token caller is named by --as: {actor}");

        let plain = format!("http://{}", node.grpc_addr());
        let line = ctl_fail(&["-e", &plain, "status"])?;
        ensure!(
            line.contains(&plain) && line.contains("https://"),
            "plain http to a TLS port: {line}"
        );

        let other = Pki::new("another CA")?;
        let line = ctl_fail(&args(
            &tls_flags(&other, None),
            &["-e", &endpoint, "status"],
        ))?;
        ensure!(
            line.contains(&endpoint)
                && line.contains("TLS handshake failed")
                && line.contains("--ca-cert"),
            "untrusted CA: {line}"
        );
        let line = ctl_fail(&["-e", &endpoint, "status"])?;
        ensure!(
            line.contains(&endpoint) && line.contains("TLS handshake failed"),
            "no CA given: {line}"
        );
        Ok(())
    })())
}

/// Runs heimdall with `env` (and otherwise valid flags) and checks it exits 2 naming `key`.
fn expect_tls_error(env: Vec<(String, String)>, key: &str, reason: &str) -> Result<()> {
    let dir = TempDir::new()?;
    let args = vec![
        "--dns-listen".to_owned(),
        unique_addr(5353)?.to_string(),
        "--upstream".to_owned(),
        dead_addr(53)?.to_string(),
        "--data-dir".to_owned(),
        dir.path().display().to_string(),
    ];
    let Output { status, stderr, .. } = run_heimdall(&args, &env)?;
    let stderr = String::from_utf8_lossy(&stderr);
    println!("exit {:?}: {}", status.code(), stderr.trim());
    ensure!(
        status.code() == Some(2),
        "exit {:?}: {stderr}",
        status.code()
    );
    ensure!(
        stderr.contains(key) && stderr.contains(reason),
        "want {key} and {reason:?} in: {stderr}"
    );
    Ok(())
}

/// Unreadable files, files without PEM, a key that does not go with the certificate, and
/// incomplete settings stop the node at start with exit 2 and the key named.
#[test]
fn bad_tls_files_are_refused_at_start() -> Result<()> {
    let pki = Pki::new("heimdall test CA")?;
    let ip = unique_addr(5353)?.ip();
    let good = pki.node_cert("good", &[ip])?;
    let other = pki.node_cert("other", &[ip])?;
    let junk = pki.ca_file().with_file_name("junk.pem");
    fs::write(&junk, "not a certificate\n")?;
    let set = |env: &mut Vec<(String, String)>, key: &str, value: &std::path::Path| {
        env.retain(|(k, _)| k != key);
        env.push((key.to_owned(), value.display().to_string()));
    };
    let base = tls_env(&pki, &good, ClientCerts::Optional);

    let mut env = base.clone();
    set(&mut env, "HEIMDALL_TLS__CERT_FILE", &junk);
    expect_tls_error(env, "tls.cert_file", "no PEM certificate")?;

    let mut env = base.clone();
    set(&mut env, "HEIMDALL_TLS__KEY_FILE", &good.cert);
    expect_tls_error(env, "tls.key_file", "no PEM PRIVATE KEY")?;

    let mut env = base.clone();
    set(&mut env, "HEIMDALL_TLS__KEY_FILE", &other.key);
    expect_tls_error(env, "tls.key_file", "tls.cert_file")?;

    let mut env = base.clone();
    set(
        &mut env,
        "HEIMDALL_TLS__CLIENT_CA_FILE",
        &junk.with_file_name("missing.pem"),
    );
    expect_tls_error(env, "tls.client_ca_file", "cannot read")?;

    let mut env = base.clone();
    env.retain(|(k, _)| k != "HEIMDALL_TLS__KEY_FILE");
    expect_tls_error(env, "tls.key_file", "required with tls.cert_file")?;

    let mut env = base;
    env.retain(|(k, _)| k != "HEIMDALL_TLS__CLIENT_CA_FILE");
    env.push((
        "HEIMDALL_TLS__REQUIRE_CLIENT_CERT".to_owned(),
        "true".to_owned(),
    ));
    expect_tls_error(env, "tls.require_client_cert", "tls.client_ca_file")
}

/// With client certificates required and no admin token: a call without a certificate is
/// refused at the handshake, one with a certificate of another CA too; with a certificate of
/// the node's client CA it works, a config set needs no token, and the history names the
/// certificate's common name, not `--as`.
#[test]
fn required_client_cert_authenticates_and_names_the_caller() -> Result<()> {
    let pki = Pki::new("heimdall test CA")?;
    let node = start_tls_node(
        &pki,
        ClientCerts::Required,
        &[("HEIMDALL_ADMIN__TOKEN", "")],
    )?;
    node.attach_log((|| {
        let endpoint = https(&node);
        let line = ctl_fail(&args(&tls_flags(&pki, None), &["-e", &endpoint, "status"]))?;
        ensure!(
            line.contains(&endpoint) && line.contains("--client-cert"),
            "no client certificate: {line}"
        );
        let rogue_ca = Pki::new("rogue CA")?;
        let rogue = rogue_ca.client_cert("mallory", "mallory")?;
        let line = ctl_fail(&args(
            &tls_flags(&pki, Some(&rogue)),
            &["-e", &endpoint, "status"],
        ))?;
        ensure!(
            line.contains(&endpoint) && line.contains("--client-cert"),
            "a client certificate of another CA: {line}"
        );

        let alice = pki.client_cert("alice", "alice-admin")?;
        let flags = tls_flags(&pki, Some(&alice));
        let status = ctl_ok(&args(&flags, &["-e", &endpoint, "status"]))?;
        print!("{status}");
        let out = ctl_ok(&args(
            &flags,
            &["-e", &endpoint, "config", "set", "cache.max_ttl", "600"],
        ))?;
        print!("{out}");
        let history = ctl_ok(&args(
            &flags,
            &["-e", &endpoint, "config", "history", "--limit", "2"],
        ))?;
        print!("{history}");
        let actor = last_actor(&endpoint, &flags)?;
        ensure!(
            actor == "alice-admin",
            "the history names the certificate: {actor}"
        );
        Ok(())
    })())
}

/// With client certificates optional: without one the admin token is still needed (and
/// names the caller by `--as`); with one no token is needed and the certificate names the
/// caller.
#[test]
fn optional_client_cert_or_token() -> Result<()> {
    let pki = Pki::new("heimdall test CA")?;
    let node = start_tls_node(&pki, ClientCerts::Optional, &[])?;
    node.attach_log((|| {
        let endpoint = https(&node);
        let ca = tls_flags(&pki, None);
        let line = ctl_fail(&args(
            &ca,
            &["-e", &endpoint, "config", "set", "cache.max_ttl", "500"],
        ))?;
        ensure!(
            line.contains("unauthenticated") && line.contains("client certificate"),
            "neither token nor certificate: {line}"
        );
        ctl_ok(&args(
            &ca,
            &[
                "-e",
                &endpoint,
                "--token",
                TEST_ADMIN_TOKEN,
                "config",
                "set",
                "cache.max_ttl",
                "500",
            ],
        ))?;
        ensure!(
            last_actor(&endpoint, &ca)? == ACTOR,
            "a token caller is named by --as"
        );
        let bob = pki.client_cert("bob", "bob-ops")?;
        let flags = tls_flags(&pki, Some(&bob));
        ctl_ok(&args(
            &flags,
            &["-e", &endpoint, "config", "set", "cache.max_ttl", "400"],
        ))?;
        let actor = last_actor(&endpoint, &flags)?;
        ensure!(
            actor == "bob-ops",
            "the certificate names the caller: {actor}"
        );
        Ok(())
    })())
}
