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

// ---------------------------------------------------------------------------------------------
// End to end through the local gateway: streams made over the API, entries written over HTTP,
// deliveries to receivers on loopback that these tests start and misbehave.

pub(crate) mod end_to_end {
    use std::collections::{HashMap, HashSet};
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use auditline::Config;
    use auditline_local::{Limits, Options, Running, SealOptions, Storage, StreamOptions, start};
    use auditline_tests::auth::{SECRET, claims, hs256};
    use auditline_tests::client::{HttpReply, http};
    use auditline_tests::receiver::{Behaviour, Received, Receiver};
    use serde_json::{Value, json};

    /// How long a test waits for deliveries that should arrive (generous: a busy 2-core machine).
    const DELIVERY: Duration = Duration::from_secs(30);

    pub(crate) fn token(tenant: &str, scope: &str) -> String {
        let mut c = claims(&format!("admin-of-{tenant}"), scope);
        c["tenant_id"] = json!(tenant);
        hs256(&c)
    }

    /// A gateway whose retries are fast (100 ms doubling to 1 s) so drills take seconds.
    pub(crate) async fn gateway_with(extra: &[(&str, &str)], streams: StreamOptions) -> Running {
        let mut vars: Vec<(String, String)> = vec![
            ("JWT_SECRET".into(), SECRET.into()),
            ("AUDIT_STREAM_RETRY_BASE_MS".into(), "100".into()),
            ("AUDIT_STREAM_RETRY_MAX_SECONDS".into(), "1".into()),
        ];
        vars.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let config = Config::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())).unwrap();
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        start(Options {
            bind,
            storage: Storage::Sqlite { dir: auditline_tests::fresh_dir("streams") },
            config,
            limits: Limits::default(),
            seal: SealOptions::default(),
            archive: None,
            push_faults_per_mille: 0,
            streams,
        })
        .await
        .expect("the gateway starts")
    }

    pub(super) async fn gateway() -> Running {
        gateway_with(&[], StreamOptions::default()).await
    }

    pub(super) async fn call(g: &Running, method: &str, path: &str, token: &str, body: Option<&Value>) -> HttpReply {
        let auth = format!("Bearer {token}");
        http(method, &format!("{}{path}", g.http_url()), &[("authorization", &auth)], body).await
    }

    /// Creates a stream; answers its id and (webhooks) its signing secret.
    pub(crate) async fn create(g: &Running, admin: &str, body: Value) -> (String, Option<String>) {
        let reply = call(g, "POST", "/audit/streams", admin, Some(&body)).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        let id = reply.body["stream"]["id"].as_str().expect("an id").to_owned();
        (id, reply.body["secret"].as_str().map(str::to_owned))
    }

    pub(super) fn webhook(url: &str) -> Value {
        json!({"name": "SIEM", "target": {"type": "webhook", "url": url}})
    }

    /// Writes `n` entries (in batches of 100) and answers their ids.
    pub(crate) async fn write(g: &Running, writer: &str, n: usize, tag: &str) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        let mut left = n;
        while left > 0 {
            let count = left.min(100);
            let batch: Vec<Value> = (0..count)
                .map(|i| json!({"action": "UPDATE", "entity_type": "REPORT", "entity_id": format!("{tag}-{i}"), "project_id": "p-1"}))
                .collect();
            let reply = call(g, "POST", "/audit/logs", writer, Some(&Value::Array(batch))).await;
            assert_eq!(reply.status, 201, "{}", reply.body);
            ids.extend(
                reply.body["results"].as_array().unwrap().iter().map(|r| r["entry"]["id"].as_str().unwrap().to_owned()),
            );
            left -= count;
        }
        ids
    }

    /// Entry id → how many times the receiver took it (the entries the tests write; the streams'
    /// own records in the trail, which go to them too, are left out).
    pub(super) fn counted(received: &[Received]) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for delivery in received {
            for item in delivery.items().into_iter().filter(|i| i["entity_type"] != "LOG_STREAM") {
                let id =
                    item["id"].as_str().or_else(|| item["metadata"]["uid"].as_str()).expect("each item has its id");
                *counts.entry(id.to_owned()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Waits until every id in `ids` reached the receiver; answers the counts.
    pub(super) async fn all_delivered(receiver: &Receiver, ids: &[String], within: Duration) -> HashMap<String, usize> {
        let deadline = Instant::now() + within;
        loop {
            let counts = counted(&receiver.received());
            let missing = ids.iter().filter(|id| !counts.contains_key(*id)).count();
            if missing == 0 {
                return counts;
            }
            assert!(Instant::now() < deadline, "{missing} of {} entries not delivered in {within:?}", ids.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every entry once at least; a duplicate is only ever of an id delivered (nothing else arrives).
    fn reconciled(counts: &HashMap<String, usize>, ids: &[String]) -> usize {
        let written: HashSet<&String> = ids.iter().collect();
        for id in counts.keys() {
            assert!(written.contains(id), "{id} was delivered but never written here");
        }
        counts.values().map(|n| n - 1).sum()
    }

    /// Verifies every delivery with the Standard Webhooks library from PyPI, under `secret`;
    /// answers how many it verified.
    fn verified_by_library(secret: &str, received: &[Received]) -> usize {
        const SCRIPT: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
secret = sys.argv[1]
ok = 0
for line in sys.stdin:
    d = json.loads(line)
    try:
        Webhook(secret).verify(d["body"].encode(), d["headers"])
        ok += 1
    except Exception:
        pass
print(ok)
"#;
        use std::io::Write;
        let python = std::env::var("AUDITLINE_TEST_PYTHON")
            .expect("AUDITLINE_TEST_PYTHON is not set: run the tests with ./scripts/test.sh");
        let mut child = std::process::Command::new(python)
            .args(["-c", SCRIPT, secret])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python runs");
        let mut stdin = child.stdin.take().unwrap();
        for delivery in received {
            let headers: serde_json::Map<String, Value> =
                delivery.headers.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
            let line = json!({"headers": headers, "body": String::from_utf8_lossy(&delivery.body)});
            writeln!(stdin, "{line}").unwrap();
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    #[tokio::test]
    async fn a_webhook_gets_every_entry_signed_and_verified_by_the_reference_library_across_rotations() {
        let g = gateway().await;
        let admin = token("acme", "audit:admin");
        let writer = token("acme", "audit:write audit:read");
        let receiver = Receiver::start().await;
        let (id, first) = create(&g, &admin, webhook(&receiver.url())).await;
        let first = first.expect("a webhook's secret is shown at creation");
        assert!(first.starts_with("whsec_"));

        let before = write(&g, &writer, 30, "before").await;
        all_delivered(&receiver, &before, DELIVERY).await;
        let delivered = receiver.received();
        assert_eq!(verified_by_library(&first, &delivered), delivered.len(), "every delivery verifies");

        // Rotate with an hour's overlap: deliveries verify under either secret.
        let path = format!("/audit/streams/{id}/secret");
        let rotated = call(&g, "POST", &path, &admin, Some(&json!({"overlap_seconds": 3600}))).await;
        assert_eq!(rotated.status, 200, "{}", rotated.body);
        let second = rotated.body["secret"].as_str().unwrap().to_owned();
        assert_ne!(second, first);
        assert!(rotated.body["stream"]["previous_secret_retires_at"].is_string());
        let during = write(&g, &writer, 20, "during").await;
        all_delivered(&receiver, &during, DELIVERY).await;
        let overlap: Vec<Received> = receiver.received().split_off(delivered.len());
        assert!(!overlap.is_empty());
        assert_eq!(verified_by_library(&first, &overlap), overlap.len(), "the old secret during the overlap");
        assert_eq!(verified_by_library(&second, &overlap), overlap.len(), "the new secret");

        // Rotate again with no overlap: only the newest secret signs.
        let rotated = call(&g, "POST", &path, &admin, Some(&json!({"overlap_seconds": 0}))).await;
        let third = rotated.body["secret"].as_str().unwrap().to_owned();
        let seen = receiver.received().len();
        let after = write(&g, &writer, 10, "after").await;
        all_delivered(&receiver, &after, DELIVERY).await;
        let last: Vec<Received> = receiver.received().split_off(seen);
        assert_eq!(verified_by_library(&third, &last), last.len());
        assert_eq!(verified_by_library(&second, &last), 0, "a retired secret no longer verifies");

        // Each delivery's id is its dedup key; each entry carries its own id.
        let counts = counted(&receiver.received());
        let all: Vec<String> = before.iter().chain(&during).chain(&after).cloned().collect();
        assert_eq!(reconciled(&counts, &all), 0, "no failures, so no duplicates");
        g.shutdown().await;
    }

    #[tokio::test]
    async fn streams_are_managed_over_the_api_recorded_in_the_trail_and_never_show_a_secret() {
        let g = gateway().await;
        let admin = token("acme", "audit:admin audit:read");
        let receiver = Receiver::start().await;
        let body = json!({
            "name": "Splunk",
            "target": {"type": "splunk_hec", "url": receiver.url(), "token": "hec-token-0123456789"},
            "format": "ocsf",
            "filter": {"actions": ["DELETE"]},
        });
        let (id, secret) = create(&g, &admin, body).await;
        assert!(secret.is_none(), "a HEC token is the tenant's own: not shown back");
        let path = format!("/audit/streams/{id}");
        let got = call(&g, "GET", &path, &admin, None).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body["target"]["type"], "splunk_hec");
        assert_eq!(got.body["status"], "active");
        assert_eq!(got.body["figures"]["delivered"], 0);

        // Pause, change the filter, resume: each a new version and a record.
        let paused = call(&g, "PATCH", &path, &admin, Some(&json!({"paused": true, "version": 1}))).await;
        assert_eq!((paused.status, &paused.body["stream"]["status"]), (200, &json!("paused")), "{}", paused.body);
        let stale = call(&g, "PATCH", &path, &admin, Some(&json!({"paused": false, "version": 1}))).await;
        assert_eq!((stale.status, stale.body["error"]["code"].as_str()), (409, Some("changed")));
        let token_changed = call(
            &g,
            "PATCH",
            &path,
            &admin,
            Some(&json!({"target": {"type": "splunk_hec", "url": receiver.url(), "token": "new-token-9876543210"}})),
        )
        .await;
        assert_eq!(token_changed.status, 200, "{}", token_changed.body);
        let wrong_type =
            call(&g, "PATCH", &path, &admin, Some(&json!({"target": {"type": "webhook", "url": receiver.url()}})))
                .await;
        assert_eq!((wrong_type.status, wrong_type.body["error"]["parameter"].as_str()), (400, Some("target.type")));
        let listed = call(&g, "GET", "/audit/streams", &admin, None).await;
        assert_eq!(listed.body["streams"].as_array().unwrap().len(), 1);

        // The trail holds create, the two updates; no secret anywhere in it or in any answer.
        let trail = call(&g, "GET", "/audit/logs?entity_type=LOG_STREAM", &admin, None).await;
        let actions: Vec<&str> =
            trail.body["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(actions.iter().filter(|a| **a == "UPDATE").count(), 2, "{actions:?}");
        assert_eq!(actions.iter().filter(|a| **a == "CREATE").count(), 1);
        for text in
            [trail.body.to_string(), listed.body.to_string(), got.body.to_string(), token_changed.body.to_string()]
        {
            assert!(!text.contains("hec-token-0123456789") && !text.contains("new-token-9876543210"), "{text}");
        }
        assert!(trail.body.to_string().contains("\"token\":\"changed\""), "a secret's change is named, not shown");

        // Another tenant sees none of it; without audit:admin, nothing at all.
        let other = token("globex", "audit:admin");
        assert_eq!(call(&g, "GET", &path, &other, None).await.status, 404);
        assert_eq!(call(&g, "DELETE", &path, &other, None).await.status, 404);
        let reader = token("acme", "audit:read");
        assert_eq!(call(&g, "GET", "/audit/streams", &reader, None).await.status, 403);

        let deleted = call(&g, "DELETE", &path, &admin, None).await;
        assert_eq!(deleted.status, 200);
        assert_eq!(deleted.body["record"]["action"], "DELETE");
        assert_eq!(call(&g, "GET", &path, &admin, None).await.status, 404);
        g.shutdown().await;
    }

    #[tokio::test]
    async fn filters_and_pauses_decide_what_is_routed_and_a_test_event_reaches_the_receiver() {
        let g = gateway().await;
        let admin = token("acme", "audit:admin audit:read");
        let writer = token("acme", "audit:write");
        let receiver = Receiver::start().await;
        let mut body = webhook(&receiver.url());
        body["filter"] = json!({"entity_types": ["FILE"], "project_ids": ["p-9"]});
        body["target"]["encoding"] = json!("jsonl");
        body["target"]["headers"] = json!({"X-Receiver-Token": "receiver-secret"});
        let (id, _) = create(&g, &admin, body).await;
        // A change that changes nothing: no new version, no record.
        let path = format!("/audit/streams/{id}");
        let same = call(&g, "PATCH", &path, &admin, Some(&json!({"paused": false}))).await;
        assert_eq!(
            (same.status, &same.body["record"], &same.body["stream"]["version"]),
            (200, &Value::Null, &json!(1))
        );
        // A target given again without its headers keeps them (names and values).
        let target = json!({"target": {"type": "webhook", "url": receiver.url(), "encoding": "jsonl"}});
        let kept = call(&g, "PATCH", &path, &admin, Some(&target)).await;
        assert_eq!(kept.body["stream"]["target"]["header_names"], json!(["x-receiver-token"]), "{}", kept.body);
        let test = call(&g, "POST", &format!("/audit/streams/{id}/test"), &admin, None).await;
        assert_eq!((test.status, &test.body["delivered"]), (200, &json!(true)), "{}", test.body);
        let first = receiver.received();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].header("x-receiver-token"), Some("receiver-secret"), "custom headers go with it");
        assert_eq!(first[0].header("content-type"), Some("application/x-ndjson"));
        assert_eq!(first[0].items()[0]["metadata"]["test"], true);

        let matching = json!({"action": "CREATE", "entity_type": "FILE", "entity_id": "f-1", "project_id": "p-9"});
        let other_project = json!({"action": "CREATE", "entity_type": "FILE", "entity_id": "f-2", "project_id": "p-1"});
        let other_type = json!({"action": "CREATE", "entity_type": "REPORT", "entity_id": "r-1", "project_id": "p-9"});
        let batch = json!([matching, other_project, other_type]);
        let written = call(&g, "POST", "/audit/logs", &writer, Some(&batch)).await;
        let wanted = written.body["results"][0]["entry"]["id"].as_str().unwrap().to_owned();
        all_delivered(&receiver, std::slice::from_ref(&wanted), DELIVERY).await;
        call(&g, "PATCH", &format!("/audit/streams/{id}"), &admin, Some(&json!({"paused": true}))).await;
        let while_paused = call(&g, "POST", "/audit/logs", &writer, Some(&json!([matching]))).await;
        assert_eq!(while_paused.status, 201);
        // Written while paused: not routed (resuming does not replay; export backfills).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let counts = counted(&receiver.received()[1..]);
        assert_eq!(counts.len(), 1, "only the matching entry, once: {counts:?}");
        g.shutdown().await;
    }

    #[tokio::test]
    async fn a_receiver_down_for_60_seconds_gets_everything_once_it_is_back() {
        let g = gateway().await;
        let admin = token("acme", "audit:admin");
        let writer = token("acme", "audit:write");
        let receiver = Receiver::start().await;
        create(&g, &admin, webhook(&receiver.url())).await;
        receiver.stop();
        let ids = write(&g, &writer, 300, "down").await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(receiver.received().is_empty());
        receiver.restart().await;
        let counts = all_delivered(&receiver, &ids, DELIVERY).await;
        reconciled(&counts, &ids);
        // Every item the receiver took is counted as delivered (the stream's creation record too),
        // once the last answer is back at the deliverer.
        let items: usize = receiver.received().iter().map(|d| d.items().len()).sum();
        assert!(items >= counts.values().sum::<usize>());
        let deadline = Instant::now() + DELIVERY;
        let stream = loop {
            let stream = call(&g, "GET", "/audit/streams", &admin, None).await.body["streams"][0].clone();
            if stream["figures"]["delivered"].as_u64() == Some(items as u64) {
                break stream;
            }
            assert!(Instant::now() < deadline, "figures never reached {items} delivered: {stream}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(stream["figures"]["retried"].as_u64().unwrap() >= 300, "{stream}");
        assert!(stream["figures"]["last_error"]["message"].as_str().is_some());
        assert_eq!(stream["status"], "active", "retrying is not failing");
        g.shutdown().await;
    }

    #[tokio::test]
    async fn failures_on_30_percent_and_answers_cut_after_the_write_lose_nothing() {
        let g = gateway().await;
        let admin = token("acme", "audit:admin");
        let writer = token("acme", "audit:write");
        let failing = Receiver::start().await;
        failing.set(Behaviour::FailShare(300));
        let cutting = Receiver::start().await;
        cutting.set(Behaviour::CutAfterAccept(300));
        create(&g, &admin, webhook(&failing.url())).await;
        create(&g, &admin, webhook(&cutting.url())).await;
        let ids = write(&g, &writer, 1000, "faults").await;
        let counts = all_delivered(&failing, &ids, DELIVERY).await;
        reconciled(&counts, &ids);
        let cut = all_delivered(&cutting, &ids, DELIVERY).await;
        let duplicates = reconciled(&cut, &ids);
        assert!(duplicates > 0, "a cut answer is retried, so the receiver sees some entries twice");
        // A duplicate carries the webhook-id its first delivery carried: receivers dedupe on it.
        let mut by_message: HashMap<String, Vec<Vec<String>>> = HashMap::new();
        for delivery in cutting.received() {
            let ids = delivery.items().iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect();
            by_message.entry(delivery.header("webhook-id").unwrap().to_owned()).or_default().push(ids);
        }
        assert!(by_message.values().any(|sent| sent.len() > 1), "a retried message keeps its id");
        for sent in by_message.values() {
            assert!(sent.windows(2).all(|w| w[0] == w[1]), "one message id, one content");
        }
        g.shutdown().await;
    }

    #[tokio::test]
    async fn retry_after_is_honoured_and_a_slow_or_failing_stream_leaves_another_tenant_on_time() {
        let g = gateway().await;
        let writer = |t: &str| token(t, "audit:write");
        let admin = |t: &str| token(t, "audit:admin");
        let limited = Receiver::start().await;
        let slow = Receiver::start().await;
        slow.set(Behaviour::Slow(Duration::from_secs(5)));
        let broken = Receiver::start().await;
        broken.set(Behaviour::FailShare(1000));
        let healthy = Receiver::start().await;
        create(&g, &admin("limited"), webhook(&limited.url())).await;
        // Its creation record arrives first; then the receiver asks for a pause.
        let deadline = Instant::now() + DELIVERY;
        while limited.received().is_empty() {
            assert!(Instant::now() < deadline, "the creation record never arrived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let before_limit = limited.arrivals().len();
        limited.set(Behaviour::TooMany { retry_after_seconds: 3, times: 1 });
        create(&g, &admin("slow"), webhook(&slow.url())).await;
        create(&g, &admin("broken"), webhook(&broken.url())).await;
        create(&g, &admin("healthy"), webhook(&healthy.url())).await;

        let limited_ids = write(&g, &writer("limited"), 5, "limited").await;
        let slow_ids = write(&g, &writer("slow"), 50, "slow").await;
        write(&g, &writer("broken"), 50, "broken").await;
        // While the others wait, retry and fail, the healthy tenant's entries arrive at once.
        let mut lags = Vec::new();
        for round in 0..10 {
            let ids = write(&g, &writer("healthy"), 10, &format!("healthy-{round}")).await;
            // From the last write's answer: the delivery's lag, not the writes' own time.
            let sent = Instant::now();
            all_delivered(&healthy, &ids, DELIVERY).await;
            lags.push(sent.elapsed());
        }
        lags.sort();
        // Held up behind the 5 s receiver, a delivery would take 5 s at least; the margin below
        // that is for a busy machine running the whole suite.
        assert!(lags[lags.len() - 1] < Duration::from_secs(4), "the healthy tenant's worst lag: {lags:?}");

        all_delivered(&limited, &limited_ids, DELIVERY).await;
        let arrivals = limited.arrivals().split_off(before_limit);
        assert!(arrivals.len() >= 2);
        let waited = arrivals[1] - arrivals[0];
        assert!(waited >= Duration::from_millis(2900), "the retry came {waited:?} after a Retry-After of 3 s");
        let counts = all_delivered(&slow, &slow_ids, DELIVERY).await;
        reconciled(&counts, &slow_ids);
        g.shutdown().await;
    }

    #[tokio::test]
    async fn deliveries_given_up_on_mark_the_stream_failing_in_the_api_health_and_trail_until_one_succeeds() {
        // A day in production; two seconds here.
        let g = gateway_with(&[("AUDIT_STREAM_GIVE_UP_SECONDS", "2")], StreamOptions::default()).await;
        let admin = token("acme", "audit:admin audit:read");
        let writer = token("acme", "audit:write");
        let receiver = Receiver::start().await;
        receiver.set(Behaviour::FailShare(1000));
        let (id, _) = create(&g, &admin, webhook(&receiver.url())).await;
        let ids = write(&g, &writer, 20, "doomed").await;
        let path = format!("/audit/streams/{id}");
        let deadline = Instant::now() + DELIVERY;
        let stream = loop {
            let stream = call(&g, "GET", &path, &admin, None).await.body;
            if stream["status"] == "failing" {
                break stream;
            }
            assert!(Instant::now() < deadline, "never marked failing: {stream}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(stream["failing"]["reason"].as_str().unwrap().contains("HTTP 500"), "{stream}");
        let health = call(&g, "GET", "/audit/health", &admin, None).await;
        assert_eq!(health.body["log_streams"]["failing"][0]["id"], json!(id), "{}", health.body);
        // Every entry given up on is kept as a dead letter (and so is the stream's creation record;
        // the stream turns failing at the first of its jobs given up on).
        let deadline = Instant::now() + DELIVERY;
        let dead = loop {
            let dead: HashSet<String> = g
                .delivery_queue()
                .dead_letters()
                .await
                .unwrap()
                .iter()
                .flat_map(|d| d.job.entry_ids.iter().map(ToString::to_string))
                .collect();
            if ids.iter().all(|id| dead.contains(id)) {
                break dead;
            }
            assert!(Instant::now() < deadline, "every entry is a dead letter");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let failed = call(&g, "GET", &path, &admin, None).await.body["figures"]["failed"].as_u64().unwrap();
        assert!(
            failed as usize >= ids.len() && failed as usize <= dead.len() + 1,
            "{failed} failed, {} dead letters",
            dead.len()
        );

        // The receiver is fixed: the next delivery clears it, and both changes are in the trail.
        receiver.set(Behaviour::Accept);
        let later = write(&g, &writer, 1, "later").await;
        all_delivered(&receiver, &later, DELIVERY).await;
        let deadline = Instant::now() + DELIVERY;
        while call(&g, "GET", &path, &admin, None).await.body["status"] != "active" {
            assert!(Instant::now() < deadline, "never marked healthy again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let trail = call(&g, "GET", "/audit/logs?entity_type=LOG_STREAM&action=UPDATE", &admin, None).await;
        let statuses: Vec<&Value> =
            trail.body["entries"].as_array().unwrap().iter().map(|e| &e["changes"]["status"]["new"]).collect();
        assert!(statuses.contains(&&json!("failing")) && statuses.contains(&&json!("healthy")), "{statuses:?}");
        g.shutdown().await;
    }

    #[tokio::test]
    async fn destinations_that_reach_inside_are_refused_at_creation_and_redirects_are_not_followed() {
        let g = gateway_with(
            &[],
            StreamOptions { loopback: auditline::streams::outbound::Loopback::Refused, ..StreamOptions::default() },
        )
        .await;
        let admin = token("acme", "audit:admin");
        for url in [
            "https://10.0.0.8/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://[fd00::1]/hook",
            "https://[::ffff:127.0.0.1]/hook",
            "https://0x7f000001/hook",
            "https://localhost/hook",
            "http://example.com/hook",
            "https://user:pass@example.com/hook",
        ] {
            let reply = call(&g, "POST", "/audit/streams", &admin, Some(&webhook(url))).await;
            assert_eq!(
                (reply.status, reply.body["error"]["parameter"].as_str()),
                (400, Some("target.url")),
                "{url}: {}",
                reply.body
            );
        }
        g.shutdown().await;

        // Locally, loopback receivers are allowed; a redirect (here to the metadata address) is
        // never followed, and the stream says why it is retrying.
        let g = gateway().await;
        let admin = token("acme", "audit:admin");
        let receiver = Receiver::start().await;
        receiver.set(Behaviour::Redirect("http://169.254.169.254/latest/meta-data".into()));
        let (id, _) = create(&g, &admin, webhook(&receiver.url())).await;
        let test = call(&g, "POST", &format!("/audit/streams/{id}/test"), &admin, None).await;
        assert_eq!(test.body["delivered"], false);
        assert!(test.body["error"].as_str().unwrap().contains("redirects are not followed"), "{}", test.body);
        assert_eq!(receiver.requests(), 1, "one request, no second hop");
        g.shutdown().await;
    }
}

#[tokio::test]
async fn a_name_that_resolves_inside_is_refused_when_the_delivery_connects() {
    use auditline::streams::outbound::{Loopback, OutboundError};
    use auditline::streams::transport::{HttpLimits, HttpRequest, HttpSender, SafeHttp, SendError};
    let receiver = auditline_tests::receiver::Receiver::start().await;
    // `localhost` passes the URL's checks (it is a name, over https); what it resolves to is
    // judged as the connection is made.
    let http = SafeHttp::new(Loopback::Refused, HttpLimits::default());
    let request = HttpRequest {
        url: format!("https://localhost:{}/hook", receiver.port),
        headers: Vec::new(),
        body: b"[]".to_vec(),
    };
    let refused = http.send(request).await.expect_err("refused");
    assert!(matches!(refused, SendError::Refused(OutboundError::Forbidden(ip)) if ip.is_loopback()), "{refused:?}");
    assert_eq!(receiver.requests(), 0, "nothing reached the receiver");
}

// ---------------------------------------------------------------------------------------------
// An attacker's view: a tenant admin, or a receiver, trying to reach inside, read a secret back,
// wedge deliveries for other tenants, or forge the service's records. In memory, with receivers
// scripted in process (no network, except loopback for the address checks).

mod attacks {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use async_trait::async_trait;
    use auditline::domain::{Actor, AuditAction, AuditQuery, EntityType, QueryScope, TenantId};
    use auditline::store::MemoryStore;
    use auditline::streams::admin::{AdminError, StreamAdmin};
    use auditline::streams::delivery::{Deliverer, Job, RetryPolicy};
    use auditline::streams::destination::{CreateStream, UpdateStream};
    use auditline::streams::outbound::{Loopback, OutboundError, check_url, forbidden, resolve};
    use auditline::streams::secrets::LocalSecretBox;
    use auditline::streams::store::{MemoryStreams, StreamStore};
    use auditline::streams::transport::{
        BusEvent, BusFailure, BusTarget, EventBus, HttpAnswer, HttpRequest, HttpSender, SendError,
    };
    use auditline::{AuditLogger, AuditSettings, LogOutcome};
    use serde_json::{Value, json};
    use uuid::Uuid;

    type Answer = Box<dyn Fn(&HttpRequest) -> HttpAnswer + Send + Sync>;

    /// A receiver in process: answers each request as scripted, after `delay`.
    struct Scripted {
        answer: Answer,
        delay: Duration,
        sent: Mutex<Vec<HttpRequest>>,
    }

    impl Scripted {
        fn new(delay: Duration, answer: impl Fn(&HttpRequest) -> HttpAnswer + Send + Sync + 'static) -> Arc<Self> {
            Arc::new(Scripted { answer: Box::new(answer), delay, sent: Mutex::new(Vec::new()) })
        }

        fn sent(&self) -> Vec<HttpRequest> {
            self.sent.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl HttpSender for Scripted {
        async fn send(&self, request: HttpRequest) -> Result<HttpAnswer, SendError> {
            tokio::time::sleep(self.delay).await;
            self.sent.lock().unwrap().push(request.clone());
            Ok((self.answer)(&request))
        }
    }

    /// A bus that takes every event, slowly.
    struct SlowBus(Duration, Mutex<usize>);

    #[async_trait]
    impl EventBus for SlowBus {
        async fn put_events(&self, _: &BusTarget, events: &[BusEvent]) -> Result<Vec<Option<BusFailure>>, SendError> {
            tokio::time::sleep(self.0).await;
            *self.1.lock().unwrap() += 1;
            Ok(vec![None; events.len()])
        }
    }

    fn answer(status: u16, retry_after: Option<&str>, body: &str) -> HttpAnswer {
        HttpAnswer { status, retry_after: retry_after.map(str::to_owned), location: None, body: body.to_owned() }
    }

    /// An answer that shows the request back, headers and all, as some error pages and echo
    /// services do.
    fn echo(status: u16) -> impl Fn(&HttpRequest) -> HttpAnswer + Send + Sync {
        move |request: &HttpRequest| {
            let headers: serde_json::Map<String, Value> =
                request.headers.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            answer(status, None, &json!({"error": "rejected", "headers": headers}).to_string())
        }
    }

    struct Harness {
        admin: StreamAdmin,
        deliverer: Arc<Deliverer>,
        streams: Arc<MemoryStreams>,
        logger: Arc<AuditLogger>,
    }

    fn harness(http: Arc<dyn HttpSender>, bus: Option<Arc<dyn EventBus>>, retry: RetryPolicy) -> Harness {
        let logger = Arc::new(AuditLogger::new(Arc::new(MemoryStore::new()), AuditSettings::default()));
        let streams = Arc::new(MemoryStreams::default());
        let secrets = Arc::new(LocalSecretBox::ephemeral());
        let deliverer = Arc::new(Deliverer::new(streams.clone(), secrets.clone(), logger.clone(), http, bus, retry));
        let admin = StreamAdmin {
            streams: streams.clone(),
            secrets,
            trail: logger.clone(),
            deliverer: deliverer.clone(),
            loopback: Loopback::AllowedOverHttp,
        };
        Harness { admin, deliverer, streams, logger }
    }

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    fn by() -> Actor {
        Actor { user_id: Some("mallory".into()), ip_address: None }
    }

    fn create_request(body: Value) -> CreateStream {
        serde_json::from_value(body).unwrap()
    }

    fn update_request(body: Value) -> UpdateStream {
        serde_json::from_value(body).unwrap()
    }

    async fn write(logger: &AuditLogger, n: usize) -> Vec<Uuid> {
        let mut ids = Vec::new();
        for i in 0..n {
            let entry = auditline_tests::new_entry(
                &acme(),
                AuditAction::Update,
                EntityType::Report,
                &format!("r-{i}"),
                None,
                None,
            );
            let Ok(LogOutcome::Stored(stored)) = logger.log(entry).await else { panic!("stored") };
            ids.push(stored.id);
        }
        ids
    }

    async fn trail_text(logger: &AuditLogger) -> String {
        let page = logger.get_logs(&acme(), &AuditQuery::new(QueryScope::Tenant)).await.unwrap();
        serde_json::to_string(&page.entries).unwrap()
    }

    const HEC_TOKEN: &str = "B5A79AAD-D822-46CC-80D1-819F80D7BFB0";
    const HEADER_SECRET: &str = "receiver-bearer-0123456789abcdef";

    #[tokio::test]
    async fn a_receiver_that_echoes_the_request_never_puts_a_secret_where_others_read_it() {
        // The token sits where the answer's excerpt is cut (300 characters): no part of it shows.
        let http = Scripted::new(Duration::ZERO, |request: &HttpRequest| {
            let credential = request.headers.iter().find(|(n, _)| n == "authorization").map(|(_, v)| v.as_str());
            answer(500, None, &format!("{}{}\n", "x".repeat(285), credential.unwrap_or_default()))
        });
        let quick = RetryPolicy {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(1),
            give_up_after: Duration::ZERO,
        };
        let h = harness(http.clone(), None, quick);
        let hec = h
            .admin
            .create(
                &acme(),
                create_request(json!({"name": "HEC", "target": {"type": "splunk_hec",
                    "url": "http://127.0.0.1:9/services/collector/event", "token": HEC_TOKEN}})),
                &by(),
            )
            .await
            .unwrap()
            .stream
            .stream;
        let hook = h
            .admin
            .create(
                &acme(),
                create_request(json!({"name": "Hook", "target": {"type": "webhook", "url": "http://127.0.0.1:9/hook",
                    "headers": {"Authorization": format!("Bearer {HEADER_SECRET}")}}})),
                &by(),
            )
            .await
            .unwrap()
            .stream
            .stream;
        let ids = write(&h.logger, 3).await;
        let now = chrono::Utc::now();
        for stream in [&hec, &hook] {
            let job = Job::new(acme(), stream.id, ids.clone(), now - chrono::Duration::seconds(1));
            let outcome = h.deliverer.deliver(&job, now).await;
            assert_eq!(outcome.dead.len(), 3, "given up on at once");
            let tested = h.admin.test(&acme(), stream.id, &by()).await.unwrap();
            assert!(!tested.delivered);
            let error = tested.error.unwrap_or_default();
            assert!(error.contains("HTTP 500"), "{error}");
            for secret in [HEC_TOKEN, HEADER_SECRET] {
                assert!(!error.contains(&secret[..8]), "the test's answer shows a secret: {error}");
            }
        }
        assert!(http.sent().iter().any(|r| r.headers.iter().any(|(_, v)| v.contains(HEC_TOKEN))), "it was sent");
        let stored = h.streams.list(&acme()).await.unwrap();
        let shown = serde_json::to_string(
            &stored.iter().map(|s| (&s.figures.last_error, &s.figures.failing)).collect::<Vec<_>>(),
        )
        .unwrap();
        assert!(stored.iter().all(|s| s.figures.failing.is_some()), "{shown}");
        assert!(shown.contains("HTTP 500"), "{shown}");
        let trail = trail_text(&h.logger).await;
        assert!(trail.contains("HTTP 500"), "the failing record names the error: {trail}");
        for secret in [HEC_TOKEN, HEADER_SECRET] {
            for text in [&shown, &trail] {
                assert!(!text.contains(&secret[..8]), "a receiver's echo of a secret was kept: {text}");
            }
        }
    }

    #[tokio::test]
    async fn a_new_address_for_a_destination_needs_its_secrets_given_again() {
        let http = Scripted::new(Duration::ZERO, echo(200));
        let h = harness(http.clone(), None, RetryPolicy::default());
        let (tenant, actor) = (acme(), by());
        let create = |body: Value| h.admin.create(&tenant, create_request(body), &actor);
        let hec = create(json!({"name": "HEC", "target": {"type": "splunk_hec",
            "url": "http://127.0.0.1:8088/services/collector/event", "token": HEC_TOKEN}}))
        .await
        .unwrap()
        .stream
        .stream
        .id;
        let dd = create(json!({"name": "DD", "target": {"type": "datadog", "api_key": "abcdef0123456789abcdef",
            "url": "http://127.0.0.1:8089/api/v2/logs"}}))
        .await
        .unwrap()
        .stream
        .stream
        .id;
        let hook = create(json!({"name": "Hook", "target": {"type": "webhook", "url": "http://127.0.0.1:8090/hook",
            "headers": {"Authorization": format!("Bearer {HEADER_SECRET}")}}}))
        .await
        .unwrap()
        .stream
        .stream
        .id;
        let plain =
            create(json!({"name": "Plain", "target": {"type": "webhook", "url": "http://127.0.0.1:8091/hook"}}))
                .await
                .unwrap()
                .stream
                .stream
                .id;
        let elsewhere = "http://localhost:4444/collect";
        let refused = |result: Result<_, AdminError>| match result {
            Err(AdminError::Invalid(e)) => e.field,
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(_) => panic!("a stored secret would go to a new address"),
        };
        let patch = |id: Uuid, body: Value| h.admin.update(&tenant, id, update_request(body), &actor);
        // The stored token, key or header values never follow the stream to an address they were
        // not given for (any admin could otherwise read them back at a receiver of their own).
        let to = |kind: &str| json!({"target": {"type": kind, "url": elsewhere}});
        assert_eq!(refused(patch(hec, to("splunk_hec")).await), "target.token");
        assert_eq!(refused(patch(dd, to("datadog")).await), "target.api_key");
        assert_eq!(
            refused(patch(dd, json!({"target": {"type": "datadog", "site": "datadoghq.eu"}})).await),
            "target.api_key"
        );
        assert_eq!(refused(patch(hook, to("webhook")).await), "target.headers");
        for id in [hec, dd, hook] {
            h.admin.test(&acme(), id, &by()).await.unwrap();
        }
        for request in http.sent() {
            assert!(!request.url.contains("4444"), "nothing went to the new address: {request:?}");
        }
        // Given again, or with nothing to carry, the change is made.
        let mut with_token = to("splunk_hec");
        with_token["target"]["token"] = json!("another-token-0123456789");
        patch(hec, with_token).await.unwrap();
        let mut cleared = to("webhook");
        cleared["target"]["headers"] = json!({});
        let changed = patch(hook, cleared).await.unwrap();
        assert!(changed.record.is_some());
        patch(plain, to("webhook")).await.unwrap();
        // The same address, secrets left out: they stay.
        let same = json!({"target": {"type": "webhook", "url": elsewhere}});
        patch(plain, same).await.unwrap();
    }

    #[tokio::test]
    async fn a_huge_retry_after_neither_panics_nor_outlives_the_retry_window() {
        for retry_after in ["18446744073709551615", "9999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"] {
            let http = Scripted::new(Duration::ZERO, move |_: &HttpRequest| answer(429, Some(retry_after), ""));
            let h = harness(http, None, RetryPolicy::default());
            let stream = h
                .admin
                .create(
                    &acme(),
                    create_request(
                        json!({"name": "Hook", "target": {"type": "webhook", "url": "http://127.0.0.1:9/"}}),
                    ),
                    &by(),
                )
                .await
                .unwrap()
                .stream
                .stream;
            let ids = write(&h.logger, 2).await;
            let now = chrono::Utc::now();
            let job = Job::new(acme(), stream.id, ids, now);
            let outcome = h.deliverer.deliver(&job, now).await;
            assert_eq!(outcome.follow_ups.len(), 1, "{retry_after}");
            let due = outcome.follow_ups[0].due_at;
            assert!(due > now && due <= now + chrono::Duration::hours(24), "{retry_after}: due {due}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_receiver_cannot_hold_a_job_past_its_time_budget() {
        // Ten PutEvents of ten events each, every one taking 9 s: the function (60 s) would be
        // killed mid-batch, failing every other tenant's job in the same SQS batch.
        let bus = Arc::new(SlowBus(Duration::from_secs(9), Mutex::new(0)));
        let http = Scripted::new(Duration::ZERO, echo(200));
        let h = harness(http, Some(bus.clone()), RetryPolicy::default());
        let stream = h
            .admin
            .create(
                &acme(),
                create_request(json!({"name": "Bus", "target": {"type": "eventbridge",
                    "event_bus_arn": "arn:aws:events:us-east-1:123456789012:event-bus/audit",
                    "role_arn": "arn:aws:iam::123456789012:role/auditline-put-events"}})),
                &by(),
            )
            .await
            .unwrap()
            .stream
            .stream;
        let ids = write(&h.logger, 100).await;
        let now = chrono::Utc::now();
        let job = Job::new(acme(), stream.id, ids.clone(), now);
        let started = tokio::time::Instant::now();
        let outcome = h.deliverer.deliver(&job, now).await;
        let took = started.elapsed();
        assert!(took <= Duration::from_secs(45), "one job held the function for {took:?}");
        let later: usize = outcome.follow_ups.iter().map(|j| j.entry_ids.len()).sum();
        assert_eq!(outcome.delivered + later, 100, "nothing lost: the rest waits for the next attempt");
        assert!(later > 0 && outcome.dead.is_empty());
        assert!(outcome.follow_ups.iter().all(|j| j.attempts == job.attempts), "not a failed attempt");
        assert_eq!(*bus.1.lock().unwrap() * 10, outcome.delivered);
    }

    #[tokio::test]
    async fn a_refusal_never_tells_where_a_name_points() {
        // Whether a name exists inside, and its private address, are not for a tenant to learn.
        let inside = check_url("https://localhost:8443/hook", Loopback::Refused).unwrap();
        let missing = check_url("https://no-such-host.invalid/hook", Loopback::Refused).unwrap();
        let (inside, missing) = (
            resolve(&inside, Loopback::Refused).await.unwrap_err(),
            resolve(&missing, Loopback::Refused).await.unwrap_err(),
        );
        assert!(matches!(inside, OutboundError::Forbidden(_)) && missing == OutboundError::Unresolved);
        let text = inside.to_string();
        assert!(!text.contains("127.0.0.1") && !text.contains("::1"), "{text}");
        assert_eq!(text, missing.to_string(), "the same answer for a name inside and a name nowhere");
    }

    #[test]
    fn addresses_that_carry_an_inside_ipv4_address_are_forbidden() {
        for ip in [
            "::ffff:0:7f00:1",                      // IPv4-translated (SIIT), 127.0.0.1
            "::ffff:0:a9fe:a9fe",                   // IPv4-translated, 169.254.169.254
            "2001:0:4136:e378:8000:63bf:3fff:fdd2", // Teredo
            "100::1",                               // discard-only
        ] {
            assert!(forbidden(ip.parse().unwrap()), "{ip} is forbidden");
        }
        for url in ["https://[::ffff:0:7f00:1]/", "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/"] {
            assert!(matches!(check_url(url, Loopback::Refused), Err(OutboundError::Forbidden(_))), "{url}");
        }
    }

    #[test]
    fn every_spelling_of_an_inside_address_is_judged_as_that_address() {
        for url in [
            "https://2130706433/",                     // decimal
            "https://0177.0.0.1/",                     // octal
            "https://0x7f.1/",                         // hex, short form
            "https://127.1/",                          // short form
            "https://127.0.0.1./",                     // trailing dot
            "https://%31%32%37.0.0.1/",                // percent-encoded
            "https://\u{ff11}\u{ff12}\u{ff17}.0.0.1/", // full-width digits (IDNA maps them)
            "https://0.0.0.0/",
            "https://0/",
            "https://[::]/",
            "https://[::127.0.0.1]/",        // IPv4-compatible
            "https://[64:ff9b::a9fe:a9fe]/", // NAT64 of 169.254.169.254
            "https://[2002:a9fe:a9fe::]/",   // 6to4 of 169.254.169.254
            "https://[fd00:ec2::254]/",      // the metadata service over IPv6
            "https://169.254.169.254:8443/",
        ] {
            assert!(matches!(check_url(url, Loopback::Refused), Err(OutboundError::Forbidden(_))), "{url}");
        }
        // What a parser might read one way and a connector another.
        for url in ["https://127.0.0.1:443@example.com/", "https://user@example.com/"] {
            assert_eq!(check_url(url, Loopback::Refused).unwrap_err(), OutboundError::Credentials, "{url}");
        }
        let backslash = check_url("https://example.com\\@127.0.0.1/", Loopback::Refused).unwrap();
        assert_eq!(backslash.host_str(), Some("example.com"), "the host the request then goes to");
    }

    #[test]
    fn custom_headers_cannot_reframe_the_request_or_be_given_twice() {
        use auditline::streams::destination::TargetRequest;
        let with = |headers: Value| {
            serde_json::from_value::<TargetRequest>(
                json!({"type": "webhook", "url": "https://siem.example.com/", "headers": headers}),
            )
            .unwrap()
            .check(Loopback::Refused)
            .err()
            .map(|e| e.field)
        };
        for name in ["TE", "Upgrade", "Expect", "Keep-Alive", "Trailer", "Proxy-Authorization", "Proxy-Connection"] {
            assert_eq!(with(json!({name: "x"})).as_deref(), Some("target.headers"), "{name}");
        }
        assert_eq!(
            with(json!({"X-Token": "one", "Y-Other": "two", "x-token": "three"})).as_deref(),
            Some("target.headers"),
            "one name, two values"
        );
        assert_eq!(with(json!({"Authorization": "Bearer x"})), None);
    }

    #[tokio::test]
    async fn a_writer_cannot_forge_a_streams_record() {
        use super::end_to_end::{call, gateway, token};
        let g = gateway().await;
        let writer = token("acme", "audit:write audit:admin");
        let forged = json!({"action": "UPDATE", "entity_type": "LOG_STREAM", "entity_id": Uuid::now_v7().to_string(),
            "changes": {"status": {"old": "failing", "new": "healthy"}}});
        for body in [forged.clone(), json!([forged])] {
            let reply = call(&g, "POST", "/audit/logs", &writer, Some(&body)).await;
            let error = if reply.status == 400 { &reply.body["error"] } else { &reply.body["results"][0]["error"] };
            assert_eq!(error["parameter"], "entity_type", "{}: {}", reply.status, reply.body);
        }
        g.shutdown().await;
    }

    #[test]
    fn a_request_shown_for_debugging_shows_no_header_value() {
        let request = HttpRequest {
            url: "https://siem.example.com/".into(),
            headers: vec![("authorization".into(), format!("Splunk {HEC_TOKEN}"))],
            body: b"[]".to_vec(),
        };
        let shown = format!("{request:?}");
        assert!(shown.contains("authorization") && !shown.contains(HEC_TOKEN), "{shown}");
    }
}
