//! The `auditline` binary end to end: a local gateway on the local DynamoDB API seals on its timer
//! with a key in a file; `auditline fetch` downloads the bundle over HTTP; `auditline verify`
//! checks it and a proof from the proof route offline — and refuses them once changed.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditline::config::vars;
use auditline::domain::time::format_timestamp;
use auditline::domain::{AuditAction, EntityType};
use auditline::integrity::signing::{LocalSigner, Signer, public_key_pem};
use auditline::store::DynamoStore;
use auditline::{AuditLogger, AuditSettings, Config, LogOutcome};
use auditline_local::{Limits, Options, Running, SealKey, SealOptions, Storage, start};
use auditline_tests::client::http;
use auditline_tests::{fresh_table, local_client, new_entry, stepping_clock, tenant, unique_name};
use chrono::{DurationRound, Utc};

fn auditline(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(auditline_tests::binary("auditline"));
    command.args(args).env_remove("AUDITLINE_TOKEN").env_remove("AUDITLINE_API_KEY");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("auditline runs")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Fresh tables for a gateway, all created up front so that entries can be written before it
/// starts; with a day's retention, so that its sealer's first run looks back only a day.
async fn fresh_config() -> Config {
    let (client, _) = local_client();
    let mut tables = Vec::new();
    for (variable, spec) in vars::TABLES {
        tables.push((variable, fresh_table(&client, spec, &variable.to_lowercase()).await));
    }
    Config::from_lookup(|v| match v {
        "AUDIT_RETENTION_DAYS" => Some("1".into()),
        _ => tables.iter().find(|(k, _)| *k == v).map(|(_, t)| t.clone()),
    })
    .unwrap()
}

/// A gateway on `config`'s tables that seals every 200 ms with the key in `key_file`.
async fn sealing_gateway(config: &Config, key_file: &Path) -> Running {
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let seal =
        SealOptions { every: Duration::from_millis(200), key: SealKey::File(key_file.to_owned()), publish_dir: None };
    let storage = Storage::DynamoDb { endpoint: auditline_tests::dynamodb_endpoint() };
    start(Options {
        bind,
        storage,
        config: config.clone(),
        limits: Limits::default(),
        seal,
        archive: None,
        push_faults_per_mille: 0,
        streams: Default::default(),
    })
    .await
    .expect("the gateway starts")
}

/// `n` entries of the gateway's own tenant, six minutes apart from the start of the hour four hours
/// ago, written straight into `config`'s tables with a clock in the past: their periods are closed,
/// so the gateway's timer seals them once it starts. Their ids, and that start.
async fn seed_past_entries(
    config: &Config,
    n: usize,
    entry: impl Fn(&auditline::domain::TenantId, usize) -> auditline::domain::NewEntry,
) -> (Vec<uuid::Uuid>, chrono::DateTime<Utc>) {
    let (client, _) = local_client();
    let store = Arc::new(DynamoStore::new(client, config.entries_table.clone(), config.counters_table.clone()));
    let start = (Utc::now() - chrono::Duration::hours(4)).duration_trunc(chrono::Duration::hours(1)).unwrap();
    let (clock, _) = stepping_clock(start + chrono::Duration::minutes(1), 6 * 60_000);
    let logger = AuditLogger::with_clock(store, AuditSettings::default(), clock);
    let local = tenant(auditline_local::DEV_TENANT);
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let outcome = logger.log(entry(&local, i)).await;
        let Ok(LogOutcome::Stored(e)) = outcome else { panic!("stored: {outcome:?}") };
        ids.push(e.id);
    }
    (ids, start)
}

