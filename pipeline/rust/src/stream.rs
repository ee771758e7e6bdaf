//! The glue: one stream's folder and extractor, from text to Python
//! `detectors.model.Event` objects, exactly as `pipeline.parser.Parser`
//! does with `Folder.feed_text` and `Parser._events` for ASCII text.
//! `pipeline/accel.py` decides which text comes here.

use std::collections::HashMap;
use std::sync::Arc;

use aho_corasick::AhoCorasick;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::event::{EventFields, Source};
use crate::extract::Extractor;
use crate::fold::Folder;
use crate::pyclock::PyClock;
use crate::record::{Kind, Record};


/// `redact.needs_redaction(text)`: natively for ASCII text, else the Python function.
fn needs_redaction(py: Python<'_>, text: &str) -> PyResult<bool> {
    if text.is_ascii() {
        return Ok(crate::redact::needs_redaction(text));
    }
    py.import_bound("pipeline.redact")?.getattr("needs_redaction")?.call1((text,))?.is_truthy()
}

/// `redact.redact_text(text)`, `None` when unchanged: natively for ASCII text, else the Python function.
fn redact_text(py: Python<'_>, text: &str) -> PyResult<Option<String>> {
    if text.is_ascii() {
        return Ok(crate::redact::redact_text(text));
    }
    let new: String = py.import_bound("pipeline.redact")?.getattr("redact_text")?.call1((text,))?.extract()?;
    Ok(if new == text { None } else { Some(new) })
}

/// `Parser._events`' redaction of one event: probe the message and the
/// exception line, then `redact.redact_event` (every field of
/// `redact.FIELDS`, all strings, that is non-empty and needs redaction).
fn redact_fields(py: Python<'_>, f: &mut EventFields) -> PyResult<()> {
    let msg = f.message.as_deref().unwrap_or("");
    let tail = f.stack_trace.as_deref().filter(|t| !t.is_empty()).map(|t| &t[t.rfind('\n').map_or(0, |i| i + 1)..]);
    let hit = match tail {
        None => needs_redaction(py, msg)?,
        Some(tail) => {
            let mut probe = String::with_capacity(msg.len() + tail.len());
            probe.push_str(msg);
            probe.push_str(tail);
            needs_redaction(py, &probe)?
        }
    };
    if !hit {
        return Ok(());
    }
    // redact.FIELDS = ("message", "original", "stack_trace", "error_message", "reason")
    for field in [&mut f.message, &mut f.original, &mut f.stack_trace, &mut f.error_message, &mut f.reason] {
        if let Some(value) = field.as_deref() {
            if !value.is_empty() && needs_redaction(py, value)? {
                if let Some(new) = redact_text(py, value)? {
                    if new != value {
                        *field = Some(new);
                    }
                }
            }
        }
    }
    Ok(())
}

macro_rules! keys {
    ($($name:ident),* $(,)?) => {
        struct Keys { $($name: Py<PyString>,)* }
        impl Keys {
            fn new(py: Python<'_>) -> Self {
                Keys { $($name: PyString::intern_bound(py, stringify!($name)).unbind(),)* }
            }
        }
    };
}

keys!(kind, reason, ts, timestamp, level, logger, pid, host, file_path, offset, service, original, message,
      request_id, global_request_id, user_id, project_id, user_name, project_name, instance_id,
      origin_function, origin_file, origin_line, stack_trace, error_type, error_message, errno,
      http_method, url_path, status_code, body_bytes, duration_ns, source_ip, resources, hints, hint_vocab);

#[pyclass(module = "pipeline._native", unsendable)]
pub struct Stream {
    pub folder: Folder,
    extractor: Extractor,
    clock: PyClock,
    src: Source,
    py_host: PyObject,
    py_service: PyObject,
    py_path: PyObject,
    /// (ts, timestamp) of the last parsed event, for unparsed ones
    last: (Option<f64>, Option<String>),
    redact: bool,
    keys: Keys,
    strs: HashMap<String, Py<PyString>>,
    new_event: PyObject,
    event_cls: PyObject,
    /// Python callable (record dict, last) -> Event for records `extract` leaves to Python
    fallback: PyObject,
    /// the words of a `detectors.hints.Vocabulary`, bit i = word i
    hint_ac: Arc<AhoCorasick>,
    /// that Vocabulary, set on every event with hints
    hint_vocab: PyObject,
}

/// The `detectors.hints` bits of `text`: every keyword it contains.
fn hint_bits(ac: &AhoCorasick, text: &str, mut bits: u128) -> u128 {
    for m in ac.find_overlapping_iter(text) {
        bits |= 1u128 << m.pattern().as_usize();
    }
    bits
}

