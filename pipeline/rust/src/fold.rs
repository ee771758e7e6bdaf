//! Folding: the Rust twin of `pipeline/fold.py` (see that module's doc).
//!
//! Exact for ASCII text (the glue sends any other text down the Python path):
//! the regexes of `pipeline/lineformat.py` are written with Python's ASCII
//! classes spelled out (`\s` = `[ \t\n\r\x0b\x0c\x1c-\x1f]`, `\d` = `[0-9]`,
//! `\w` = `[A-Za-z0-9_]`). `feed_text` is `feed` per line, which is the
//! contract of the Python batch fold (its BLOCK regex is only a fast path).
//! The oslo header line (`lineformat.HEADER`) is matched by hand.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use memchr::memmem;
use regex::Regex;

use crate::record::{AccessGroups, Kind, Record};

pub const MAX_RECORD_LINES: usize = 5000;
pub const EXPIRE_SECONDS: i64 = 5;
pub const SWEEP_SECONDS: i64 = 30;
pub const MAX_SPLIT_CHARS: usize = 1 << 16;

const LEVELS: &str = "TRACE|DEBUG|INFO|AUDIT|WARNING|WARN|ERROR|CRITICAL|FATAL";
const LEVEL_WORDS: [&str; 9] =
    ["TRACE", "DEBUG", "INFO", "AUDIT", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL"];
/// Python's `\s` on ASCII str (note 0x1c-0x1f)
const WS: &str = r" \t\n\r\x0b\x0c\x1c-\x1f";

/// What Python raises where `fold.py` would raise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FoldError {
    /// `datetime + timedelta` out of range in `_expire` (Python OverflowError)
    DateOverflow,
    /// `starts[i]` past the end of `starts` in `feed_text` (Python IndexError)
    StartsTooShort,
}

impl fmt::Display for FoldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FoldError::DateOverflow => f.write_str("date value out of range"),
            FoldError::StartsTooShort => f.write_str("list index out of range"),
        }
    }
}

impl std::error::Error for FoldError {}

pub type FoldResult<T> = Result<T, FoldError>;

fn re(pat: String) -> Regex {
    Regex::new(&pat).expect("fold regex")
}

fn syslog_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        re(format!(
            r"(?s)^([A-Z][a-z]{{2}} [ 0-9][0-9] [0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}(?:\.[0-9]{{1,9}})?) ([^{WS}]+) ([^{WS}\[:]+)(?:\[([0-9]+)\])?: ?(.*)"
        ))
    })
}

fn syslog_iso_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        re(format!(
            r"(?s)^([0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}T[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}(?:\.[0-9]{{1,9}})?(?:Z|[+-][0-9]{{2}}:?[0-9]{{2}})) ([^{WS}]+) ([^{WS}\[:]+)(?:\[([0-9]+)\])?: ?(.*)"
        ))
    })
}

fn short_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| re(format!(r"(?s)^({LEVELS}) ([A-Za-z0-9_.\-]+)(?: (.*))?")))
}

fn apache_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        re(format!(
            r#"^([0-9A-Fa-f.:]+|-) [^{WS}]+ ([^{WS}]+) \[([0-9]{{2}}/[A-Za-z0-9_]{{3}}/[0-9]{{4}}:[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}} [+-][0-9]{{4}})\] "([A-Z]+) ([^{WS}]+)[^"]*" ([1-5][0-9]{{2}}) ([0-9]+|-)(?: "[^"]*" "([^"]*)")?(?: ([0-9]+)(\(us\))?)?"#
        ))
    })
}

fn embedded_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        re(format!(
            r"[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}} [0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}\.[0-9]{{1,9}} [0-9]+ (?:{LEVELS}) [^{WS}]"
        ))
    })
}

fn finder_apache() -> &'static memmem::Finder<'static> {
    static F: OnceLock<memmem::Finder<'static>> = OnceLock::new();
    F.get_or_init(|| memmem::Finder::new(b"] \""))
}

