//! The command line of `heimdallctl`: global flags and every command, as clap derive types.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The endpoint used when neither `--endpoint` nor `HEIMDALLCTL_ENDPOINT` names one.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:50051";

/// Manage Heimdall DNS cache nodes through their gRPC control plane.
#[derive(Debug, Parser)]
#[command(name = "heimdallctl", version, propagate_version = true)]
pub struct Cli {
    /// The global flags.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// A node's control-plane endpoint; repeat (or separate with commas) to address a fleet:
    /// node-local commands then run on every node, cluster-wide ones on the first that answers
    #[arg(
        long,
        short = 'e',
        env = "HEIMDALLCTL_ENDPOINT",
        default_value = DEFAULT_ENDPOINT,
        value_delimiter = ',',
        global = true
    )]
    pub endpoint: Vec<String>,
    /// The admin token, sent as a bearer token
    #[arg(long, env = "HEIMDALLCTL_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// A file holding the admin token (surrounding whitespace ignored); wins over --token
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Your name in the config history [default: $USER@hostname]; under mTLS the node records
    /// your client certificate's name instead
    #[arg(long = "as", value_name = "NAME", global = true)]
    pub actor: Option<String>,
    /// CA certificate (PEM) that signed the nodes' certificates, for https:// endpoints
    /// [default: the system's CA certificates]; endpoints without a scheme get https://
    #[arg(long, value_name = "FILE", env = "HEIMDALLCTL_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (PEM) to present to nodes that verify client certificates (mTLS);
    /// it authenticates you as admin and names you in the config history
    #[arg(
        long,
        value_name = "FILE",
        env = "HEIMDALLCTL_CLIENT_CERT",
        requires = "client_key",
        global = true
    )]
    pub client_cert: Option<PathBuf>,
    /// The private key (PEM) of --client-cert
    #[arg(
        long,
        value_name = "FILE",
        env = "HEIMDALLCTL_CLIENT_KEY",
        requires = "client_cert",
        global = true
    )]
    pub client_key: Option<PathBuf>,
    /// How to print results
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
    /// Seconds to wait for a connection to a node
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds, global = true)]
    pub connect_timeout: Duration,
    /// Seconds one call may take (adding a node waits for it to catch up)
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = parse_seconds, global = true)]
    pub timeout: Duration,
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned plain-text columns
    Table,
    /// One JSON document (node-local commands: an array with one object per endpoint)
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show each node at a glance: id, role, leader, config version, cache size, uptime
    Status,
    /// Show each node's counters and latency percentiles
    Stats {
        /// Keep printing one line per snapshot as the node pushes them (Ctrl-C stops)
        #[arg(long)]
        watch: bool,
        /// Seconds between snapshots with --watch
        #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_seconds)]
        interval: Duration,
        /// With --watch: stop after this many snapshots from each node
        #[arg(long, value_name = "N", requires = "watch")]
        count: Option<u64>,
    },
    /// A live view of QPS, hit ratio, latency percentiles and top names (q quits)
    Top {
        /// Print one frame (two snapshots an interval apart) and exit, for scripts
        #[arg(long)]
        once: bool,
        /// Seconds between refreshes
        #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_seconds)]
        interval: Duration,
        /// How many of the most queried names to show per node
        #[arg(long, value_name = "N", default_value_t = 10)]
        names: u32,
    },
    /// Look into, flush, dump and load the cache
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Read and change the cluster configuration (kept in Raft)
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List the upstreams with their health, add or remove one
    #[command(subcommand)]
    Upstream(UpstreamCommand),
    /// Show the members and leader, add or remove a node
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Check each node's grpc.health.v1 status (exit code 1 unless every node is serving)
    Health {
        /// The service to check; empty for the node as a whole
        #[arg(long, default_value = "")]
        service: String,
    },
    /// Print a shell completion script to stdout
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
}

/// `heimdallctl cache ...`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Show what each node caches for a name and type
    Lookup {
        /// The name, e.g. www.example.com (trailing dot optional)
        name: String,
        /// The type, e.g. A, AAAA, MX or TYPE65 [default: A]
        rtype: Option<String>,
    },
    /// Remove entries: by name, subtree or type, or everything when given neither name nor type
    Flush {
        /// The name to flush (omit, and omit --type, to flush everything)
        name: Option<String>,
        /// Also flush every name under NAME
        #[arg(long, requires = "name")]
        subtree: bool,
        /// Only entries of this type
        #[arg(long = "type", value_name = "TYPE")]
        rtype: Option<String>,
        /// Flush on every node of the cluster (through Raft) instead of the addressed nodes
        #[arg(long)]
        cluster: bool,
    },
    /// Save one node's live cache entries to FILE (a heimdall cache dump)
    Dump {
        /// The file to write (replaced only once the dump is complete)
        file: PathBuf,
    },
    /// Load a dump made by `cache dump` into each node, with the TTLs left at dump time
    Load {
        /// The dump file (checked in full before anything is sent)
        file: PathBuf,
    },
}