fn cached(strs: &mut HashMap<String, Py<PyString>>, py: Python<'_>, s: &str) -> PyObject {
    if let Some(v) = strs.get(s) {
        return v.clone_ref(py).into_any();
    }
    if strs.len() > 4096 {
        strs.clear();
    }
    let v = PyString::new_bound(py, s).unbind();
    strs.insert(s.to_string(), v.clone_ref(py));
    v.into_any()
}

impl Stream {
    fn to_event(&mut self, py: Python<'_>, f: EventFields) -> PyResult<PyObject> {
        let d = PyDict::new_bound(py);
        let k = &self.keys;
        let strs = &mut self.strs;
        macro_rules! put_str {
            ($name:ident) => {
                if let Some(v) = f.$name { d.set_item(k.$name.bind(py), PyString::new_bound(py, &v))?; }
            };
        }
        macro_rules! put_val {
            ($name:ident) => {
                if let Some(v) = f.$name { d.set_item(k.$name.bind(py), v)?; }
            };
        }
        macro_rules! put_cached {
            ($name:ident) => {
                if let Some(v) = &f.$name { d.set_item(k.$name.bind(py), cached(strs, py, v))?; }
            };
        }
        if f.kind != Kind::Log {
            d.set_item(k.kind.bind(py), f.kind.as_str())?;
        }
        put_str!(reason);
        put_val!(ts);
        put_str!(timestamp);
        put_cached!(level);
        put_cached!(logger);
        put_val!(pid);
        match &f.host {
            Some(h) if Some(h) == self.src.host.as_ref() => d.set_item(k.host.bind(py), self.py_host.bind(py))?,
            Some(h) => d.set_item(k.host.bind(py), h)?,
            None => {}
        }
        match &f.file_path {
            Some(p) if Some(p) == self.src.path.as_ref() => d.set_item(k.file_path.bind(py), self.py_path.bind(py))?,
            Some(p) => d.set_item(k.file_path.bind(py), p)?,
            None => {}
        }
        put_val!(offset);
        match &f.service {
            Some(s) if Some(s) == self.src.service.as_ref() => d.set_item(k.service.bind(py), self.py_service.bind(py))?,
            Some(s) => d.set_item(k.service.bind(py), cached(strs, py, s))?,
            None => {}
        }
        // Event.text() is message + "\n" + stack trace: no keyword spans the "\n".
        // DEBUG records without a status code get none: no detector reads
        // them beyond one substring test of its own (and they are the long ones)
        if f.level.as_deref() != Some("DEBUG") || f.status_code.is_some() {
            let mut bits = hint_bits(&self.hint_ac, f.message.as_deref().unwrap_or(""), 0);
            if let Some(t) = f.stack_trace.as_deref() {
                bits = hint_bits(&self.hint_ac, t, bits);
            }
            d.set_item(k.hints.bind(py), bits)?;
            d.set_item(k.hint_vocab.bind(py), self.hint_vocab.bind(py))?;
        }
        put_str!(original);
        put_str!(message);
        put_str!(request_id);
        put_str!(global_request_id);
        put_str!(user_id);
        put_str!(project_id);
        put_str!(user_name);
        put_str!(project_name);
        put_str!(instance_id);
        put_str!(origin_function);
        put_str!(origin_file);
        put_val!(origin_line);
        put_str!(stack_trace);
        put_str!(error_type);
        put_str!(error_message);
        put_str!(errno);
        put_str!(http_method);
        put_str!(url_path);
        put_val!(status_code);
        put_val!(body_bytes);
        put_val!(duration_ns);
        put_str!(source_ip);
        if let Some(res) = f.resources {
            let r = PyDict::new_bound(py);
            for (kind, ids) in res {
                r.set_item(kind, PyList::new_bound(py, ids))?;
            }
            d.set_item(k.resources.bind(py), r)?;
        }
        let ev = self.new_event.call1(py, (self.event_cls.bind(py),))?;
        ev.bind(py).setattr(pyo3::intern!(py, "__dict__"), d)?;
        Ok(ev)
    }