fn finder_traceback() -> &'static memmem::Finder<'static> {
    static F: OnceLock<memmem::Finder<'static>> = OnceLock::new();
    F.get_or_init(|| memmem::Finder::new(b"] Traceback"))
}

/// Python's `\s` on an ASCII character
#[inline]
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0x1c..=0x1f)
}

/// The groups of `lineformat.HEADER.match(line)` as byte ranges:
/// (ts_end, pid, level, logger, rest start or None). ts starts at 0.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub ts_end: usize,
    pub pid: (usize, usize),
    pub level: (usize, usize),
    pub logger: (usize, usize),
    pub rest: Option<usize>,
}

/// `HEADER.match(line)`, by hand (the regex is fully determined: each
/// quantifier is followed by a character it cannot match).
#[inline]
pub fn match_header(line: &str) -> Option<Header> {
    let b = line.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let d = |i: usize| b[i].is_ascii_digit();
    if !(d(0) && d(1) && d(2) && d(3) && b[4] == b'-' && d(5) && d(6) && b[7] == b'-' && d(8) && d(9)
        && (b[10] == b' ' || b[10] == b'T') && d(11) && d(12) && b[13] == b':' && d(14) && d(15)
        && b[16] == b':' && d(17) && d(18))
    {
        return None;
    }
    let mut p = 19;
    if b[p] == b'.' || b[p] == b',' {
        let mut q = p + 1;
        while q < b.len() && q - p <= 10 && b[q].is_ascii_digit() {
            q += 1;
        }
        let n = q - p - 1;
        if !(1..=9).contains(&n) || b.get(q) != Some(&b' ') {
            return None;
        }
        p = q;
    } else if b[p] != b' ' {
        return None;
    }
    let ts_end = p;
    p += 1;
    let ps = p;
    while p < b.len() && b[p].is_ascii_digit() {
        p += 1;
    }
    if p == ps || b.get(p) != Some(&b' ') {
        return None;
    }
    let pid = (ps, p);
    p += 1;
    let tail = &b[p..];
    let mut level = None;
    for w in LEVEL_WORDS {
        let wb = w.as_bytes();
        if tail.len() > wb.len() && tail.starts_with(wb) && tail[wb.len()] == b' ' {
            level = Some((p, p + wb.len()));
            break;
        }
    }
    let level = level?;
    p = level.1 + 1;
    let ls = p;
    while p < b.len() && !is_space(b[p]) {
        p += 1;
    }
    if p == ls {
        return None;
    }
    let logger = (ls, p);
    let rest = if b.get(p) == Some(&b' ') { Some(p + 1) } else { None };
    Some(Header { ts_end, pid, level, logger, rest })
}

/// `lineformat.context_end`
pub fn context_end(rest: &str) -> usize {
    let b = rest.as_bytes();
    if b.first() != Some(&b'[') {
        return 0;
    }
    if b.starts_with(b"[-]") {
        return if b.get(3) == Some(&b' ') { 4 } else { 3 };
    }
    if !(b.starts_with(b"[req-") || b.starts_with(b"[None req-") || b.starts_with(b"[- req-")) {
        return 0;
    }
    match memchr::memchr(b']', b) {
        None => 0,
        Some(end) => {
            if b.get(end + 1) == Some(&b' ') {
                end + 2
            } else {
                end + 1
            }
        }
    }
}

#[inline]
fn is_prefix_level(level: &str) -> bool {
    level == "ERROR" || level == "TRACE"
}

// -- datetime arithmetic as Python's datetime/timedelta ----------------------

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if is_leap(y) {
                29
            } else {
                28
            }
        }
    }
}

/// days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant)
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `f"{t:%Y-%m-%d}{sep}{t:%H:%M:%S}"` of the time `secs` seconds after
/// 1970-01-01 00:00:00; None when out of datetime's range (OverflowError).
/// glibc's `%Y` does not pad years below 1000.
fn fmt_time(secs: i64, sep: char) -> Option<String> {
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    if !(1..=9999).contains(&y) {
        return None;
    }
    Some(format!("{}-{:02}-{:02}{}{:02}:{:02}:{:02}", y, m, d, sep, sod / 3600, sod / 60 % 60, sod % 60))
}

