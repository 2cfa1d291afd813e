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
