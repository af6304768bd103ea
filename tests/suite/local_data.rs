//! The local gateway's data directory, through the binary as a newcomer runs it: the trail, the
//! development key and the seal chain survive a stop and a SIGKILL; a second gateway on the same
//! directory is refused; a damaged database is refused by name and left as it was; a full disk
//! answers 503 with `Retry-After`, loses nothing, and writes resume once there is room.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditline::domain::{AuditAction, EntityType};
use auditline::store::SqliteStore;
use auditline::{AuditLogger, AuditSettings, Config, LogOutcome};
use auditline_local::{DEV_TENANT, Limits, Options, Running, SealKey, SealOptions, Storage, start};
use auditline_tests::client::http;
use auditline_tests::{fresh_dir, new_entry, stepping_clock, tenant};
use chrono::{DurationRound, Utc};
use serde_json::{Value, json};

/// The gateway binary on a data directory, with what its banner said.
struct Local {
    child: Child,
    url: String,
    key: String,
    /// The development token (every scope, streams' admin among them).
    token: Option<String>,
    banner: String,
    stderr: Arc<Mutex<String>>,
}

impl Local {
    /// Starts `auditline-local` on `dir`; `file_size_limit` runs it under `prlimit --fsize`.
    fn start(dir: &Path, file_size_limit: Option<u64>) -> Local {
        let mut command = match file_size_limit {
            Some(bytes) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--fsize={bytes}:unlimited")).arg("--").arg(auditline_tests::binary("auditline-local"));
                c
            }
            None => Command::new(auditline_tests::binary("auditline-local")),
        };
        let mut child = on_data_dir(&mut command, dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the local gateway binary runs");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = String::new();
        let (mut url, mut key, mut token) = (None, None, None);
        while key.is_none() {
            let Some(Ok(line)) = lines.next() else {
                panic!("the gateway stopped before its banner ended: {banner}{}", stderr.lock().unwrap())
            };
            if let Some(rest) = line.trim().strip_prefix("HTTP API") {
                url = rest.split_whitespace().next().map(|u| u.trim_end_matches("/audit/logs").to_owned());
            }
            if let Some(rest) = line.trim().strip_prefix("token ") {
                token = rest.split_whitespace().next().filter(|t| t.contains('.')).map(str::to_owned);
            }
            if let Some(rest) = line.trim().strip_prefix("api key") {
                key = rest.split_whitespace().next().map(str::to_owned);
            }
            banner.push_str(&line);
            banner.push('\n');
        }
        std::thread::spawn(move || for _ in lines {});
        Local { child, url: url.expect("the URL is printed"), key: key.unwrap(), token, banner, stderr }
    }

    async fn post(&self, body: &Value) -> auditline_tests::client::HttpReply {
        let url = format!("{}/audit/logs", self.url);
        let client = auditline_tests::client::HttpClient::new();
        match client.try_request("POST", &url, &[("x-api-key", &self.key)], Some(body)).await {
            Ok(reply) => reply,
            Err(e) => panic!("the gateway did not answer ({e}); it said: {}", self.stderr.lock().unwrap()),
        }
    }

    /// Every entry id of the development tenant, page by page.
    async fn ids(&self) -> Vec<String> {
        Self::ids_of(&self.url, &self.key).await
    }

