//! An RFC 1035 master-file (zone file) parser for what a small zone needs.
//!
//! Understood: `$ORIGIN`, `$TTL` (seconds, or with `s`/`m`/`h`/`d`/`w` units), absolute and
//! relative names, `@` for the origin, an owner left blank (leading whitespace) meaning the
//! previous owner, TTL and class (`IN` only) in either order, parentheses spanning lines,
//! `;` comments, quoted strings with `\X` and `\DDD` escapes; record types SOA, NS, A, AAAA,
//! CNAME, MX and TXT. Every error carries the line it is about and a reason.

use std::net::{Ipv4Addr, Ipv6Addr};

use heimdall_wire::{MAX_NAME_LEN, name_from_str, rtype};

/// One record read from a zone file, in wire form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneFileRecord {
    /// The line the record starts on (1-based).
    pub line: usize,
    /// Owner name: absolute, uncompressed wire form, ASCII lower-cased.
    pub owner: Vec<u8>,
    /// Record type code.
    pub rtype: u16,
    /// TTL in seconds.
    pub ttl: u32,
    /// RDATA, with names in uncompressed wire form.
    pub rdata: Vec<u8>,
}

/// Why a zone file could not be read; `line` is 1-based (0 when about the whole file).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ZoneFileError {
    /// The line the problem is on.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl ZoneFileError {
    /// An error about `line`.
    pub fn new(line: usize, reason: impl Into<String>) -> Self {
        Self {
            line,
            reason: reason.into(),
        }
    }
}

/// Largest TTL a record may carry (RFC 2181 section 8).
const MAX_TTL: u32 = i32::MAX as u32;

/// Longest character-string in TXT rdata.
const MAX_CHARACTER_STRING: usize = 255;

/// One whitespace-separated field of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Token {
    /// The text, escapes left in place for names; quotes removed for quoted strings.
    text: String,
    /// Whether it was written in double quotes.
    quoted: bool,
    /// The line it is on.
    line: usize,
}

/// One logical entry: a record or a directive, possibly spanning lines in parentheses.
#[derive(Debug)]
struct Entry {
    /// The line the entry starts on.
    line: usize,
    /// Whether the first line starts with whitespace (no owner given).
    blank_owner: bool,
    /// Its fields.
    tokens: Vec<Token>,
}

/// Parses the text of a zone file. `origin` is the initial origin (absolute presentation name,
/// e.g. `example.test.`) or None when the file must set it with `$ORIGIN` before using
/// relative names.
pub fn parse(text: &str, origin: Option<&str>) -> Result<Vec<ZoneFileRecord>, ZoneFileError> {
    let mut state = State {
        origin: match origin {
            Some(o) => Some(absolute_name(o, None, 0)?),
            None => None,
        },
        default_ttl: None,
        last_ttl: None,
        last_owner: None,
    };
    let mut records = Vec::new();
    for entry in entries(text)? {
        if let Some(record) = state.entry(&entry)? {
            records.push(record);
        }
    }
    Ok(records)
}

/// What earlier lines set for later ones.
#[derive(Debug)]
struct State {
    /// `$ORIGIN` as a wire name.
    origin: Option<Vec<u8>>,
    /// `$TTL`.
    default_ttl: Option<u32>,
    /// The last TTL given explicitly (RFC 1035's default when there is no `$TTL`).
    last_ttl: Option<u32>,
    /// The previous record's owner, for entries whose owner is blank.
    last_owner: Option<Vec<u8>>,
}

