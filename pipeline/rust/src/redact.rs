//! `pipeline/redact.py` for ASCII text: `needs_redaction` and `redact_text`
//! give exactly what the Python functions give.
//!
//! **ASCII only.** Callers guarantee `text.is_ascii()` (debug-asserted):
//! then Python's `str.lower()` is ASCII lower-casing (same length, so spans
//! found on the lowered text cut the original), and `\s` is
//! `[ \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f]`.
//!
//! The regexes are matched by hand. `SECRETS` has negative lookaheads
//! (`(?!\*\*\*)`) and `URL_CREDENTIALS` a lookahead (`(?=@)`) that the regex
//! crate lacks; the functions below follow Python's backtracking paths:
//!
//! * s1: `KEY ['"]? \s* (=>|[=:]) \s* ['"]? (?!\*\*\*) [^\s'",;{}\[\]&)]+`.
//!   Every optional quote / `\s*` has exactly one path that can succeed
//!   (giving back a quote or a blank puts it where a separator or a value
//!   character is required, and neither class holds quotes or blanks), and
//!   the shorter keys (`pass` of `password`, `secret` of `secret_key`,
//!   `credential` of `credentials`) leave a letter where the separator must
//!   be. The one real choice is `=>` before `=`: when the lookahead or the
//!   value fails after `=>`, Python backtracks to `=` and the value starts
//!   at `>` (which always succeeds: `>` is a value character).
//! * s2: `TOKEN_KEY ['"]? \s* [=:] \s* ['"]? [a-z0-9_\-+/=]{16,}`: no choice
//!   can succeed but the greedy one.
//! * s3: `--(?:os-)?password[= ](?!\*\*\*)\S+`.
//! * The alternatives are tried in order s1, s2, s3 at the anchored position
//!   (they start with different letters, so at most one gets past its key).
//! * `URL_CREDENTIALS`: the user class has no `:` and the secret class no
//!   `@`, so only the longest runs can be followed by `:` and `@`.

use aho_corasick::AhoCorasick;
use memchr::memmem;
use std::sync::OnceLock;

pub const MASK: &str = "***";

/// `_STARTS`, in the Python order.
const STARTS: [&str; 12] = [
    "pass", "pwd", "secret", "api", "credential", "x-auth-token", "x-subject-token", "x-service-token",
    "auth_token", "admin_token", "token", "--",
];

/// `_hinted`'s substrings.
const HINTS: [&str; 8] = ["pass", "token", "secret", "://", "pwd", "api_key", "apikey", "credential"];

/// Python's `\s` on an ASCII str.
#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0x1c..=0x1f)
}

#[inline]
fn is_quote(b: u8) -> bool {
    b == b'\'' || b == b'"'
}

/// `[^\s'",;{}\[\]&)]`
#[inline]
fn is_s1_value(b: u8) -> bool {
    !is_ws(b) && !matches!(b, b'\'' | b'"' | b',' | b';' | b'{' | b'}' | b'[' | b']' | b'&' | b')')
}

/// `[a-z0-9_\-+/=]`
#[inline]
fn is_s2_value(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'+' | b'/' | b'=')
}

/// `[^\s/@:,'"]` (URL_CREDENTIALS user)
#[inline]
fn is_url_user(b: u8) -> bool {
    !is_ws(b) && !matches!(b, b'/' | b'@' | b':' | b',' | b'\'' | b'"')
}

/// `[^\s/@'",]` (URL_CREDENTIALS secret)
#[inline]
fn is_url_secret(b: u8) -> bool {
    !is_ws(b) && !matches!(b, b'/' | b'@' | b'\'' | b'"' | b',')
}

/// `[^\s/@:]` (_PRECISE user)
#[inline]
fn is_precise_user(b: u8) -> bool {
    !is_ws(b) && !matches!(b, b'/' | b'@' | b':')
}

/// `[^\s/@]` (_PRECISE password)
#[inline]
fn is_precise_pw(b: u8) -> bool {
    !is_ws(b) && !matches!(b, b'/' | b'@')
}

/// End of the run of `class` characters from `p` (at most `end`).
#[inline]
fn run(l: &[u8], mut p: usize, end: usize, class: impl Fn(u8) -> bool) -> usize {
    while p < end && class(l[p]) {
        p += 1;
    }
    p
}

#[inline]
fn skip_ws(l: &[u8], p: usize) -> usize {
    run(l, p, l.len(), is_ws)
}

#[inline]
fn skip_quote(l: &[u8], p: usize) -> usize {
    if p < l.len() && is_quote(l[p]) { p + 1 } else { p }
}

#[inline]
fn at(l: &[u8], p: usize, lit: &[u8]) -> bool {
    l.len() >= p && l[p..].starts_with(lit)
}

