//! `Clock` over a Python `pipeline.timefmt.TimeParser`: the zone rules stay
//! in Python, so native and Python events carry the same epoch and text.
use pyo3::prelude::*;

use crate::clock::{Clock, TimeResult};

pub struct PyClock<'py> {
    tp: Bound<'py, PyAny>,
}

impl<'py> PyClock<'py> {
    pub fn new(tp: Bound<'py, PyAny>) -> Self {
        PyClock { tp }
    }

    fn call(&self, name: &str, args: impl IntoPy<Py<pyo3::types::PyTuple>>) -> TimeResult {
        match self.tp.call_method1(name, args) {
            Ok(v) => v.extract::<(f64, String)>().map_err(|e| e.to_string()),
            // InvalidTimestamp (a ValueError): its message, as str(exc)
            Err(e) => Err(e.value_bound(self.tp.py()).str().map(|s| s.to_string()).unwrap_or_default()),
        }
    }
}

impl<'py> Clock for PyClock<'py> {
    fn parse(&mut self, text: &str) -> TimeResult {
        self.call("parse", (text,))
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
