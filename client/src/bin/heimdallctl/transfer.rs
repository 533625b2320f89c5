//! `cache dump` and `cache load`: stream a node's cache to a dump file and back, with a
//! progress bar on stderr when it is a terminal.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use heimdall_client::v1::CacheEntry;
use heimdall_client::{Client, DumpError, DumpReader, DumpWriter};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// How many entries may wait between the file reader and the gRPC stream.
const LOAD_QUEUE: usize = 256;

/// A progress bar of `total` entries, drawn on stderr only when stderr is a terminal.
fn progress(total: u64, verb: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    let template = format!("{verb} {{bar:40}} {{pos}}/{{len}} entries ({{per_sec}}, {{eta}} left)");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// The outcome of a dump.
#[derive(Debug, Serialize)]
pub struct DumpView {
    /// The file written.
    pub file: PathBuf,
    /// Entries written.
    pub entries: u64,
}

/// The file a dump is written to before it is renamed over `file`.
fn partial_path(file: &Path) -> PathBuf {
    let mut name = file
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    file.with_file_name(name)
}

/// Streams every live entry of the node behind `client` into `file` (written under a
/// temporary name and renamed once complete, so a failed dump leaves no half file).
pub async fn dump(client: &Client, file: &Path) -> Result<DumpView> {
    let expected = client.status().await?.cache_entries;
    let mut stream = client.cache_dump().await?;
    let partial = partial_path(file);
    let out = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut writer = DumpWriter::new(BufWriter::new(out))?;
    let bar = progress(expected, "dumping");
    let written: Result<u64> = async {
        while let Some(entry) = stream.next().await? {
            writer.write(&entry)?;
            bar.inc(1);
        }
        Ok(writer.finish()?.1)
    }
    .await;
    bar.finish_and_clear();
    match written {
        Ok(entries) => {
            fs::rename(&partial, file)
                .with_context(|| format!("renaming to {}", file.display()))?;
            Ok(DumpView {
                file: file.to_owned(),
                entries,
            })
        }
        Err(e) => {
            let _ = fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// Reads the whole dump `file`, checking every record; returns how many there are.
pub fn validate(file: &Path) -> Result<u64> {
    let input = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    DumpReader::new(BufReader::new(input))
        .and_then(DumpReader::validate)
        .with_context(|| format!("{} cannot be loaded", file.display()))
}

/// The outcome of a load on one node.
#[derive(Debug, Serialize)]
pub struct LoadView {
    /// Entries inserted.
    pub loaded: u64,
    /// Entries the node skipped (expired, malformed, or not matching their key).
    pub skipped: u64,
}

/// Why reading the file stopped, with the sender kept alive so the load is cancelled before
/// the node could see the stream end and take a partial load for a whole one.
type ReadFailure = (DumpError, mpsc::Sender<CacheEntry>);

/// Sends every entry of `file` into `tx`, counting on `bar`.
fn read_into(
    file: &Path,
    tx: mpsc::Sender<CacheEntry>,
    bar: &ProgressBar,
) -> Result<(), ReadFailure> {
    let mut reader = match File::open(file).map_err(DumpError::from) {
        Ok(input) => match DumpReader::new(BufReader::new(input)) {
            Ok(reader) => reader,
            Err(e) => return Err((e, tx)),
        },
        Err(e) => return Err((e, tx)),
    };
    loop {
        match reader.next_entry() {
            Ok(Some(entry)) => {
                if tx.blocking_send(entry).is_err() {
                    // The load ended early; its own result says why.
                    return Ok(());
                }
                bar.inc(1);
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err((e, tx)),
        }
    }
}

/// Loads the dump `file` (already validated, `total` entries) into the node behind `client`.
pub async fn load(client: &Client, file: &Path, total: u64) -> Result<LoadView> {
    let (tx, rx) = mpsc::channel(LOAD_QUEUE);
    let bar = progress(total, "loading");
    let reader = {
        let file = file.to_owned();
        let bar = bar.clone();
        tokio::task::spawn_blocking(move || read_into(&file, tx, &bar))
    };
    // Boxed, so dropping it really drops (cancels) the call.
    let mut load = Box::pin(client.cache_load(ReceiverStream::new(rx)));
    let mut reader = reader;
    let outcome = tokio::select! {
        read = &mut reader => match read {
            Ok(Ok(())) => load.await.map_err(anyhow::Error::from),
            Ok(Err((e, tx))) => {
                // Cancel the call first, then let the stream close.
                drop(load);
                drop(tx);
                Err(anyhow!(e).context(format!("{} changed while loading", file.display())))
            }
            Err(e) => Err(anyhow!("reading {}: {e}", file.display())),
        },
        loaded = &mut load => loaded.map_err(anyhow::Error::from),
    };
    bar.finish_and_clear();
    let reply = outcome?;
    Ok(LoadView {
        loaded: reply.loaded,
        skipped: reply.skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The partial file sits next to the target with a suffix.
    #[test]
    fn partial_name() {
        assert_eq!(
            partial_path(Path::new("/tmp/cache.dump")),
            Path::new("/tmp/cache.dump.partial")
        );
    }

    /// Validation refuses a file that is not a dump, naming the file.
    #[test]
    fn validate_names_the_file() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("notes.txt");
        fs::write(&path, "hello").expect("writing");
        let err = validate(&path).expect_err("not a dump");
        let text = format!("{err:#}");
        assert!(
            text.contains("notes.txt cannot be loaded") && text.contains("bad header"),
            "{text}"
        );
    }
}