impl State {
    /// Applies a directive or reads a record.
    fn entry(&mut self, entry: &Entry) -> Result<Option<ZoneFileRecord>, ZoneFileError> {
        let mut tokens = entry.tokens.iter().peekable();
        let line = entry.line;
        if !entry.blank_owner
            && let Some(first) = tokens.peek()
            && !first.quoted
            && first.text.starts_with('$')
        {
            let directive = first.text.to_ascii_uppercase();
            tokens.next();
            let args: Vec<&Token> = tokens.collect();
            let [arg] = args.as_slice() else {
                return Err(ZoneFileError::new(
                    line,
                    format!("{directive} takes exactly one argument, got {}", args.len()),
                ));
            };
            match directive.as_str() {
                "$ORIGIN" => {
                    self.origin = Some(absolute_name(&arg.text, self.origin.as_deref(), line)?);
                }
                "$TTL" => self.default_ttl = Some(parse_ttl(&arg.text, line)?),
                "$INCLUDE" => {
                    return Err(ZoneFileError::new(line, "$INCLUDE is not supported"));
                }
                other => {
                    return Err(ZoneFileError::new(
                        line,
                        format!("unknown directive {other}"),
                    ));
                }
            }
            return Ok(None);
        }
        let owner = if entry.blank_owner {
            self.last_owner
                .clone()
                .ok_or_else(|| ZoneFileError::new(line, "the first record has no owner name"))?
        } else {
            let token = tokens
                .next()
                .ok_or_else(|| ZoneFileError::new(line, "empty record"))?;
            self.name(token)?
        };
        // [TTL] [CLASS] TYPE or [CLASS] [TTL] TYPE.
        let mut ttl = None;
        let mut class_seen = false;
        let type_token = loop {
            let token = tokens
                .next()
                .ok_or_else(|| ZoneFileError::new(line, "record has no type"))?;
            let upper = token.text.to_ascii_uppercase();
            if ttl.is_none() && token.text.starts_with(|c: char| c.is_ascii_digit()) {
                ttl = Some(parse_ttl(&token.text, token.line)?);
            } else if !class_seen && (upper == "IN" || upper == "CH" || upper == "HS") {
                if upper != "IN" {
                    return Err(ZoneFileError::new(
                        token.line,
                        format!("class {upper} is not supported (only IN)"),
                    ));
                }
                class_seen = true;
            } else {
                break token;
            }
        };
        let ttl = match ttl {
            Some(ttl) => {
                self.last_ttl = Some(ttl);
                ttl
            }
            None => self.default_ttl.or(self.last_ttl).ok_or_else(|| {
                ZoneFileError::new(line, "record has no TTL and no $TTL is set before it")
            })?,
        };
        let rtype = record_type(type_token)?;
        let args: Vec<&Token> = tokens.collect();
        let rdata = self.rdata(rtype, type_token, &args)?;
        self.last_owner = Some(owner.clone());
        Ok(Some(ZoneFileRecord {
            line,
            owner,
            rtype,
            ttl,
            rdata,
        }))
    }

    /// A name field: `@`, absolute, or relative to `$ORIGIN`; lower-cased wire form.
    fn name(&self, token: &Token) -> Result<Vec<u8>, ZoneFileError> {
        if token.quoted {
            return Err(ZoneFileError::new(
                token.line,
                format!(
                    "expected a domain name, found the string \"{}\"",
                    token.text
                ),
            ));
        }
        if token.text == "@" {
            return self
                .origin
                .clone()
                .ok_or_else(|| ZoneFileError::new(token.line, "@ used but no $ORIGIN is set"));
        }
        absolute_name(&token.text, self.origin.as_deref(), token.line)
    }

