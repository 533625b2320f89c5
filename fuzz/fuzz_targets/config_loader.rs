//! The node's config loader on arbitrary bytes: the TOML file (up to the first NUL) and
//! `HEIMDALL_*` variables (after it, one `NAME=VALUE` a line) go through
//! `heimdall_config::load_with`, the step the binary's `load` ends in. It never panics, every
//! error names something, a variable of a text key arrives as written, and a configuration
//! that loads, written back as TOML, loads again to the same configuration.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use heimdall_config::{Cli, Config, ConfigFile, Secret, load_with};

/// Most environment variables taken from one input.
const MAX_ENV: usize = 8;

/// Keys whose value is text used as it is (strings, paths, secrets), not parsed into
/// something else: a variable setting one must arrive verbatim.
const TEXT_KEYS: [&str; 9] = [
    "node.data_dir",
    "log.level",
    "cluster.secret",
    "cluster.previous_secret",
    "admin.token",
    "authority.zone_file",
    "tls.cert_file",
    "tls.key_file",
    "tls.ca_file",
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (file, env) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], environment(&data[nul + 1..])),
        None => (data, Vec::new()),
    };
    let file = ConfigFile {
        path: Path::new("fuzz.toml"),
        bytes: file,
    };
    match load_with(&Cli::default(), Some(file), env.clone(), resolv_conf()) {
        Ok(config) => round_trip(&config, &env),
        Err(error) => {
            let message = error.to_string();
            assert!(!message.is_empty(), "{error:?} has an empty message");
            if let Some(key) = error.key() {
                assert!(!key.is_empty(), "{message:?} names no key");
                assert!(
                    message.starts_with(key),
                    "{message:?} does not start with {key:?}"
                );
            }
        }
    }
});

/// `NAME=VALUE` lines as environment variables, `HEIMDALL_` put in front of names without it.
fn environment(bytes: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|line| line.split_once('='))
        .take(MAX_ENV)
        .map(|(name, value)| {
            let name = if name.to_ascii_uppercase().starts_with("HEIMDALL_") {
                name.to_owned()
            } else {
                format!("HEIMDALL_{name}")
            };
            (name, value.to_owned())
        })
        .collect()
}

/// A resolv.conf with one nameserver, written once per process, so configurations without
/// `upstream.servers` get past that check whatever the machine's resolv.conf holds.
fn resolv_conf() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path =
            std::env::temp_dir().join(format!("heimdall-fuzz-resolv-{}.conf", std::process::id()));
        std::fs::write(&path, "nameserver 192.0.2.53\n").expect("write the fuzz resolv.conf");
        path
    })
}

/// Writes `config` as TOML, checks the text keys set by `env` in it, loads that again and
/// expects the same configuration.
///
/// Secrets are written inline (serialization shows them as `<redacted>`), also those read
/// from a file, so nothing is read twice; the servers are then configured, not from
/// resolv.conf. A value TOML cannot hold (an integer above `i64::MAX`, possible from the
/// environment) skips the check.
fn round_trip(config: &Config, env: &[(String, String)]) {
    let Ok(text) = toml::to_string(config) else {
        return;
    };
    let mut table: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("serialized config is not TOML: {e}\n{text}"));
    let mut expected = config.clone();
    expected.upstream.servers_from_resolv_conf = false;
    let cluster = &mut expected.cluster;
    inline_secret(&mut table, "cluster", "secret", &cluster.secret);
    inline_secret(
        &mut table,
        "cluster",
        "previous_secret",
        &cluster.previous_secret,
    );
    cluster.secret_file = None;
    cluster.previous_secret_file = None;
    inline_secret(&mut table, "admin", "token", &expected.admin.token);
    expected.admin.token_file = None;
    verbatim(&table, env);
    let text = toml::to_string(&table).expect("a TOML table serializes");

    let file = ConfigFile {
        path: Path::new("round-trip.toml"),
        bytes: text.as_bytes(),
    };
    let again = load_with(&Cli::default(), Some(file), Vec::new(), resolv_conf())
        .unwrap_or_else(|e| panic!("a loaded config does not load again: {e}\n{text}"));
    assert_eq!(again, expected, "written as:\n{text}");
}

/// Checks that each variable setting one of [`TEXT_KEYS`] (the only one for its key) holds
/// the value the configuration, written as `table`, has for the key.
fn verbatim(table: &toml::Table, env: &[(String, String)]) {
    let key = |name: &str| name.to_lowercase()["heimdall_".len()..].replace("__", ".");
    for (name, value) in env {
        let dotted = key(name);
        let set_once = env.iter().filter(|(other, _)| key(other) == dotted).count() == 1;
        if value.is_empty() || !set_once || !TEXT_KEYS.contains(&dotted.as_str()) {
            continue;
        }
        let Some((section, field)) = dotted.split_once('.') else {
            continue;
        };
        let loaded = table.get(section).and_then(|s| s.get(field));
        assert_eq!(
            loaded.and_then(toml::Value::as_str),
            Some(value.as_str()),
            "{name}={value:?} did not arrive as written"
        );
    }
}

/// Replaces `[section] key` (and drops `key_file`) with the secret's value, or removes both.
fn inline_secret(table: &mut toml::Table, section: &str, key: &str, secret: &Option<Secret>) {
    let Some(toml::Value::Table(section)) = table.get_mut(section) else {
        return;
    };
    section.remove(&format!("{key}_file"));
    match secret {
        Some(secret) => {
            let value = String::from_utf8(secret.expose().to_vec()).expect("secrets are text");
            section.insert(key.to_owned(), toml::Value::String(value));
        }
        None => {
            section.remove(key);
        }
    }
}
