//! Python bindings of `fold` (for the glue and the equivalence tests).
//!
//! Records cross as dicts with exactly the attribute names of
//! `pipeline.fold.Record` (`access`: the 10 APACHE groups or None,
//! `syslog_ts`: [stamp, iso] or None).
use pyo3::exceptions::{PyIndexError, PyOverflowError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::fold::{FoldError, Folder};
use crate::record::{AccessGroups, Kind, Record};

pub fn err(e: FoldError) -> PyErr {
    match e {
        FoldError::DateOverflow => PyOverflowError::new_err(e.to_string()),
        FoldError::StartsTooShort => PyIndexError::new_err(e.to_string()),
    }
}

pub fn record_to_dict<'py>(py: Python<'py>, r: &Record) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new_bound(py);
    d.set_item("ts_text", r.ts_text.as_deref())?;
    d.set_item("pid", r.pid.as_deref())?;
    d.set_item("level", r.level.as_deref())?;
    d.set_item("logger", r.logger.as_deref())?;
    d.set_item("rest", r.rest.as_str())?;
    d.set_item("lines", PyList::new_bound(py, r.lines.iter().map(String::as_str)))?;
    d.set_item("cont", PyList::new_bound(py, r.cont.iter().map(String::as_str)))?;
    d.set_item("tb", PyList::new_bound(py, r.tb.iter().map(String::as_str)))?;
    d.set_item("offset", r.offset)?;
    d.set_item("orphan", r.orphan)?;
    d.set_item("host", r.host.as_deref())?;
    d.set_item("prog", r.prog.as_deref())?;
    match &r.syslog_ts {
        None => d.set_item("syslog_ts", py.None())?,
        Some((s, iso)) => d.set_item("syslog_ts", PyList::new_bound(py, [s.into_py(py), iso.into_py(py)]))?,
    }
    d.set_item("kind", r.kind.as_str())?;
    d.set_item("reason", r.reason.as_deref())?;
    match &r.access {
        None => d.set_item("access", py.None())?,
        Some(g) => d.set_item("access", PyList::new_bound(py, g.iter().map(|x| x.as_deref())))?,
    }
    d.set_item("tb_last", r.tb_last)?;
    Ok(d)
}

fn item<'py>(d: &Bound<'py, PyDict>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    d.get_item(name)?.ok_or_else(|| PyValueError::new_err(format!("record dict lacks {name:?}")))
}

fn opt_str(d: &Bound<'_, PyDict>, name: &str) -> PyResult<Option<String>> {
    item(d, name)?.extract()
}

pub fn dict_to_record(d: &Bound<'_, PyDict>) -> PyResult<Record> {
    let kind = match item(d, "kind")?.extract::<String>()?.as_str() {
        "log" => Kind::Log,
        "access" => Kind::Access,
        "unparsed" => Kind::Unparsed,
        k => return Err(PyValueError::new_err(format!("unknown record kind {k:?}"))),
    };
    let syslog_ts = {
        let v = item(d, "syslog_ts")?;
        if v.is_none() {
            None
        } else {
            let (s, iso): (String, bool) = (v.get_item(0)?.extract()?, v.get_item(1)?.extract()?);
            Some((s, iso))
        }
    };
    let access = {
        let v = item(d, "access")?;
        if v.is_none() {
            None
        } else {
            let groups: Vec<Option<String>> = v.extract()?;
            let groups: AccessGroups = groups
                .try_into()
                .map_err(|_| PyValueError::new_err("access needs the 10 APACHE groups"))?;
            Some(Box::new(groups))
        }
    };
    Ok(Record {
        ts_text: opt_str(d, "ts_text")?,
        pid: opt_str(d, "pid")?,
        level: opt_str(d, "level")?,
        logger: opt_str(d, "logger")?,
        rest: item(d, "rest")?.extract()?,
        lines: item(d, "lines")?.extract()?,
        cont: item(d, "cont")?.extract()?,
        tb: item(d, "tb")?.extract()?,
        offset: item(d, "offset")?.extract()?,
        orphan: item(d, "orphan")?.extract()?,
        host: opt_str(d, "host")?,
        prog: opt_str(d, "prog")?,
        syslog_ts,
        kind,
        reason: opt_str(d, "reason")?,
        access,
        tb_last: item(d, "tb_last")?.extract()?,
    })
}