    /// The RDATA of a record of type `rtype` from its fields.
    fn rdata(
        &self,
        rtype: u16,
        type_token: &Token,
        args: &[&Token],
    ) -> Result<Vec<u8>, ZoneFileError> {
        let line = type_token.line;
        let name = type_token.text.to_ascii_uppercase();
        let expect = |n: usize, what: &str| -> Result<(), ZoneFileError> {
            if args.len() == n {
                Ok(())
            } else {
                Err(ZoneFileError::new(
                    args.get(n).map_or(line, |t| t.line),
                    format!("{name} needs {what}, got {} field(s)", args.len()),
                ))
            }
        };
        match rtype {
            rtype::A => {
                expect(1, "an IPv4 address")?;
                address::<Ipv4Addr>(args[0], "A", "an IPv4 address").map(|a| a.octets().to_vec())
            }
            rtype::AAAA => {
                expect(1, "an IPv6 address")?;
                address::<Ipv6Addr>(args[0], "AAAA", "an IPv6 address").map(|a| a.octets().to_vec())
            }
            rtype::NS | rtype::CNAME => {
                expect(1, "a domain name")?;
                self.name(args[0])
            }
            rtype::MX => {
                expect(2, "a preference and a domain name")?;
                let pref = parse_u16(args[0], "MX preference")?;
                let mut rdata = pref.to_be_bytes().to_vec();
                rdata.extend(self.name(args[1])?);
                Ok(rdata)
            }
            rtype::SOA => {
                expect(
                    7,
                    "MNAME RNAME SERIAL REFRESH RETRY EXPIRE MINIMUM (7 fields)",
                )?;
                let mut rdata = self.name(args[0])?;
                rdata.extend(self.name(args[1])?);
                let serial = args[2].text.parse::<u32>().map_err(|_| {
                    ZoneFileError::new(
                        args[2].line,
                        format!("SOA serial {:?} is not 0..=4294967295", args[2].text),
                    )
                })?;
                rdata.extend(serial.to_be_bytes());
                for token in &args[3..] {
                    rdata.extend(parse_ttl(&token.text, token.line)?.to_be_bytes());
                }
                Ok(rdata)
            }
            rtype::TXT => {
                if args.is_empty() {
                    return Err(ZoneFileError::new(line, "TXT needs at least one string"));
                }
                let mut rdata = Vec::new();
                for token in args {
                    let bytes = unescape_text(&token.text, token.line)?;
                    if bytes.len() > MAX_CHARACTER_STRING {
                        return Err(ZoneFileError::new(
                            token.line,
                            format!(
                                "TXT string is {} bytes, at most {MAX_CHARACTER_STRING} \
                                 (split it into several quoted strings)",
                                bytes.len()
                            ),
                        ));
                    }
                    // Checked just above: the length fits a u8.
                    rdata.push(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
                    rdata.extend(bytes);
                }
                Ok(rdata)
            }
            other => Err(ZoneFileError::new(
                line,
                format!("record type {other} is not supported"),
            )),
        }
    }
}

/// The type code of a type field (SOA, NS, A, AAAA, CNAME, MX, TXT).
fn record_type(token: &Token) -> Result<u16, ZoneFileError> {
    let code = match token.text.to_ascii_uppercase().as_str() {
        "SOA" => rtype::SOA,
        "NS" => rtype::NS,
        "A" => rtype::A,
        "AAAA" => rtype::AAAA,
        "CNAME" => rtype::CNAME,
        "MX" => rtype::MX,
        "TXT" => rtype::TXT,
        _ => {
            return Err(ZoneFileError::new(
                token.line,
                format!(
                    "unsupported record type {:?} (supported: SOA, NS, A, AAAA, CNAME, MX, TXT)",
                    token.text
                ),
            ));
        }
    };
    Ok(code)
}

/// An address field of a record of type `rtype` (`what`: "an IPv4 address").
fn address<T: std::str::FromStr>(
    token: &Token,
    rtype: &str,
    what: &str,
) -> Result<T, ZoneFileError> {
    token.text.parse().map_err(|_| {
        ZoneFileError::new(
            token.line,
            format!("{rtype}: {:?} is not {what}", token.text),
        )
    })
}

/// A 16-bit number field.
fn parse_u16(token: &Token, what: &str) -> Result<u16, ZoneFileError> {
    token.text.parse().map_err(|_| {
        ZoneFileError::new(
            token.line,
            format!("{what} {:?} is not 0..=65535", token.text),
        )
    })
}

/// A TTL: seconds, or numbers with units (`1h30m`, `2d`, `1w`), at most 2^31 - 1.
pub fn parse_ttl(text: &str, line: usize) -> Result<u32, ZoneFileError> {
    let bad = || {
        ZoneFileError::new(
            line,
            format!("{text:?} is not a TTL (seconds, or units s, m, h, d, w)"),
        )
    };
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in text.chars() {
        if let Some(digit) = c.to_digit(10) {
            number = Some(
                number
                    .unwrap_or(0)
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(digit)))
                    .ok_or_else(bad)?,
            );
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        let n = number.take().ok_or_else(bad)?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if let Some(n) = number {
        total = total.checked_add(n).ok_or_else(bad)?;
    }
    u32::try_from(total)
        .ok()
        .filter(|ttl| *ttl <= MAX_TTL)
        .ok_or_else(|| ZoneFileError::new(line, format!("TTL {text} is above {MAX_TTL}")))
}

/// An absolute wire name (lower-cased) from presentation `text`, relative to `origin`.
fn absolute_name(text: &str, origin: Option<&[u8]>, line: usize) -> Result<Vec<u8>, ZoneFileError> {
    let absolute = is_absolute(text);
    let mut buf = [0u8; MAX_NAME_LEN];
    let len = name_from_str(text, &mut buf)
        .map_err(|e| ZoneFileError::new(line, format!("{text:?} is not a domain name: {e}")))?;
    let mut wire = buf.get(..len).unwrap_or_default().to_vec();
    if !absolute {
        let origin = origin.ok_or_else(|| {
            ZoneFileError::new(
                line,
                format!("relative name {text:?} but no $ORIGIN is set"),
            )
        })?;
        // Drop the root byte and append the origin.
        wire.pop();
        wire.extend_from_slice(origin);
        if wire.len() > MAX_NAME_LEN {
            return Err(ZoneFileError::new(
                line,
                format!("{text:?} with the origin is longer than {MAX_NAME_LEN} bytes"),
            ));
        }
    }
    wire.make_ascii_lowercase();
    Ok(wire)
}

/// Whether a presentation name ends with an unescaped dot (an even number of backslashes
/// before the final dot).
fn is_absolute(text: &str) -> bool {
    let Some(body) = text.strip_suffix('.') else {
        return false;
    };
    let backslashes = body.bytes().rev().take_while(|b| *b == b'\\').count();
    backslashes % 2 == 0
}

/// The bytes of a character-string with `\X` and `\DDD` escapes resolved.
fn unescape_text(text: &str, line: usize) -> Result<Vec<u8>, ZoneFileError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let digits = bytes.get(i + 1..i + 4);
        match digits {
            Some(d) if d.iter().all(u8::is_ascii_digit) => {
                let value = d
                    .iter()
                    .fold(0u16, |v, digit| v * 10 + u16::from(digit - b'0'));
                let byte = u8::try_from(value).map_err(|_| {
                    ZoneFileError::new(line, format!("escape \\{value} is above 255"))
                })?;
                out.push(byte);
                i += 4;
            }
            _ => {
                let next = bytes
                    .get(i + 1)
                    .ok_or_else(|| ZoneFileError::new(line, "string ends with a lone \\"))?;
                if next.is_ascii_digit() {
                    return Err(ZoneFileError::new(
                        line,
                        "a \\DDD escape needs exactly three digits",
                    ));
                }
                out.push(*next);
                i += 2;
            }
        }
    }
    Ok(out)
}