    fn events(&mut self, py: Python<'_>, recs: Vec<Record>) -> PyResult<Vec<PyObject>> {
        let mut out = Vec::with_capacity(recs.len());
        for rec in recs {
            let built = {
                let last = (self.last.0, self.last.1.as_deref());
                self.extractor.build(&rec, &self.src, last, &mut self.clock)
            };
            let ev = match built {
                Ok(f) => {
                    if f.kind != Kind::Unparsed {
                        self.last = (f.ts, f.timestamp.clone());
                    }
                    let mut f = f;
                    if self.redact {
                        redact_fields(py, &mut f)?;
                    }
                    // the hint bits are computed on the final (redacted) text
                    self.to_event(py, f)?
                }
                Err(_) => {
                    let d = crate::py_fold::record_to_dict(py, &rec)?;
                    let last = (self.last.0, self.last.1.clone());
                    let ev = self.fallback.call1(py, (d, last))?;
                    // the Python fallback applied redaction and returns the event as Parser._events would
                    let kind: String = ev.bind(py).getattr("kind")?.extract()?;
                    if kind != "unparsed" {
                        self.last = (ev.bind(py).getattr("ts")?.extract()?, ev.bind(py).getattr("timestamp")?.extract()?);
                    }
                    out.push(ev);
                    continue;
                }
            };
            out.push(ev);
        }
        Ok(out)
    }
}

#[pymethods]
impl Stream {
    #[new]
    #[pyo3(signature = (tp, host, service, path, syslog_year, redact, event_cls, fallback, keywords, vocab))]
    #[allow(clippy::too_many_arguments)]
    fn new(py: Python<'_>, tp: PyObject, host: PyObject, service: PyObject, path: PyObject, syslog_year: i64,
           redact: bool, event_cls: PyObject, fallback: PyObject, keywords: &Keywords,
           vocab: PyObject) -> PyResult<Self> {
        let hint_ac = Arc::clone(&keywords.ac);
        let src = Source {
            host: host.extract(py)?,
            service: service.extract(py)?,
            path: path.extract(py)?,
        };
        let new_event = py.import_bound("builtins")?.getattr("object")?.getattr("__new__")?.unbind();
        Ok(Stream {
            folder: Folder::new(),
            extractor: Extractor::new(syslog_year),
            clock: PyClock::new(tp),
            src,
            py_host: host,
            py_service: service,
            py_path: path,
            last: (None, None),
            redact,
            keys: Keys::new(py),
            strs: HashMap::new(),
            new_event,
            event_cls,
            fallback,
            hint_ac,
            hint_vocab: vocab,
        })
    }

    /// ``Folder.feed_text`` + ``Parser._events`` for ASCII ``text``.
    #[pyo3(signature = (text, base, starts))]
    fn feed_text(&mut self, py: Python<'_>, text: &str, base: Option<i64>, starts: Option<Vec<i64>>) -> PyResult<Vec<PyObject>> {
        let mut recs = Vec::new();
        self.folder.feed_text(text, base, starts.as_deref(), &mut recs).map_err(crate::py_fold::err)?;
        self.events(py, recs)
    }

    /// ``Folder.feed`` of one ASCII line + ``Parser._events``.
    #[pyo3(signature = (line, offset))]
    fn feed(&mut self, py: Python<'_>, line: &str, offset: Option<i64>) -> PyResult<Vec<PyObject>> {
        let mut recs = Vec::new();
        self.folder.feed(line, offset, &mut recs).map_err(crate::py_fold::err)?;
        self.events(py, recs)
    }

    fn flush(&mut self, py: Python<'_>) -> PyResult<Vec<PyObject>> {
        let mut recs = Vec::new();
        self.folder.flush(&mut recs);
        self.events(py, recs)
    }

    fn export_state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        crate::py_fold::export_state(py, &self.folder)
    }

    fn import_state(&mut self, state: &Bound<'_, PyDict>) -> PyResult<()> {
        crate::py_fold::import_state(&mut self.folder, state)
    }

    /// The source zone has this one offset (seconds east of UTC; `zone` as
    /// `TimeParser` writes it): seconds are converted without calling it.
    fn set_fixed_zone(&mut self, offset: i64, zone: String) {
        self.clock.fixed = Some((offset, zone));
    }

    #[getter(last)]
    fn get_last(&self) -> (Option<f64>, Option<String>) {
        self.last.clone()
    }

    #[setter(last)]
    fn set_last(&mut self, last: (Option<f64>, Option<String>)) {
        self.last = last;
    }
}

/// The matcher of a vocabulary's words, built once and shared by every
/// stream that tests them (building it costs milliseconds).
#[pyclass(module = "pipeline._native", frozen)]
pub struct Keywords {
    ac: Arc<AhoCorasick>,
}

#[pymethods]
impl Keywords {
    #[new]
    fn new(words: Vec<String>) -> PyResult<Self> {
        if words.len() > 128 {
            return Err(pyo3::exceptions::PyValueError::new_err("at most 128 hint keywords"));
        }
        let ac = AhoCorasick::builder()
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(&words)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        Ok(Keywords { ac: Arc::new(ac) })
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Keywords>()?;
    m.add_class::<Stream>()?;
    Ok(())
}
