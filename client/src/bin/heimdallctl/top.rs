//! `heimdallctl top`: QPS from successive snapshots, hit ratio, latency percentiles and the
//! most queried names of each node, redrawn in place until q is pressed (or printed once).

use std::io::{IsTerminal, Write};
use std::thread;
use std::time::Duration;

use anyhow::{Result, bail};
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::{cursor, execute, queue, terminal};
use heimdall_client::v1::StatsSnapshot;
use heimdall_client::{Client, Error};
use serde::Serialize;
use tokio::sync::watch;

use crate::args::Output;
use crate::fleet::{Fleet, NodeResult};
use crate::format::{self, Table};
use crate::views::{LatencyView, StatsView, TopNamesView, top_names_table};

/// One node's frame: rates between two snapshots and its top names.
#[derive(Debug, Serialize)]
pub struct NodeFrame {
    /// The node.
    pub node_id: u64,
    /// Queries per second between the two snapshots.
    pub qps: f64,
    /// Cache hit ratio between the two snapshots (0 without lookups).
    pub hit_ratio: f64,
    /// All queries since the node started.
    pub queries_total: u64,
    /// Entries in the cache.
    pub cache_entries: u64,
    /// Latency percentiles over the node's run.
    pub latency: LatencyView,
    /// The most queried names.
    pub top: TopNamesView,
}

/// One round's counters and top names from one node.
#[derive(Debug)]
struct Sample {
    /// The latest counters.
    stats: StatsSnapshot,
    /// The most queried names.
    top: TopNamesView,
}

/// Rates between `before` and `after` of one node, with its top names.
pub fn frame(before: &StatsSnapshot, after: StatsSnapshot, top: TopNamesView) -> NodeFrame {
    let seconds = after.unix_ms.saturating_sub(before.unix_ms) as f64 / 1000.0;
    let queries = after.queries_total.saturating_sub(before.queries_total) as f64;
    let hits = after.cache_hits.saturating_sub(before.cache_hits) as f64;
    let misses = after.cache_misses.saturating_sub(before.cache_misses) as f64;
    let stats = StatsView::from(after);
    NodeFrame {
        node_id: stats.node_id,
        qps: if seconds > 0.0 {
            queries / seconds
        } else {
            0.0
        },
        hit_ratio: if hits + misses > 0.0 {
            hits / (hits + misses)
        } else {
            0.0
        },
        queries_total: stats.queries_total,
        cache_entries: stats.cache.entries,
        latency: stats.latency,
        top,
    }
}

/// The frame as text lines: a row per node, then each node's top names.
pub fn render(frames: &[(&str, &NodeFrame)], interval: Duration) -> String {
    let mut table = Table::new(&[
        "ENDPOINT", "NODE", "QPS", "HIT%", "P50", "P90", "P99", "P99.9", "QUERIES", "ENTRIES",
    ]);
    for (endpoint, f) in frames {
        table.row(vec![
            (*endpoint).to_owned(),
            f.node_id.to_string(),
            format::rate(f.qps),
            format::percent(f.hit_ratio),
            format::micros(f.latency.p50_us),
            format::micros(f.latency.p90_us),
            format::micros(f.latency.p99_us),
            format::micros(f.latency.p999_us),
            f.queries_total.to_string(),
            f.cache_entries.to_string(),
        ]);
    }
    let mut out = format!(
        "heimdallctl top: rates over {:.1}s, latency since start (q quits)\n\n{}",
        interval.as_secs_f64(),
        table.render()
    );
    for (_, f) in frames {
        out.push_str(&format!(
            "\ntop names on node {} ({} queries in the last {}s)\n",
            f.node_id, f.top.window_queries, f.top.window_seconds
        ));
        if f.top.names.is_empty() {
            out.push_str("(none yet)\n");
        } else {
            out.push_str(&top_names_table(&f.top));
        }
    }
    out
}

/// One node's counters and top names.
async fn sample(client: &Client, names: u32) -> Result<Sample, Error> {
    let stats = client.stats().await?;
    let top = client.top_names(names).await?.into();
    Ok(Sample { stats, top })
}

/// The nodes `top` samples: each endpoint with its client once connected.
#[derive(Debug)]
struct Nodes {
    /// Endpoint and client (None until a connection succeeds).
    clients: Vec<(String, Option<Client>)>,
}