/// Splits the text into entries: tokens, comments removed, parentheses joined.
fn entries(text: &str) -> Result<Vec<Entry>, ZoneFileError> {
    let mut entries = Vec::new();
    let mut current: Option<Entry> = None;
    let mut depth_open_line = 0usize;
    let mut depth = 0usize;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let starts_blank = raw.starts_with([' ', '\t']);
        let mut tokens = Vec::new();
        tokenize(raw, line, &mut tokens, &mut depth, &mut depth_open_line)?;
        match current.as_mut() {
            Some(entry) => entry.tokens.extend(tokens),
            None if tokens.is_empty() => {}
            None => {
                current = Some(Entry {
                    line,
                    blank_owner: starts_blank,
                    tokens,
                })
            }
        }
        if depth == 0
            && let Some(entry) = current.take()
        {
            entries.push(entry);
        }
    }
    if depth > 0 {
        return Err(ZoneFileError::new(
            depth_open_line,
            "parenthesis opened here is never closed",
        ));
    }
    Ok(entries)
}

/// Appends the tokens of one physical line, tracking the parenthesis depth.
fn tokenize(
    raw: &str,
    line: usize,
    tokens: &mut Vec<Token>,
    depth: &mut usize,
    open_line: &mut usize,
) -> Result<(), ZoneFileError> {
    let mut chars = raw.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ';' => break,
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                if *depth == 0 {
                    *open_line = line;
                }
                *depth += 1;
            }
            ')' => {
                chars.next();
                if *depth == 0 {
                    return Err(ZoneFileError::new(line, "unbalanced )"));
                }
                *depth -= 1;
            }
            '"' => {
                chars.next();
                let mut text = String::new();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => {
                            text.push('\\');
                            if let Some(next) = chars.next() {
                                text.push(next);
                            }
                        }
                        c => text.push(c),
                    }
                }
                if !closed {
                    return Err(ZoneFileError::new(line, "unterminated quoted string"));
                }
                tokens.push(Token {
                    text,
                    quoted: true,
                    line,
                });
            }
            _ => {
                let mut text = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, ';' | '(' | ')' | '"') {
                        break;
                    }
                    chars.next();
                    text.push(c);
                    if c == '\\'
                        && let Some(next) = chars.next()
                    {
                        text.push(next);
                    }
                }
                tokens.push(Token {
                    text,
                    quoted: false,
                    line,
                });
            }
        }
    }
    Ok(())
}