/// the time of an asctime text as seconds since the epoch, None when
/// Python's `datetime()` rejects it (ValueError)
fn parse_time(ts: &[u8]) -> Option<i64> {
    let num = |a: usize, b: usize| -> Option<i64> {
        let s = ts.get(a..b)?;
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(s.iter().fold(0i64, |n, c| n * 10 + (c - b'0') as i64))
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, s) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=9999).contains(&y) || !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23
        || mi > 59 || s > 59
    {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s)
}

// -- the open records, in insertion order -------------------------------------

/// Python's `dict[str, Record]` with its insertion order: slots in order
/// (None where a record was removed) and an index by key.
#[derive(Clone, Debug, Default)]
struct OpenMap {
    slots: Vec<Option<(String, Record)>>,
    index: HashMap<String, usize>,
}

impl OpenMap {
    #[inline]
    fn len(&self) -> usize {
        self.index.len()
    }

    #[inline]
    fn get(&self, key: &str) -> Option<usize> {
        if self.index.is_empty() {
            None
        } else {
            self.index.get(key).copied()
        }
    }

    #[inline]
    fn rec(&self, slot: usize) -> &Record {
        &self.slots[slot].as_ref().expect("open slot").1
    }

    #[inline]
    fn rec_mut(&mut self, slot: usize) -> &mut Record {
        &mut self.slots[slot].as_mut().expect("open slot").1
    }

    fn remove(&mut self, slot: usize) -> (String, Record) {
        let (key, rec) = self.slots[slot].take().expect("open slot");
        self.index.remove(&key);
        (key, rec)
    }

    /// insert at the end (the key must be absent); the new slot
    fn push(&mut self, key: String, rec: Record) -> usize {
        let slot = self.slots.len();
        self.index.insert(key.clone(), slot);
        self.slots.push(Some((key, rec)));
        slot
    }

    /// drop the empty slots when they are the majority; `last` is remapped
    fn compact(&mut self, last: &mut Option<usize>) {
        let n = self.slots.len();
        if n < 16 || self.index.len() * 2 > n {
            return;
        }
        let mut new_last = None;
        let mut slots = Vec::with_capacity(self.index.len() + 8);
        for (i, s) in self.slots.drain(..).enumerate() {
            if let Some(kv) = s {
                if *last == Some(i) {
                    new_last = Some(slots.len());
                }
                slots.push(Some(kv));
            }
        }
        self.slots = slots;
        self.index.clear();
        for (i, s) in self.slots.iter().enumerate() {
            self.index.insert(s.as_ref().unwrap().0.clone(), i);
        }
        *last = new_last;
    }

    fn iter(&self) -> impl Iterator<Item = (usize, &String, &Record)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|(k, r)| (i, k, r)))
    }

    fn clear(&mut self) {
        self.slots.clear();
        self.index.clear();
    }
}

// -- the folder -----------------------------------------------------------------

/// Folds one stream's lines into records (`pipeline.fold.Folder`).
#[derive(Clone, Debug, Default)]
pub struct Folder {
    open: OpenMap,
    /// slot of `Folder.last` (always an open record)
    last: Option<usize>,
    /// asctime at which to look for quiet records next
    pub sweep_at: String,
}

fn new_record(ts: Option<&str>, pid: Option<&str>, level: Option<&str>, logger: Option<&str>, rest: &str,
              line: &str, offset: Option<i64>) -> Record {
    Record {
        ts_text: ts.map(str::to_owned),
        pid: pid.map(str::to_owned),
        level: level.map(str::to_owned),
        logger: logger.map(str::to_owned),
        rest: rest.to_owned(),
        lines: vec![line.to_owned()],
        offset,
        ..Record::default()
    }
}

struct Extra<'a> {
    host: Option<&'a str>,
    prog: Option<&'a str>,
    syslog_ts: Option<(&'a str, bool)>,
}

const NO_EXTRA: Extra<'static> = Extra { host: None, prog: None, syslog_ts: None };

