//! `heimdall demo`: a zone server and a Raft cluster of N nodes on loopback, in one command.
//!
//! The demo writes the demo zone ([`heimdall_node::authority::demo`]) into a fresh temporary
//! directory, starts one `heimdall` child in authoritative-only mode serving it on the base
//! address, and N cluster nodes on the following addresses (`127.0.0.11`, `.12`, ...), each
//! forwarding to the zone server. Every child is this same binary. The cluster secret and the
//! admin token are generated here and reach the children only through their environment.
//! Once every node answers DNS and a leader is elected, it prints ready-to-paste `dig` and
//! `heimdallctl` lines. SIGINT or SIGTERM stops every child and removes the directory; so
//! does any failure, which is reported in one line with a non-zero exit.

use std::fmt::Write as _;
use std::io::{ErrorKind, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use heimdall_node::authority::demo::{DEMO_NODATA, DEMO_NXDOMAIN, DEMO_ORIGIN, DEMO_ZONE};
use heimdall_node::cluster::network::{self, method};
use heimdall_node::config::Secret;
use heimdall_proto::v1::MetricsRequest;
use heimdall_wire::{MessageWriter, class, rtype};
use tokio::signal::unix::{SignalKind, signal};

/// The gRPC port of every demo process (each on its own address).
const GRPC_PORT: u16 = 50051;
/// The metrics port of every demo process.
const METRICS_PORT: u16 = 9153;
/// The gossip (UDP) port of every demo process.
const GOSSIP_PORT: u16 = 7946;
/// The DNS port when binding port 53 is not allowed.
const UNPRIVILEGED_DNS_PORT: u16 = 5353;
/// Election timeout of the demo cluster, in milliseconds.
const ELECTION_TIMEOUT_MS: u64 = 1000;
/// How long the cluster may take to answer DNS and elect a leader.
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long the children get to exit after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Pause between two checks of the children and the cluster.
const POLL: Duration = Duration::from_millis(100);
/// Most cluster nodes a demo starts.
const MAX_NODES: u8 = 20;

/// Options of `heimdall demo`.
#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {
    /// Number of cluster nodes to start (1..=20).
    #[arg(long, default_value_t = 3)]
    pub nodes: u8,
    /// Loopback address of the zone server; node i listens on this address plus i.
    #[arg(long, value_name = "IPV4", default_value = "127.0.0.10")]
    pub base_addr: Ipv4Addr,
}

/// One running child.
#[derive(Debug)]
struct Process {
    /// "zone server" or "node N".
    name: String,
    /// The child process.
    child: Child,
    /// Its log file.
    log: PathBuf,
}

/// Everything the demo started, stopped and removed on drop.
#[derive(Debug)]
struct Demo {
    /// The temporary directory with the zone, configs, data and logs.
    dir: PathBuf,
    /// The children, zone server first.
    processes: Vec<Process>,
}

/// Runs the demo until SIGINT or SIGTERM; Err for any failure (children stopped, files
/// removed either way).
pub fn run(args: &DemoArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(run_async(args))
}

/// The demo on the runtime.
async fn run_async(args: &DemoArgs) -> Result<()> {
    let mut interrupt = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let addrs = addresses(args)?;
    let dns_port = choose_dns_port(&addrs)?;
    check_free(&addrs, dns_port)?;
    let mut demo = Demo::create()?;
    let result = tokio::select! {
        result = demo.start_and_serve(&addrs, dns_port) => result,
        _ = interrupt.recv() => Ok(()),
        _ = terminate.recv() => Ok(()),
    };
    demo.stop();
    println!(
        "heimdall demo: stopped every process and removed {}",
        demo.dir.display()
    );
    result
}

/// The zone server's address and the N nodes' addresses.
fn addresses(args: &DemoArgs) -> Result<Vec<Ipv4Addr>> {
    if !(1..=MAX_NODES).contains(&args.nodes) {
        bail!("--nodes must be 1..={MAX_NODES}, got {}", args.nodes);
    }
    if !args.base_addr.is_loopback() {
        bail!(
            "--base-addr must be a loopback address, got {}",
            args.base_addr
        );
    }
    let [a, b, c, d] = args.base_addr.octets();
    if usize::from(d) + usize::from(args.nodes) > 254 {
        bail!(
            "--base-addr {}: {} nodes after it do not fit in {a}.{b}.{c}.0/24",
            args.base_addr,
            args.nodes
        );
    }
    Ok((0..=args.nodes)
        .map(|i| Ipv4Addr::new(a, b, c, d + i))
        .collect())
}