/// `_KEY` as stems with their optional tails: `pass(?:word|wd)?|pwd|secret(?:_key)?|api_?key|credentials?`
const KEYS: [(&[u8], &[&[u8]]); 6] = [
    (b"pass", &[b"word", b"wd"]),
    (b"pwd", &[]),
    (b"secret", &[b"_key"]),
    (b"api_key", &[]),
    (b"apikey", &[]),
    (b"credential", &[b"s"]),
];

/// The ends of `_KEY` matches at `i`, in the order Python tries them
/// (the stem with its first matching tail, then the bare stem).
fn key_ends(l: &[u8], i: usize, out: &mut [usize; 2]) -> usize {
    for (stem, tails) in KEYS {
        if !at(l, i, stem) {
            continue;
        }
        let k = i + stem.len();
        return match tails.iter().find(|t| at(l, k, t)) {
            Some(t) => {
                *out = [k + t.len(), k];
                2
            }
            None => {
                out[0] = k;
                1
            }
        };
    }
    0
}

/// s1 after a key ending at `k`.
fn s1_rest(l: &[u8], k: usize) -> Option<(usize, usize)> {
    let n = l.len();
    let p = skip_ws(l, skip_quote(l, k));
    if p >= n {
        return None;
    }
    let mut seps = [0usize; 2];
    let nsep = if at(l, p, b"=>") {
        seps = [p + 2, p + 1];
        2
    } else if l[p] == b'=' || l[p] == b':' {
        seps[0] = p + 1;
        1
    } else {
        0
    };
    for &q in &seps[..nsep] {
        let r = skip_quote(l, skip_ws(l, q));
        if at(l, r, b"***") {
            continue;
        }
        let e = run(l, r, n, is_s1_value);
        if e > r {
            return Some((r, e));
        }
    }
    None
}

const TOKEN_KEYS: [&[u8]; 6] =
    [b"x-auth-token", b"x-subject-token", b"x-service-token", b"auth_token", b"admin_token", b"token"];

/// s2 at `i`.
fn s2_at(l: &[u8], i: usize) -> Option<(usize, usize)> {
    let n = l.len();
    for key in TOKEN_KEYS {
        if !at(l, i, key) {
            continue;
        }
        let p = skip_ws(l, skip_quote(l, i + key.len()));
        if p < n && (l[p] == b'=' || l[p] == b':') {
            let r = skip_quote(l, skip_ws(l, p + 1));
            let e = run(l, r, n, is_s2_value);
            if e - r >= 16 {
                return Some((r, e));
            }
        }
    }
    None
}

/// s3 at `i`.
fn s3_at(l: &[u8], i: usize) -> Option<(usize, usize)> {
    if !at(l, i, b"--") {
        return None;
    }
    let n = l.len();
    for opt in [&b"os-password"[..], &b"password"[..]] {
        if !at(l, i + 2, opt) {
            continue;
        }
        let p = i + 2 + opt.len();
        if p < n && (l[p] == b'=' || l[p] == b' ') {
            let r = p + 1;
            if at(l, r, b"***") {
                continue;
            }
            let e = run(l, r, n, |b| !is_ws(b));
            if e > r {
                return Some((r, e));
            }
        }
    }
    None
}

/// `SECRETS.match(lowered, i)`: the span of the group that matched (its end is the match's end).
fn secrets_match(l: &[u8], i: usize) -> Option<(usize, usize)> {
    let mut ends = [0usize; 2];
    let n = key_ends(l, i, &mut ends);
    for &k in &ends[..n] {
        if let Some(span) = s1_rest(l, k) {
            return Some(span);
        }
    }
    s2_at(l, i).or_else(|| s3_at(l, i))
}

/// `URL_CREDENTIALS.match(lowered, s, end)`: the secret's span.
fn url_match(l: &[u8], s: usize, end: usize) -> Option<(usize, usize)> {
    let p = if s + 3 <= end && &l[s..s + 3] == b"://" {
        s + 3
    } else if l[s] == b',' {
        s + 1
    } else {
        return None;
    };
    let u = run(l, p, end, is_url_user);
    if u == p || u >= end || l[u] != b':' {
        return None;
    }
    let q = u + 1;
    let r = run(l, q, end, is_url_secret);
    if r > q && r < end && l[r] == b'@' {
        Some((q, r))
    } else {
        None
    }
}

struct Finders {
    starts: Vec<memmem::Finder<'static>>,
    url: memmem::Finder<'static>,
}

fn finders() -> &'static Finders {
    static F: OnceLock<Finders> = OnceLock::new();
    F.get_or_init(|| Finders {
        starts: STARTS.iter().map(|w| memmem::Finder::new(w.as_bytes())).collect(),
        url: memmem::Finder::new(b"://"),
    })
}

#[inline]
fn find(f: &memmem::Finder<'_>, l: &[u8], from: usize) -> Option<usize> {
    if from > l.len() {
        return None;
    }
    f.find(&l[from..]).map(|i| i + from)
}

