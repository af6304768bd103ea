//! Witnesses (issue 23): `auditline witness` cosigns a tenant's chain as it grows and refuses what
//! would show two histories (forks, rollbacks, strangers, bad signatures), durably; the seal has
//! each new head cosigned and keeps the cosignatures, and a witness that is down never blocks it;
//! verifiers count only the witnesses they pinned; a cosignature checks with an independent
//! implementation (Python's `cryptography`), over the exact C2SP message.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditline::apigw::http::Route;
use auditline::domain::{AuditAction, EntityType, TenantId};
use auditline::idempotency::MemoryIdempotency;
use auditline::integrity::Hash;
use auditline::integrity::checkpoint::{Checkpoint, encode_signature};
use auditline::integrity::note::{Cosigner, CosignerKey, Note, SignatureLine};
use auditline::integrity::signing::{LocalSigner, Signer, public_key_pem};
use auditline::seal::verify::{Bundle, Verifier};
use auditline::seal::{SealSettings, SealStore, Sealer, WitnessClient};
use auditline::store::MemoryStore;
use auditline::witness::client::HttpWitness;
use auditline::witness::{TrustedLog, Witness, request_body};
use auditline::{AuditLogger, AuditSettings, LogOutcome};
use auditline_cli::witness::{WitnessArgs, start};
use auditline_tests::http::{api_with_seal, call, sample};
use auditline_tests::{all_entries, new_entry, stepping_clock, tenant, unique_name};
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::json;

fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique_name(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Entries of `tenant` every `step_minutes` from `start` to an hour ago, in a fresh store.
async fn entries(tenant: &TenantId, start: DateTime<Utc>, step_minutes: i64) -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    let (clock, _) = stepping_clock(start + Duration::seconds(10), step_minutes * 60_000);
    let logger = AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock);
    let count = (Utc::now() - Duration::hours(1) - start).num_minutes() / step_minutes;
    for i in 0..count {
        let request = new_entry(tenant, AuditAction::Update, EntityType::File, &format!("f-{i}"), None, None);
        let Ok(LogOutcome::Stored(_)) = logger.log(request).await else { panic!("stored") };
    }
    store
}

fn hours_ago(h: i64) -> DateTime<Utc> {
    (Utc::now() - Duration::hours(h)).duration_trunc(Duration::hours(1)).unwrap()
}

fn sealer(store: &Arc<MemoryStore>, key: &Arc<LocalSigner>, minutes: u32) -> Sealer {
    let settings = SealSettings { period_minutes: minutes, lookback_hours: 12, ..SealSettings::default() };
    Sealer::new(store.clone(), key.clone(), settings)
}

async fn chain(store: &MemoryStore, tenant: &TenantId) -> Vec<Checkpoint> {
    store.checkpoints(tenant, None, None, 10_000).await.unwrap()
}

fn text_hash(c: &Checkpoint) -> Hash {
    Hash::of(&[c.body.note_text().as_bytes()])
}

fn add(witness: &Witness, old: u64, proof: &[Hash], c: &Checkpoint) -> auditline::witness::Answer {
    witness.add_checkpoint(request_body(old, proof, &c.note().unwrap()).as_bytes(), 1_800_000_000)
}

fn resign(c: &mut Checkpoint, key: &dyn Signer) {
    let der = futures::executor::block_on(key.sign(&c.body.signed_bytes())).unwrap();
    c.signature = encode_signature(&der);
}