impl Nodes {
    /// Every endpoint of the fleet, not yet connected.
    fn new(fleet: &Fleet) -> Nodes {
        Nodes {
            clients: fleet
                .endpoints
                .iter()
                .map(|e| (heimdall_client::normalize_endpoint(e), None))
                .collect(),
        }
    }

    /// Samples every node, connecting first where needed (a node that was down is tried again
    /// on every round); a failed node keeps its error.
    async fn sample_all(&mut self, fleet: &Fleet, names: u32) -> Vec<NodeResult<Sample>> {
        let mut out = Vec::with_capacity(self.clients.len());
        for (endpoint, slot) in &mut self.clients {
            let result = match slot {
                Some(client) => sample(client, names).await,
                None => match fleet.connect(endpoint).await {
                    Ok(client) => sample(slot.insert(client), names).await,
                    Err(e) => Err(e),
                },
            };
            out.push(NodeResult {
                endpoint: endpoint.clone(),
                result,
            });
        }
        out
    }
}

/// The counters of each node's sample, kept as the base of the next frame.
fn bases(samples: &[NodeResult<Sample>]) -> Vec<Option<StatsSnapshot>> {
    samples
        .iter()
        .map(|n| n.result.as_ref().ok().map(|s| s.stats.clone()))
        .collect()
}

/// Frames from the previous round's counters and this round's samples (a node without a
/// previous sample is measured against itself, so its rates read 0 for one round).
fn frames(
    before: &[Option<StatsSnapshot>],
    after: Vec<NodeResult<Sample>>,
) -> Vec<NodeResult<NodeFrame>> {
    after
        .into_iter()
        .zip(before)
        .map(|(now, then)| NodeResult {
            endpoint: now.endpoint,
            result: now.result.map(|now| {
                let base = then.clone().unwrap_or_else(|| now.stats.clone());
                frame(&base, now.stats, now.top)
            }),
        })
        .collect()
}

/// `top --once`: two samples an interval apart, one frame printed.
pub async fn once(fleet: &Fleet, interval: Duration, names: u32) -> Result<()> {
    let mut nodes = Nodes::new(fleet);
    let before = bases(&nodes.sample_all(fleet, names).await);
    tokio::time::sleep(interval).await;
    let after = nodes.sample_all(fleet, names).await;
    let frames = frames(&before, after);
    fleet.print_rows(&frames, |rows| render(rows, interval))
}

/// Puts the terminal back (main screen, cursor, cooked mode) when dropped.
struct Screen;

impl Screen {
    /// Switches to the alternate screen in raw mode with the cursor hidden.
    fn enter() -> Result<Screen> {
        terminal::enable_raw_mode()?;
        let screen = Screen;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )?;
        Ok(screen)
    }

    /// Draws `text` from the top-left corner, clipped to the terminal.
    fn draw(&self, text: &str) -> Result<()> {
        // A pseudo-terminal nobody sized reports 0x0: draw as if it were 120x40.
        let (width, height) = match terminal::size() {
            Ok((w, h)) if w > 0 && h > 0 => (w, h),
            _ => (120, 40),
        };
        let mut out = std::io::stdout().lock();
        queue!(
            out,
            cursor::MoveTo(0, 0),
            terminal::Clear(terminal::ClearType::All)
        )?;
        for line in text.lines().take(usize::from(height)) {
            let clipped: String = line.chars().take(usize::from(width)).collect();
            write!(out, "{clipped}\r\n")?;
        }
        out.flush()?;
        Ok(())
    }
}

impl Drop for Screen {
    /// Leaves the alternate screen and raw mode.
    fn drop(&mut self) {
        let _ = execute!(
            std::io::stdout(),
            cursor::Show,
            terminal::LeaveAlternateScreen
        );
        let _ = terminal::disable_raw_mode();
    }
}

/// Watches the keyboard on its own thread; flips `quit` on q, Esc or Ctrl-C.
fn watch_keys(quit: watch::Sender<bool>) {
    thread::spawn(move || {
        loop {
            if quit.is_closed() {
                return;
            }
            match event::poll(Duration::from_millis(200)) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => return,
            }
            if let Ok(Event::Key(key)) = event::read() {
                let ctrl_c =
                    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                let quits = matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c;
                if key.kind == KeyEventKind::Press && quits {
                    let _ = quit.send(true);
                    return;
                }
            }
        }
    });
}

