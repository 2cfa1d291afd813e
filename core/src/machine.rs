//! What the machine offers now: memory a process can still get, and the
//! cores to run on — read through `sysinfo`, not parsed by hand.

use sysinfo::{MemoryRefreshKind, RefreshKind, System};

/// Memory the system can give now (Linux's `MemAvailable`), in bytes.
pub fn available_memory() -> Option<u64> {
    let s = System::new_with_specifics(RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()));
    Some(s.available_memory()).filter(|&b| b > 0)
}

/// Physical cores this process may use: the machine's physical cores,
/// but no more than the CPUs it is allowed to run on; at least 1.
pub fn physical_cores() -> usize {
    let allowed = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    System::physical_core_count().map_or(allowed, |p| p.min(allowed)).max(1)
}

/// The machine's host name, as files that name their writer's host show it
/// (TensorBoard's event files): `localhost` when the system has none, and
/// with `/` (not allowed in a file name) as `_`.
pub fn host_name() -> String {
    System::host_name().filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".into()).replace('/', "_")
}

/// How busy the machine's CPUs are with other processes' work: the total
/// CPU use less this process's own, in cores, between two reads (sysinfo's
/// differences of `/proc/stat` and `/proc/self/stat`).
#[derive(Debug)]
pub struct CoreWatch {
    sys: System,
    pid: sysinfo::Pid,
}

impl CoreWatch {
    /// Starts the count; the first [`CoreWatch::others_busy`] covers the
    /// time since.
    pub fn new() -> Option<CoreWatch> {
        let pid = sysinfo::get_current_pid().ok()?;
        let mut watch = CoreWatch { sys: System::new(), pid };
        watch.others_busy();
        Some(watch)
    }

    /// Cores other processes kept busy since the last read (0 to the
    /// machine's CPUs).
    pub fn others_busy(&mut self) -> f64 {
        use sysinfo::{ProcessRefreshKind, ProcessesToUpdate};
        self.sys.refresh_cpu_usage();
        self.sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            false,
            ProcessRefreshKind::nothing().with_cpu(),
        );
        let cpus = self.sys.cpus().len() as f64;
        let total = self.sys.global_cpu_usage() as f64 / 100.0 * cpus;
        let ours = self.sys.process(self.pid).map_or(0.0, |p| p.cpu_usage() as f64 / 100.0);
        (total - ours).clamp(0.0, cpus)
    }
}
