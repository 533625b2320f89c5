//! Plain-text output helpers: aligned tables and human units (times, durations, bytes).

use std::fmt::Write as _;

/// A table of aligned plain-text columns, two spaces apart, with a header row.
#[derive(Debug, Default)]
pub struct Table {
    /// The header cells.
    header: Vec<String>,
    /// The body rows.
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (missing cells print empty, extra cells widen the table).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether the table has no body rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, each ending in a newline, no trailing blanks.
    pub fn render(&self) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0usize; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map_or("", String::as_str);
                if i > 0 {
                    line.push_str("  ");
                }
                let _ = write!(line, "{cell:<width$}");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Key/value lines with the keys padded to one width.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let _ = writeln!(
            out,
            "{:<width$}  {value}",
            format!("{key}:"),
            width = width + 1
        );
    }
    out
}

/// Unix milliseconds as UTC `YYYY-MM-DDTHH:MM:SSZ`.
pub fn unix_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Seconds as `3d04h05m`, `2h03m04s`, `5m06s` or `7s`.
pub fn duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
        seconds % 60,
    );
    if d > 0 {
        format!("{d}d{h:02}h{m:02}m")
    } else if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `12.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Microseconds as `850us`, `1.25ms` or `2.50s`.
pub fn micros(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0}us")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{:.2}s", us / 1_000_000.0)
    }
}

/// A ratio as a percentage with one decimal: `97.5%`.
pub fn percent(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

/// A rate with one decimal.
pub fn rate(per_second: f64) -> String {
    format!("{per_second:.1}")
}

/// An optional id, or `-`.
pub fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// `yes` or `no`.
pub fn yes_no(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Columns align to the widest cell and lines carry no trailing blanks.
    #[test]
    fn table_aligns() {
        let mut table = Table::new(&["ID", "ADDRESS", "ROLE"]);
        table.row(vec!["1".into(), "127.0.0.1:50051".into(), "Leader".into()]);
        table.row(vec!["12".into(), "h:1".into(), String::new()]);
        assert_eq!(
            table.render(),
            "ID  ADDRESS          ROLE\n\
             1   127.0.0.1:50051  Leader\n\
             12  h:1\n"
        );
    }

    /// Key/value lines pad the keys.
    #[test]
    fn key_values_align() {
        let text = key_values(&[("node", "1".into()), ("uptime", "5s".into())]);
        assert_eq!(text, "node:    1\nuptime:  5s\n");
    }

    /// Unix times format as UTC, across leap years and the epoch.
    #[test]
    fn times() {
        assert_eq!(unix_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(unix_ms(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(unix_ms(1_795_849_111_999), "2026-11-28T06:58:31Z");
    }

    /// Durations, sizes, latencies and ratios read as people write them.
    #[test]
    fn units() {
        assert_eq!(duration(7), "7s");
        assert_eq!(duration(306), "5m06s");
        assert_eq!(duration(7384), "2h03m04s");
        assert_eq!(duration(273_900), "3d04h05m");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12 * 1024 * 1024), "12.0 MiB");
        assert_eq!(micros(850.4), "850us");
        assert_eq!(micros(1250.0), "1.25ms");
        assert_eq!(micros(2_500_000.0), "2.50s");
        assert_eq!(percent(0.975), "97.5%");
        assert_eq!(opt::<u64>(None), "-");
        assert_eq!(yes_no(true), "yes");
    }
}