impl Folder {
    pub fn new() -> Self {
        Folder::default()
    }

    // -- state (for handing a stream over to the Python folder and back) ----

    /// the open records in order, with their keys
    pub fn open_records(&self) -> Vec<(&str, &Record)> {
        self.open.iter().map(|(_, k, r)| (k.as_str(), r)).collect()
    }

    /// the key of `last`
    pub fn last_key(&self) -> Option<&str> {
        self.last.map(|s| self.open.slots[s].as_ref().unwrap().0.as_str())
    }

    pub fn sweep_at(&self) -> &str {
        &self.sweep_at
    }

    /// Take over a state: the open records in order (keys unique), the key of
    /// `last` (one of them, or None) and `sweep_at`.
    pub fn set_state(&mut self, open: Vec<(String, Record)>, last: Option<&str>, sweep_at: String)
                     -> Result<(), String> {
        let mut map = OpenMap::default();
        for (k, r) in open {
            if map.get(&k).is_some() {
                return Err(format!("duplicate open key {k:?}"));
            }
            map.push(k, r);
        }
        let last = match last {
            None => None,
            Some(k) => Some(map.get(k).ok_or_else(|| format!("last key {k:?} is not open"))?),
        };
        self.open = map;
        self.last = last;
        self.sweep_at = sweep_at;
        Ok(())
    }

    pub fn open_len(&self) -> usize {
        self.open.len()
    }

    // -- folding --------------------------------------------------------------

    /// Fold one line (no newline); the records it completes go to `out`.
    /// Errs where Python raises (OverflowError of a date at datetime's ends),
    /// with the state and `out` as far as Python got.
    pub fn feed(&mut self, line: &str, offset: Option<i64>, out: &mut Vec<Record>) -> FoldResult<()> {
        let mut line = line;
        let mut offset = offset;
        // records glued into one line, one by one
        while let Some(head) = self.feed_one(line, offset, out)? {
            line = &line[head..];
            offset = offset.map(|o| o + head as i64);
        }
        Ok(())
    }

    /// Fold every line of `text` (lines end with `\n`, the last may lack
    /// it) as `feed` per line. Line `i` starting at byte `pos` has the offset
    /// None if `base` is None, else `base + starts[i]`, or `base + pos`.
    pub fn feed_text(&mut self, text: &str, base: Option<i64>, starts: Option<&[i64]>, out: &mut Vec<Record>)
                     -> FoldResult<()> {
        let b = text.as_bytes();
        let n = b.len();
        let mut pos = 0;
        let mut idx = 0;
        while pos < n {
            let e = memchr::memchr(b'\n', &b[pos..]).map_or(n, |i| pos + i);
            let off = match base {
                None => None,
                Some(base) => Some(match starts {
                    None => base + pos as i64,
                    Some(st) => base + *st.get(idx).ok_or(FoldError::StartsTooShort)?,
                }),
            };
            self.feed(&text[pos..e], off, out)?;
            pos = e + 1;
            idx += 1;
        }
        Ok(())
    }

    /// Emit every open record (end of input, or idle stream).
    pub fn flush(&mut self, out: &mut Vec<Record>) {
        let mut recs: Vec<Record> = self.open.slots.drain(..).flatten().map(|(_, r)| r).collect();
        self.open.clear();
        self.last = None;
        recs.sort_by_key(|r| r.offset.unwrap_or(-1));     // stable, as sorted()
        out.extend(recs.into_iter().filter(|r| !r.lines.is_empty()));
    }