fn to_list<'py>(py: Python<'py>, recs: &[Record]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty_bound(py);
    for r in recs {
        list.append(record_to_dict(py, r)?)?;
    }
    Ok(list)
}

/// `pipeline.fold.Folder` for ASCII text; records as dicts.
#[pyclass(name = "Folder", module = "pipeline._native")]
#[derive(Default)]
pub struct PyFolder {
    pub inner: Folder,
}

#[pymethods]
impl PyFolder {
    #[new]
    fn new() -> Self {
        PyFolder::default()
    }

    /// One line (no newline): the records it completes.
    #[pyo3(signature = (line, offset=None))]
    fn feed<'py>(&mut self, py: Python<'py>, line: &str, offset: Option<i64>) -> PyResult<Bound<'py, PyList>> {
        let mut out = Vec::new();
        self.inner.feed(line, offset, &mut out).map_err(err)?;
        to_list(py, &out)
    }

    /// `Folder.feed_text`: every line of `text`, as `feed` per line.
    #[pyo3(signature = (text, base=None, starts=None))]
    fn feed_text<'py>(&mut self, py: Python<'py>, text: &str, base: Option<i64>, starts: Option<Vec<i64>>)
                      -> PyResult<Bound<'py, PyList>> {
        let mut out = Vec::new();
        self.inner.feed_text(text, base, starts.as_deref(), &mut out).map_err(err)?;
        to_list(py, &out)
    }

    /// Every open record, by offset (those with no lines are dropped).
    fn flush<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut out = Vec::new();
        self.inner.flush(&mut out);
        to_list(py, &out)
    }

    /// `{"open": [[key, record dict], ...] in order, "last": key or None, "sweep_at": str}`
    fn export_state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        export_state(py, &self.inner)
    }

    /// Take over a state as `export_state` gives it.
    fn import_state(&mut self, state: &Bound<'_, PyDict>) -> PyResult<()> {
        import_state(&mut self.inner, state)
    }

    fn __len__(&self) -> usize {
        self.inner.open_len()
    }
}

/// A folder's state as a dict: `{"open": [[key, record dict], ...] in order,
/// "last": key or None, "sweep_at": str}` (what `pipeline.fold.Folder` holds).
pub fn export_state<'py>(py: Python<'py>, folder: &Folder) -> PyResult<Bound<'py, PyDict>> {
    let open = PyList::empty_bound(py);
    for (k, r) in folder.open_records() {
        open.append(PyList::new_bound(py, [k.into_py(py), record_to_dict(py, r)?.into_any().unbind()]))?;
    }
    let d = PyDict::new_bound(py);
    d.set_item("open", open)?;
    d.set_item("last", folder.last_key())?;
    d.set_item("sweep_at", folder.sweep_at())?;
    Ok(d)
}

/// Make `folder` take over a state as `export_state` gives it.
pub fn import_state(folder: &mut Folder, state: &Bound<'_, PyDict>) -> PyResult<()> {
    let mut open = Vec::new();
    let items = state.get_item("open")?.ok_or_else(|| PyValueError::new_err("state lacks 'open'"))?;
    for pair in items.iter()? {
        let pair = pair?;
        let key: String = pair.get_item(0)?.extract()?;
        let rec = dict_to_record(pair.get_item(1)?.downcast::<PyDict>()?)?;
        open.push((key, rec));
    }
    let last: Option<String> = match state.get_item("last")? {
        None => None,
        Some(v) => v.extract()?,
    };
    let sweep_at: String = match state.get_item("sweep_at")? {
        None => String::new(),
        Some(v) => v.extract()?,
    };
    folder.set_state(open, last.as_deref(), sweep_at).map_err(PyValueError::new_err)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFolder>()?;
    Ok(())
}