/// 53 when this process may bind it on every address, else 5353.
fn choose_dns_port(addrs: &[Ipv4Addr]) -> Result<u16> {
    for addr in addrs {
        match UdpSocket::bind((*addr, 53)) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::PermissionDenied => return Ok(UNPRIVILEGED_DNS_PORT),
            Err(e) => bail!("cannot use {addr}:53 for DNS: {e}"),
        }
    }
    Ok(53)
}

/// Fails naming the first address and port that is already in use.
fn check_free(addrs: &[Ipv4Addr], dns_port: u16) -> Result<()> {
    for addr in addrs {
        let ip = IpAddr::V4(*addr);
        UdpSocket::bind((ip, dns_port))
            .with_context(|| format!("{ip}:{dns_port}/udp (DNS) is not free"))?;
        UdpSocket::bind((ip, GOSSIP_PORT))
            .with_context(|| format!("{ip}:{GOSSIP_PORT}/udp (gossip) is not free"))?;
        for (port, what) in [
            (dns_port, "DNS"),
            (GRPC_PORT, "gRPC"),
            (METRICS_PORT, "metrics"),
        ] {
            TcpListener::bind((ip, port))
                .with_context(|| format!("{ip}:{port}/tcp ({what}) is not free"))?;
        }
    }
    Ok(())
}

/// 32 random bytes in hex.
fn random_hex() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