    /// `Folder._feed`: Some(head) when a glued-on record starts at `line[head..]`
    fn feed_one(&mut self, line: &str, offset: Option<i64>, out: &mut Vec<Record>) -> FoldResult<Option<usize>> {
        if let Some(h) = match_header(line) {
            let rest = h.rest.map_or("", |r| &line[r..]);
            return self.header(Some(&line[..h.ts_end]), &line[h.pid.0..h.pid.1], &line[h.level.0..h.level.1],
                               &line[h.logger.0..h.logger.1], rest, line, offset, out, NO_EXTRA);
        }
        let b = line.as_bytes();
        let c = b.first().copied().unwrap_or(0);
        if c.is_ascii_uppercase() && b.get(3) == Some(&b' ') {
            if let Some(m) = syslog_re().captures(line) {
                return self.syslog(&m, line, offset, out, false);
            }
        }
        if c.is_ascii_digit() {
            if b.get(10) == Some(&b'T') {
                if let Some(m) = syslog_iso_re().captures(line) {
                    return self.syslog(&m, line, offset, out, true);
                }
            }
            if self.access(line, offset, out) {
                return Ok(None);
            }
        } else if matches!(c, b'a'..=b'f' | b'A'..=b'F' | b':') && self.access(line, offset, out) {
            // IPv6 client
            return Ok(None);
        }
        match self.last {
            None => {
                let mut rec = new_record(None, None, None, None, line, line, offset);
                rec.kind = Kind::Unparsed;
                rec.reason = Some("continuation line with no record to join".to_owned());
                out.push(rec);
            }
            Some(slot) => {
                let rec = self.open.rec_mut(slot);
                rec.lines.push(line.to_owned());
                // A prefix-less line after a traceback line continues that
                // traceback line; otherwise the message.
                if rec.tb_last {
                    rec.tb.push(line.to_owned());
                } else {
                    rec.cont.push(line.to_owned());
                }
                if rec.lines.len() >= MAX_RECORD_LINES {
                    self.split(slot, out);
                }
            }
        }
        Ok(None)
    }

    /// an Apache access line: its record goes to `out`
    fn access(&mut self, line: &str, offset: Option<i64>, out: &mut Vec<Record>) -> bool {
        if finder_apache().find(line.as_bytes()).is_none() {
            return false;
        }
        let Some(m) = apache_re().captures(line) else { return false };
        let mut groups: AccessGroups = Default::default();
        for (i, g) in groups.iter_mut().enumerate() {
            *g = m.get(i + 1).map(|x| x.as_str().to_owned());
        }
        let mut rec = new_record(None, None, Some("INFO"), None, line, line, offset);
        rec.kind = Kind::Access;
        rec.access = Some(Box::new(groups));
        out.push(rec);
        true
    }

    fn syslog(&mut self, m: &regex::Captures<'_>, line: &str, offset: Option<i64>, out: &mut Vec<Record>,
              iso: bool) -> FoldResult<Option<usize>> {
        let stamp = m.get(1).unwrap().as_str();
        let host = m.get(2).unwrap().as_str();
        let prog = m.get(3).unwrap().as_str();
        let spid = m.get(4).map_or("0", |x| x.as_str());
        let bm = m.get(5).unwrap();
        let body = bm.as_str();
        if let Some(h) = match_header(body) {
            let rest = h.rest.map_or("", |r| &body[r..]);
            return self.header(Some(&body[..h.ts_end]), &body[h.pid.0..h.pid.1], &body[h.level.0..h.level.1],
                               &body[h.logger.0..h.logger.1], rest, line, offset, out,
                               Extra { host: Some(host), prog: Some(prog), syslog_ts: None });
        }
        let extra = Extra { host: Some(host), prog: Some(prog), syslog_ts: Some((stamp, iso)) };
        match short_re().captures(body) {
            // a syslog line of a non-oslo program: its own record, INFO
            None => self.header(None, spid, "INFO", prog, body, line, offset, out, extra),
            Some(s) => {
                let rest = s.get(3).map_or("", |x| x.as_str());
                self.header(None, spid, s.get(1).unwrap().as_str(), s.get(2).unwrap().as_str(), rest, line, offset,
                            out, extra)
            }
        }
    }