#[tokio::test]
async fn the_witness_cosigns_growth_and_refuses_forks_rollbacks_strangers_and_bad_signatures() {
    let acme = tenant("acme");
    let store = entries(&acme, hours_ago(5), 20).await;
    let key = Arc::new(LocalSigner::generate().unwrap());
    sealer(&store, &key, 60).run(Utc::now()).await.unwrap();
    let c = chain(&store, &acme).await;
    assert!(c.len() >= 4, "{}", c.len());
    let dir = temp_dir("witness-state");
    let cosigner = Cosigner::generate("witness.test/w1").unwrap();
    let vkey = cosigner.public_key();
    let pkcs8 = cosigner.pkcs8().to_vec();
    let logs = vec![TrustedLog { origin: "auditline.local/*".into(), public_key_der: key.public_key_der().to_vec() }];
    let witness = Witness::open(cosigner, logs.clone(), &dir).unwrap();

    // First sight of the log (old 0, no proof), mid-chain: cosigned.
    let answer = add(&witness, 0, &[], &c[1]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let line = SignatureLine::parse(answer.body.trim_end()).unwrap();
    assert_eq!(vkey.verify(&c[1].body.note_text(), &line), Some(1_800_000_000));
    // Grown by two: the proof is the note-text hash of the one in between.
    let answer = add(&witness, c[1].body.total, &[text_hash(&c[2])], &c[3]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    // A retry of the same checkpoint is cosigned again; a wrong or missing proof is not.
    assert_eq!(add(&witness, c[3].body.total, &[], &c[3]).status, 200);
    // What it last cosigned, freshly cosigned (what `fetch --witness` records); nothing for a log
    // it knows but has not seen, 404 for one it does not know.
    let latest = witness.latest("auditline.local/acme", 1_900_000_000);
    assert_eq!(latest.status, 200, "{}", latest.body);
    let note = Note::parse(&latest.body).unwrap();
    assert_eq!(note.text, c[3].body.note_text());
    assert_eq!(vkey.verify(&note.text, &note.signatures[0]), Some(1_900_000_000));
    assert_eq!(witness.latest("auditline.local/globex", 1).status, 404);
    assert_eq!(witness.latest("elsewhere.example/acme", 1).status, 404);

    // Rollback: an older checkpoint, named with the size the witness holds or with its own.
    assert_eq!(add(&witness, c[3].body.total, &[], &c[2]).status, 400, "old size above the checkpoint's");
    let conflict = add(&witness, c[1].body.total, &[], &c[2]);
    assert_eq!(
        (conflict.status, conflict.content_type, conflict.body.clone()),
        (409, "text/x.tlog.size", format!("{}\n", c[3].body.total))
    );
    // Fork: another checkpoint of the same size, properly signed by the log's key.
    let mut rival = c[3].clone();
    rival.body.root = Hash::of(&[b"another history"]);
    resign(&mut rival, key.as_ref());
    let fork = add(&witness, c[3].body.total, &[], &rival);
    assert_eq!(fork.status, 422, "{}", fork.body);
    assert!(fork.body.contains("fork"), "{}", fork.body);
    // A later checkpoint that does not extend the witness's (it branches off c[2]).
    let mut branch = c[3].clone();
    branch.body.total += 5;
    branch.body.size += 5;
    branch.body.previous = c[2].link();
    resign(&mut branch, key.as_ref());
    assert_eq!(add(&witness, c[3].body.total, &[], &branch).status, 422);
    // An unknown origin; a checkpoint of a known origin signed by another key, or by none.
    let mut stranger = c[3].clone();
    stranger.body.origin = "elsewhere.example/acme".into();
    resign(&mut stranger, key.as_ref());
    assert_eq!(add(&witness, 0, &[], &stranger).status, 404);
    let impostor = LocalSigner::generate().unwrap();
    let mut forged = c[3].clone();
    forged.body.total += 1;
    resign(&mut forged, &impostor);
    assert_eq!(add(&witness, c[3].body.total, &[], &forged).status, 403);
    let unsigned =
        format!("old {}\n\n{}\n\u{2014} witness.test/x AAAAAAAAAA==\n", c[3].body.total, c[3].body.note_text());
    assert_eq!(witness.add_checkpoint(unsigned.as_bytes(), 1).status, 403);
    // Malformed requests: named, and nothing stored.
    for bad in ["hello", "old 01\n\nx", "old x\n\n", &format!("old 0\n{}\n", "AAAA\n".repeat(70))] {
        assert_eq!(witness.add_checkpoint(bad.as_bytes(), 1).status, 400, "{bad:?}");
    }
    let too_many = request_body(c[1].body.total, &vec![Hash::default(); 64], &c[3].note().unwrap());
    assert_eq!(witness.add_checkpoint(too_many.as_bytes(), 1).status, 400, "more than 63 proof lines");

    // Durable: a second witness on the directory is refused while the first runs; reopened, the
    // state is the last cosigned checkpoint.
    let again = Cosigner::from_pkcs8("witness.test/w1", &pkcs8).unwrap();
    let Err(refused) = Witness::open(again, logs.clone(), &dir) else { panic!("a second witness on one directory") };
    assert!(refused.contains("in use by another witness"), "{refused}");
    drop(witness);
    let reopened = Witness::open(Cosigner::from_pkcs8("witness.test/w1", &pkcs8).unwrap(), logs, &dir).unwrap();
    let conflict = add(&reopened, 0, &[], &c[3]);
    assert_eq!((conflict.status, conflict.body), (409, format!("{}\n", c[3].body.total)));
    assert_eq!(add(&reopened, c[3].body.total, &[], &rival).status, 422, "still refuses the fork");
}

/// A witness service on a free loopback port, trusting `key` for every tenant of the local origin.
async fn witness_service(
    dir: &Path,
    key: &LocalSigner,
    listen: &str,
) -> (auditline_cli::witness::Running, CosignerKey) {
    let pem = dir.join("log.pub.pem");
    std::fs::write(&pem, public_key_pem(key.public_key_der())).unwrap();
    let args = WitnessArgs {
        listen: listen.parse().unwrap(),
        name: "witness.test/w1".into(),
        key_file: dir.join("witness-key.pem"),
        state_dir: dir.join("state"),
        logs: vec![format!("auditline.local/*={}", pem.display())],
    };
    let running = start(&args).await.expect("the witness starts");
    let vkey = CosignerKey::parse_vkey(&running.vkey).unwrap();
    (running, vkey)
}

#[tokio::test]
async fn the_seal_has_each_new_head_cosigned_and_verifiers_count_only_pinned_witnesses() {
    let acme = tenant("acme");
    // Minute periods: seventy-odd checkpoints, so a witness that missed most of them is caught
    // up in steps of 63.
    let start = (Utc::now() - Duration::minutes(135)).duration_trunc(Duration::minutes(1)).unwrap();
    let store = entries(&acme, start, 1).await;
    let key = Arc::new(LocalSigner::generate().unwrap());
    let dir = temp_dir("witness-http");
    let (running, vkey) = witness_service(&dir, &key, "127.0.0.1:0").await;
    let url = format!("http://{}", running.addr);
    let witness: Arc<dyn WitnessClient> = Arc::new(HttpWitness::new(&url, vkey.clone()));

    // Sealed with the witness up to a few minutes in: the head carries its cosignature.
    let with_witness = sealer(&store, &key, 1).with_witnesses(vec![witness.clone()]);
    let report = with_witness.run(start + Duration::minutes(5)).await.unwrap();
    let status = store.witness_status().await.unwrap();
    assert_eq!((report.cosigned, report.witness_failures), (1, 0), "{report:?} {status:?}");
    let head = store.latest_checkpoints(&acme, 1).await.unwrap().remove(0);
    assert_eq!(head.cosignatures.len(), 1);
    // Then sealed on without it (a seal not yet configured for it), then with it again: the
    // witness is more than 63 checkpoints behind, answers 409, and is stepped through.
    sealer(&store, &key, 1).run(Utc::now()).await.unwrap();
    let behind = chain(&store, &acme).await;
    assert!(behind.len() > 70, "{}", behind.len());
    let report = with_witness.run(Utc::now()).await.unwrap();
    assert_eq!((report.checkpoints, report.cosigned, report.witness_failures), (0, 1, 0), "{report:?}");
    let head = store.latest_checkpoints(&acme, 1).await.unwrap().remove(0);
    assert_eq!(head.link(), behind.last().unwrap().link());
    let note = Note::parse(&head.note().unwrap()).unwrap();
    assert_eq!(note.signatures.len(), 2, "the log's signature and the witness's cosignature");

    // Verifiers: the pinned witness counts; another witness's key does not; two required of one.
    let bundle = Bundle {
        entries: all_entries(store.clone(), &acme).await,
        checkpoints: chain(&store, &acme).await,
        ..Bundle::default()
    };
    let verifier = Verifier::new([key.public_key_der()]);
    let summary = verifier.clone().with_witnesses(vec![vkey.clone()], 1).verify(&bundle);
    assert!(summary.is_valid(), "{summary}: {:?}", summary.failures);
    assert!(summary.to_string().ends_with(", head cosigned by 1 witness(es)"), "{summary}");
    let other = Cosigner::generate("witness.test/w1").unwrap().public_key();
    let summary = verifier.clone().with_witnesses(vec![other.clone()], 1).verify(&bundle);
    assert!(summary.failures.iter().any(|f| f.to_string().contains("carries 0 valid cosignature(s)")), "{summary}");
    let summary = verifier.clone().with_witnesses(vec![vkey.clone(), other], 2).verify(&bundle);
    assert!(summary.failures.iter().any(|f| f.to_string().contains("carries 1 valid cosignature(s)")), "{summary}");
    // A cosignature copied onto another checkpoint does not verify there.
    let mut moved = bundle.clone();
    let last = moved.checkpoints.len() - 1;
    let line = moved.checkpoints[last].cosignatures.pop().unwrap();
    moved.checkpoints[last - 1].cosignatures.push(line.clone());
    moved.checkpoints.pop();
    moved
        .entries
        .retain(|e| e.timestamp < DateTime::parse_from_rfc3339(&bundle.checkpoints[last - 1].body.end).unwrap());
    let summary = verifier.with_witnesses(vec![vkey], 1).verify(&moved);
    assert!(summary.failures.iter().any(|f| f.to_string().contains("carries 0 valid")), "{summary}");
    running.stop();
}

#[tokio::test]
async fn a_witness_that_is_down_never_blocks_sealing_and_shows_failing_in_health() {
    let acme = tenant("acme");
    let store = entries(&acme, hours_ago(4), 30).await;
    let key = Arc::new(LocalSigner::generate().unwrap());
    let dir = temp_dir("witness-down");
    // A witness that was up, then stopped: its port refuses connections.
    let (running, vkey) = witness_service(&dir, &key, "127.0.0.1:0").await;
    let addr = running.addr;
    running.stop();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let url = format!("http://{addr}");
    let sealer = sealer(&store, &key, 60).with_witnesses(vec![Arc::new(HttpWitness::new(&url, vkey.clone()))]);
    let report = sealer.run(Utc::now()).await.expect("sealing goes on without the witness");
    assert!(report.checkpoints >= 3, "sealed: {report:?}");
    assert_eq!((report.cosigned, report.witness_failures), (0, 1), "{report:?}");

    // The health check (for a caller with audit:read) says so; the service is not degraded.
    let mut api = api_with_seal(store.clone(), store.clone(), Arc::new(MemoryIdempotency::new()));
    api.witnesses = vec![(url.clone(), vkey.clone())];
    let health = sample("http-health.json", |e| {
        e["requestContext"]["authorizer"] =
            json!({"lambda": {"tenant_id": "acme", "user_id": "ops", "scopes": "audit:read", "auth_method": "jwt"}});
    });
    let reply = call(&api, Route::Health, &health).await;
    assert_eq!((reply.status, reply.body["status"].as_str()), (200, Some("healthy")), "{}", reply.body);
    assert_eq!(reply.body["witnesses"][0]["witness"], json!(url));
    assert_eq!(reply.body["witnesses"][0]["state"], json!("failing"), "{}", reply.body);

    // Back up on the same address: the next run has the head cosigned, and health says ok.
    let (running, _) = witness_service(&dir, &key, &addr.to_string()).await;
    let report = sealer.run(Utc::now()).await.unwrap();
    assert_eq!((report.checkpoints, report.cosigned, report.witness_failures), (0, 1, 0), "{report:?}");
    let reply = call(&api, Route::Health, &health).await;
    assert_eq!(reply.body["witnesses"][0]["state"], json!("ok"), "{}", reply.body);
    // A public caller learns nothing of the witnesses.
    let public = call(&api, Route::Health, &sample("http-health.json", |_| {})).await;
    assert!(public.body.get("witnesses").is_none(), "{}", public.body);
    running.stop();
}

/// Python with the `cryptography` package (the test script exports it; moto depends on it).
fn python() -> String {
    std::env::var("AUDITLINE_TEST_PYTHON")
        .expect("AUDITLINE_TEST_PYTHON is not set: run the tests with ./scripts/test.sh")
}

/// An independent check of a cosignature (Ed25519, c2sp.org/tlog-cosignature) and of the log's
/// note signature (ECDSA P-256, type 0x02), from the C2SP texts alone.
const PYTHON_CHECK: &str = r#"
import base64, hashlib, struct, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
vkey, note, log_pem = open(sys.argv[1]).read().strip(), open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read()
text, sigs = note.rsplit(b"\n\n", 1)
text += b"\n"
lines = [l for l in sigs.decode().split("\n") if l]
name, key_id, material = vkey.split("+", 2)
material = base64.b64decode(material)
assert material[0] == 4, "type 0x04"
pk = material[1:]
assert hashlib.sha256(name.encode() + b"\n\x04" + pk).digest()[:4].hex() == key_id, "cosigner key id"
log_key = serialization.load_pem_public_key(log_pem)
spki = log_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
origin = text.split(b"\n")[0].decode()
checked = set()
for line in lines:
    assert line.startswith("\u2014 ")
    line_name, b64 = line[2:].split(" ")
    raw = base64.b64decode(b64)
    if line_name == name and raw[:4].hex() == key_id:
        (ts,) = struct.unpack(">Q", raw[4:12])
        message = b"cosignature/v1\ntime %d\n" % ts + text
        Ed25519PublicKey.from_public_bytes(pk).verify(raw[12:], message)
        checked.add("cosignature")
    elif line_name == origin and raw[:4] == hashlib.sha256(spki).digest()[:4]:
        log_key.verify(raw[4:], text, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(raw[4:])
        assert s <= 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551 // 2, "low s"
        checked.add("log")
assert checked == {"cosignature", "log"}, checked
print("ok")
"#;

#[tokio::test]
async fn a_cosignature_verifies_with_pythons_cryptography() {
    let acme = tenant("acme");
    let store = entries(&acme, hours_ago(3), 30).await;
    let key = Arc::new(LocalSigner::generate().unwrap());
    let dir = temp_dir("witness-python");
    let (running, vkey) = witness_service(&dir, &key, "127.0.0.1:0").await;
    let url = format!("http://{}", running.addr);
    sealer(&store, &key, 60)
        .with_witnesses(vec![Arc::new(HttpWitness::new(&url, vkey.clone()))])
        .run(Utc::now())
        .await
        .unwrap();
    running.stop();
    let head = store.latest_checkpoints(&acme, 1).await.unwrap().remove(0);
    let note = head.note().unwrap();
    let (vkey_file, note_file, pem_file, script) =
        (dir.join("vkey"), dir.join("note"), dir.join("log.pub.pem"), dir.join("check.py"));
    std::fs::write(&vkey_file, vkey.vkey()).unwrap();
    std::fs::write(&note_file, &note).unwrap();
    std::fs::write(&script, PYTHON_CHECK).unwrap();
    let run = |note_path: &Path| {
        std::process::Command::new(python())
            .args([script.as_path(), vkey_file.as_path(), note_path, pem_file.as_path()])
            .output()
            .expect("python runs")
    };
    let out = run(&note_file);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim() == "ok", "{said}");
    // The same check fails on a note changed by one character: it really checks.
    let changed = dir.join("changed");
    std::fs::write(&changed, note.replacen("period ", "period  ", 1)).unwrap();
    assert!(!run(&changed).status.success(), "a changed note must not verify");
}
