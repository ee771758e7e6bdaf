//! Record -> event fields: the Rust twin of `pipeline/extract.py`.
//!
//! Exact for ASCII records (the glue sends any other text down the Python
//! path; `build` refuses non-ASCII input with `Fallback::NonAscii`). The
//! regexes are those of the Python module, rewritten for Python's semantics
//! on ASCII `str`: `\s` is `[ \t\n\r\x0b\x0c\x1c-\x1f]`, `\d` is `[0-9]`,
//! `\w` is `[A-Za-z0-9_]`, `\b` the ASCII word boundary, and `$` (no
//! `re.M`) matches at the end or before a final `"\n"` (written `\n?\z`:
//! only the groups are used, never the match end). Rust's leftmost-first
//! search picks the same match and groups as Python's backtracking search
//! for these patterns (no backreferences, no lookaround).
//!
//! Python `str` slicing by character is byte slicing here (ASCII); every
//! slice is clamped like Python's, so short strings never panic.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;

use crate::clock::{Clock, TimeResult};
use crate::event::{EventFields, Source};
use crate::record::{Kind, Record};

/// Why `build` left a record to the Python path (the glue then calls
/// `pipeline.extract.Extractor.build` for it, which gives the event or
/// raises exactly as it always did).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// some text of the record or source is not ASCII
    NonAscii,
    /// Python would make an int beyond i64 (a 20+ digit pid, size, line
    /// number, %D duration; or raise for more than 4300 digits)
    IntOverflow,
    /// a record Python's `build` raises on (ts_text shorter than 11
    /// characters, a log record with no time at all, an access record
    /// without its groups): never made by `pipeline.fold`
    Malformed,
}

// -- regexes ------------------------------------------------------------------

const UUID: &str = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
/// Python's `\S` on ASCII text (`\s` includes \x1c-\x1f)
const NS: &str = r"[^ \t\n\r\x0B\x0C\x1C-\x1F]";
/// Python's `\s` on ASCII text
const SP: &str = r"[ \t\n\r\x0B\x0C\x1C-\x1F]";
const W: &str = "[A-Za-z0-9_]";

struct Res {
    uuidish: Regex,
    resource: Regex,
    req_id: Regex,
    access_oslo: Regex,
    access_eventlet: Regex,
    fault_line: Regex,
    method_url: Regex,
    exc_line: Regex,
    err_suffix: Regex,
    err_suffix_bare: Regex,
    errno: Regex,
    ansi: Regex,
}

fn res() -> &'static Res {
    static RES: OnceLock<Res> = OnceLock::new();
    RES.get_or_init(|| {
        let re = |p: String| Regex::new(&p).expect("extract regex");
        Res {
            uuidish: re("[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-".to_string()),
            resource: re(format!(
                r#"(?i)(?-u:\b)(instance|server|volume|vol|image|port|network|snapshot)s?(?:[ _]?id)?['"]?(?:[:=] ?u?['"]?| |/)({UUID})"#
            )),
            req_id: re(format!("req-{UUID}")),
            access_oslo: re(format!(
                r#"([0-9A-Fa-f.:,]+|-) "([A-Z]+) ({NS}+)(?: HTTP/[0-9.]+)?" status: ([1-5][0-9][0-9]){SP}+len: ([0-9]+)(?: microversion: {NS}+)? time: ([0-9]{{1,9}}(?:\.[0-9]+)?)"#
            )),
            access_eventlet: re(format!(
                r#"([0-9A-Fa-f.:,]+) - - \[[^\]]+\] "([A-Z]+) ({NS}+)[^"]*" ([1-5][0-9][0-9]) ([0-9]+|-) ([0-9]{{1,9}}(?:\.[0-9]+)?)"#
            )),
            fault_line: re(format!("({NS}+) returned with HTTP ([1-5][0-9][0-9])")),
            // METHOD_URL.match: anchored at the start; `$` as Python's
            method_url: re(format!(r"\A(GET|POST|PUT|DELETE|PATCH|HEAD|OPTIONS) ({NS}+)\n?\z")),
            // EXC_LINE.match, re.S
            exc_line: re(format!(r"(?s)\A((?:[A-Za-z_]{W}*\.)*[A-Za-z_]{W}*)(?:: (.*))?\n?\z")),
            err_suffix: re(format!(
                r"(?:\A|: )((?:[a-z_]{W}*\.)+[A-Z]{W}*|[A-Z]{W}*(?:Error|Exception|Failure|Timeout|Refused|Forced|NotFound|NotCreated|NotAuthorized|Invalid|Unavailable|Denied){W}*): (.+)\n?\z"
            )),
            err_suffix_bare: re(format!(
                r"(?:\A|: )([A-Z]{W}*(?:Failed|Exceeded|Full)|No[A-Z][a-z]{W}*|Invalid[A-Z]{W}*): (.+)\n?\z"
            )),
            errno: re(r"\[Errno ([0-9]+)\]".to_string()),
            ansi: re(r"\x1b\[[0-9;]*m".to_string()),
        }
    })
}

