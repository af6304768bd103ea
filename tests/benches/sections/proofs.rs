//! Proofs against whoever can write the tables: the offline verifier's throughput on one thread
//! (a whole hour of 100,000 entries; and the same hour partly past retention, checked through its
//! published leaves), and what a witness adds to a seal — seal-to-cosignature latency with one
//! witness on loopback, beside the same seals without one.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditline::integrity::signing::{LocalSigner, Signer, public_key_pem};
use auditline::seal::verify::{Bundle, MANIFEST_FORMAT, Manifest, PeriodLeaves, Verifier};
use auditline::seal::{SealSettings, SealStore, Sealer, period_leaves};
use auditline::store::{AuditStore, MemoryStore};
use auditline::witness::client::HttpWitness;
use auditline::{AuditLogger, AuditSettings};
use auditline_tests::{all_entries, stepping_clock, tenant};
use chrono::{DateTime, DurationRound, Utc};

use super::store::typical;

const ENTRIES: usize = 100_000;
/// Successive periods sealed with and without a witness.
const PERIODS: usize = 30;
const PER_PERIOD: usize = 100;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn median_and_p99(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort_unstable();
    (v[v.len() / 2], v[((v.len() - 1) as f64 * 0.99).round() as usize])
}

/// `count` typical entries of acme, `step_ms` apart from `start`, in a fresh store.
async fn store_with(start: DateTime<Utc>, count: usize, step_ms: i64) -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    let (clock, _) = stepping_clock(start, step_ms);
    let logger = AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock);
    for i in 0..count {
        logger.log(typical(i, "acme")).await.expect("log");
    }
    store
}

pub async fn run(out: &mut String) {
    let signer = Arc::new(LocalSigner::generate().unwrap());
    let acme = tenant("acme");
    let hour = (Utc::now() - chrono::Duration::hours(3)).duration_trunc(chrono::Duration::hours(1)).unwrap();
    let store = store_with(hour, ENTRIES, 3_600_000 / ENTRIES as i64).await;
    let settings = SealSettings { lookback_hours: 6, ..SealSettings::default() };
    Sealer::new(store.clone(), signer.clone(), settings).run(Utc::now()).await.expect("seal");
    let mut entries = all_entries(store.clone() as Arc<dyn AuditStore>, &acme).await;
    entries.sort_by_key(|e| e.id);
    let checkpoints = store.checkpoints(&acme, None, None, 10).await.unwrap();
    let manifest = Manifest {
        format: MANIFEST_FORMAT.to_owned(),
        tenant: "acme".into(),
        fetched_at: Utc::now(),
        seal: SealSettings::default(),
    };
    let whole = Bundle {
        entries: entries.clone(),
        checkpoints: checkpoints.clone(),
        periods: Vec::new(),
        manifest: Some(manifest.clone()),
        witnessed: Vec::new(),
    };
    // The same hour with its first half past retention, checked through the published leaves.
    let horizon = entries[ENTRIES / 2].timestamp;
    let leaves = period_leaves(store.as_ref(), &acme, &checkpoints[0]).await.unwrap().unwrap();
    let (ids, hashes) = leaves.into_iter().unzip();
    let thinned = Bundle {
        entries: entries[ENTRIES / 2..].to_vec(),
        checkpoints,
        periods: vec![PeriodLeaves { end: whole.checkpoints[0].body.end.clone(), ids, leaves: hashes }],
        manifest: Some(manifest),
        witnessed: Vec::new(),
    };
    let verifier = Verifier::new([signer.public_key_der()]).with_tenant("acme");
    writeln!(out, "### Offline verifier (`auditline verify`), one thread\n").unwrap();
    writeln!(out, "| bundle | time (median of 5) | entries/s |\n|---|---|---|").unwrap();
    for (what, bundle, verifier) in [
        ("an hour of 100,000 entries, 1 checkpoint", &whole, verifier.clone()),
        (
            "the same hour half past retention (50,000 entries, checked through its 100,000 leaves)",
            &thinned,
            verifier.clone().with_expired_before(horizon),
        ),
    ] {
        let mut runs = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            let summary = verifier.verify(bundle);
            runs.push(started.elapsed());
            assert!(summary.is_valid(), "{summary}: {:?}", summary.failures.first());
        }
        let (median, _) = median_and_p99(runs);
        let rate = bundle.entries.len() as f64 / median.as_secs_f64();
        writeln!(out, "| {what} | {} | {rate:.0} |", ms(median)).unwrap();
    }

    // Seal to cosignature: successive periods of one tenant, each sealed (and, with a witness,
    // submitted with its proof and cosigned) by `seal_tenant`, the seal's per-tenant step.
    let start =
        (Utc::now() - chrono::Duration::hours(PERIODS as i64 + 2)).duration_trunc(chrono::Duration::hours(1)).unwrap();
    let step = 3_600_000 / PER_PERIOD as i64;
    let dir = std::env::temp_dir().join(auditline_tests::unique_name("bench-witness"));
    std::fs::create_dir_all(&dir).unwrap();
    let pem = dir.join("log.pub.pem");
    std::fs::write(&pem, public_key_pem(signer.public_key_der())).unwrap();
    let witness = auditline_cli::witness::start(&auditline_cli::witness::WitnessArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        name: "witness.bench/w1".into(),
        key_file: dir.join("witness-key.pem"),
        state_dir: dir.join("state"),
        logs: vec![format!("auditline.local/*={}", pem.display())],
    })
    .await
    .expect("the witness starts");
    let client = Arc::new(HttpWitness::new(
        &format!("http://{}", witness.addr),
        auditline::integrity::note::CosignerKey::parse_vkey(&witness.vkey).unwrap(),
    ));
    let mut timings = Vec::new();
    for with_witness in [false, true] {
        let store = store_with(start, PERIODS * PER_PERIOD, step).await;
        let mut sealer = Sealer::new(store.clone(), signer.clone(), settings);
        if with_witness {
            sealer = sealer.with_witnesses(vec![client.clone()]);
        }
        let mut samples = Vec::new();
        for p in 1..=PERIODS as i64 {
            let now = start + chrono::Duration::hours(p) + chrono::Duration::minutes(3);
            let started = Instant::now();
            let report = sealer.seal_tenant(&acme, start, now).await.expect("sealed");
            samples.push(started.elapsed());
            assert_eq!(report.checkpoints, 1);
            assert_eq!(report.cosigned, usize::from(with_witness), "{report:?}");
        }
        timings.push(median_and_p99(samples));
    }
    witness.stop();
    let ((bare50, bare99), (witnessed50, witnessed99)) = (timings[0], timings[1]);
    writeln!(out, "\n### Seal to cosignature, one witness on loopback\n").unwrap();
    writeln!(
        out,
        "{PERIODS} successive periods of {PER_PERIOD} entries, each sealed by `seal_tenant` (close, read, build, sign, append) and, with the witness, submitted (`add-checkpoint` over HTTP, the chain proof checked, the state synced to disk) and its cosignature stored.\n"
    )
    .unwrap();
    writeln!(out, "| seal of one period | p50 | p99 |\n|---|---|---|").unwrap();
    writeln!(out, "| without a witness | {} | {} |", ms(bare50), ms(bare99)).unwrap();
    writeln!(out, "| with one witness (to the cosignature stored) | {} | {} |", ms(witnessed50), ms(witnessed99))
        .unwrap();
    writeln!(
        out,
        "| the witness's share | {} | {} |",
        ms(witnessed50.saturating_sub(bare50)),
        ms(witnessed99.saturating_sub(bare99))
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
