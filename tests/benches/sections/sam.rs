//! `sam build`: every function built by cargo-lambda for arm64, as a deployment builds them.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// The ELF machine of a binary: 183 is AArch64.
fn elf_machine(path: &Path) -> u16 {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes.get(18..20).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
}

pub async fn run(out: &mut String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tools = root.join(".tools/venv/bin");
    let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap_or_default());
    let started = Instant::now();
    let status = Command::new(tools.join("sam"))
        .args(["build", "--beta-features"])
        .current_dir(&root)
        .env("PATH", path)
        .env("SAM_CLI_TELEMETRY", "0")
        .status()
        .expect("sam runs");
    let took = started.elapsed();
    assert!(status.success(), "sam build failed");
    writeln!(
        out,
        "`sam build` succeeded in {:.1} min (cargo-lambda, release profile, arm64).\n",
        took.as_secs_f64() / 60.0
    )
    .unwrap();
    let mut dirs: Vec<_> =
        std::fs::read_dir(root.join(".aws-sam/build")).unwrap().flatten().map(|e| e.path()).collect();
    dirs.sort();
    let artifacts: Vec<_> = dirs.into_iter().map(|d| d.join("bootstrap")).filter(|b| b.exists()).collect();
    let first = std::fs::read(&artifacts[0]).unwrap();
    let identical = artifacts.iter().all(|b| std::fs::read(b).unwrap() == first);
    assert!(identical, "every function's artifact is the one binary");
    let arch = if elf_machine(&artifacts[0]) == 183 { "arm64" } else { "not arm64" };
    writeln!(
        out,
        "{} functions, each with the same `bootstrap` ({:.2} MB, {arch}): the one binary, built once.",
        artifacts.len(),
        first.len() as f64 / (1024.0 * 1024.0)
    )
    .unwrap();
}
