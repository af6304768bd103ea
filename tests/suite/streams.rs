//! Log streams' webhook signatures, checked by an independent implementation: the Standard
//! Webhooks reference library from PyPI (the test script installs it beside moto) verifies what
//! the Rust side signs — with either secret while a rotation overlaps, and never a changed body.

use std::process::Command;

use auditline::streams::webhook::{WebhookSecret, headers};

const PYTHON_VERIFY: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
secret, headers, body = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3].encode()
try:
    Webhook(secret).verify(body, headers)
    print("verified")
except Exception as e:
    print("refused:", type(e).__name__)
"#;

fn python_verifies(secret: &WebhookSecret, headers: &[(&str, String)], body: &str) -> String {
    let python = std::env::var("AUDITLINE_TEST_PYTHON")
        .expect("AUDITLINE_TEST_PYTHON is not set: run the tests with ./scripts/test.sh");
    let headers: serde_json::Map<String, serde_json::Value> =
        headers.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(v.as_str()))).collect();
    let out = Command::new(python)
        .args(["-c", PYTHON_VERIFY, &secret.expose(), &serde_json::Value::Object(headers).to_string(), body])
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn the_standard_webhooks_library_verifies_what_a_delivery_signs_across_a_rotation() {
    let (old, new) = (WebhookSecret::generate(), WebhookSecret::generate());
    let body = r#"[{"id":"01a24bd7-4891-71f1-be03-74b37673b7d3","action":"UPDATE","entity_type":"REPORT"}]"#;
    let now = chrono::Utc::now().timestamp();
    let id = "01a24bd7-4891-71f1-be03-74b37673b7d3";
    let overlapping = headers(&[new.clone(), old.clone()], id, now, body.as_bytes());
    assert_eq!(python_verifies(&old, &overlapping, body), "verified", "the old secret, during the overlap");
    assert_eq!(python_verifies(&new, &overlapping, body), "verified", "the new secret");
    let after = headers(std::slice::from_ref(&new), id, now, body.as_bytes());
    assert_eq!(python_verifies(&new, &after, body), "verified");
    assert!(python_verifies(&old, &after, body).starts_with("refused"), "the old secret, once retired");
    assert!(python_verifies(&new, &after, &body.replace("UPDATE", "DELETE")).starts_with("refused"), "a changed body");
    let stale = headers(std::slice::from_ref(&new), id, now - 3600, body.as_bytes());
    assert!(python_verifies(&new, &stale, body).starts_with("refused"), "an hour-old timestamp");
}
