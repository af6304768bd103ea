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
    // SAM builds functions with the same build metadata once, into one shared artifact, and
    // points every function's CodeUri at it.
    let built = std::fs::read_to_string(root.join(".aws-sam/build/template.yaml")).unwrap();
    let mut dirs: Vec<_> =
        std::fs::read_dir(root.join(".aws-sam/build")).unwrap().flatten().map(|e| e.path()).collect();
    dirs.sort();
    let artifacts: Vec<_> = dirs.into_iter().filter(|d| d.join("bootstrap").exists()).collect();
    assert_eq!(artifacts.len(), 1, "one artifact for every function: {artifacts:?}");
    let name = artifacts[0].file_name().unwrap().to_string_lossy().into_owned();
    let functions = built.matches(&format!("CodeUri: {name}")).count();
    let bootstrap = artifacts[0].join("bootstrap");
    let size = std::fs::metadata(&bootstrap).unwrap().len() as f64 / (1024.0 * 1024.0);
    let arch = if elf_machine(&bootstrap) == 183 { "arm64" } else { "not arm64" };
    writeln!(out, "One artifact, `{name}/bootstrap` ({size:.2} MB, {arch}), for {functions} functions.").unwrap();
}
