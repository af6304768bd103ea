//! Every file in `events/` parses as the event type of the function it is for, and is listed in
//! events/README.md.

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayV2CustomAuthorizerV2Request,
    ApiGatewayWebsocketProxyRequest,
};
use aws_lambda_events::dynamodb::Event;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;

#[test]
fn every_sample_event_parses_as_its_functions_event_type() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../events");
    let readme = std::fs::read_to_string(format!("{dir}/README.md")).unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !name.ends_with(".json") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(readme.contains(&format!("`{name}`")), "{name} is described in events/README.md");
        if name.starts_with("authorizer-http") {
            let e: ApiGatewayV2CustomAuthorizerV2Request = serde_json::from_str(&text).expect(&name);
            assert_eq!(e.version.as_deref(), Some("2.0"));
        } else if name.starts_with("authorizer-websocket") {
            let e: ApiGatewayCustomAuthorizerRequestTypeRequest = serde_json::from_str(&text).expect(&name);
            assert!(e.method_arn.is_some());
        } else if name.starts_with("http-") {
            let request = lambda_http::request::from_str(&text).expect(&name);
            assert!(
                matches!(request.request_context(), RequestContext::ApiGatewayV2(_)),
                "{name} is an HTTP API event"
            );
        } else if name.starts_with("ws-") {
            let e: ApiGatewayWebsocketProxyRequest = serde_json::from_str(&text).expect(&name);
            assert!(e.request_context.connection_id.is_some(), "{name}");
        } else if name.starts_with("stream-") {
            let e: Event = serde_json::from_str(&text).expect(&name);
            assert!(!e.records.is_empty(), "{name}");
        } else if name.starts_with("kinesis-") {
            let e: aws_lambda_events::kinesis::KinesisEvent = serde_json::from_str(&text).expect(&name);
            assert!(!e.records.is_empty(), "{name}");
        } else if name.starts_with("sqs-") {
            let e: aws_lambda_events::sqs::SqsEvent = serde_json::from_str(&text).expect(&name);
            assert!(!e.records.is_empty(), "{name}");
        } else if name.starts_with("seal-") {
            // The schedule's input, as template.yaml sets it.
            let e: serde_json::Value = serde_json::from_str(&text).expect(&name);
            let template = std::fs::read_to_string(format!("{dir}/../template.yaml")).unwrap();
            assert!(template.contains(&format!("Input: '{}'", e)), "{name} is the schedule's input");
        } else {
            panic!(
                "{name}: no known function takes this event (name it authorizer-, http-, ws-, stream-, kinesis-, sqs- or seal-)"
            );
        }
    }
    assert!(seen >= 13, "all sample events were checked ({seen})");
}

#[test]
fn the_sample_stream_entries_match_their_leaves() {
    // Their leaves were computed by a separate implementation of auditline-leaf/1 (Python's
    // hashlib and json), so this also checks the format is what the documentation says.
    let e: Event = serde_json::from_value(auditline_tests::event("stream-batch.json")).unwrap();
    let mut checked = 0;
    for record in &e.records {
        let image: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
            record.change.new_image.clone().into();
        if image.contains_key("integrity") {
            let entry = auditline::store::dynamo::entry_from_item(image).expect("an entry");
            assert_eq!(entry.verify_leaf(), Ok(vec![]), "{}", entry.id);
            checked += 1;
        }
    }
    assert_eq!(checked, 2);
}