    async fn ids_of(url: &str, key: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut target = format!("{url}/audit/logs?limit=200");
            if let Some(t) = &next {
                target.push_str(&format!("&next_token={}", auditline_cli::client::encode(t)));
            }
            let page = http("GET", &target, &[("x-api-key", key)], None).await;
            assert_eq!(page.status, 200, "{}", page.body);
            ids.extend(page.body["entries"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()));
            match page.body["next_token"].as_str() {
                Some(t) => next = Some(t.to_owned()),
                None => return ids,
            }
        }
    }

    /// Ctrl-C, and a clean exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
        assert!(wait(&mut self.child, Duration::from_secs(60)).success(), "a clean exit");
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for a process to exit (a guard against hanging, not a measure of speed).
fn wait(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > within {
            let _ = child.kill();
            panic!("the process did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `command` (the gateway, or a wrapper that runs it) on the data directory `dir`, on any free
/// port, with nothing in the environment choosing another store or key.
fn on_data_dir<'c>(command: &'c mut Command, dir: &Path) -> &'c mut Command {
    command
        .args(["--port", "0", "--data-dir"])
        .arg(dir)
        .env_remove("DYNAMODB_ENDPOINT")
        .env_remove("AUDITLINE_SEAL_KEY_FILE")
        .env_remove("AUDITLINE_MEMORY")
}

/// The gateway on `dir`, expected to refuse to start: its exit status and what it said.
fn refused(dir: &Path) -> (std::process::ExitStatus, String) {
    let mut child = on_data_dir(&mut Command::new(auditline_tests::binary("auditline-local")), dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the local gateway binary runs");
    let status = wait(&mut child, Duration::from_secs(30));
    let mut said = String::new();
    child.stderr.take().unwrap().read_to_string(&mut said).unwrap();
    child.stdout.take().unwrap().read_to_string(&mut said).unwrap();
    (status, said)
}

fn entry(i: usize) -> Value {
    json!({"action": "CREATE", "entity_type": "FILE", "entity_id": format!("file-{i}"), "project_id": "p-1"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trail_and_the_development_key_survive_a_stop_and_a_kill_and_one_gateway_holds_a_directory() {
    let dir = fresh_dir("local-data");
    let database = dir.join("auditline.db").display().to_string();
    let first = Local::start(&dir, None);
    assert!(first.banner.contains(&format!("{database} (0 entries")), "{}", first.banner);
    let mut written = Vec::new();
    for i in 0..3 {
        let reply = first.post(&entry(i)).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        written.push(reply.body["id"].as_str().unwrap().to_owned());
    }

    // A second gateway on the same directory: refused, saying why, and the first one unharmed.
    let (status, said) = refused(&dir);
    assert!(!status.success());
    assert!(said.contains(&dir.display().to_string()) && said.contains("in use by another auditline-local"), "{said}");
    assert_eq!(first.ids().await.len(), 3);
    let key = first.key.clone();
    first.stop();

    // Started again: the same entries, the same development key, the count in the banner.
    let second = Local::start(&dir, None);
    assert_eq!(second.key, key, "the development API key survives a restart");
    assert!(second.banner.contains(&format!("{database} (3 entries")), "{}", second.banner);
    let mut listed = second.ids().await;
    listed.reverse();
    assert_eq!(listed, written, "the same entries, newest first");
    let reply = second.post(&entry(3)).await;
    assert_eq!(reply.status, 201);
    written.push(reply.body["id"].as_str().unwrap().to_owned());
    second.kill();

    // After a SIGKILL: what was acknowledged is there (a 201 means on disk).
    let third = Local::start(&dir, None);
    assert_eq!(third.key, key);
    let listed: HashSet<String> = third.ids().await.into_iter().collect();
    assert_eq!(listed, written.iter().cloned().collect::<HashSet<_>>());
    third.stop();
}

/// Ctrl-C while the gateway starts (a script that stops it at once, a newcomer's quick change of
/// mind): a clean stop once it has started, not a death by signal, and the directory opens again.
#[test]
fn a_ctrl_c_while_it_starts_stops_it_cleanly() {
    for attempt in 0..3 {
        let dir = fresh_dir(&format!("local-early-stop-{attempt}"));
        let mut child = on_data_dir(&mut Command::new(auditline_tests::binary("auditline-local")), &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the local gateway binary runs");
        // The directory's lock is taken while it starts, before its database is opened.
        let started = Instant::now();
        while !dir.join("gateway.lock").exists() {
            assert!(started.elapsed() < Duration::from_secs(30), "the gateway never took its directory");
            std::thread::sleep(Duration::from_micros(200));
        }
        let pid = child.id().to_string();
        assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
        let status = wait(&mut child, Duration::from_secs(60));
        let said: Vec<String> = BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok).collect();
        assert!(status.success(), "stopped by {status}, not cleanly; it said: {said:?}");
        assert!(said.iter().any(|l| l == "stopping…"), "{said:?}");
        Local::start(&dir, None).stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_database_is_refused_by_name_and_left_as_it_was() {
    // Garbage where the database should be.
    let garbage = fresh_dir("local-garbage");
    let file = garbage.join("auditline.db");
    let bytes = b"not a database, only something sitting where one should be ".repeat(100);
    std::fs::write(&file, &bytes).unwrap();
    let (status, said) = refused(&garbage);
    assert!(!status.success());
    assert!(said.contains(&file.display().to_string()) && said.contains("not an auditline database"), "{said}");
    assert_eq!(std::fs::read(&file).unwrap(), bytes, "left as it was");

    // A real trail, cut in half after a clean stop.
    let truncated = fresh_dir("local-truncated");
    let gateway = Local::start(&truncated, None);
    for i in 0..300 {
        assert_eq!(gateway.post(&entry(i)).await.status, 201);
    }
    gateway.stop();
    let file = truncated.join("auditline.db");
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(len / 2).unwrap();
    let (status, said) = refused(&truncated);
    assert!(!status.success());
    assert!(said.contains(&file.display().to_string()) && said.contains("damaged"), "{said}");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), len / 2, "never started empty over it");

    // A newer schema than this release knows.
    let newer = fresh_dir("local-newer");
    Local::start(&newer, None).stop();
    let file = newer.join("auditline.db");
    rusqlite::Connection::open(&file).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let (status, said) = refused(&newer);
    assert!(!status.success());
    assert!(said.contains(&file.display().to_string()) && said.contains("schema version 99 is newer"), "{said}");
}

/// A file-size limit (as a full disk does, without mounting one): writes answer 503 with
/// `Retry-After` and a JSON error, nothing acknowledged is lost and nothing refused is stored,
/// reads go on, and writes succeed again once the limit is lifted — in the same process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_loses_nothing_and_recovers_when_space_returns() {
    let dir = fresh_dir("local-full");
    let gateway = Local::start(&dir, Some(1 << 20));
    let blob = "x".repeat(2_000);
    let mut acknowledged = HashSet::new();
    let mut full = None;
    for i in 0..2_000 {
        let body = json!({"action": "UPDATE", "entity_type": "FILE", "entity_id": format!("f-{i}"), "changes": {"blob": blob}});
        let reply = gateway.post(&body).await;
        match reply.status {
            201 => {
                acknowledged.insert(reply.body["id"].as_str().unwrap().to_owned());
            }
            503 => {
                full = Some(reply);
                break;
            }
            other => panic!("answered {other}: {}", reply.body),
        }
    }
    let full = full.expect("a 1 MiB file-size limit is reached");
    assert!(full.headers.contains_key("retry-after"), "{:?}", full.headers);
    assert!(full.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", full.body);
    assert!(!acknowledged.is_empty());
    // Still full: refused again, and reads go on.
    let again = gateway.post(&entry(0)).await;
    assert_eq!(again.status, 503, "{}", again.body);
    let listed: HashSet<String> = gateway.ids().await.into_iter().collect();
    assert_eq!(listed, acknowledged, "every acknowledged entry, and none of the refused");
    let health = http("GET", &format!("{}/audit/health", gateway.url), &[], None).await;
    assert_eq!(health.status, 200, "reads go on: {}", health.body);

    // Space returns: the same process writes again.
    let pid = gateway.child.id().to_string();
    let lifted = Command::new("prlimit").args(["--pid", &pid, "--fsize=unlimited:unlimited"]).status().unwrap();
    assert!(lifted.success());
    let mut recovered = None;
    for _ in 0..50 {
        let reply = gateway.post(&entry(1)).await;
        if reply.status == 201 {
            recovered = Some(reply.body["id"].as_str().unwrap().to_owned());
            break;
        }
        assert_eq!(reply.status, 503, "{}", reply.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    acknowledged.insert(recovered.expect("writes succeed once the limit is lifted"));
    gateway.kill();

    // And on disk, after a SIGKILL: exactly the acknowledged entries.
    let after = Local::start(&dir, None);
    let listed: HashSet<String> = after.ids().await.into_iter().collect();
    assert_eq!(listed, acknowledged);
    after.stop();
}

fn auditline(args: &[&str], key: &str) -> Output {
    Command::new(auditline_tests::binary("auditline"))
        .args(args)
        .env_remove("AUDITLINE_TOKEN")
        .env("AUDITLINE_API_KEY", key)
        .output()
        .expect("auditline runs")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// The gateway on `dir`'s SQLite file with its seal key there, sealing hourly periods every
/// 200 ms, `grace` seconds after they end.
async fn sealing(dir: &Path, grace: u32) -> Running {
    let config = Config::from_lookup(|v| match v {
        "AUDIT_RETENTION_DAYS" => Some("1".into()),
        "AUDIT_SEAL_GRACE_SECONDS" => Some(grace.to_string()),
        _ => None,
    })
    .unwrap();
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let key = SealKey::File(dir.join("seal-key.pem"));
    start(Options {
        bind,
        storage: Storage::Sqlite { dir: dir.to_owned() },
        config,
        limits: Limits::default(),
        seal: SealOptions { every: Duration::from_millis(200), key, publish_dir: None },
        archive: None,
        push_faults_per_mille: 0,
        streams: Default::default(),
    })
    .await
    .expect("the gateway starts")
}

async fn wait_for_checkpoints(g: &Running, key: &str, count: u64) {
    let started = Instant::now();
    loop {
        let page = http("GET", &format!("{}/audit/checkpoints", g.http_url()), &[("x-api-key", key)], None).await;
        assert_eq!(page.status, 200, "{}", page.body);
        if page.body["count"].as_u64() == Some(count) {
            return;
        }
        // A guard against waiting forever, not a measure of speed.
        assert!(started.elapsed() < Duration::from_secs(60), "{count} checkpoints sealed: {}", page.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fetches the development tenant's trail into a new directory and verifies it; the report.
fn fetch_and_verify(g: &Running, key: &str, extra: &[&str]) -> String {
    let bundle: PathBuf = fresh_dir("local-bundle").join("bundle");
    let bundle = bundle.to_str().unwrap();
    let fetched = auditline(&["fetch", "--url", &g.http_url(), "--out", bundle], key);
    assert!(fetched.status.success(), "{}", text(&fetched));
    let public_key = g.seal_key.public_key_file.clone().unwrap();
    let mut args = vec!["verify", "--public-key", public_key.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(bundle);
    let verified = auditline(&args, key);
    assert!(verified.status.success(), "{}", text(&verified));
    text(&verified)
}

/// Four closed hours of entries of the development tenant (five an hour), written into `dir`'s
/// file before a gateway starts on it.
async fn four_closed_hours(dir: &Path) {
    let store = Arc::new(SqliteStore::open(&dir.join("auditline.db")).unwrap());
    let start = (Utc::now() - chrono::Duration::hours(4)).duration_trunc(chrono::Duration::hours(1)).unwrap();
    let (clock, _) = stepping_clock(start + chrono::Duration::minutes(1), 12 * 60_000);
    let logger = AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock);
    let local = tenant(DEV_TENANT);
    for i in 0..20 {
        let request = new_entry(&local, AuditAction::ALL[i % 6], EntityType::File, &format!("f-{i}"), None, None);
        assert!(matches!(logger.log(request).await, Ok(LogOutcome::Stored(_))));
    }
    store.close();
}

/// `auditline backup` while the gateway seals and takes writes; restored as the README says (the
/// copy as `auditline.db` in a new data directory, with the seal key), the trail verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_the_gateway_writes_restores_into_a_trail_that_verifies() {
    let dir = fresh_dir("local-backed-up");
    four_closed_hours(&dir).await;
    let g = sealing(&dir, 0).await;
    let key = g.credentials.api_key.expose().to_owned();
    wait_for_checkpoints(&g, &key, 4).await;

    // Writers keep going while the copy is taken.
    let url = format!("{}/audit/logs", g.http_url());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writer = {
        let (url, key) = (url.clone(), key.clone());
        tokio::spawn(async move {
            let mut acknowledged = 0;
            while !*stopped.borrow() {
                let reply = http("POST", &url, &[("x-api-key", &key)], Some(&entry(acknowledged))).await;
                assert_eq!(reply.status, 201, "{}", reply.body);
                acknowledged += 1;
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let copy = fresh_dir("local-backup").join("trail.db");
    let (from, to) = (dir.display().to_string(), copy.display().to_string());
    let backed_up = tokio::task::spawn_blocking(move || auditline(&["backup", "--data-dir", &from, "--out", &to], ""))
        .await
        .unwrap();
    assert!(backed_up.status.success(), "{}", text(&backed_up));
    let _ = stop.send(true);
    let written_meanwhile = writer.await.unwrap();
    assert!(written_meanwhile > 0);
    assert!(text(&backed_up).starts_with("backed up "), "{}", text(&backed_up));

    // Never over an existing file; and a directory without a database is named.
    let again = auditline(&["backup", "--data-dir", dir.to_str().unwrap(), "--out", copy.to_str().unwrap()], "");
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again).contains("exists already"), "{}", text(&again));
    let empty = fresh_dir("local-empty");
    let none = auditline(&["backup", "--data-dir", empty.to_str().unwrap(), "--out", "/tmp/never.db"], "");
    assert!(text(&none).contains("auditline.db: no database here"), "{}", text(&none));
    let listed_before = Local::ids_of(&g.http_url(), &key).await.len();
    g.shutdown().await;

    // Restored: a new directory, the copy as its database, the seal key beside it.
    let restored = fresh_dir("local-restored");
    std::fs::copy(&copy, restored.join("auditline.db")).unwrap();
    std::fs::copy(dir.join("seal-key.pem"), restored.join("seal-key.pem")).unwrap();
    let r = sealing(&restored, 0).await;
    let listed = Local::ids_of(&r.http_url(), &key).await.len();
    assert!((21..=listed_before).contains(&listed), "a snapshot from the middle of the writes: {listed}");
    let said = fetch_and_verify(&r, &key, &[]);
    let expected = format!("4/4 checkpoints valid, {listed}/{listed} entries valid, {} not sealed yet", listed - 20);
    assert!(said.contains(&expected), "{said}");
    r.shutdown().await;
}

/// After a restart the seal chain goes on from its last checkpoint (no second genesis under the
/// same key), and `auditline verify --head <head from before the restart>` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_chain_continues_and_verifies_from_the_head_seen_before() {
    let dir = fresh_dir("local-chain");
    four_closed_hours(&dir).await;

    // First run: with an hour's grace, the three oldest hours are sealed; the last one is not yet.
    let first = sealing(&dir, 3600).await;
    let key = first.credentials.api_key.expose().to_owned();
    wait_for_checkpoints(&first, &key, 3).await;
    let said = fetch_and_verify(&first, &key, &[]);
    assert!(said.contains("3/3 checkpoints valid"), "{said}");
    let head = said.lines().find_map(|l| l.strip_prefix("head: ")).expect("the head is printed");
    let head = head.split_whitespace().next().unwrap().to_owned();
    first.shutdown().await;

    // Second run, with no grace: the fourth hour is sealed onto the same chain.
    let second = sealing(&dir, 0).await;
    assert_eq!(second.credentials.api_key.expose(), key, "the development key survives");
    wait_for_checkpoints(&second, &key, 4).await;
    let said = fetch_and_verify(&second, &key, &["--head", &head]);
    assert!(said.contains("4/4 checkpoints valid, 20/20 entries valid"), "{said}");
    assert!(said.contains("1 checkpoint(s) added since the head given"), "{said}");
    second.shutdown().await;
}

/// Entries stored while nothing routed them (as when the gateway dies between a write and its
/// routing): the next start routes them from the position the file keeps, and the stream gets
/// every entry — none lost, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_stored_while_nothing_routed_them_reach_the_log_stream_after_a_restart() {
    use auditline_tests::receiver::Receiver;
    let dir = fresh_dir("local-routing");
    let receiver = Receiver::start().await;
    let first = Local::start(&dir, None);
    let token = first.token.clone().expect("the development token");
    let created = http(
        "POST",
        &format!("{}/audit/streams", first.url),
        &[("authorization", &format!("Bearer {token}"))],
        Some(&json!({"name": "SIEM", "target": {"type": "webhook", "url": receiver.url()}})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let mut written = HashSet::new();
    for i in 0..2 {
        let reply = first.post(&entry(i)).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        written.insert(reply.body["id"].as_str().unwrap().to_owned());
    }
    first.stop();

    // Written to the file with no gateway running: stored, never routed.
    {
        let store = Arc::new(SqliteStore::open(&dir.join("auditline.db")).unwrap());
        let logger = AuditLogger::new(store.clone(), AuditSettings::default());
        for i in 0..5 {
            let request = new_entry(
                &tenant(DEV_TENANT),
                AuditAction::Update,
                EntityType::File,
                &format!("offline-{i}"),
                None,
                None,
            );
            let Ok(LogOutcome::Stored(e)) = logger.log(request).await else { panic!("stored") };
            written.insert(e.id.to_string());
        }
        store.close();
    }

    let second = Local::start(&dir, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    let delivered = loop {
        let mut ids: Vec<String> = Vec::new();
        for delivery in receiver.received() {
            for item in delivery.items() {
                if item["entity_type"] == "FILE" {
                    ids.push(item["id"].as_str().unwrap().to_owned());
                }
            }
        }
        if ids.iter().cloned().collect::<HashSet<_>>() == written || Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let distinct: HashSet<String> = delivered.iter().cloned().collect();
    assert_eq!(distinct, written, "every entry stored reaches the stream");
    assert_eq!(delivered.len(), written.len(), "and none twice (the receiver answered every delivery)");
    second.stop();
}