    /// `Folder._header`: Some(head) of a glued-on record still to be fed.
    /// `rest` is a suffix of `line`.
    #[allow(clippy::too_many_arguments)]
    fn header(&mut self, ts: Option<&str>, pid: &str, level: &str, logger: &str, rest: &str, line: &str,
              offset: Option<i64>, out: &mut Vec<Record>, extra: Extra<'_>) -> FoldResult<Option<usize>> {
        if let Some(ts) = ts {
            if ts >= self.sweep_at.as_str() {
                self.expire(ts, out)?;
            }
        }
        let key_buf;
        let key: &str = match extra.host {
            None => pid,
            Some(h) => {
                key_buf = format!("{h}\x00{pid}");
                &key_buf
            }
        };
        let slot = self.open.get(key);
        if is_prefix_level(level) && context_end(rest) == 0 {
            if let Some(s) = slot {
                let rec = self.open.rec(s);
                if rec.logger.as_deref() == Some(logger)
                    && (rec.ts_text.as_deref() == ts || (extra.syslog_ts.is_some() && rec.syslog_ts.is_some()))
                {
                    // another process's record glued on (racing writes); very
                    // long lines are not split
                    let cut = if rest.len() < MAX_SPLIT_CHARS { embedded_re().find(rest).map(|x| x.start()) } else { None };
                    if let Some(c) = cut {
                        let head = line.len() - rest.len() + c;
                        self.append_tb(s, &line[..head], &rest[..c]);
                        if self.open.rec(s).lines.len() >= MAX_RECORD_LINES {
                            self.split(s, out);
                        }
                        return Ok(Some(head));
                    }
                    self.append_tb(s, line, rest);
                    if self.open.rec(s).lines.len() >= MAX_RECORD_LINES {
                        self.split(s, out);
                    }
                    return Ok(None);
                }
            }
            let rb = rest.as_bytes();
            if level == "TRACE" || rb.starts_with(b"Traceback")
                || finder_traceback().find(&rb[..rb.len().min(60)]).is_some()
            {
                if let Some(s) = slot {
                    out.push(self.open.remove(s).1);
                }
                let mut new = self.make(ts, pid, "ERROR", logger, rest, line, offset, &extra);
                new.orphan = true;
                new.tb = vec![rest.to_owned()];
                new.tb_last = true;
                self.insert(key.to_owned(), new);
                return Ok(None);
            }
        }
        if let Some(s) = slot {
            out.push(self.open.remove(s).1);
        }
        let new = self.make(ts, pid, level, logger, rest, line, offset, &extra);
        self.insert(key.to_owned(), new);
        Ok(None)
    }

    #[allow(clippy::too_many_arguments)]
    fn make(&self, ts: Option<&str>, pid: &str, level: &str, logger: &str, rest: &str, line: &str,
            offset: Option<i64>, extra: &Extra<'_>) -> Record {
        let mut r = new_record(ts, Some(pid), Some(level), Some(logger), rest, line, offset);
        r.host = extra.host.map(str::to_owned);
        r.prog = extra.prog.map(str::to_owned);
        r.syslog_ts = extra.syslog_ts.map(|(s, iso)| (s.to_owned(), iso));
        r
    }

    /// `open[key] = last = rec` for a key just removed or absent
    fn insert(&mut self, key: String, rec: Record) {
        self.open.compact(&mut self.last);
        let slot = self.open.push(key, rec);
        self.last = Some(slot);
    }

    fn append_tb(&mut self, slot: usize, line: &str, body: &str) {
        let rec = self.open.rec_mut(slot);
        rec.lines.push(line.to_owned());
        rec.tb.push(body.to_owned());
        rec.tb_last = true;
        self.last = Some(slot);
    }

    /// `Folder._split`: emit an oversized record; later lines continue in a
    /// new orphan record (moved to the end of the open records).
    fn split(&mut self, slot: usize, out: &mut Vec<Record>) {
        let (key, rec) = self.open.remove(slot);
        let cont = Record {
            ts_text: rec.ts_text.clone(),
            pid: rec.pid.clone(),
            level: rec.level.clone(),
            logger: rec.logger.clone(),
            rest: String::new(),
            lines: Vec::new(),
            cont: Vec::new(),
            tb: Vec::new(),
            offset: None,
            orphan: true,
            host: rec.host.clone(),
            prog: rec.prog.clone(),
            syslog_ts: rec.syslog_ts.clone(),
            kind: Kind::Log,
            reason: None,
            access: None,
            tb_last: true,
        };
        out.push(rec);
        self.insert(key, cont);
    }

