//! The `heimdall` binary: parse flags, load the configuration, serve until SIGINT or SIGTERM;
//! or, as `heimdall demo`, run a demo cluster on loopback ([`demo`]).
//!
//! Exit codes: 0 after a clean shutdown, 1 when the server (or the demo) fails, 2 for an
//! invalid configuration (including an invalid `RUST_LOG`).

mod demo;

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use heimdall_node::config::{self, Cli, Config, LogConfig, LogFormat};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// mimalloc for the whole process (the only global allocator declaration in the workspace).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long to wait for leftover blocking tasks once the server has returned.
const RUNTIME_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Exit code for an invalid configuration.
const EXIT_CONFIG: u8 = 2;

/// The command line: the node's flags, or a subcommand.
#[derive(Debug, Parser)]
#[command(
    name = "heimdall",
    version,
    about = "Heimdall: a caching DNS forwarder",
    args_conflicts_with_subcommands = true
)]
struct Args {
    /// A subcommand instead of running a node.
    #[command(subcommand)]
    command: Option<Subcommand>,
    /// The node's flags (without a subcommand).
    #[command(flatten)]
    cli: Cli,
}

/// What `heimdall` can do besides running a node.
#[derive(Debug, clap::Subcommand)]
enum Subcommand {
    /// Start a demo: a zone server and an N-node cluster on loopback, until Ctrl-C.
    Demo(demo::DemoArgs),
}

/// Runs the demo subcommand, or loads the configuration, sets up logging and runs the server.
fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Subcommand::Demo(demo_args)) = &args.command {
        return match demo::run(demo_args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("heimdall demo: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    let cli = args.cli;
    let config = match config::load(&cli) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("heimdall: invalid configuration: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(error) = init_tracing(&config.log) {
        eprintln!("heimdall: invalid configuration: {error:#}");
        return ExitCode::from(EXIT_CONFIG);
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %config.dns.listen,
        upstreams = ?config.upstream.servers,
        workers = config.dns.workers,
        "heimdall starting"
    );
    match serve(config) {
        Ok(()) => {
            tracing::info!("heimdall stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!("heimdall failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Installs the global tracing subscriber: `RUST_LOG` when set, else `log.level`.
fn init_tracing(log: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(&directives)
            .with_context(|| format!("RUST_LOG: invalid value {directives:?}"))?,
        _ => EnvFilter::try_new(&log.level)
            .with_context(|| format!("log.level: invalid value {:?}", log.level))?,
    };
    // Colours only on a terminal: logs captured to files stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    let installed = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|error| anyhow::anyhow!("installing the log subscriber: {error}"))
}

/// Runs the server on a multi-thread runtime until a shutdown signal.
fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // The UDP workers are threads of their own, outside the runtime.
        .worker_threads(config.dns.runtime_threads.max(1))
        .thread_name("heimdall-rt")
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let result = runtime.block_on(async {
        let shutdown = shutdown_signal().context("installing signal handlers")?;
        heimdall_node::server::run(config, shutdown)
            .await
            .context("server")
    });
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_GRACE);
    result
}

/// A future that resolves on the first SIGINT or SIGTERM; a second one exits at once.
///
/// Must be called inside the runtime. Tokio keeps its handlers installed for the life of the
/// process, so without the second-signal watcher a stuck shutdown could not be interrupted.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal = name, "shutting down");
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            eprintln!("heimdall: second signal during shutdown, exiting now");
            std::process::exit(1);
        });
    })
}
