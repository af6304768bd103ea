//! A CPU quota standing for a Lambda size: a cgroup (v1 `cpu` controller) whose processes get
//! `percent` of one CPU per 100 ms period. Lambda gives 128 MB about 7 % of a vCPU, 256 MB about
//! 14 %; 1,769 MB a whole one. Needs root (or a delegated group); the cold-path bench fails loudly
//! without it rather than measuring at full speed and calling it 128 MB.

use std::path::PathBuf;

const ROOT: &str = "/sys/fs/cgroup/cpu";
const PERIOD_US: u64 = 100_000;

pub struct CpuQuota {
    pub percent: u64,
    dir: PathBuf,
}

impl CpuQuota {
    pub fn create(percent: u64) -> Result<CpuQuota, String> {
        let dir = PathBuf::from(ROOT).join(format!("auditline-cold-{percent}-{}", std::process::id()));
        let hint = |e: std::io::Error| {
            format!(
                "{}: {e} (the cold-path bench needs the cgroup v1 cpu controller, writable: run as root)",
                dir.display()
            )
        };
        std::fs::create_dir_all(&dir).map_err(hint)?;
        std::fs::write(dir.join("cpu.cfs_period_us"), PERIOD_US.to_string()).map_err(hint)?;
        let quota = if percent >= 100 { -1 } else { (PERIOD_US * percent / 100) as i64 };
        std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string()).map_err(hint)?;
        Ok(CpuQuota { percent, dir })
    }

    /// Moves a process (all its threads) into the group.
    pub fn enter(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("process {pid} into {}: {e}", self.dir.display()));
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        // Only an empty group can go: its processes are gone by now (killed with their Function).
        let _ = std::fs::remove_dir(&self.dir);
    }
}