impl Demo {
    /// Creates the demo's temporary directory.
    fn create() -> Result<Demo> {
        let suffix = &random_hex()[..12];
        let dir = std::env::temp_dir().join(format!("heimdall-demo-{suffix}"));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Demo {
            dir,
            processes: Vec::new(),
        })
    }

    /// Starts everything, waits until it is ready, prints the lines, then watches the
    /// children until one exits (an error; a signal ends this future from outside).
    async fn start_and_serve(&mut self, addrs: &[Ipv4Addr], dns_port: u16) -> Result<()> {
        let secret = random_hex();
        let token = random_hex();
        let (zone_addr, node_addrs) = addrs.split_first().ok_or_else(|| anyhow!("no addresses"))?;
        let zone_dns = SocketAddr::from((*zone_addr, dns_port));
        let zone_file = self.dir.join("demo.zone");
        std::fs::write(&zone_file, DEMO_ZONE)
            .with_context(|| format!("writing {}", zone_file.display()))?;
        let mut zone_cmd = self.command("zone")?;
        zone_cmd
            .arg("--zone-file")
            .arg(&zone_file)
            .arg("--dns-listen")
            .arg(zone_dns.to_string())
            .arg("--grpc-listen")
            .arg(SocketAddr::from((*zone_addr, GRPC_PORT)).to_string())
            .arg("--metrics-listen")
            .arg(SocketAddr::from((*zone_addr, METRICS_PORT)).to_string())
            .arg("--gossip-listen")
            .arg(SocketAddr::from((*zone_addr, GOSSIP_PORT)).to_string())
            .arg("--data-dir")
            .arg(self.dir.join("zone-data"))
            .args(["--workers", "1"]);
        self.spawn("zone server", "zone", zone_cmd)?;

        let mut members = String::new();
        for (i, addr) in node_addrs.iter().enumerate() {
            let _ = writeln!(members, "{} = \"{addr}:{GRPC_PORT}\"", i + 1);
        }
        for (i, addr) in node_addrs.iter().enumerate() {
            let id = i + 1;
            let file = format!("node{id}");
            let config = self.dir.join(format!("{file}.toml"));
            let toml = format!(
                "# heimdall demo node {id}; the secret and the admin token come from the \
                 environment\n\
                 [node]\nnode_id = {id}\ndata_dir = {data:?}\ngrpc_listen = \"{addr}:{GRPC_PORT}\"\n\
                 metrics_listen = \"{addr}:{METRICS_PORT}\"\n\
                 gossip_listen = \"{addr}:{GOSSIP_PORT}\"\n\n\
                 [dns]\nlisten = \"{addr}:{dns_port}\"\nworkers = 1\n\n\
                 [upstream]\nservers = [\"{zone_dns}\"]\n\n\
                 [cluster]\nelection_timeout_ms = {ELECTION_TIMEOUT_MS}\n\n\
                 [cluster.initial_members]\n{members}",
                data = self.dir.join(format!("{file}-data")).display().to_string(),
            );
            std::fs::write(&config, toml)
                .with_context(|| format!("writing {}", config.display()))?;
            let mut cmd = self.command(&file)?;
            cmd.arg("--config")
                .arg(&config)
                .env("HEIMDALL_CLUSTER__SECRET", &secret)
                .env("HEIMDALL_ADMIN__TOKEN", &token);
            self.spawn(&format!("node {id}"), &file, cmd)?;
        }

        let started = Instant::now();
        let leader = self
            .wait_ready(zone_dns, node_addrs, dns_port, &secret)
            .await?;
        self.print_ready(
            node_addrs,
            dns_port,
            zone_dns,
            &token,
            leader,
            started.elapsed(),
        )?;
        loop {
            self.check_children()?;
            tokio::time::sleep(POLL).await;
        }
    }

    /// A command running this binary with a log file named after `file`, no inherited
    /// `HEIMDALL_*` variable, SIGTERM when the demo process dies, and its own process group
    /// (a Ctrl-C in the terminal reaches only the demo, which then stops the children).
    fn command(&self, file: &str) -> Result<Command> {
        let exe = std::env::current_exe().context("locating the heimdall binary")?;
        let mut cmd = Command::new(exe);
        for (name, _) in std::env::vars_os() {
            if name
                .to_string_lossy()
                .to_ascii_uppercase()
                .starts_with("HEIMDALL_")
            {
                cmd.env_remove(name);
            }
        }
        let log = self.dir.join(format!("{file}.log"));
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .env("RUST_LOG", "info,openraft=warn")
            .process_group(0);
        // SAFETY: the hook runs in the forked child before exec and only calls prctl(2),
        // which is async-signal-safe and touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(cmd)
    }

    /// Spawns `cmd` as the process called `name` logging to `<file>.log`.
    fn spawn(&mut self, name: &str, file: &str, mut cmd: Command) -> Result<()> {
        let child = cmd
            .spawn()
            .with_context(|| format!("starting the {name}"))?;
        self.processes.push(Process {
            name: name.to_owned(),
            child,
            log: self.dir.join(format!("{file}.log")),
        });
        Ok(())
    }

    /// Fails naming the first child that exited, with the last line of its log.
    fn check_children(&mut self) -> Result<()> {
        for process in &mut self.processes {
            if let Some(status) = process.child.try_wait()? {
                bail!(
                    "the {} (pid {}) exited with {}: {}",
                    process.name,
                    process.child.id(),
                    describe(status),
                    last_log_line(&process.log)
                );
            }
        }
        Ok(())
    }

    /// Waits until every process answers DNS and every node knows the same leader.
    async fn wait_ready(
        &mut self,
        zone_dns: SocketAddr,
        nodes: &[Ipv4Addr],
        dns_port: u16,
        secret: &str,
    ) -> Result<u64> {
        let deadline = Instant::now() + READY_DEADLINE;
        let secret = Secret::new(secret);
        let mut dns: Vec<SocketAddr> = vec![zone_dns];
        dns.extend(nodes.iter().map(|a| SocketAddr::from((*a, dns_port))));
        let mut pending = dns.clone();
        loop {
            self.check_children()?;
            pending.retain(|addr| !answers_dns(*addr));
            if pending.is_empty()
                && let Some(leader) = common_leader(nodes, &secret).await
            {
                return Ok(leader);
            }
            if Instant::now() >= deadline {
                let what = match pending.first() {
                    Some(addr) => format!("{addr} to answer DNS"),
                    None => "a leader known to every node".to_owned(),
                };
                bail!(
                    "timed out after {READY_DEADLINE:?} waiting for {what} (logs in {})",
                    self.dir.display()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Prints the ready-to-paste lines.
    fn print_ready(
        &self,
        nodes: &[Ipv4Addr],
        dns_port: u16,
        zone_dns: SocketAddr,
        token: &str,
        leader: u64,
        took: Duration,
    ) -> Result<()> {
        let name = DEMO_ORIGIN.trim_end_matches('.');
        let mut text = String::new();
        let _ = writeln!(
            text,
            "heimdall demo: {} nodes ready after {:.1} s, leader node {leader}; zone {name} served \
             authoritatively by {zone_dns}",
            nodes.len(),
            took.as_secs_f64()
        );
        for (i, addr) in nodes.iter().enumerate() {
            let id = i + 1;
            let _ = writeln!(text, "node {id}: dig @{addr} -p {dns_port} www.{name}");
            let _ = writeln!(
                text,
                "node {id}: heimdallctl --endpoint http://{addr}:{GRPC_PORT} --token {token} status"
            );
        }
        let _ = writeln!(text, "admin token: {token}");
        let first = nodes.first().map_or(String::new(), ToString::to_string);
        let _ = writeln!(
            text,
            "also try: dig @{first} -p {dns_port} alias.{name} (a CNAME chain), {} (NXDOMAIN), \
             {} (NODATA), {name} MX, info.{name} TXT",
            DEMO_NXDOMAIN.trim_end_matches('.'),
            DEMO_NODATA.trim_end_matches('.'),
        );
        let pids: Vec<String> = self
            .processes
            .iter()
            .map(|p| p.child.id().to_string())
            .collect();
        let _ = writeln!(text, "processes: {}", pids.join(" "));
        let _ = writeln!(text, "files: {}", self.dir.display());
        let _ = writeln!(text, "heimdall demo: ready; Ctrl-C stops everything");
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
        Ok(())
    }

    /// SIGTERM to every child, SIGKILL to those still running after the grace period, reap
    /// them all, and remove the directory.
    fn stop(&mut self) {
        for process in &self.processes {
            if let Ok(pid) = libc::pid_t::try_from(process.child.id()) {
                // SAFETY: kill(2) on our own unreaped child: the pid cannot have been reused.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        for process in &mut self.processes {
            while matches!(process.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(POLL / 10);
            }
            if matches!(process.child.try_wait(), Ok(None)) {
                eprintln!(
                    "heimdall demo: the {} did not stop in time, killing it",
                    process.name
                );
                let _ = process.child.kill();
            }
            let _ = process.child.wait();
        }
        self.processes.clear();
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("heimdall demo: cannot remove {}: {e}", self.dir.display());
        }
    }
}

impl Drop for Demo {
    /// Never leave children or files behind, even on an unexpected return.
    fn drop(&mut self) {
        if !self.processes.is_empty() || self.dir.exists() {
            self.stop();
        }
    }
}

/// An exit status in words.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}

/// The last non-empty line of a log file (what a failing child said last).
fn last_log_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("no log in {}", path.display()))
}

/// Whether `addr` replies to a DNS query over UDP within a short timeout (any rcode).
fn answers_dns(addr: SocketAddr) -> bool {
    let mut query = [0u8; 512];
    let Ok(mut w) = MessageWriter::new(&mut query) else {
        return false;
    };
    let id: u16 = rand::random();
    w.set_header(id, heimdall_wire::Header::RD);
    let mut name = [0u8; heimdall_wire::MAX_NAME_LEN];
    let Ok(len) = heimdall_wire::name_from_str(DEMO_ORIGIN, &mut name) else {
        return false;
    };
    if w.question(&name[..len], rtype::SOA, class::IN).is_err() {
        return false;
    }
    let len = w.finish();
    let Ok(socket) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) else {
        return false;
    };
    let mut reply = [0u8; 1500];
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .is_ok()
        && socket.send_to(&query[..len], addr).is_ok()
        && socket
            .recv(&mut reply)
            .is_ok_and(|n| n >= 2 && reply[..2] == id.to_be_bytes())
}

/// The leader every node reports, if they all report the same one.
async fn common_leader(nodes: &[Ipv4Addr], secret: &Secret) -> Option<u64> {
    let mut leader = None;
    for addr in nodes {
        let grpc = SocketAddr::from((*addr, GRPC_PORT)).to_string();
        let mut client = network::client(network::lazy_channel(&grpc, None).ok()?);
        let mut request = network::authenticated(Some(secret), method::METRICS, MetricsRequest {});
        request.set_timeout(Duration::from_secs(2));
        let this = client.metrics(request).await.ok()?.into_inner().leader_id?;
        if leader.is_some_and(|l| l != this) {
            return None;
        }
        leader = Some(this);
    }
    leader
}
