//! Folding: the Rust twin of `pipeline/fold.py` (see that module's doc).
