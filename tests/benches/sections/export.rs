//! Data out: export throughput per format (through the handler, and through the local gateway
//! with `auditline export`), and DynamoDB requests per export page.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use auditline::apigw::http::Route;
use auditline::apigw::http::export::NEXT_TOKEN_HEADER;
use auditline::domain::AuditLogEntry;
use auditline::idempotency::MemoryIdempotency;
use auditline::store::dynamo::entry_item;
use auditline::store::dynamo::tables::{COUNTERS, ENTRIES as ENTRIES_SPEC};
use auditline::store::{AuditStore, DynamoStore, MemoryStore};
use auditline::{AuditLogger, AuditSettings, LogOutcome};
use auditline_tests::http::{api_over, call, sample, with_query};
use auditline_tests::{fresh_table, hours_ago, local_client, stepping_clock, unique_name};
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use futures::StreamExt;

use super::store::typical;

const ENTRIES: usize = 100_000;
const FORMATS: [&str; 3] = ["jsonl", "csv", "ocsf"];

pub async fn typical_entries(n: usize) -> (Arc<MemoryStore>, Vec<AuditLogEntry>) {
    let store = Arc::new(MemoryStore::new());
    let (clock, _) = stepping_clock(hours_ago(30), 1000);
    let logger = AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock);
    let mut entries = Vec::with_capacity(n);
    for i in 0..n {
        match logger.log(typical(i, "acme")).await.expect("log") {
            LogOutcome::Stored(e) => entries.push(e),
            LogOutcome::Disabled => unreachable!(),
        }
    }
    (store, entries)
}

pub async fn run(out: &mut String) {
    let (store, entries) = typical_entries(ENTRIES).await;
    let api = api_over(store.clone() as Arc<dyn AuditStore>, Arc::new(MemoryIdempotency::new()));

    writeln!(out, "### Export of {ENTRIES} typical entries, in memory\n").unwrap();
    writeln!(out, "| format | through the handler | pages | through the local gateway (`auditline export`) |").unwrap();
    writeln!(out, "|---|---|---|---|").unwrap();
    let gateway = gateway_with(&entries).await;
    for format in FORMATS {
        let started = Instant::now();
        let (mut bytes, mut pages, mut token) = (0, 0, None::<String>);
        loop {
            let event = sample("http-export.json", |e| {
                let mut query = vec![("format", format)];
                if let Some(t) = &token {
                    query.push(("next_token", t.as_str()));
                }
                with_query(e, &query);
            });
            let reply = call(&api, Route::Export, &event).await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            bytes += reply.text.len();
            pages += 1;
            match reply.header(NEXT_TOKEN_HEADER) {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        let handler = started.elapsed();
        let through_gateway = export_via_gateway(&gateway, format).await;
        let s = handler.as_secs_f64();
        writeln!(
            out,
            "| {format} | {:.0} entries/s, {:.1} MB/s ({:.1} MB) | {pages} | {through_gateway} |",
            ENTRIES as f64 / s,
            bytes as f64 / s / 1e6,
            bytes as f64 / 1e6
        )
        .unwrap();
    }

    dynamo_section(out, &entries[..20_000]).await;
}

/// A local gateway in memory holding `entries` (written through its HTTP API, 100 to a request).
async fn gateway_with(entries: &[AuditLogEntry]) -> auditline_local::Running {
    use auditline_local::{Limits, Options, SealOptions, Storage, start};
    let options = Options {
        bind: "127.0.0.1:0".parse().unwrap(),
        storage: Storage::Memory { max_entries: 1_000_000, max_bytes: 1 << 30 },
        config: auditline::Config::from_lookup(|_| None).unwrap(),
        limits: Limits::default(),
        seal: SealOptions::default(),
        archive: None,
        push_faults_per_mille: 0,
        streams: Default::default(),
    };
    let g = start(options).await.expect("the gateway starts");
    let key = g.credentials.api_key.expose().to_owned();
    let client = auditline_tests::client::HttpClient::new();
    for chunk in entries.chunks(100) {
        let batch: Vec<serde_json::Value> = chunk
            .iter()
            .map(|e| {
                serde_json::json!({"action": e.action, "entity_type": e.entity_type, "entity_id": e.entity_id,
                    "project_id": e.project_id, "changes": e.changes, "metadata": e.metadata})
            })
            .collect();
        let reply = client
            .request(
                "POST",
                &format!("{}/audit/logs", g.http_url()),
                &[("x-api-key", &key)],
                Some(&serde_json::json!(batch)),
            )
            .await;
        assert_eq!(reply.status, 201);
    }
    g
}

async fn export_via_gateway(g: &auditline_local::Running, format: &str) -> String {
    use auditline_cli::client::Connection;
    use auditline_cli::export::{ExportArgs, Format, run};
    let out = std::env::temp_dir().join(unique_name("bench-export"));
    let args = ExportArgs {
        connection: Connection {
            url: g.http_url(),
            token: None,
            api_key: Some(g.credentials.api_key.expose().to_owned()),
        },
        format: match format {
            "csv" => Format::Csv,
            "ocsf" => Format::Ocsf,
            _ => Format::Jsonl,
        },
        out: out.clone(),
        resume: false,
        pages: None,
        action: None,
        entity_type: None,
        user_id: None,
        entity_id: None,
        project_id: None,
        start_date: None,
        end_date: None,
    };
    let started = Instant::now();
    let done = run(&args, &mut std::io::sink()).await.expect("export");
    let s = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&out);
    format!("{:.0} entries/s, {:.1} MB/s", done.entries as f64 / s, done.bytes as f64 / s / 1e6)
}

/// Requests per export page on the local DynamoDB API (entries loaded with BatchWriteItem).
async fn dynamo_section(out: &mut String, entries: &[AuditLogEntry]) {
    let (client, requests) = local_client();
    let table = fresh_table(&client, &ENTRIES_SPEC, "entries").await;
    let counters = fresh_table(&client, &COUNTERS, "counters").await;
    let batches: Vec<Vec<WriteRequest>> = entries
        .chunks(25)
        .map(|c| {
            c.iter()
                .map(|e| {
                    let put = PutRequest::builder().set_item(Some(entry_item(e).unwrap())).build().unwrap();
                    WriteRequest::builder().put_request(put).build()
                })
                .collect()
        })
        .collect();
    let (c, t) = (&client, &table);
    futures::stream::iter(batches)
        .map(|b| async move {
            c.batch_write_item().request_items(t, b).send().await.expect("batch write");
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    let store = Arc::new(DynamoStore::new(client, table, counters));
    let api = api_over(store, Arc::new(MemoryIdempotency::new()));
    writeln!(out, "\n### DynamoDB requests per export page ({} entries, local DynamoDB API)\n", entries.len()).unwrap();
    writeln!(out, "| page | entries | DynamoDB requests |\n|---|---|---|").unwrap();
    let mut token: Option<String> = None;
    for page in 1.. {
        requests.reset();
        let event = sample("http-export.json", |e| {
            let mut query = vec![("format", "jsonl")];
            if let Some(t) = &token {
                query.push(("next_token", t.as_str()));
            }
            with_query(e, &query);
        });
        let reply = call(&api, Route::Export, &event).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let count = reply.header("x-entry-count").unwrap().to_owned();
        writeln!(
            out,
            "| {page}{} | {count} | {} |",
            if page == 1 { " (writes its VIEW entry)" } else { "" },
            requests.get()
        )
        .unwrap();
        match reply.header(NEXT_TOKEN_HEADER) {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
}
