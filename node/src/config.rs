//! The node's configuration: heimdall-config's loader, plus the files it names for the node.
//!
//! [`load`] runs [`heimdall_config::load`] (defaults < file < environment < flags, every pure
//! key validated once) and then reads what only the node can: the zone of
//! `authority.zone_file` ([`crate::authority::Zone`]) and the PEM files of `[tls]`
//! ([`crate::tls::TlsMaterial`]). Their errors are [`ConfigError`]s naming the key, like every
//! other invalid configuration. [`Config`], [`AuthorityConfig`] and [`TlsConfig`] are the
//! crate's types carrying what was read; everything else is re-exported as it is.

use std::sync::Arc;

pub use heimdall_config::{
    AdminConfig, CacheConfig, Cli, ClusterConfig, ConfigError, DNS_PORT, DnsConfig, ENV_PREFIX,
    IoBackend, LogConfig, LogFormat, MIN_SECRET_LEN, NodeConfig, RESOLV_CONF, Secret,
    UpstreamConfig, WorkerScheduling, env_var_name, parse_host_port, parse_listen,
    parse_resolv_conf, parse_upstream,
};

use crate::authority::Zone;
use crate::tls::TlsMaterial;

/// The whole node configuration, with the zone and the TLS material read.
pub type Config = heimdall_config::Config<Arc<Zone>, Arc<TlsMaterial>>;

/// `[authority]`, with the zone read from `authority.zone_file`.
pub type AuthorityConfig = heimdall_config::AuthorityConfig<Arc<Zone>>;

/// `[tls]`, with the material read from its files.
pub type TlsConfig = heimdall_config::TlsConfig<Arc<TlsMaterial>>;

/// Loads the configuration from `cli`, the process environment and `/etc/resolv.conf`, then
/// reads the zone and the TLS files.
pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
    read_files(heimdall_config::load(cli)?)
}

/// [`load`] with `env` standing in for the process environment.
pub fn load_from(
    cli: &Cli,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    read_files(heimdall_config::load_from(cli, env)?)
}

/// Reads the zone file and the `[tls]` files a validated configuration names.
fn read_files(config: heimdall_config::Config) -> Result<Config, ConfigError> {
    let zone = match &config.authority.zone_file {
        Some(path) => {
            Some(Arc::new(Zone::load(path).map_err(|e| {
                ConfigError::invalid("authority.zone_file", e.to_string())
            })?))
        }
        None => None,
    };
    let material = match config.tls.files()? {
        Some(files) => Some(Arc::new(
            crate::tls::load(files).map_err(|e| ConfigError::invalid(e.key, e.reason))?,
        )),
        None => None,
    };
    Ok(config.with_loaded(zone, material))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads with `env` plus an upstream (so the machine's resolv.conf does not matter) and
    /// returns the error message.
    fn load_err(env: &[(&str, &str)]) -> String {
        let env = env
            .iter()
            .chain(&[("HEIMDALL_UPSTREAM__SERVERS", "192.0.2.53")])
            .map(|(k, v)| (k.to_string(), v.to_string()));
        match load_from(&Cli::default(), env) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(error) => error.to_string(),
        }
    }

    /// `[tls]` files that cannot be read or hold no PEM are errors naming the key (good
    /// certificates are checked by the tls integration suite, which generates them); TLS is
    /// off by default.
    #[test]
    fn tls_file_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not PEM\n").expect("write");
        let junk = junk.display().to_string();
        let missing = dir.path().join("missing.pem").display().to_string();
        let files = |cert: &str| {
            let env = [
                ("HEIMDALL_TLS__CERT_FILE", cert),
                ("HEIMDALL_TLS__KEY_FILE", junk.as_str()),
                ("HEIMDALL_TLS__CA_FILE", junk.as_str()),
            ];
            load_err(&env)
        };
        let message = files(&junk);
        assert!(
            message.contains("tls.cert_file") && message.contains("no PEM certificate"),
            "{message}"
        );
        let message = files(&missing);
        assert!(
            message.contains("tls.cert_file: cannot read") && message.contains("missing.pem"),
            "{message}"
        );
        // The keys are checked before any file is read.
        let message = load_err(&[("HEIMDALL_TLS__CERT_FILE", &missing)]);
        assert!(
            message.contains("tls.key_file: required with tls.cert_file"),
            "{message}"
        );

        let env = [(
            "HEIMDALL_UPSTREAM__SERVERS".to_owned(),
            "192.0.2.53".to_owned(),
        )];
        let config = load_from(&Cli::default(), env).expect("defaults");
        assert!(config.tls.material.is_none(), "TLS is off by default");
    }
}