/// `heimdallctl config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Show the configuration, or one dotted key
    Get {
        /// A dotted key such as cache.max_ttl; omit for everything
        key: Option<String>,
        /// Read the node's applied state instead of a linearizable read through the leader
        #[arg(long)]
        local: bool,
    },
    /// Set one dotted key, validated by the cluster
    Set {
        /// The dotted key, e.g. cache.max_ttl
        key: String,
        /// The value as in the config file: 30, true, ["10.0.0.1:53"], ...
        value: String,
        /// Apply only if the configuration is still at this version
        #[arg(long, value_name = "N")]
        expect_version: Option<u64>,
    },
    /// Show the latest versions: what changed, when, on which node, by whom
    History {
        /// At most this many of the newest versions (0: all that are kept)
        #[arg(long, value_name = "N", default_value_t = 0)]
        limit: u32,
    },
    /// Make the settings of an earlier version current again, as a new version
    Rollback {
        /// The version to return to
        #[arg(value_name = "VERSION")]
        target: u64,
        /// Apply only if the configuration is still at this version
        #[arg(long, value_name = "N")]
        expect_version: Option<u64>,
    },
}

/// `heimdallctl upstream ...`.
#[derive(Debug, Subcommand)]
pub enum UpstreamCommand {
    /// List the upstreams with health, smoothed RTT and counts as each node sees them
    List,
    /// Add an upstream to the cluster configuration
    Add {
        /// host:port, or host for port 53
        addr: String,
        /// Apply only if the configuration is still at this version
        #[arg(long, value_name = "N")]
        expect_version: Option<u64>,
    },
    /// Remove an upstream from the cluster configuration
    Remove {
        /// The upstream as listed
        addr: String,
        /// Apply only if the configuration is still at this version
        #[arg(long, value_name = "N")]
        expect_version: Option<u64>,
    },
}

/// `heimdallctl cluster ...`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// List the members with role, term, last applied index and reachability
    Members,
    /// Show the leader and the term
    Leader,
    /// Add a node started with --join: learner first, voter once caught up
    AddNode {
        /// The new node's id (as in its config)
        id: u64,
        /// Its gRPC address, host:port
        addr: String,
    },
    /// Demote a voter and remove it from the cluster
    RemoveNode {
        /// The node id
        id: u64,
    },
}

/// Parses seconds, whole or fractional ("2", "0.5"), into a positive duration.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 86_400.0 {
        return Err(format!(
            "{text:?} must be more than 0 and at most 86400 seconds"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Parses a command line.
    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("heimdallctl").chain(args.iter().copied()))
    }

    /// clap's own consistency checks pass, and every command and flag has help text.
    #[test]
    fn command_is_consistent_and_documented() {
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        /// Walks the command tree, collecting what has no help.
        fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if arg.get_help().is_none() && !builtin {
                    out.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    out.push(sub_path.clone());
                }
                undocumented(sub, &sub_path, out);
            }
        }
        let mut missing = Vec::new();
        undocumented(&cmd, "heimdallctl", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }

    /// Endpoints repeat and split on commas; the default applies when none is given.
    #[test]
    fn endpoints() {
        let cli = parse(&["-e", "http://a:1", "--endpoint", "b:2,c:3", "status"]).expect("valid");
        assert_eq!(cli.global.endpoint, ["http://a:1", "b:2", "c:3"]);
        // The environment may set HEIMDALLCTL_ENDPOINT; only check the default without it.
        if std::env::var_os("HEIMDALLCTL_ENDPOINT").is_none() {
            let cli = parse(&["status"]).expect("valid");
            assert_eq!(cli.global.endpoint, [DEFAULT_ENDPOINT]);
        }
    }

    /// Global flags go before or after the command.
    #[test]
    fn global_flags_anywhere() {
        let cli = parse(&[
            "config",
            "set",
            "cache.max_ttl",
            "30",
            "--expect-version",
            "4",
            "-o",
            "json",
            "--as",
            "ops",
        ])
        .expect("valid");
        assert_eq!(cli.global.output, Output::Json);
        assert_eq!(cli.global.actor.as_deref(), Some("ops"));
        match cli.command {
            Command::Config(ConfigCommand::Set {
                key,
                value,
                expect_version,
            }) => assert_eq!(
                (key.as_str(), value.as_str(), expect_version),
                ("cache.max_ttl", "30", Some(4))
            ),
            other => panic!("parsed as {other:?}"),
        }
    }

    /// `--subtree` needs a name; `--count` needs `--watch`; bad seconds are refused.
    #[test]
    fn refusals() {
        assert!(parse(&["cache", "flush", "--subtree"]).is_err());
        assert!(
            parse(&[
                "cache",
                "flush",
                "example.com",
                "--subtree",
                "--type",
                "A",
                "--cluster"
            ])
            .is_ok()
        );
        assert!(parse(&["stats", "--count", "3"]).is_err());
        assert!(parse(&["stats", "--watch", "--count", "3", "--interval", "0.5"]).is_ok());
        assert!(parse(&["top", "--interval", "0"]).is_err());
        assert!(parse(&["top", "--interval", "soon"]).is_err());
        assert!(parse(&["completions", "tcsh"]).is_err());
        assert!(parse(&["cluster", "add-node", "4", "127.0.0.4:50051"]).is_ok());
    }

    /// Seconds parse whole and fractional.
    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        assert!(parse_seconds("-1").is_err() && parse_seconds("NaN").is_err());
    }
}
