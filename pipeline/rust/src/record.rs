//! The record under construction: the Rust twin of `pipeline.fold.Record`
//! (field for field), produced by `fold` and consumed by `extract`.

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    #[default]
    Log,
    Access,
    Unparsed,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Log => "log",
            Kind::Access => "access",
            Kind::Unparsed => "unparsed",
        }
    }
}

/// The ten groups of `lineformat.APACHE` (ip, user, stamp, method, url,
/// status, size, agent, dur, us), None where a group did not take part.
pub type AccessGroups = [Option<String>; 10];

#[derive(Clone, Debug, Default)]
pub struct Record {
    pub ts_text: Option<String>,
    pub pid: Option<String>,
    pub level: Option<String>,
    pub logger: Option<String>,
    pub rest: String,
    pub lines: Vec<String>,
    pub cont: Vec<String>,
    pub tb: Vec<String>,
    /// byte offset of the first line, or None when the caller gave none
    pub offset: Option<i64>,
    pub orphan: bool,
    pub host: Option<String>,
    pub prog: Option<String>,
    /// (stamp text, iso) of a syslog line with no oslo header inside
    pub syslog_ts: Option<(String, bool)>,
    pub kind: Kind,
    pub reason: Option<String>,
    pub access: Option<Box<AccessGroups>>,
    pub tb_last: bool,
}

impl Record {
    /// `"\n".join(self.lines)`, as `Record.original`
    pub fn original(&self) -> String {
        self.lines.join("\n")
    }
}