/// The live view: redraws every `interval` until q is pressed.
pub async fn live(fleet: &Fleet, interval: Duration, names: u32) -> Result<()> {
    if fleet.output == Output::Json {
        bail!("top shows a live view; use `top --once --output json` for JSON");
    }
    if !std::io::stdout().is_terminal() {
        bail!("top needs a terminal; use `top --once` in scripts");
    }
    let mut nodes = Nodes::new(fleet);
    let first = nodes.sample_all(fleet, names).await;
    if let Some(Err(e)) = first.iter().map(|n| &n.result).find(|r| r.is_err())
        && first.iter().all(|n| n.result.is_err())
    {
        bail!("{e}");
    }
    let mut before = bases(&first);
    let (quit_tx, mut quit) = watch::channel(false);
    let screen = Screen::enter()?;
    watch_keys(quit_tx);
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    screen.draw("heimdallctl top: waiting for the second snapshot (q quits)")?;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = quit.changed() => break,
        }
        let after = nodes.sample_all(fleet, names).await;
        let next = bases(&after);
        let frames = frames(&before, after);
        let rows: Vec<(&str, &NodeFrame)> = frames
            .iter()
            .filter_map(|n| n.result.as_ref().ok().map(|f| (n.endpoint.as_str(), f)))
            .collect();
        let mut text = render(&rows, interval);
        for failed in frames.iter().filter_map(|n| n.result.as_ref().err()) {
            text.push_str(&format!("\n{failed}\n"));
        }
        screen.draw(&text)?;
        before = next;
    }
    drop(screen);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use heimdall_client::v1::LatencySummary;

    /// A snapshot at `unix_ms` with these counters.
    fn snapshot(unix_ms: u64, queries: u64, hits: u64, misses: u64) -> StatsSnapshot {
        StatsSnapshot {
            node_id: 1,
            unix_ms,
            queries_total: queries,
            cache_hits: hits,
            cache_misses: misses,
            cache_entries: 42,
            latency: Some(LatencySummary {
                count: queries,
                p50_us: 40.0,
                p90_us: 90.0,
                p99_us: 1500.0,
                p999_us: 3000.0,
            }),
            ..StatsSnapshot::default()
        }
    }

    /// No names.
    fn no_names() -> TopNamesView {
        TopNamesView {
            window_seconds: 60,
            window_queries: 0,
            names: Vec::new(),
        }
    }

    /// QPS and the hit ratio come from the difference of two snapshots.
    #[test]
    fn rates_from_two_snapshots() {
        let f = frame(
            &snapshot(10_000, 100, 50, 50),
            snapshot(12_000, 700, 500, 100),
            no_names(),
        );
        assert!((f.qps - 300.0).abs() < 1e-9, "{}", f.qps);
        assert!((f.hit_ratio - 0.9).abs() < 1e-9, "{}", f.hit_ratio);
        let idle = frame(
            &snapshot(10_000, 5, 5, 0),
            snapshot(10_000, 5, 5, 0),
            no_names(),
        );
        assert_eq!((idle.qps, idle.hit_ratio), (0.0, 0.0));
    }

    /// A frame shows a row per node and each node's top names.
    #[test]
    fn frame_text() {
        let mut top = no_names();
        top.window_queries = 10;
        top.names.push(crate::views::TopNameView {
            name: "www.example.".into(),
            count: 7,
            error: 1,
        });
        let f = frame(&snapshot(0, 0, 0, 0), snapshot(1000, 10, 9, 1), top);
        let text = render(&[("http://127.0.0.1:50051", &f)], Duration::from_secs(1));
        assert!(
            text.contains("http://127.0.0.1:50051  1     10.0  90.0%  40us  90us  1.50ms  3.00ms"),
            "{text}"
        );
        assert!(
            text.contains("top names on node 1 (10 queries in the last 60s)"),
            "{text}"
        );
        assert!(text.contains("1  www.example.  7        ±1"), "{text}");
    }
}