const BARE_HINTS: [&str; 5] = ["Failed: ", "Exceeded: ", "Full: ", "No", "Invalid"];
const INSTANCE_PREFIX: &str = "[instance: ";
const RESOURCE_SCAN: usize = 4096;
const SERVICES_MAX: usize = 4096;

pub const LOGGER_SERVICE: [(&str, &str); 16] = [
    ("nova.api", "nova-api"),
    ("nova.osapi_compute", "nova-api"),
    ("nova.metadata", "nova-api-metadata"),
    ("nova.compute", "nova-compute"),
    ("nova.virt", "nova-compute"),
    ("nova.conductor", "nova-conductor"),
    ("nova.scheduler", "nova-scheduler"),
    ("cinder.volume", "cinder-volume"),
    ("cinder.api", "cinder-api"),
    ("cinder.scheduler", "cinder-scheduler"),
    ("cinder.backup", "cinder-backup"),
    ("glance.registry", "glance-registry"),
    ("glance", "glance-api"),
    ("keystone", "keystone"),
    ("neutron", "neutron-server"),
    ("placement", "placement-api"),
];

// -- Python str helpers (ASCII) ----------------------------------------------------

#[inline]
fn is_py_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0x1c..=0x1f)
}

/// `s[a:b]` with Python's clamping (non-negative indices)
#[inline]
fn sl(s: &str, a: usize, b: usize) -> &str {
    let n = s.len();
    let b = b.min(n);
    if a >= b {
        ""
    } else {
        &s[a..b]
    }
}

/// `s[a:]`
#[inline]
fn from(s: &str, a: usize) -> &str {
    if a >= s.len() {
        ""
    } else {
        &s[a..]
    }
}

#[inline]
fn byte_at(s: &str, i: usize) -> Option<u8> {
    s.as_bytes().get(i).copied()
}

/// `str.split()` with no arguments
fn py_split(s: &str) -> Vec<&str> {
    s.split(|c: char| c.is_ascii() && is_py_space(c as u8)).filter(|t| !t.is_empty()).collect()
}

fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(|c: char| c.is_ascii() && is_py_space(c as u8))
}

/// `bool(s.strip())`
fn has_non_space(s: &str) -> bool {
    s.bytes().any(|b| !is_py_space(b))
}

/// `s.isdigit()` on ASCII
fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `int(s)` of a digit string; beyond i64 the Python path takes over
fn py_int(s: &str) -> Result<i64, Fallback> {
    s.parse::<i64>().map_err(|_| Fallback::IntOverflow)
}

/// `s.rpartition(sep)` -> (head, tail)
fn rpartition(s: &str, sep: char) -> (&str, &str) {
    match s.rfind(sep) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => ("", s),
    }
}

fn nonempty(s: &Option<String>) -> Option<&String> {
    s.as_ref().filter(|v| !v.is_empty())
}

// -- module functions ---------------------------------------------------------

pub fn service_from_logger(logger: Option<&str>, prog: Option<&str>) -> Option<String> {
    if let Some(p) = prog {
        if !p.is_empty() && !matches!(p, "python" | "python3" | "python2" | "uwsgi" | "httpd" | "apache2") {
            return Some(p.to_string());
        }
    }
    let logger = match logger {
        Some(l) if !l.is_empty() => l,
        _ => return None,
    };
    for (prefix, service) in LOGGER_SERVICE {
        if logger.starts_with(prefix) {
            return Some(service.to_string());
        }
    }
    Some(logger.split('.').next().unwrap_or("").to_string())
}

fn req_char(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b'-'
}

pub fn is_request_id(token: &str) -> bool {
    token.starts_with("req-") && token.len() > 12 && token.bytes().skip(4).all(req_char)
}

