//! OCSF 1.3 API Activity events (class 6003, category Application Activity), one per entry, so that
//! a SIEM takes the trail as it is. The mapping is tabled in docs/ARCHITECTURE.md.

use serde_json::{Value, json};

use crate::domain::{AuditAction, AuditLogEntry};

pub const OCSF_VERSION: &str = "1.3.0";
const CLASS_UID: u32 = 6003;
const CATEGORY_UID: u32 = 6;

/// OCSF's activity for an action: the four CRUD activities, and Other (99) for links.
pub fn activity_id(action: AuditAction) -> u32 {
    match action {
        AuditAction::Create => 1,
        AuditAction::View => 2,
        AuditAction::Update => 3,
        AuditAction::Delete => 4,
        AuditAction::Link | AuditAction::Unlink => 99,
    }
}

fn activity_name(action: AuditAction) -> &'static str {
    match action {
        AuditAction::Create => "Create",
        AuditAction::View => "Read",
        AuditAction::Update => "Update",
        AuditAction::Delete => "Delete",
        AuditAction::Link => "Link",
        AuditAction::Unlink => "Unlink",
    }
}

/// The OCSF event for an entry.
pub fn to_ocsf(e: &AuditLogEntry) -> Value {
    let activity = activity_id(e.action);
    let name = activity_name(e.action);
    // The actor: the user, or — for entries written without one — the service itself.
    let actor = match &e.user_id {
        Some(user) => json!({ "user": { "uid": user } }),
        None => json!({ "app_name": "auditline" }),
    };
    // The source: the client's address as the API saw it; unknown for entries logged without one.
    let src_endpoint = match e.ip_address {
        Some(ip) => json!({ "ip": ip.to_string() }),
        None => json!({ "name": "unknown" }),
    };
    let mut resource = json!({ "uid": e.entity_id, "type": e.entity_type.as_str() });
    if let Some(changes) = &e.changes {
        resource["data"] = Value::Object(changes.clone());
    }
    if let Some(project) = &e.project_id {
        resource["group"] = json!({ "uid": project, "type": "PROJECT" });
    }
    let mut unmapped = serde_json::Map::new();
    unmapped.insert("action".into(), json!(e.action.as_str()));
    if let Some(metadata) = &e.metadata {
        unmapped.insert("metadata".into(), Value::Object(metadata.clone()));
    }
    unmapped.insert("leaf_hash".into(), json!(e.integrity.leaf_hash.to_string()));
    json!({
        "class_uid": CLASS_UID,
        "class_name": "API Activity",
        "category_uid": CATEGORY_UID,
        "category_name": "Application Activity",
        "activity_id": activity,
        "activity_name": name,
        "type_uid": CLASS_UID * 100 + activity,
        "type_name": format!("API Activity: {name}"),
        "severity_id": 1,
        "severity": "Informational",
        "status_id": 1,
        "status": "Success",
        "time": e.timestamp.timestamp_millis(),
        "metadata": {
            "version": OCSF_VERSION,
            "uid": e.id.to_string(),
            "tenant_uid": e.tenant_id.as_str(),
            "product": { "name": "auditline", "vendor_name": "auditline", "version": env!("CARGO_PKG_VERSION") },
        },
        "actor": actor,
        "api": { "operation": format!("{} {}", e.action.as_str(), e.entity_type.as_str()), "service": { "name": "auditline" } },
        "src_endpoint": src_endpoint,
        "resources": [resource],
        "unmapped": unmapped,
    })
}
