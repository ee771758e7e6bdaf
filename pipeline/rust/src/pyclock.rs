//! `Clock` over a Python `pipeline.timefmt.TimeParser`: the zone rules stay
//! in Python (fixed offsets aside: `crate::timecalc`), so native and Python
//! events carry the same epoch and text.
use pyo3::prelude::*;

use std::collections::HashMap;

use crate::clock::{Clock, TimeResult};

/// `TimeParser.parse` with its per-second cache kept on this side; the zone
/// rules (and every other method) stay in the Python TimeParser.
pub struct PyClock {
    tp: Py<PyAny>,
    cache: HashMap<String, (i64, String, String)>,
    /// (seconds east of UTC, zone text) when the zone has one fixed offset
    pub fixed: Option<(i64, String)>,
}

impl PyClock {
    pub fn new(tp: Py<PyAny>) -> Self {
        PyClock { tp, cache: HashMap::new(), fixed: None }
    }

    fn call(&self, name: &str, args: impl IntoPy<Py<pyo3::types::PyTuple>>) -> TimeResult {
        Python::with_gil(|py| call_time(self.tp.bind(py), name, args))
    }
}

impl Clock for PyClock {
    fn parse(&mut self, text: &str) -> TimeResult {
        let sec = text.get(..19).unwrap_or(text);
        if sec.contains('{') || sec.contains('}') {
            return self.call("parse", (text,));
        }
        if !self.cache.contains_key(sec) {
            let native = self.fixed.as_ref().and_then(|(off, zone)| {
                crate::timecalc::second_fixed(sec, *off).map(|(epoch, iso)| (epoch, iso, zone.clone()))
            });
            let hit = match native {
                Some(hit) => hit,
                None => Python::with_gil(|py| -> Result<(i64, String, String), String> {
                    let text = |e: PyErr| e.value_bound(py).str().map(|s| s.to_string()).unwrap_or_default();
                    self.tp.bind(py).call_method1("_second", (sec,)).map_err(text)?.extract().map_err(text)
                })?,
            };
            if self.cache.len() > 50_000 {
                self.cache.clear();
            }
            self.cache.insert(sec.to_string(), hit);
        }
        let (epoch, iso, zone) = &self.cache[sec];
        let frac = text.get(20..).unwrap_or("");
        if !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit()) {
            if frac.len() >= 10 {
                return self.call("parse", (text,));
            }
            let n: i64 = frac.parse().unwrap();
            let q = n as f64 / 10f64.powi(frac.len() as i32);
            return Ok((*epoch as f64 + q, format!("{iso}.{frac}{zone}")));
        }
        if !frac.is_empty() && !frac.is_ascii() {
            return self.call("parse", (text,));
        }
        Ok((*epoch as f64, format!("{iso}{zone}")))
    }
    fn parse_syslog(&mut self, text: &str, year: i64) -> TimeResult {
        self.call("parse_syslog", (text, year))
    }
    fn parse_iso(&mut self, text: &str) -> TimeResult {
        self.call("parse_iso", (text,))
    }
    fn parse_apache(&mut self, text: &str) -> TimeResult {
        self.call("parse_apache", (text,))
    }
}

/// `tp.<name>(*args)` of a Python TimeParser as a `TimeResult`; an
/// exception (InvalidTimestamp, a ValueError) gives its message, as str(exc).
pub fn call_time(tp: &Bound<'_, PyAny>, name: &str, args: impl IntoPy<Py<pyo3::types::PyTuple>>) -> TimeResult {
    let text = |e: PyErr| e.value_bound(tp.py()).str().map(|s| s.to_string()).unwrap_or_default();
    match tp.call_method1(name, args) {
        Ok(v) => v.extract::<(f64, String)>().map_err(text),
        Err(e) => Err(text(e)),
    }
}
