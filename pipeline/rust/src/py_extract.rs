//! Python bindings of `extract` (for the glue and the equivalence tests).
//!
//! `extract_record(record, source, last, timeparser, syslog_year)`: one
//! record as a dict of `pipeline.fold.Record`'s attributes -> a dict of the
//! Event's fields that are not None (`resources` a dict kind -> list), or
//! None when `Extractor::build` leaves the record to the Python path.
//!
//! `extract_bench(records, source, timeparser, syslog_year, repeat)`: the
//! records converted once, then built `repeat` times over (threading `last`
//! as `Parser._events` does); returns (events built, seconds spent in
//! `build` alone); `fixed_clock=True` answers every time question with one
//! constant instant instead of calling the TimeParser (timing only).
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::clock::{Clock, TimeResult};
use crate::event::{EventFields, Source};
use crate::extract::Extractor;
use crate::pyclock::PyClock;
use crate::record::{Kind, Record};

pub fn fields_to_dict<'py>(py: Python<'py>, ev: &EventFields) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new_bound(py);
    macro_rules! put {
        ($($name:ident),*) => {
            $( if let Some(v) = &ev.$name { d.set_item(stringify!($name), v)?; } )*
        };
    }
    d.set_item("kind", ev.kind.as_str())?;
    put!(
        reason, ts, timestamp, level, logger, pid, host, file_path, offset, service, original, message,
        request_id, global_request_id, user_id, project_id, user_name, project_name, instance_id,
        origin_function, origin_file, origin_line, stack_trace, error_type, error_message, errno,
        http_method, url_path, status_code, body_bytes, duration_ns, source_ip
    );
    if let Some(res) = &ev.resources {
        let r = PyDict::new_bound(py);
        for (kind, ids) in res {
            r.set_item(kind, PyList::new_bound(py, ids))?;
        }
        d.set_item("resources", r)?;
    }
    Ok(d)
}

type SourceTuple = (Option<String>, Option<String>, Option<String>);

fn source_of(s: SourceTuple) -> Source {
    Source { host: s.0, service: s.1, path: s.2 }
}

#[pyfunction]
fn extract_record<'py>(
    py: Python<'py>,
    record: &Bound<'py, PyDict>,
    source: SourceTuple,
    last: (Option<f64>, Option<String>),
    timeparser: Bound<'py, PyAny>,
    syslog_year: i64,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let rec = crate::py_fold::dict_to_record(record)?;
    let src = source_of(source);
    let mut clock = PyClock::new(timeparser.unbind());
    let mut ex = Extractor::new(syslog_year);
    match ex.build(&rec, &src, (last.0, last.1.as_deref()), &mut clock) {
        Ok(ev) => Ok(Some(fields_to_dict(py, &ev)?)),
        Err(_) => Ok(None),
    }
}

/// A clock that answers every question with the same instant: for timing
/// `build` without the calls into Python (`extract_bench(..., fixed_clock=True)`).
struct FixedClock;

impl Clock for FixedClock {
    fn parse(&mut self, _: &str) -> TimeResult {
        Ok((1.5e9, "2017-07-14T02:40:00.000+00:00".to_string()))
    }
    fn parse_syslog(&mut self, t: &str, _: i64) -> TimeResult {
        self.parse(t)
    }
    fn parse_iso(&mut self, t: &str) -> TimeResult {
        self.parse(t)
    }
    fn parse_apache(&mut self, t: &str) -> TimeResult {
        self.parse(t)
    }
}

#[pyfunction]
#[pyo3(signature = (records, source, timeparser, syslog_year, repeat, fixed_clock=false))]
fn extract_bench(
    records: &Bound<'_, PyList>,
    source: SourceTuple,
    timeparser: Bound<'_, PyAny>,
    syslog_year: i64,
    repeat: usize,
    fixed_clock: bool,
) -> PyResult<(usize, f64)> {
    let recs = records
        .iter()
        .map(|r| crate::py_fold::dict_to_record(r.downcast::<PyDict>()?))
        .collect::<PyResult<Vec<Record>>>()?;
    let src = source_of(source);
    let mut py_clock = PyClock::new(timeparser.unbind());
    let mut fixed = FixedClock;
    let clock: &mut dyn Clock = if fixed_clock { &mut fixed } else { &mut py_clock };
    let mut ex = Extractor::new(syslog_year);
    let mut n = 0usize;
    let start = Instant::now();
    for _ in 0..repeat {
        let mut last: (Option<f64>, Option<String>) = (None, None);
        for rec in &recs {
            if let Ok(ev) = ex.build(rec, &src, (last.0, last.1.as_deref()), &mut *clock) {
                if ev.kind != Kind::Unparsed {
                    last = (ev.ts, ev.timestamp.clone());
                }
                n += 1;
            }
        }
    }
    Ok((n, start.elapsed().as_secs_f64()))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(extract_record, m)?)?;
    m.add_function(wrap_pyfunction!(extract_bench, m)?)?;
    Ok(())
}
