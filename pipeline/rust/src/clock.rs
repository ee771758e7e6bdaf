//! Time parsing for `extract`: the methods of `pipeline.timefmt.TimeParser`
//! that `Extractor` calls. Implemented by the glue over the Python
//! TimeParser (the zone rules live there), so both paths give the same
//! epoch and text to the bit.

/// `Err` carries the `InvalidTimestamp` message (`str(exc)` in Python).
pub type TimeResult = Result<(f64, String), String>;

pub trait Clock {
    /// `TimeParser.parse(text)`: oslo asctime `YYYY-MM-DD HH:MM:SS[.fff]`
    fn parse(&mut self, text: &str) -> TimeResult;
    /// `TimeParser.parse_syslog(text, year)`
    fn parse_syslog(&mut self, text: &str, year: i64) -> TimeResult;
    /// `TimeParser.parse_iso(text)`
    fn parse_iso(&mut self, text: &str) -> TimeResult;
    /// `TimeParser.parse_apache(text)`
    fn parse_apache(&mut self, text: &str) -> TimeResult;
}