fn hexish(s: &str) -> bool {
    s.len() >= 32 && s.bytes().all(req_char)
}

/// `lineformat.context_end`
pub fn context_end(rest: &str) -> usize {
    if !rest.starts_with('[') {
        return 0;
    }
    if rest.starts_with("[-]") {
        return if byte_at(rest, 3) == Some(b' ') { 4 } else { 3 };
    }
    if !(rest.starts_with("[req-") || rest.starts_with("[None req-") || rest.starts_with("[- req-")) {
        return 0;
    }
    match rest.find(']') {
        None => 0,
        Some(end) => {
            if byte_at(rest, end + 1) == Some(b' ') {
                end + 2
            } else {
                end + 1
            }
        }
    }
}

fn context_fields(ctx: &str, ev: &mut EventFields) {
    let tokens = py_split(ctx);
    if tokens.is_empty() || (tokens[0] == "-" && tokens.len() == 1) {
        return;
    }
    let mut i = 0;
    if tokens.len() > 1 && is_request_id(tokens[1]) {
        if is_request_id(tokens[0]) {
            ev.global_request_id = Some(tokens[0].to_string());
        }
        ev.request_id = Some(tokens[1].to_string());
        i = 2;
    } else if is_request_id(tokens[0]) {
        ev.request_id = Some(tokens[0].to_string());
        i = 1;
    }
    let n = tokens.len() as isize - i as isize;
    if n <= 0 {
        return;
    }
    let mut u = Some(tokens[i]);
    if matches!(u, Some("-") | Some("None")) {
        u = None;
    }
    let mut p = if n > 1 { Some(tokens[i + 1]) } else { None };
    if matches!(p, Some("-") | Some("None")) {
        p = None;
    }
    if u.is_none() && p.is_none() {
        return;
    }
    // tokens are never empty, so `u and ...` is `u is not None and ...`
    let hex = u.map_or(false, hexish) || p.map_or(false, hexish);
    // 0: user_id/project_id, 1: project_name/user_name, 2: user_name/project_name
    let names = if hex { 0 } else if u.is_some() && p.is_some() { 1 } else { 2 };
    let u = u.map(str::to_string);
    let p = p.map(str::to_string);
    match names {
        0 => {
            if u.is_some() {
                ev.user_id = u;
            }
            if p.is_some() {
                ev.project_id = p;
            }
        }
        1 => {
            ev.project_name = u;
            ev.user_name = p;
        }
        _ => {
            if u.is_some() {
                ev.user_name = u;
            }
            if p.is_some() {
                ev.project_name = p;
            }
        }
    }
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| {
            if i == 8 || i == 13 || i == 18 || i == 23 {
                c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

pub fn strip_instance(body: &str) -> &str {
    if body.starts_with(INSTANCE_PREFIX) && byte_at(body, 47) == Some(b']') {
        return if byte_at(body, 48) == Some(b' ') { from(body, 49) } else { from(body, 48) };
    }
    body
}

/// (type, message) of the last exception in traceback body lines.
pub fn exception_of(lines: &[&str]) -> (Option<String>, Option<String>) {
    let mut i = lines.len() as isize - 1;
    while i >= 0 && !has_non_space(lines[i as usize]) {
        i -= 1;
    }
    if i < 0 {
        return (None, None);
    }
    let i = i as usize;
    let mut j = i;
    while j > 0 && has_non_space(lines[j - 1]) && !{
        let l = lines[j - 1];
        l.starts_with(' ') || l.starts_with('\t') || l.starts_with("Traceback")
    } {
        j -= 1;
    }
    let first = lines[j];
    if first.starts_with(' ') || first.starts_with("Traceback") {
        return (None, None);
    }
    match res().exc_line.captures(first) {
        None => (None, Some(lines[j..=i].join("\n"))),
        Some(m) => {
            let mut parts: Vec<&str> = Vec::with_capacity(i - j + 1);
            if let Some(g2) = m.get(2) {
                parts.push(g2.as_str());
            }
            parts.extend_from_slice(&lines[j + 1..=i]);
            let msg = parts.join("\n");
            (Some(m[1].to_string()), if msg.is_empty() { None } else { Some(msg) })
        }
    }
}

/// oslo.log's DEBUG ``func path:line``: removed from `msg`, kept as log.origin
fn strip_debug_suffix(ev: &mut EventFields, msg: String) -> Result<String, Fallback> {
    if msg.ends_with("}}") {
        // devstack: {{(pid=N) func path:line}}
        if let Some(start) = msg.rfind(" {{(pid=") {
            let inner = sl(&msg, start + 3, msg.len() - 2);
            let parts = py_split(inner);
            if parts.len() == 3 && parts[2].contains(':') {
                let (path, line) = rpartition(parts[2], ':');
                let origin_line = if is_digits(line) { Some(py_int(line)?) } else { None };
                ev.origin_function = Some(parts[1].to_string());
                ev.origin_file = Some(path.to_string());
                ev.origin_line = origin_line;
                let mut msg = msg;
                msg.truncate(start);
                return Ok(msg);
            }
        }
        return Ok(msg);
    }
    let i = match msg.rfind(' ') {
        None => return Ok(msg),
        Some(i) => i,
    };
    let (path, line) = rpartition(&msg[i + 1..], ':');
    if !(is_digits(line) && path.ends_with(".py")) {
        return Ok(msg);
    }
    let origin_line = py_int(line)?;
    let sp = msg[..i].rfind(' ').map_or(-1, |x| x as isize);
    let nl = msg[..i].rfind('\n').map_or(-1, |x| x as isize);
    let j = sp.max(nl);
    ev.origin_function = Some(msg[(j + 1) as usize..i].to_string());
    ev.origin_file = Some(path.to_string());
    ev.origin_line = Some(origin_line);
    Ok(py_rstrip(&msg[..j.max(0) as usize]).to_string())
}

fn url_path(url: &str) -> String {
    let mut url = url;
    if let Some(k) = url.find("://") {
        url = match from(url, k + 3).find('/') {
            Some(s) => &url[k + 3 + s..],
            None => "/",
        };
    }
    url.split('?').next().unwrap_or("").to_string()
}

fn access_fields(ev: &mut EventFields, msg: &str, logger: Option<&str>) -> Result<(), Fallback> {
    let r = res();
    if msg.contains("\" status: ") {
        if let Some(m) = r.access_oslo.captures(msg) {
            let ip = &m[1];
            ev.http_method = Some(m[2].to_string());
            ev.source_ip = if ip != "-" { Some(ip.split(',').next().unwrap_or("").to_string()) } else { None };
            ev.url_path = Some(m[3].split('?').next().unwrap_or("").to_string());
            ev.status_code = Some(py_int(&m[4])?);
            ev.body_bytes = Some(py_int(&m[5])?);
            ev.duration_ns = Some(duration_ns(&m[6]));
        }
        return Ok(());
    }
    if msg.contains("] \"") {
        if let Some(m) = r.access_eventlet.captures(msg) {
            ev.http_method = Some(m[2].to_string());
            ev.source_ip = Some(m[1].split(',').next().unwrap_or("").to_string());
            ev.url_path = Some(m[3].split('?').next().unwrap_or("").to_string());
            ev.status_code = Some(py_int(&m[4])?);
            let size = &m[5];
            ev.body_bytes = if size != "-" { Some(py_int(size)?) } else { None };
            ev.duration_ns = Some(duration_ns(&m[6]));
        }
        return Ok(());
    }
    if msg.contains("returned with HTTP") {
        if let Some(m) = r.fault_line.captures(msg) {
            ev.url_path = Some(url_path(&m[1]));
            ev.status_code = Some(py_int(&m[2])?);
        }
        return Ok(());
    }
    if let Some(lg) = logger {
        if lg.ends_with("wsgi") && msg.as_bytes().first().map_or(false, u8::is_ascii_uppercase) {
            if let Some(m) = r.method_url.captures(msg) {
                ev.http_method = Some(m[1].to_string());
                ev.url_path = Some(url_path(&m[2]));
            }
        }
    }
    Ok(())
}

/// `int(float(secs) * 1e9)`: secs has at most 9 integer digits, so the
/// product is below 1e18 and the truncating cast is exact
fn duration_ns(secs: &str) -> i64 {
    let f: f64 = secs.parse().unwrap_or(0.0);
    (f * 1e9) as i64
}

/// Set `stack_trace` from traceback lines; (lines, error type, message).
fn traceback<'a>(
    body: &'a [String],
    ev: &mut EventFields,
) -> (Vec<&'a str>, Option<String>, Option<String>) {
    let mut lines: Vec<&str> = body.iter().map(String::as_str).collect();
    let mut text = lines.join("\n");
    if text.contains(INSTANCE_PREFIX) {
        lines = lines.into_iter().map(strip_instance).collect();
        text = lines.join("\n");
    }
    let t = py_rstrip(&text);
    ev.stack_trace = if t.is_empty() {
        None
    } else {
        text.truncate(t.len());
        Some(text)
    };
    let (et, em) = exception_of(&lines);
    (lines, et, em)
}

type Resources = Vec<(String, Vec<String>)>;

fn push_res(res: &mut Option<Resources>, kind: &str, rid: String) {
    let res = res.get_or_insert_with(Vec::new);
    let lst = match res.iter().position(|(k, _)| k == kind) {
        Some(p) => &mut res[p].1,
        None => {
            res.push((kind.to_string(), Vec::new()));
            &mut res.last_mut().unwrap().1
        }
    };
    if lst.len() < 20 && !lst.contains(&rid) {
        lst.push(rid);
    }
}

pub fn resources_of(text: &str, own: (Option<&str>, Option<&str>)) -> Option<Resources> {
    let r = res();
    let mut out: Option<Resources> = None;
    if r.uuidish.is_match(text) {
        for m in r.resource.captures_iter(text) {
            let kind = m[1].to_ascii_lowercase();
            let kind = match kind.as_str() {
                "server" => "instance",
                "vol" => "volume",
                k => k,
            };
            push_res(&mut out, kind, m[2].to_ascii_lowercase());
        }
    }
    if text.contains("req-") {
        for m in r.req_id.find_iter(text) {
            let rid = m.as_str();
            if Some(rid) != own.0 && Some(rid) != own.1 {
                push_res(&mut out, "request", rid.to_string());
            }
        }
    }
    out
}

fn ascii_opt(s: &Option<String>) -> bool {
    s.as_ref().map_or(true, |v| v.is_ascii())
}

fn record_is_ascii(rec: &Record, src: &Source) -> bool {
    ascii_opt(&rec.ts_text)
        && ascii_opt(&rec.pid)
        && ascii_opt(&rec.level)
        && ascii_opt(&rec.logger)
        && rec.rest.is_ascii()
        && rec.lines.iter().all(|l| l.is_ascii())
        && rec.cont.iter().all(|l| l.is_ascii())
        && rec.tb.iter().all(|l| l.is_ascii())
        && ascii_opt(&rec.host)
        && ascii_opt(&rec.prog)
        && rec.syslog_ts.as_ref().map_or(true, |(s, _)| s.is_ascii())
        && ascii_opt(&rec.reason)
        && rec.access.as_ref().map_or(true, |a| a.iter().all(ascii_opt))
        && ascii_opt(&src.host)
        && ascii_opt(&src.service)
        && ascii_opt(&src.path)
}

// -- the extractor --------------------------------------------------------------

/// Turns folded records of one parser into events: `pipeline.extract.Extractor`.
pub struct Extractor {
    pub syslog_year: i64,
    /// (logger, prog) -> service, keyed by an unambiguous encoding of the
    /// pair (so a hit costs no allocation); cleared at 4096 like Python's
    services: HashMap<String, Option<String>>,
    key: String,
}

fn push_key_part(key: &mut String, part: Option<&str>) {
    match part {
        None => key.push('N'),
        Some(s) => {
            key.push_str(&s.len().to_string());
            key.push(':');
            key.push_str(s);
        }
    }
}

impl Extractor {
    pub fn new(syslog_year: i64) -> Self {
        Extractor { syslog_year, services: HashMap::new(), key: String::new() }
    }

    fn service(&mut self, logger: Option<&str>, prog: Option<&str>) -> Option<String> {
        self.key.clear();
        push_key_part(&mut self.key, logger);
        push_key_part(&mut self.key, prog);
        if let Some(v) = self.services.get(self.key.as_str()) {
            return v.clone();
        }
        if self.services.len() >= SERVICES_MAX {
            self.services.clear();
        }
        let svc = service_from_logger(logger, prog);
        self.services.insert(self.key.clone(), svc.clone());
        svc
    }

    pub fn unparsed(
        &self,
        rec: &Record,
        src: &Source,
        reason: String,
        last: (Option<f64>, Option<&str>),
    ) -> EventFields {
        let original = rec.original();
        EventFields {
            kind: Kind::Unparsed,
            reason: Some(reason),
            message: Some(original.clone()),
            original: Some(original),
            host: nonempty(&rec.host).or(src.host.as_ref()).cloned(),
            service: src.service.clone(),
            file_path: src.path.clone(),
            offset: rec.offset,
            ts: last.0,
            timestamp: last.1.map(str::to_string),
            ..Default::default()
        }
    }

    fn time(&self, rec: &Record, clock: &mut dyn Clock) -> Result<TimeResult, Fallback> {
        if let Some(t) = &rec.ts_text {
            if t.len() <= 10 {
                return Err(Fallback::Malformed);
            }
            if byte_at(t, 10) == Some(b'T') || sl(t, 19, 20) == "," {
                let t2 = if t.len() > 19 {
                    format!("{} {}.{}", &t[..10], sl(t, 11, 19), from(t, 20))
                } else {
                    format!("{} {}", &t[..10], sl(t, 11, 19))
                };
                return Ok(clock.parse(&t2));
            }
            return Ok(clock.parse(t));
        }
        match &rec.syslog_ts {
            Some((stamp, true)) => Ok(clock.parse_iso(stamp)),
            Some((stamp, false)) => Ok(clock.parse_syslog(stamp, self.syslog_year)),
            None => Err(Fallback::Malformed),
        }
    }

    /// The event `Extractor.build(rec, src, last)` makes, field for field;
    /// `Err` when the Python path must build it instead (see `Fallback`).
    pub fn build(
        &mut self,
        rec: &Record,
        src: &Source,
        last: (Option<f64>, Option<&str>),
        clock: &mut dyn Clock,
    ) -> Result<EventFields, Fallback> {
        if !record_is_ascii(rec, src) || !last.1.map_or(true, str::is_ascii) {
            return Err(Fallback::NonAscii);
        }
        match rec.kind {
            Kind::Unparsed => {
                let reason = nonempty(&rec.reason).cloned().unwrap_or_else(|| "unparseable".to_string());
                return Ok(self.unparsed(rec, src, reason, last));
            }
            Kind::Access => return self.apache(rec, src, last, clock),
            Kind::Log => {}
        }
        let (ts, stamp) = match self.time(rec, clock)? {
            Ok(v) => v,
            Err(reason) => return Ok(self.unparsed(rec, src, reason, last)),
        };
        let level = rec.level.as_deref();
        let pid = match rec.pid.as_deref() {
            Some(p) if is_digits(p) => Some(py_int(p)?),
            _ => None,
        };
        let service = match nonempty(&src.service) {
            Some(s) => Some(s.clone()),
            None => self.service(rec.logger.as_deref(), rec.prog.as_deref()),
        };
        let mut ev = EventFields {
            kind: Kind::Log,
            ts: Some(ts),
            timestamp: Some(stamp),
            level: rec.level.clone(),
            logger: rec.logger.clone(),
            pid,
            host: nonempty(&rec.host).or(src.host.as_ref()).cloned(),
            file_path: src.path.clone(),
            offset: rec.offset,
            service,
            original: Some(rec.original()),
            ..Default::default()
        };
        let r = res();
        let rest_cow: Cow<str> =
            if rec.rest.contains("\x1b[") { r.ansi.replace_all(&rec.rest, "") } else { Cow::Borrowed(&rec.rest) };
        let mut rest: &str = &rest_cow;
        if rest.starts_with('[') {
            let n = context_end(rest);
            if n > 0 {
                let close = rest.find(']').unwrap_or(0);
                context_fields(sl(rest, 1, close), &mut ev);
                rest = from(rest, n);
            }
            if rest.starts_with(INSTANCE_PREFIX) && byte_at(rest, 47) == Some(b']') && is_uuid(&rest[11..47]) {
                ev.instance_id = Some(rest[11..47].to_ascii_lowercase());
                rest = if byte_at(rest, 48) == Some(b' ') { from(rest, 49) } else { from(rest, 48) };
            }
        }
        let mut error_type: Option<String> = None;
        let mut error_message: Option<String> = None;
        let msg: String;
        if rec.orphan {
            let (body, et, em) = traceback(&rec.tb, &mut ev);
            msg = match &et {
                Some(t) => format!("{}: {}", t, em.as_deref().unwrap_or("None")),
                None => body.first().map_or(String::new(), |b| b.to_string()),
            };
            error_type = et;
            error_message = em;
        } else {
            let mut m = if rec.cont.is_empty() {
                rest.to_string()
            } else {
                let mut s = String::with_capacity(rest.len() + rec.cont.iter().map(|c| c.len() + 1).sum::<usize>());
                s.push_str(rest);
                for c in &rec.cont {
                    s.push('\n');
                    s.push_str(c);
                }
                s
            };
            if level == Some("DEBUG") {
                m = strip_debug_suffix(&mut ev, m)?;
            }
            if !rec.tb.is_empty() {
                let (_, et, em) = traceback(&rec.tb, &mut ev);
                error_type = et;
                error_message = em;
            }
            if error_type.is_none() && level != Some("DEBUG") && level != Some("INFO") && m.contains(": ") {
                let first = m.split('\n').next().unwrap_or("");
                let mut c = r.err_suffix.captures(first);
                if c.is_none() && BARE_HINTS.iter().any(|h| first.contains(h)) {
                    c = r.err_suffix_bare.captures(first);
                }
                if let Some(c) = c {
                    error_type = Some(c[1].to_string());
                    error_message = Some(c[2].to_string());
                }
            }
            msg = m;
        }
        access_fields(&mut ev, &msg, rec.logger.as_deref())?;
        // ids are named near the start of a message: scan a bounded prefix
        let text: Cow<str> = match &error_message {
            None => Cow::Borrowed(sl(&msg, 0, RESOURCE_SCAN)),
            Some(em) => Cow::Owned(format!("{}\n{}", sl(&msg, 0, RESOURCE_SCAN), sl(em, 0, RESOURCE_SCAN))),
        };
        ev.resources = resources_of(&text, (ev.request_id.as_deref(), ev.global_request_id.as_deref()));
        if text.contains("Errno") {
            if let Some(m) = r.errno.captures(&text) {
                ev.errno = Some(m[1].to_string());
            }
        }
        drop(text);
        ev.error_type = error_type;
        ev.error_message = error_message;
        ev.message = Some(msg);
        Ok(ev)
    }

    fn apache(
        &mut self,
        rec: &Record,
        src: &Source,
        last: (Option<f64>, Option<&str>),
        clock: &mut dyn Clock,
    ) -> Result<EventFields, Fallback> {
        let g = rec.access.as_deref().ok_or(Fallback::Malformed)?;
        let [ip, user, stamp, method, url, status, size, _agent, dur, _us] = g;
        let stamp = stamp.as_deref().ok_or(Fallback::Malformed)?;
        let (ts, iso) = match clock.parse_apache(stamp) {
            Ok(v) => v,
            Err(reason) => return Ok(self.unparsed(rec, src, reason, last)),
        };
        let status = status.as_deref().ok_or(Fallback::Malformed)?;
        let size = size.as_deref().ok_or(Fallback::Malformed)?;
        let url = url.as_deref().ok_or(Fallback::Malformed)?;
        let mut ev = EventFields {
            kind: Kind::Access,
            ts: Some(ts),
            timestamp: Some(iso),
            level: Some("INFO".to_string()),
            message: Some(rec.rest.clone()),
            original: Some(rec.original()),
            host: src.host.clone(),
            service: src.service.clone(),
            file_path: src.path.clone(),
            offset: rec.offset,
            http_method: method.clone(),
            url_path: Some(url_path(url)),
            status_code: Some(py_int(status)?),
            body_bytes: if size != "-" { Some(py_int(size)?) } else { None },
            source_ip: ip.as_ref().filter(|v| v.as_str() != "-").cloned(),
            ..Default::default()
        };
        if let Some(u) = user {
            if !u.is_empty() && u != "-" {
                ev.user_name = Some(u.clone());
            }
        }
        if let Some(d) = dur {
            if !d.is_empty() {
                // %D is microseconds; a bare trailing number is %D as well
                ev.duration_ns = Some(py_int(d)?.checked_mul(1000).ok_or(Fallback::IntOverflow)?);
            }
        }
        Ok(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(py_split(" a\x1cb  c "), vec!["a", "b", "c"]);
        assert_eq!(sl("abc", 5, 9), "");
        assert_eq!(strip_instance("x"), "x");
        assert_eq!(url_path("http://h:1"), "/");
        assert_eq!(url_path("http://h:1/a?b"), "/a");
        assert!(is_request_id("req-0123456789"));
        assert_eq!(context_end("[-] x"), 4);
    }
}
