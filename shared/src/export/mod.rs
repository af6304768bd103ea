//! Export formats: the same entries as JSON lines, CSV, or OCSF API Activity events, written one
//! entry at a time so that a page can stop at a byte budget.

mod csv;
mod ocsf;

use crate::domain::AuditLogEntry;
use crate::domain::ValidationError;

pub use self::csv::{CSV_COLUMNS, neutralise_formula};
pub use self::ocsf::{OCSF_VERSION, activity_id, to_ocsf};

/// What `format=` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportFormat {
    /// One entry per line, in the API's entry shape.
    #[default]
    Jsonl,
    /// RFC 4180, a header row on the first page, formula-like cells neutralised.
    Csv,
    /// One OCSF 1.3 API Activity (class 6003) event per line.
    Ocsf,
}

impl ExportFormat {
    pub const NAMES: [&'static str; 3] = ["jsonl", "csv", "ocsf"];

    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        match text {
            "jsonl" => Ok(ExportFormat::Jsonl),
            "csv" => Ok(ExportFormat::Csv),
            "ocsf" => Ok(ExportFormat::Ocsf),
            _ => Err(ValidationError::UnknownValue { field: "format", allowed: "jsonl, csv, ocsf" }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Csv => "csv",
            ExportFormat::Ocsf => "ocsf",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Jsonl | ExportFormat::Ocsf => "application/x-ndjson",
            ExportFormat::Csv => "text/csv; charset=utf-8; header=present",
        }
    }

    /// The header row, for the first page only: the pages of an export concatenate into one file.
    pub fn header(self) -> Option<String> {
        match self {
            ExportFormat::Csv => Some(csv::header()),
            ExportFormat::Jsonl | ExportFormat::Ocsf => None,
        }
    }

    /// One entry, with its line ending.
    pub fn line(self, entry: &AuditLogEntry) -> String {
        match self {
            ExportFormat::Jsonl => {
                let mut line = serde_json::to_string(entry).expect("an entry serialises");
                line.push('\n');
                line
            }
            ExportFormat::Csv => csv::row(entry),
            ExportFormat::Ocsf => {
                let mut line = to_ocsf(entry).to_string();
                line.push('\n');
                line
            }
        }
    }
}