    /// `Folder._expire`: complete the open records of other pids more than
    /// EXPIRE_SECONDS older than header time `ts`; move `sweep_at` on.
    fn expire(&mut self, ts: &str, out: &mut Vec<Record>) -> FoldResult<()> {
        let tb = ts.as_bytes();
        let Some(now) = parse_time(tb) else {
            // an impossible date: time does not move
            let mut s = String::with_capacity(20);
            s.push_str(&ts[..ts.len().min(19)]);
            s.push('\x7f');
            self.sweep_at = s;
            return Ok(());
        };
        let sep = tb[10] as char;
        self.sweep_at = match fmt_time(now + SWEEP_SECONDS, sep) {
            Some(nxt) => nxt,
            // the last seconds of year 9999: no later sweep
            None => format!("{}\x7f", &ts[..ts.len().min(19)]),
        };
        // the first seconds of year 1: nothing is older
        let Some(threshold) = fmt_time(now - EXPIRE_SECONDS, sep) else { return Ok(()) };
        if self.open.len() < 2 {
            return Ok(());
        }
        let last = self.last;
        let stale: Vec<usize> = self
            .open
            .iter()
            .filter(|(i, _, r)| {
                Some(*i) != last
                    && r.ts_text.as_deref().is_some_and(|t| t < threshold.as_str() && t.as_bytes().get(10) == Some(&tb[10]))
            })
            .map(|(i, _, _)| i)
            .collect();
        for s in stale {
            out.push(self.open.remove(s).1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_roundtrip() {
        let t = parse_time(b"2016-02-29 23:59:50").unwrap();
        assert_eq!(fmt_time(t + 30, ' ').unwrap(), "2016-03-01 00:00:20");
        assert_eq!(fmt_time(t - 5, 'T').unwrap(), "2016-02-29T23:59:45");
        assert!(parse_time(b"2015-02-29 00:00:00").is_none());
        assert!(parse_time(b"0000-01-01 00:00:00").is_none());
        let t = parse_time(b"0005-01-01 00:00:03").unwrap();
        assert_eq!(fmt_time(t - 5, ' ').unwrap(), "4-12-31 23:59:58");
        let t = parse_time(b"9999-12-31 23:59:40").unwrap();
        assert!(fmt_time(t + 30, ' ').is_none());
    }

    #[test]
    fn header_by_hand() {
        let h = match_header("2016-02-29 23:59:50.123 42 WARN a.b [-] x").unwrap();
        assert_eq!((h.ts_end, h.pid, h.level, h.logger, h.rest), (23, (24, 26), (27, 31), (32, 35), Some(36)));
        assert!(match_header("2016-02-29 23:59:50.1234567890 42 INFO a").is_none());
        assert!(match_header("2016-02-29 23:59:50 42 INFO\ta").is_none());
        let h = match_header("2016-02-29 23:59:50 42 INFO a\tb").unwrap();
        assert_eq!(h.rest, None);
    }
}

#[cfg(test)]
mod bench {
    /// `FOLD_BENCH=file cargo test --release --lib fold::bench -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn feed_text_speed() {
        let Ok(path) = std::env::var("FOLD_BENCH") else { return };
        let text = std::fs::read_to_string(path).unwrap();
        let mut best = f64::MAX;
        let mut n = 0;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let mut f = super::Folder::new();
            let mut out = Vec::new();
            f.feed_text(&text, Some(0), None, &mut out).unwrap();
            f.flush(&mut out);
            best = best.min(t.elapsed().as_secs_f64());
            n = out.len();
        }
        eprintln!("native (pure Rust): {n} records, {:.1} MB in {best:.4}s: {:.0} rec/s, {:.0} MB/s",
                  text.len() as f64 / 1e6, n as f64 / best, text.len() as f64 / 1e6 / best);
    }
}