// Multi-threaded: the gateway must answer while the test waits on the command line's process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_then_verify_offline_and_catch_a_change() {
    let dir = std::env::temp_dir().join(unique_name("auditline-cli"));
    let key_file = dir.join("seal-key.pem");
    let config = fresh_config().await;

    // Three hours of entries of the gateway's own tenant, before it starts.
    let (ids, start) = seed_past_entries(&config, 30, |local, i| {
        new_entry(local, AuditAction::ALL[i % 6], EntityType::File, &format!("f-{i}"), None, None)
    })
    .await;
    let g = sealing_gateway(&config, &key_file).await;
    let public_key = g.seal_key.public_key_file.clone().expect("a key in a file has its public key beside it");
    let key = g.credentials.api_key.expose().to_owned();
    let base = g.http_url();
    let started = Instant::now();
    loop {
        let page = http("GET", &format!("{base}/audit/checkpoints"), &[("x-api-key", &key)], None).await;
        assert_eq!(page.status, 200, "{}", page.body);
        if page.body["count"].as_u64() == Some(3) {
            break;
        }
        // A guard against waiting forever, not a measure of speed.
        assert!(started.elapsed() < Duration::from_secs(60), "the gateway seals the three hours: {}", page.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A fresh entry through the API: not sealed yet.
    let fresh = serde_json::json!({"action": "VIEW", "entity_type": "FILE", "entity_id": "now"});
    let created = http("POST", &format!("{base}/audit/logs"), &[("x-api-key", &key)], Some(&fresh)).await;
    assert_eq!(created.status, 201);

    // fetch → verify, with the key from the command line's environment.
    let bundle = dir.join("bundle");
    let (bundle_arg, key_arg) = (bundle.to_str().unwrap(), public_key.to_str().unwrap());
    let fetched = auditline(&["fetch", "--url", &base, "--out", bundle_arg], &[("AUDITLINE_API_KEY", &key)]);
    assert!(fetched.status.success(), "{}", text(&fetched));
    assert!(text(&fetched).contains("wrote 31 entries and 3 checkpoints"), "{}", text(&fetched));
    let verified = auditline(&["verify", "--public-key", key_arg, bundle_arg], &[]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
    assert!(
        text(&verified)
            .starts_with("tenant local: 3/3 checkpoints valid, 31/31 entries valid, 1 not sealed yet\nhead: "),
        "{}",
        text(&verified)
    );
    // A retention horizon before every entry changes nothing; one that is not a time is refused.
    let a_day_ago = (Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let with_horizon = auditline(&["verify", "--public-key", key_arg, "--expired-before", &a_day_ago, bundle_arg], &[]);
    assert_eq!((with_horizon.status.code(), text(&with_horizon)), (Some(0), text(&verified)));
    let bad_horizon = auditline(&["verify", "--public-key", key_arg, "--expired-before", "yesterday", bundle_arg], &[]);
    assert_eq!(bad_horizon.status.code(), Some(2), "{}", text(&bad_horizon));
    assert!(text(&bad_horizon).contains("--expired-before"), "{}", text(&bad_horizon));
    // A second fetch into the same directory is refused rather than mixed in.
    let again = auditline(&["fetch", "--url", &base, "--out", bundle_arg], &[("AUDITLINE_API_KEY", &key)]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));

    // An export in JSON Lines of the whole tenant from the middle of the second hour: its dates
    // are widened to whole sealed periods and the checkpoints written beside it, so it verifies
    // offline; a filtered export is not verifiable, and verify says why.
    let export = dir.join("since.jsonl");
    let since = format_timestamp(start + chrono::Duration::minutes(90));
    let exported = auditline(
        &["export", "--url", &base, "--start-date", &since, "--out", export.to_str().unwrap()],
        &[("AUDITLINE_API_KEY", &key)],
    );
    assert!(exported.status.success(), "{}", text(&exported));
    assert!(
        text(&exported).starts_with("exported 21 entries"),
        "the second and third hours, and the fresh entry: {}",
        text(&exported)
    );
    let from = format_timestamp(start + chrono::Duration::minutes(60));
    assert!(text(&exported).contains(&format!("--from {from} {}", export.display())), "{}", text(&exported));
    let checked = auditline(&["verify", "--public-key", key_arg, "--from", &from, export.to_str().unwrap()], &[]);
    assert_eq!(checked.status.code(), Some(0), "{}", text(&checked));
    assert_eq!(
        text(&checked).lines().next(),
        Some(
            "tenant local: 3/3 checkpoints valid, 21/21 entries valid, 1 not sealed yet, 1 period outside the range (entries not checked)"
        )
    );
    // Without the range, the first hour's entries are missing, and verify says so.
    let unranged = auditline(&["verify", "--public-key", key_arg, export.to_str().unwrap()], &[]);
    assert_eq!(unranged.status.code(), Some(1), "{}", text(&unranged));
    assert!(text(&unranged).contains("its 10 entries are all missing"), "{}", text(&unranged));
    let filtered = dir.join("deletes.jsonl");
    let exported = auditline(
        &["export", "--url", &base, "--action", "DELETE", "--out", filtered.to_str().unwrap()],
        &[("AUDITLINE_API_KEY", &key)],
    );
    assert!(exported.status.success(), "{}", text(&exported));
    let unverifiable = auditline(&["verify", "--public-key", key_arg, filtered.to_str().unwrap()], &[]);
    assert_eq!(unverifiable.status.code(), Some(2), "{}", text(&unverifiable));
    assert!(text(&unverifiable).contains("no checkpoints beside it"), "{}", text(&unverifiable));

    // One value changed in the file: caught, named, exit 1.
    let entries = bundle.join("entries.jsonl");
    let original = std::fs::read_to_string(&entries).unwrap();
    std::fs::write(&entries, original.replacen("\"entity_id\":\"f-7\"", "\"entity_id\":\"f-70\"", 1)).unwrap();
    let refused = auditline(&["verify", "--public-key", key_arg, bundle_arg], &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("FAILED: entry "), "{}", text(&refused));
    // A line that is not an entry at all: named by line, and not verified.
    std::fs::write(&entries, format!("{original}{{\"id\": 1}}\n")).unwrap();
    let broken = auditline(&["verify", "--public-key", key_arg, bundle_arg], &[]);
    assert_eq!(broken.status.code(), Some(2), "{}", text(&broken));
    assert!(text(&broken).contains("entries.jsonl line 32"), "{}", text(&broken));

    // One entry's proof from the proof route, checked offline.
    let id = ids[12].to_string();
    let proof = http("GET", &format!("{base}/audit/logs/{id}/proof"), &[("x-api-key", &key)], None).await;
    assert_eq!((proof.status, &proof.body["sealed"]), (200, &serde_json::json!(true)), "{}", proof.body);
    let proof_file = dir.join("proof.json");
    std::fs::write(&proof_file, proof.body.to_string()).unwrap();
    let checked = auditline(&["verify", "--public-key", key_arg, "--proof", proof_file.to_str().unwrap()], &[]);
    assert_eq!(checked.status.code(), Some(0), "{}", text(&checked));
    assert!(text(&checked).starts_with(&format!("entry {id} of tenant local verified: leaf ")), "{}", text(&checked));
    let mut forged = proof.body.clone();
    forged["entry"]["user_id"] = serde_json::json!("mallory");
    std::fs::write(&proof_file, forged.to_string()).unwrap();
    let refused = auditline(&["verify", "--public-key", key_arg, "--proof", proof_file.to_str().unwrap()], &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("does not match its leaf hash"), "{}", text(&refused));
    // The fresh entry's answer is not a proof yet, and says so.
    let fresh_id = created.body["id"].as_str().unwrap();
    let pending = http("GET", &format!("{base}/audit/logs/{fresh_id}/proof"), &[("x-api-key", &key)], None).await;
    std::fs::write(&proof_file, pending.body.to_string()).unwrap();
    let early = auditline(&["verify", "--public-key", key_arg, "--proof", proof_file.to_str().unwrap()], &[]);
    assert_eq!(early.status.code(), Some(1), "{}", text(&early));
    assert!(text(&early).contains("not sealed yet"), "{}", text(&early));

    // Another key than the one that signed: nothing verifies.
    let other = dir.join("other.pem");
    let stranger_key = LocalSigner::generate().unwrap();
    std::fs::write(&other, public_key_pem(stranger_key.public_key_der())).unwrap();
    std::fs::write(&entries, &original).unwrap();
    let stranger = auditline(&["verify", "--public-key", other.to_str().unwrap(), bundle_arg], &[]);
    assert_eq!(stranger.status.code(), Some(1), "{}", text(&stranger));
    assert!(text(&stranger).contains("which is not among the keys given"), "{}", text(&stranger));
    g.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The README's demo: a witness beside the gateway; fetch, then verify with every pin — the seal key,
/// the tenant, the witness, the head recorded last time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witnessed_trail_verifies_with_every_pin_and_fails_with_the_wrong_one() {
    let dir = std::env::temp_dir().join(unique_name("auditline-witnessed"));
    std::fs::create_dir_all(&dir).unwrap();
    // The seal key made up front, so that the witness can be told the log's public key.
    let key_file = dir.join("seal-key.pem");
    let seal_key = LocalSigner::generate().unwrap();
    std::fs::write(&key_file, seal_key.private_key_pem()).unwrap();
    let log_pem = dir.join("log.pub.pem");
    std::fs::write(&log_pem, public_key_pem(seal_key.public_key_der())).unwrap();
    let witness = auditline_cli::witness::start(&auditline_cli::witness::WitnessArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        name: "witness.test/auditor".into(),
        key_file: dir.join("witness-key.pem"),
        state_dir: dir.join("witness-state"),
        logs: vec![format!("auditline.local/*={}", log_pem.display())],
    })
    .await
    .unwrap();
    let vkey = witness.vkey.clone();

    let mut config = fresh_config().await;
    config.witnesses = auditline::config::parse_witnesses(&format!("http://{} {vkey}", witness.addr)).unwrap();
    let (client, _) = local_client();
    let store = Arc::new(DynamoStore::new(client, config.entries_table.clone(), config.counters_table.clone()));
    let start = (Utc::now() - chrono::Duration::hours(3)).duration_trunc(chrono::Duration::hours(1)).unwrap();
    let (clock, _) = stepping_clock(start + chrono::Duration::minutes(1), 10 * 60_000);
    let logger = AuditLogger::with_clock(store, AuditSettings::default(), clock);
    for i in 0..12 {
        let request = new_entry(
            &tenant(auditline_local::DEV_TENANT),
            AuditAction::Create,
            EntityType::File,
            &format!("w-{i}"),
            None,
            None,
        );
        let Ok(LogOutcome::Stored(_)) = logger.log(request).await else { panic!("stored") };
    }
    let g = sealing_gateway(&config, &key_file).await;
    let key = g.credentials.api_key.expose().to_owned();
    let base = g.http_url();
    // Until the head is sealed and cosigned: the note carries the witness's line.
    let started = Instant::now();
    loop {
        let latest = http("GET", &format!("{base}/audit/checkpoints/latest"), &[("x-api-key", &key)], None).await;
        if latest.status == 200
            && latest.body["checkpoint"]["total"] == 12
            && latest.body["note"].as_str().unwrap().contains("witness.test/auditor")
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "sealed and cosigned: {}", latest.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bundle = dir.join("bundle");
    let (bundle_arg, pem_arg) = (bundle.to_str().unwrap(), log_pem.to_str().unwrap());
    let witness_url = format!("http://{}", witness.addr);
    let fetched = auditline(
        &["fetch", "--url", &base, "--out", bundle_arg, "--witness", &witness_url],
        &[("AUDITLINE_API_KEY", &key)],
    );
    assert!(fetched.status.success(), "{}", text(&fetched));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("bundle.json")).unwrap()).unwrap();
    assert_eq!(manifest["tenant"], "local");
    assert_eq!(manifest["seal"]["schedule_seconds"], 1, "the gateway's own timer, rounded up to a second");

    let pins = ["--public-key", pem_arg, "--tenant", "local", "--witness-key", vkey.as_str()];
    let verified = auditline(&[&["verify"], &pins[..], &[bundle_arg]].concat(), &[]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
    let said = text(&verified);
    assert!(
        said.starts_with(
            "tenant local: 2/2 checkpoints valid, 12/12 entries valid, head cosigned by 1 witness(es)\nhead: "
        ),
        "{said}"
    );
    let head = said.lines().nth(1).unwrap().split_whitespace().nth(1).unwrap().to_owned();
    let again = auditline(&[&["verify"], &pins[..], &["--head", &head, bundle_arg]].concat(), &[]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(text(&again).contains("0 checkpoint(s) added since the head given"), "{}", text(&again));
    // The fingerprint a verifier compares with the operator's published value.
    let fingerprint = auditline(&["fingerprint", pem_arg], &[]);
    assert_eq!(text(&fingerprint).lines().next(), Some(seal_key.key_id()));

    // Cut: the head checkpoint and its entries removed (as a table writer would before the fetch).
    // The older checkpoint's cosignatures still verify; what the witness says it saw does not.
    let cut = dir.join("cut");
    std::fs::create_dir_all(cut.join("public-keys")).unwrap();
    for file in ["entries.jsonl", "leaves.jsonl", "bundle.json", "keys.json", "witnessed.jsonl"] {
        std::fs::copy(bundle.join(file), cut.join(file)).unwrap();
    }
    let lines: Vec<String> =
        std::fs::read_to_string(bundle.join("checkpoints.jsonl")).unwrap().lines().map(str::to_owned).collect();
    std::fs::write(cut.join("checkpoints.jsonl"), format!("{}\n", lines[0])).unwrap();
    let first_end = serde_json::from_str::<serde_json::Value>(&lines[0]).unwrap()["end"].as_str().unwrap().to_owned();
    let kept: Vec<String> = std::fs::read_to_string(bundle.join("entries.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["timestamp"].as_str().unwrap() < first_end.as_str()
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(cut.join("entries.jsonl"), kept.concat()).unwrap();
    let cut_arg = cut.to_str().unwrap();
    let cut_check = auditline(&["verify", "--public-key", pem_arg, "--witness-key", vkey.as_str(), cut_arg], &[]);
    let said = text(&cut_check);
    assert_eq!(cut_check.status.code(), Some(1), "{said}");
    assert!(said.contains("that this chain does not contain"), "{said}");

    // Each wrong pin fails, and says which.
    let other_witness =
        auditline_cli::witness::load_or_create_key("witness.test/auditor", &dir.join("other-witness.pem"))
            .unwrap()
            .public_key()
            .vkey();
    for (args, says) in [
        (vec!["--tenant", "globex"], "not tenant globex's"),
        (vec!["--witness-key", other_witness.as_str()], "carries 0 valid cosignature(s)"),
        (vec!["--head", &"ab".repeat(32)], "does not contain the head"),
    ] {
        let mut argv = vec!["verify", "--public-key", pem_arg];
        argv.extend(args);
        argv.push(bundle_arg);
        let refused = auditline(&argv, &[]);
        assert_eq!(refused.status.code(), Some(1), "{argv:?}: {}", text(&refused));
        assert!(text(&refused).contains(says), "{argv:?}: {}", text(&refused));
    }
    // A retention horizon after the fetch would excuse anything: refused as bad input.
    let tomorrow = (Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let refused = auditline(&["verify", "--public-key", pem_arg, "--expired-before", &tomorrow, bundle_arg], &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("after the bundle was fetched"), "{}", text(&refused));
    // A checkpoint size no JSON number can hold exactly, or no u64 at all: a failure or bad input,
    // never a crash.
    let lines = std::fs::read_to_string(bundle.join("checkpoints.jsonl")).unwrap();
    for (size, code) in [("18446744073709551615", 1), ("9007199254740993", 1), ("1e30", 2)] {
        let crafted = lines.replacen("\"size\":", &format!("\"size\":{size},\"was\":"), 1);
        std::fs::write(bundle.join("checkpoints.jsonl"), crafted).unwrap();
        let out = auditline(&["verify", "--public-key", pem_arg, bundle_arg], &[]);
        assert_eq!(out.status.code(), Some(code), "size {size}: {}", text(&out));
    }
    g.shutdown().await;
    witness.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_invocations_are_refused_with_a_reason() {
    for (args, says) in [
        (&["verify", "some-dir"][..], "--public-key"),
        (&["verify", "--public-key", "/nonexistent.pem", "dir"], "/nonexistent.pem"),
        (&["fetch", "--url", "http://127.0.0.1:9", "--out", "/tmp/x"], "--token or --api-key"),
        (&["verify", "--public-key", "k.pem"], "required"),
        (&["frobnicate"], "unrecognized subcommand"),
    ] {
        let output = auditline(args, &[]);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
        assert!(text(&output).contains(says), "{args:?}: {}", text(&output));
    }
    let help = auditline(&["--help"], &[]);
    for subcommand in ["keys", "fetch", "verify"] {
        assert!(text(&help).contains(subcommand), "{}", text(&help));
    }
}

/// A gateway in memory with a dozen entries of nearly the maximum size: an export of several pages.
async fn gateway_with_large_entries() -> Running {
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let storage = Storage::Memory { max_entries: 10_000, max_bytes: 256 << 20 };
    let config = Config::from_lookup(|_| None).unwrap();
    let g = start(Options {
        bind,
        storage,
        config,
        limits: Limits::default(),
        seal: SealOptions::default(),
        archive: None,
        push_faults_per_mille: 0,
        streams: Default::default(),
    })
    .await
    .expect("the gateway starts");
    let key = g.credentials.api_key.expose().to_owned();
    let blob = "big \"value\", ".repeat(auditline::domain::MAX_ENTRY_BYTES / 20);
    for i in 0..12 {
        let body = serde_json::json!({"action": "UPDATE", "entity_type": "FILE", "entity_id": format!("f-{i}"), "changes": {"blob": blob}});
        let created = http("POST", &format!("{}/audit/logs", g.http_url()), &[("x-api-key", &key)], Some(&body)).await;
        assert_eq!(created.status, 201, "{}", created.body);
    }
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_every_page_and_resumes_without_a_duplicate_or_a_gap() {
    let g = gateway_with_large_entries().await;
    let key = g.credentials.api_key.expose().to_owned();
    let base = g.http_url();
    let dir = std::env::temp_dir().join(unique_name("auditline-export"));
    std::fs::create_dir_all(&dir).unwrap();
    let env = [("AUDITLINE_API_KEY", key.as_str()), ("AUDITLINE_URL", base.as_str())];
    let ids = |path: &Path| -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a whole entry per line")["id"].to_string())
            .collect()
    };

    // In one go.
    let whole = dir.join("whole.jsonl");
    let done = auditline(&["export", "--entity-type", "FILE", "--out", whole.to_str().unwrap()], &env);
    assert_eq!(done.status.code(), Some(0), "{}", text(&done));
    assert!(text(&done).starts_with("exported 12 entries"), "{}", text(&done));
    let expected = ids(&whole);
    assert_eq!(expected.len(), 12);
    let again = auditline(&["export", "--entity-type", "FILE", "--out", whole.to_str().unwrap()], &env);
    assert_eq!(again.status.code(), Some(2), "an existing file is not overwritten: {}", text(&again));

    // Stopped after one page, and a second page half-written when it stopped (as a crash between
    // writing a page and recording it would leave it): --resume drops that and continues.
    let parts = dir.join("parts.jsonl");
    let first = auditline(&["export", "--entity-type", "FILE", "--pages", "1", "--out", parts.to_str().unwrap()], &env);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert!(text(&first).contains("more remain"), "{}", text(&first));
    let mut file = std::fs::OpenOptions::new().append(true).open(&parts).unwrap();
    std::io::Write::write_all(&mut file, b"{\"id\": \"half a page").unwrap();
    let refused = auditline(&["export", "--entity-type", "FILE", "--out", parts.to_str().unwrap()], &env);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("--resume"), "{}", text(&refused));
    let other = auditline(&["export", "--resume", "--format", "csv", "--out", parts.to_str().unwrap()], &env);
    assert_eq!(other.status.code(), Some(2), "a resume with other options is refused: {}", text(&other));
    let resumed = auditline(&["export", "--entity-type", "FILE", "--resume", "--out", parts.to_str().unwrap()], &env);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert_eq!(ids(&parts), expected, "the same entries, in the same order, once each");
    assert!(!dir.join("parts.jsonl.export-state").exists(), "a finished export leaves no state");
}

/// An erased entry travels with its erasure record: `fetch` and `export` of a range that ends
/// before the record was made still bring it, and `verify` names the field and its record; without
/// the record, the field is named as erased without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_entry_travels_with_its_record_in_fetch_and_export() {
    let dir = std::env::temp_dir().join(unique_name("auditline-cli-erasure"));
    let key_file = dir.join("seal-key.pem");
    let config = fresh_config().await;
    // Two hours of entries, before the gateway starts.
    let (ids, start) = seed_past_entries(&config, 20, |local, i| {
        new_entry(local, AuditAction::Update, EntityType::File, &format!("f-{i}"), None, Some("alice"))
    })
    .await;
    let g = sealing_gateway(&config, &key_file).await;
    let public_key = g.seal_key.public_key_file.clone().unwrap();
    let (key, base) = (g.credentials.api_key.expose().to_owned(), g.http_url());
    let token = g.credentials.token.as_ref().expect("the gateway mints a development token").expose().to_owned();
    let started = Instant::now();
    loop {
        let page = http("GET", &format!("{base}/audit/checkpoints"), &[("x-api-key", &key)], None).await;
        if page.body["count"].as_u64() == Some(2) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the gateway seals the two hours: {}", page.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let target = ids[4];
    let body = serde_json::json!({"fields": ["ip_address"], "reason": "GDPR request 7"});
    let bearer = format!("Bearer {token}");
    let erased =
        http("POST", &format!("{base}/audit/logs/{target}/erasure"), &[("authorization", &bearer)], Some(&body)).await;
    assert_eq!(erased.status, 200, "{}", erased.body);
    let record = erased.body["record"]["id"].as_str().unwrap().to_owned();
    // The development API key reads and writes; it does not erase.
    let refused =
        http("POST", &format!("{base}/audit/logs/{}/erasure", ids[5]), &[("x-api-key", &key)], Some(&body)).await;
    assert_eq!(refused.status, 403);

    let end = format_timestamp(start + chrono::Duration::minutes(119));
    let key_arg = public_key.to_str().unwrap();
    let named = format!("erased: entry {target}: ip_address (record {record})");
    let bundle = dir.join("bundle");
    let fetched = auditline(
        &["fetch", "--url", &base, "--end-date", &end, "--out", bundle.to_str().unwrap()],
        &[("AUDITLINE_API_KEY", &key)],
    );
    assert!(fetched.status.success(), "{}", text(&fetched));
    assert!(text(&fetched).contains("wrote 21 entries"), "twenty, and the record: {}", text(&fetched));
    let verified = auditline(&["verify", "--public-key", key_arg, "--to", &end, bundle.to_str().unwrap()], &[]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
    assert!(text(&verified).contains(&named), "{}", text(&verified));

    let export = dir.join("until.jsonl");
    let exported = auditline(
        &["export", "--url", &base, "--end-date", &end, "--out", export.to_str().unwrap()],
        &[("AUDITLINE_API_KEY", &key)],
    );
    assert!(exported.status.success(), "{}", text(&exported));
    assert!(text(&exported).starts_with("exported 21 entries"), "{}", text(&exported));
    let checked = auditline(&["verify", "--public-key", key_arg, "--to", &end, export.to_str().unwrap()], &[]);
    assert_eq!(checked.status.code(), Some(0), "{}", text(&checked));
    assert!(text(&checked).contains(&named), "{}", text(&checked));

    // Without its record the erasure is named, and nothing verifies it.
    let entries = bundle.join("entries.jsonl");
    let kept: String = std::fs::read_to_string(&entries)
        .unwrap()
        .lines()
        .filter(|l| !l.contains(&format!("\"id\":\"{record}\"")))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&entries, kept).unwrap();
    let refused = auditline(&["verify", "--public-key", key_arg, "--to", &end, bundle.to_str().unwrap()], &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains(&format!("entry {target}: field ip_address is erased by record {record}")),
        "{}",
        text(&refused)
    );
    g.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `auditline archive open`: the archive read back with its keys — the gateway's data file (the
/// binary) or the keys table (the library, against the local DynamoDB API) — an erased field read
/// as erased by its record, every other value back; refused without a place to find keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_open_reads_objects_back_with_their_keys_and_shredded_fields_erased() {
    use auditline::apigw::stream::archive_entries;
    use auditline::archive::DirectorySink;
    use auditline::archive::shred::ArchiveKeys;
    use auditline::erasure::ErasureRequest;
    use auditline::store::AuditStore;

    async fn archive_three(
        store: Arc<dyn AuditStore>,
        keys: Arc<dyn ArchiveKeys>,
        root: &Path,
    ) -> (Vec<auditline::domain::AuditLogEntry>, uuid::Uuid) {
        let (clock, _) = stepping_clock(Utc::now() - chrono::Duration::hours(1), 1);
        let logger = AuditLogger::with_clock(store, AuditSettings::default(), clock).with_archive_keys(keys.clone());
        let t = tenant("acme");
        let mut written = Vec::new();
        for i in 0..3 {
            let mut request = new_entry(&t, AuditAction::Update, EntityType::Report, &format!("u-{i}"), None, None);
            request.details.ip_address = Some(format!("198.51.100.{i}"));
            let Ok(LogOutcome::Stored(e)) = logger.log(request).await else { panic!("stored") };
            written.push(e);
        }
        let batch = written.iter().enumerate().map(|(i, e)| (i.to_string(), e.clone())).collect();
        let sink = DirectorySink { root: root.to_owned() };
        assert!(!archive_entries(batch, &sink, keys.as_ref()).await.retried);
        let dpo = auditline::logger::Actor { user_id: Some("dpo".into()), ip_address: None };
        let request = ErasureRequest { fields: vec!["ip_address".into()], reason: "GDPR".into() };
        let record = logger.erase(&t, written[1].id, &request, &dpo).await.unwrap().record.id;
        (written, record)
    }

    fn check(lines: &str, written: &[auditline::domain::AuditLogEntry], record: uuid::Uuid) {
        let opened: Vec<auditline::domain::AuditLogEntry> =
            lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(opened.len(), 3);
        for (o, w) in opened.iter().zip(written) {
            if o.id == written[1].id {
                assert_eq!((o.ip_address, o.integrity.erased_by.get("ip_address")), (None, Some(&record)));
            } else {
                assert_eq!(o.committed_fields(), w.committed_fields());
            }
        }
    }

    // The local gateway's data file, through the binary.
    let dir = auditline_tests::fresh_dir("cli-archive-data");
    let root = auditline_tests::fresh_dir("cli-archive");
    let store = auditline::store::SqliteStore::open(&dir.join(auditline::store::sqlite::DATABASE_FILE)).unwrap();
    let (written, record) = archive_three(Arc::new(store.clone()), Arc::new(store), &root).await;
    let out = auditline_tests::fresh_dir("cli-archive-out").join("opened.jsonl");
    let (r, d, o) = (root.to_str().unwrap(), dir.to_str().unwrap(), out.to_str().unwrap());
    let opened = auditline(&["archive", "open", r, "--data-dir", d, "--out", o], &[]);
    assert!(opened.status.success(), "{}", text(&opened));
    assert!(text(&opened).contains("opened 3 entries from 1 objects"), "{}", text(&opened));
    check(&std::fs::read_to_string(&out).unwrap(), &written, record);
    let again = auditline(&["archive", "open", r, "--data-dir", d, "--out", o], &[]);
    assert_eq!(again.status.code(), Some(2), "never overwrites: {}", text(&again));
    let nowhere = auditline(&["archive", "open", r, "--out", &format!("{o}.2")], &[("ARCHIVE_KEYS_TABLE", "")]);
    assert_eq!(nowhere.status.code(), Some(2));
    assert!(text(&nowhere).contains("--data-dir"), "{}", text(&nowhere));
    let empty = auditline_tests::fresh_dir("cli-archive-empty");
    let wrong =
        auditline(&["archive", "open", r, "--data-dir", empty.to_str().unwrap(), "--out", &format!("{o}.3")], &[]);
    assert_eq!(wrong.status.code(), Some(2), "{}", text(&wrong));
    assert!(!empty.join(auditline::store::sqlite::DATABASE_FILE).exists(), "no database created where none was");

    // The deployment's keys table.
    let keys = Arc::new(auditline_tests::fresh_dynamo_archive_keys().await);
    let root = auditline_tests::fresh_dir("cli-archive-dynamo");
    let (written, record) = archive_three(Arc::new(auditline::store::MemoryStore::new()), keys.clone(), &root).await;
    let out = auditline_tests::fresh_dir("cli-archive-out").join("opened.jsonl");
    let args = auditline_cli::archive::ArchiveArgs {
        paths: vec![root],
        data_dir: None,
        keys_table: Some("unused: the keys are given".into()),
        endpoint: None,
        out: out.clone(),
    };
    let mut said = Vec::new();
    let summary = auditline_cli::archive::open(&args, keys.as_ref(), &mut said).await.unwrap();
    assert_eq!((summary.entries, summary.erased_fields, summary.without_key), (3, 1, 0));
    check(&std::fs::read_to_string(&out).unwrap(), &written, record);
}
