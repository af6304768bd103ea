//! The benchmarks behind BENCHMARKS.md. Run with `./scripts/bench.sh` (it starts the local
//! DynamoDB API); each section replaces its own block of BENCHMARKS.md.

mod sections;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

pub const SAMPLES: usize = 2_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// Runs `call` SAMPLES times; returns the p50 and p99 of its duration.
pub async fn time_calls<F, Fut>(mut call: F) -> (Duration, Duration)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let started = Instant::now();
        call(i).await;
        samples.push(started.elapsed());
    }
    samples.sort_unstable();
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

/// Replaces the block between `<!-- name:begin -->` and `<!-- name:end -->` in BENCHMARKS.md.
fn splice(name: &str, section: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../BENCHMARKS.md");
    let (begin, end) = (format!("<!-- {name}:begin -->"), format!("<!-- {name}:end -->"));
    let text = std::fs::read_to_string(path).expect("BENCHMARKS.md exists");
    let (Some(b), Some(e)) = (text.find(&begin), text.find(&end)) else {
        panic!("BENCHMARKS.md lacks the {begin} … {end} markers");
    };
    let updated = format!("{}{begin}\n{section}{}", &text[..b], &text[e..]);
    std::fs::write(path, updated).expect("write BENCHMARKS.md");
}

fn preamble() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = chrono::Utc::now().format("%Y-%m-%d");
    format!("Measured {date} on {cores} cores by `./scripts/bench.sh` (release build).\n\n")
}

#[tokio::main]
async fn main() {
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wanted = |name: &str| {
        if only.is_empty() { !sections::OPT_IN.contains(&name) } else { only.iter().any(|o| o == name) }
    };
    for (name, run) in sections::ALL {
        if !wanted(name) {
            continue;
        }
        let mut section = preamble();
        run(&mut section).await;
        writeln!(section).unwrap();
        println!("## {name}\n\n{section}");
        splice(name, &section);
    }
}
