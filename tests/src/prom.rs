//! A scrape client for a node's /metrics (plain HTTP/1.0 over a TcpStream) and a strict checker
//! of the Prometheus text exposition format 0.0.4: HELP/TYPE lines before their samples, the
//! metric and label name grammar, label value escapes, float values, no duplicate series, and
//! histograms whose buckets are cumulative, ordered by `le`, and end in `+Inf` == `_count`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

/// Deadline for connecting to, writing to and reading from the metrics endpoint.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// The content type a Prometheus 0.0.4 endpoint answers with.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// A sample's labels as (name, value) pairs.
pub type Labels = Vec<(String, String)>;

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The metric name (for histograms with its `_bucket`/`_sum`/`_count` suffix).
    pub name: String,
    /// The labels, in the order written.
    pub labels: Labels,
    /// The value.
    pub value: f64,
}

/// A parsed and checked exposition.
#[derive(Clone, Debug, Default)]
pub struct Exposition {
    /// Every sample, in text order.
    pub samples: Vec<Sample>,
    /// The TYPE of every family.
    pub types: HashMap<String, String>,
    /// The HELP text of every family.
    pub help: HashMap<String, String>,
}

impl Exposition {
    /// The value of the sample `name` with exactly these labels (any order).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<&str, &str> = labels.iter().copied().collect();
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == want.len()
                    && s.labels
                        .iter()
                        .all(|(k, v)| want.get(k.as_str()) == Some(&v.as_str()))
            })
            .map(|s| s.value)
    }

    /// Like [`Exposition::get`], failing with the name and labels when the sample is missing.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        self.get(name, labels)
            .with_context(|| format!("no sample {name}{labels:?} in the exposition"))
    }
}

/// GET `http://addr/metrics`; returns the body after checking the status and content type.
pub fn scrape(addr: SocketAddr) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)
        .with_context(|| format!("connecting to the metrics endpoint {addr}"))?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    // HTTP/1.0: the server closes the connection after the body, which is sent unchunked.
    stream.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading /metrics from {addr}"))?;
    let text = String::from_utf8(raw).context("the /metrics response is not UTF-8")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("no end of headers in the /metrics response")?;
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    ensure!(
        status.split_whitespace().nth(1) == Some("200"),
        "GET /metrics on {addr}: {status}"
    );
    let content_type = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    ensure!(
        content_type.starts_with(CONTENT_TYPE),
        "content type {content_type:?}, want {CONTENT_TYPE}"
    );
    Ok(body.to_owned())
}

/// Scrape and parse in one go.
pub fn scrape_parsed(addr: SocketAddr) -> Result<Exposition> {
    let text = scrape(addr)?;
    parse(&text).with_context(|| format!("checking the exposition:\n{text}"))
}

/// Whether `name` matches `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` matches `[a-zA-Z_][a-zA-Z0-9_]*` and is not reserved (`__` prefix).
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A sample value: a Go-style float, `+Inf`, `-Inf` or `NaN`.
fn parse_value(text: &str) -> Result<f64> {
    match text {
        "+Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        "NaN" => return Ok(f64::NAN),
        _ => {}
    }
    ensure!(
        text.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')),
        "bad value {text:?}"
    );
    text.parse::<f64>()
        .with_context(|| format!("bad value {text:?}"))
}

/// Parse `{a="x",b="y"}` at the start of `rest`; returns the labels and what follows.
fn parse_labels(rest: &str) -> Result<(Labels, &str)> {
    let mut labels = Vec::new();
    let mut chars = rest.char_indices().peekable();
    ensure!(
        matches!(chars.next(), Some((_, '{'))),
        "labels must start with {{"
    );
    loop {
        // A label name, or the closing brace (also after a trailing comma).
        let start = match chars.peek() {
            Some(&(i, '}')) => {
                chars.next();
                return Ok((labels, &rest[i + 1..]));
            }
            Some(&(i, _)) => i,
            None => bail!("unterminated labels"),
        };
        let mut end = start;
        while let Some(&(i, c)) = chars.peek() {
            if c == '=' {
                end = i;
                break;
            }
            chars.next();
        }
        let name = &rest[start..end];
        ensure!(is_label_name(name), "bad label name {name:?}");
        ensure!(matches!(chars.next(), Some((_, '='))), "no = after {name}");
        ensure!(
            matches!(chars.next(), Some((_, '"'))),
            "label {name}: value must be quoted"
        );
        let mut value = String::new();
        loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => bail!("label {name}: bad escape {other:?}"),
                },
                Some((_, '"')) => break,
                Some((_, '\n')) | None => bail!("label {name}: unterminated value"),
                Some((_, c)) => value.push(c),
            }
        }
        ensure!(
            !labels.iter().any(|(k, _)| k == name),
            "label {name} given twice"
        );
        labels.push((name.to_owned(), value));
        match chars.next() {
            Some((_, ',')) => {}
            Some((i, '}')) => return Ok((labels, &rest[i + 1..])),
            other => bail!("after label {name}: unexpected {other:?}"),
        }
    }
}

/// The family a sample belongs to, given the declared types (histogram suffixes stripped).
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && types.get(base).is_some_and(|t| t == "histogram")
        {
            return base;
        }
    }
    name
}

