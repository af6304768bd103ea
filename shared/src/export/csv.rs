//! CSV (RFC 4180: CRLF line ends, fields quoted when they hold a comma, quote or line break, quotes
//! doubled), one row per entry. `changes` and `metadata` are their JSON text. A cell that a
//! spreadsheet would run as a formula (OWASP "CSV injection") gets a leading apostrophe.

use crate::domain::AuditLogEntry;
use crate::domain::time::format_timestamp;

pub const CSV_COLUMNS: [&str; 12] = [
    "id",
    "timestamp",
    "tenant_id",
    "action",
    "entity_type",
    "entity_id",
    "project_id",
    "user_id",
    "ip_address",
    "changes",
    "metadata",
    "leaf_hash",
];

/// Characters a spreadsheet reads as the start of a formula.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// The cell as a spreadsheet should show it: text, never a formula.
pub fn neutralise_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(FORMULA_STARTS) { format!("'{cell}").into() } else { cell.into() }
}

fn record<'a>(cells: impl IntoIterator<Item = &'a str>) -> String {
    let mut writer = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    writer.write_record(cells.into_iter().map(|c| neutralise_formula(c).into_owned())).expect("writing to memory");
    String::from_utf8(writer.into_inner().expect("writing to memory")).expect("UTF-8 in, UTF-8 out")
}

pub(super) fn header() -> String {
    record(CSV_COLUMNS)
}

pub(super) fn row(e: &AuditLogEntry) -> String {
    let json =
        |v: &Option<crate::domain::JsonObject>| v.as_ref().map(|o| serde_json::Value::Object(o.clone()).to_string());
    let cells = [
        e.id.to_string(),
        format_timestamp(e.timestamp),
        e.tenant_id.to_string(),
        e.action.as_str().to_owned(),
        e.entity_type.as_str().to_owned(),
        e.entity_id.clone(),
        e.project_id.clone().unwrap_or_default(),
        e.user_id.clone().unwrap_or_default(),
        e.ip_address.map(|ip| ip.to_string()).unwrap_or_default(),
        json(&e.changes).unwrap_or_default(),
        json(&e.metadata).unwrap_or_default(),
        e.integrity.leaf_hash.to_string(),
    ];
    record(cells.iter().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_like_cells_are_neutralised_and_others_kept() {
        for cell in ["=SUM(A1)", "+1", "-2+3", "@cmd", "\tx", "\rx"] {
            assert_eq!(neutralise_formula(cell), format!("'{cell}"));
        }
        for cell in ["plain", "", "a=b", "1-2", "'quoted"] {
            assert_eq!(neutralise_formula(cell), cell);
        }
    }

    #[test]
    fn records_quote_what_rfc_4180_requires() {
        assert_eq!(record(["a", "b,c", "say \"hi\"", "two\nlines"]), "a,\"b,c\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n");
    }
}
