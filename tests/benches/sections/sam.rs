//! `sam build`: every function built by cargo-lambda for arm64, as a deployment builds them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

/// The ELF machine of a binary: 183 is AArch64.
fn elf_machine(path: &Path) -> u16 {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes.get(18..20).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
}

/// Runs `sam build` as a deployment does; its wall time in minutes.
fn sam_build(root: &Path) -> f64 {
    let tools = root.join(".tools/venv/bin");
    let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap_or_default());
    let started = Instant::now();
    let status = Command::new(tools.join("sam"))
        .args(["build", "--beta-features"])
        .current_dir(root)
        .env("PATH", path)
        .env("SAM_CLI_TELEMETRY", "0")
        .status()
        .expect("sam runs");
    assert!(status.success(), "sam build failed");
    started.elapsed().as_secs_f64() / 60.0
}

/// A line added to a library source file for the rebuild, taken out again however the bench ends.
struct Edit {
    path: PathBuf,
    original: String,
}

impl Edit {
    fn append(path: PathBuf, line: &str) -> Edit {
        let original = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{original}{line}\n")).unwrap();
        Edit { path, original }
    }
}

impl Drop for Edit {
    fn drop(&mut self) {
        std::fs::write(&self.path, &self.original).unwrap();
    }
}

pub async fn run(out: &mut String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cold = !root.join("target/aarch64-unknown-linux-gnu").exists();
    let first = sam_build(&root);
    let state =
        if cold { "from an empty aarch64 target directory" } else { "with the aarch64 dependencies already built" };
    writeln!(out, "`sam build` succeeded in {first:.1} min (cargo-lambda, release profile, arm64), {state}.\n")
        .unwrap();

    // The deploy loop: a change to the library, then `sam build` again — one compile of the
    // library and one link, and the artifact must be the new one (not SAM's cached copy).
    let changed = SystemTime::now();
    let rebuild = {
        let _edit = Edit::append(root.join("shared/src/lib.rs"), "// changed by the sam bench");
        sam_build(&root)
    };
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
    writeln!(out, "One artifact, `{name}/bootstrap` ({size:.2} MB, {arch}), for {functions} functions.\n").unwrap();
    let built_at = std::fs::metadata(&bootstrap).unwrap().modified().unwrap();
    assert!(built_at > changed, "the rebuild after a change to shared/ produced a new artifact");
    writeln!(out, "After a change to the library (`shared/`), `sam build` again: {rebuild:.1} min.").unwrap();
}