/// Parse and check an exposition strictly (see the module doc).
pub fn parse(text: &str) -> Result<Exposition> {
    ensure!(
        text.ends_with('\n'),
        "the exposition must end with a newline"
    );
    let mut exp = Exposition::default();
    let mut seen = HashSet::new();
    let mut families_with_samples = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            let keyword = parts.next().unwrap_or_default();
            let name = parts.next().unwrap_or_default();
            let rest = parts.next().unwrap_or_default();
            ensure!(is_metric_name(name), "line {n}: bad metric name {name:?}");
            ensure!(
                !families_with_samples.contains(name),
                "line {n}: {keyword} for {name} after its samples"
            );
            match keyword {
                "HELP" => {
                    let old = exp.help.insert(name.to_owned(), rest.to_owned());
                    ensure!(old.is_none(), "line {n}: second HELP for {name}");
                }
                "TYPE" => {
                    ensure!(
                        matches!(
                            rest,
                            "counter" | "gauge" | "histogram" | "summary" | "untyped"
                        ),
                        "line {n}: bad type {rest:?}"
                    );
                    let old = exp.types.insert(name.to_owned(), rest.to_owned());
                    ensure!(old.is_none(), "line {n}: second TYPE for {name}");
                }
                _ => bail!("line {n}: unexpected comment {line:?}"),
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        ensure!(is_metric_name(name), "line {n}: bad metric name {name:?}");
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).with_context(|| format!("line {n}"))?
        } else {
            (Vec::new(), &line[name_end..])
        };
        let rest = rest
            .strip_prefix(' ')
            .with_context(|| format!("line {n}: no space before the value"))?;
        let mut fields = rest.split(' ');
        let value =
            parse_value(fields.next().unwrap_or_default()).with_context(|| format!("line {n}"))?;
        if let Some(ts) = fields.next() {
            ensure!(ts.parse::<i64>().is_ok(), "line {n}: bad timestamp {ts:?}");
        }
        ensure!(fields.next().is_none(), "line {n}: trailing fields");
        let family = family_of(name, &exp.types);
        let kind = exp
            .types
            .get(family)
            .with_context(|| format!("line {n}: sample of {family} before its TYPE line"))?;
        ensure!(
            exp.help.contains_key(family),
            "line {n}: sample of {family} without a HELP line"
        );
        if kind == "counter" {
            ensure!(value >= 0.0, "line {n}: negative counter");
        }
        if kind == "histogram" && name.ends_with("_bucket") {
            ensure!(
                labels.iter().any(|(k, _)| k == "le"),
                "line {n}: bucket without le"
            );
        }
        families_with_samples.insert(family.to_owned());
        let mut key: Vec<_> = labels.clone();
        key.sort();
        ensure!(
            seen.insert((name.to_owned(), key)),
            "line {n}: duplicate series {line:?}"
        );
        exp.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    check_histograms(&exp)?;
    Ok(exp)
}

/// Every histogram family: buckets per label set ordered by `le`, cumulative counts that
/// never decrease, a `+Inf` bucket equal to `_count`, and a `_sum`.
fn check_histograms(exp: &Exposition) -> Result<()> {
    for (family, kind) in &exp.types {
        if kind != "histogram" {
            continue;
        }
        let bucket_name = format!("{family}_bucket");
        // Group buckets by their labels other than le.
        let mut groups: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for s in exp.samples.iter().filter(|s| s.name == bucket_name) {
            let mut others = Vec::new();
            let mut le = None;
            for (k, v) in &s.labels {
                if k == "le" {
                    le = Some(parse_value(v).with_context(|| format!("{family}: le {v:?}"))?);
                } else {
                    others.push((k.clone(), v.clone()));
                }
            }
            others.sort();
            let le = le.with_context(|| format!("{family}: bucket without le"))?;
            groups.entry(others).or_default().push((le, s.value));
        }
        ensure!(!groups.is_empty(), "histogram {family} has no buckets");
        for (labels, buckets) in groups {
            let mut last = (f64::NEG_INFINITY, 0.0);
            for &(le, count) in &buckets {
                ensure!(
                    le > last.0,
                    "{family}{labels:?}: le {le} not after {}",
                    last.0
                );
                ensure!(
                    count >= last.1,
                    "{family}{labels:?}: bucket le={le} holds {count} < {}",
                    last.1
                );
                last = (le, count);
            }
            ensure!(
                last.0 == f64::INFINITY,
                "{family}{labels:?}: the last bucket is not +Inf"
            );
            let refs: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let count = exp.value(&format!("{family}_count"), &refs)?;
            ensure!(
                count == last.1,
                "{family}{labels:?}: +Inf bucket {} != _count {count}",
                last.1
            );
            exp.value(&format!("{family}_sum"), &refs)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A well-formed exposition parses, and the checker refuses each kind of mistake.
    #[test]
    fn checker_accepts_valid_and_refuses_broken_text() {
        let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\\n\"} 3\n\
                    # HELP h H.\n# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\n\
                    h_bucket{le=\"+Inf\"} 2\nh_sum 0.7\nh_count 2\n";
        let exp = parse(good).expect("valid text");
        assert_eq!(exp.get("a_total", &[("x", "q\"\n")]), Some(3.0));
        let broken = [
            "a_total 1\n",                                          // no TYPE
            "# HELP a_total A.\n# TYPE a_total counter\na_total 1", // no newline
            "# HELP a A.\n# TYPE a gauge\na{1x=\"v\"} 1\n",         // label name
            "# HELP a A.\n# TYPE a gauge\na{x=v} 1\n",              // unquoted
            "# HELP a A.\n# TYPE a gauge\na 1,5\n",                 // value
            "# HELP a A.\n# TYPE a gauge\na 1\na 2\n",              // duplicate
            "# HELP 9a A.\n# TYPE 9a gauge\n9a 1\n",                // metric name
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
        ];
        for text in broken {
            assert!(parse(text).is_err(), "accepted: {text:?}");
        }
    }
}
