//! Python entry points of `redact.rs` (for the differential tests and
//! benchmarks): `redact_text(text) -> str` and `needs_redaction(text) -> bool`
//! over ASCII `text`, as `pipeline.redact` gives them.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::redact;

fn ascii<'a>(s: &'a Bound<'_, PyString>) -> PyResult<std::borrow::Cow<'a, str>> {
    let t = s.to_cow()?;
    if !t.is_ascii() {
        return Err(PyValueError::new_err("pipeline._native redaction takes ASCII text only"));
    }
    Ok(t)
}

/// ``pipeline.redact.redact_text`` for ASCII ``text`` (the same object when nothing changes).
#[pyfunction]
#[pyo3(name = "redact_text")]
fn py_redact_text<'py>(text: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyString>> {
    match redact::redact_text(&ascii(text)?) {
        Some(s) => Ok(PyString::new_bound(text.py(), &s)),
        None => Ok(text.clone()),
    }
}

/// ``pipeline.redact.needs_redaction`` for ASCII ``text``.
#[pyfunction]
#[pyo3(name = "needs_redaction")]
fn py_needs_redaction(text: &Bound<'_, PyString>) -> PyResult<bool> {
    Ok(redact::needs_redaction(&ascii(text)?))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(py_redact_text, m)?)?;
    m.add_function(wrap_pyfunction!(py_needs_redaction, m)?)?;
    Ok(())
}