/// `_hinted(text.lower())`, on `text` itself (ASCII: a case-insensitive
/// search is the search of the lowered text) and without lowering it first:
/// most texts stop here.
pub fn hinted(text: &str) -> bool {
    static AC: OnceLock<AhoCorasick> = OnceLock::new();
    AC.get_or_init(|| AhoCorasick::builder().ascii_case_insensitive(true).build(HINTS).unwrap())
        .is_match(text)
}

fn lowered(text: &str) -> Vec<u8> {
    debug_assert!(text.is_ascii(), "redact: ASCII text only");
    text.as_bytes().to_ascii_lowercase()
}

/// `redact.redact_text(text)` for ASCII `text`; `None`: unchanged (the
/// Python function returns `text` itself).
pub fn redact_text(text: &str) -> Option<String> {
    if text.is_empty() {
        return None;
    }
    if !hinted(text) {
        return None;
    }
    let l = lowered(text);
    let f = finders();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for w in &f.starts {
        let mut i = find(w, &l, 0);
        while let Some(j) = i {
            i = match secrets_match(&l, j) {
                Some(span) => {
                    spans.push(span);
                    find(w, &l, span.1)
                }
                None => find(w, &l, j + 1),
            };
        }
    }
    let mut i = find(&f.url, &l, 0);
    while let Some(j) = i {
        let end = (j + 3..l.len()).find(|&p| is_ws(l[p]) || is_quote(l[p])).unwrap_or(l.len());
        let mut s = j;
        while s < end {
            match url_match(&l, s, end) {
                Some(span) => {
                    spans.push(span);
                    s = span.1;
                }
                None => s += 1,
            }
        }
        i = find(&f.url, &l, end);
    }
    if spans.is_empty() {
        return None;
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for (start, end) in spans {
        if start < pos {
            continue;
        }
        out.push_str(&text[pos..start]);
        out.push_str(MASK);
        pos = end;
    }
    out.push_str(&text[pos..]);
    Some(out)
}

/// The ends of every `_KEY` / `_TOKEN_KEY` variant that occurs at an
/// occurrence of `word` at `i` (for `_PRECISE`'s first alternative).
fn precise_key_at(l: &[u8], word: usize, i: usize) -> bool {
    // `['"]? \s* (?:=>|[=:])` after a key ending at k
    let shape = |k: usize| {
        let p = skip_ws(l, skip_quote(l, k));
        p < l.len() && (l[p] == b'=' || l[p] == b':')
    };
    match word {
        0 => shape(i + 4) || (at(l, i + 4, b"word") && shape(i + 8)) || (at(l, i + 4, b"wd") && shape(i + 6)),
        1 => shape(i + 3),
        2 => shape(i + 6) || (at(l, i + 6, b"_key") && shape(i + 10)),
        3 => (at(l, i + 3, b"_key") && shape(i + 7)) || (at(l, i + 3, b"key") && shape(i + 6)),
        4 => shape(i + 10) || (at(l, i + 10, b"s") && shape(i + 11)),
        // every token key ends in "token": its occurrence with the shape after it is one
        _ => shape(i + 5),
    }
}

/// `redact.needs_redaction(text)` for ASCII `text`.
pub fn needs_redaction(text: &str) -> bool {
    if text.is_empty() {
        return false;
    }
    if !hinted(text) {
        return false;
    }
    let l = lowered(text);
    // _PRECISE.search: some position where some alternative matches
    static KEYS: OnceLock<[memmem::Finder<'static>; 6]> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        ["pass", "pwd", "secret", "api", "credential", "token"].map(|w| memmem::Finder::new(w.as_bytes()))
    });
    for (w, f) in keys.iter().enumerate() {
        if f.find_iter(&l).any(|i| precise_key_at(&l, w, i)) {
            return true;
        }
    }
    for i in finders().url.find_iter(&l) {
        let p = i + 3;
        let u = run(&l, p, l.len(), is_precise_user);
        if u > p && u < l.len() && l[u] == b':' {
            let r = run(&l, u + 1, l.len(), is_precise_pw);
            if r < l.len() && l[r] == b'@' {
                return true;
            }
        }
    }
    memmem::find(&l, b"--password").is_some() || memmem::find(&l, b"--os-password").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookahead_backtracking() {
        assert_eq!(redact_text("password=>***x").as_deref(), Some("password=***"));
        assert_eq!(redact_text("password=***x"), None);
        assert_eq!(redact_text("password=> 'v'").as_deref(), Some("password=> '***'"));
        assert_eq!(redact_text("password=> ''").as_deref(), Some("password=*** ''"));
        assert_eq!(redact_text("x --os-password=***"), None);
        assert_eq!(redact_text("mysql://nova:pw@db/nova").as_deref(), Some("mysql://nova:***@db/nova"));
        assert!(needs_redaction("--password"));
        assert!(!needs_redaction("password is wrong"));
        assert!(needs_redaction("Password : x"));
    }
}
