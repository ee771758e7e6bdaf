//! The fields of one `detectors.model.Event`, as `pipeline.extract.Extractor`
//! sets them. The glue turns this into the Python Event: a field that is
//! `None` here is left unset (the Event class reads it as None).

use crate::record::Kind;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventFields {
    pub kind: Kind,
    pub reason: Option<String>,
    pub ts: Option<f64>,
    pub timestamp: Option<String>,
    pub level: Option<String>,
    pub logger: Option<String>,
    pub pid: Option<i64>,
    pub host: Option<String>,
    pub file_path: Option<String>,
    pub offset: Option<i64>,
    pub service: Option<String>,
    pub original: Option<String>,
    pub message: Option<String>,
    pub request_id: Option<String>,
    pub global_request_id: Option<String>,
    pub user_id: Option<String>,
    pub project_id: Option<String>,
    pub user_name: Option<String>,
    pub project_name: Option<String>,
    pub instance_id: Option<String>,
    pub origin_function: Option<String>,
    pub origin_file: Option<String>,
    pub origin_line: Option<i64>,
    pub stack_trace: Option<String>,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub errno: Option<String>,
    pub http_method: Option<String>,
    pub url_path: Option<String>,
    pub status_code: Option<i64>,
    pub body_bytes: Option<i64>,
    pub duration_ns: Option<i64>,
    pub source_ip: Option<String>,
    /// `openstack.resources`: kind -> ids, in first-seen order of kinds
    pub resources: Option<Vec<(String, Vec<String>)>>,
}

/// Where a stream's lines come from: `pipeline.extract.Source`.
#[derive(Clone, Debug, Default)]
pub struct Source {
    pub host: Option<String>,
    pub service: Option<String>,
    pub path: Option<String>,
}
