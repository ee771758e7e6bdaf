//! Record -> event fields: the Rust twin of `pipeline/extract.py`.
