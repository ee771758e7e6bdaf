//! osloscope's optional native core. `pipeline/fold.py` and
//! `pipeline/extract.py` are the reference implementation; this crate does
//! the same work for ASCII text (the glue, `pipeline/accel.py`, sends any
//! other text down the Python path) and tests prove the events equal.

use pyo3::prelude::*;

pub mod clock;
pub mod event;
pub mod extract;
pub mod fold;
pub mod py_extract;
pub mod py_fold;
pub mod py_redact;
pub mod pyclock;
pub mod record;
pub mod redact;
pub mod stream;
pub mod timecalc;

#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(version, m)?)?;
    py_fold::register(m)?;
    py_extract::register(m)?;
    py_redact::register(m)?;
    stream::register(m)?;
    Ok(())
}
