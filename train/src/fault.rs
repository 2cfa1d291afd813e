//! Fault injection for the crash tests: `TRAIN_FAULT=POINT@EPOCH` makes
//! the process die at a named point of that epoch's checkpoint, the way a
//! `kill -9` would (no destructor, no cleanup). Unset, a point costs one
//! string comparison per epoch. `disk-full@EPOCH` and `libtorch@EPOCH`
//! make a write or a libtorch call fail instead, for the exit-code tests;
//! `int8-narrow-ranges` breaks int8 calibration, for the gate's test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The points: between the checkpoint's temporary file and its rename,
/// between the checkpoint and the best epoch's weights, between those and
/// `history.csv`, after each file a fresh start removes
/// (`force-clearing@1`: after the first), and between the new run's
/// `config.json` and its first checkpoint (`config-written@1`).
pub const POINTS: [&str; 5] = [
    "checkpoint-before-rename",
    "checkpoint-before-best",
    "checkpoint-before-history",
    "force-clearing",
    "config-written",
];

/// `TRAIN_FAULT`'s value, read once.
fn fault() -> Option<&'static str> {
    static FAULT: OnceLock<Option<String>> = OnceLock::new();
    FAULT.get_or_init(|| std::env::var("TRAIN_FAULT").ok()).as_deref()
}

/// Whether `TRAIN_FAULT` is exactly `name` (a fault without an epoch).
pub fn active(name: &str) -> bool {
    fault() == Some(name)
}

/// `TRAIN_FAULT=disk-full@EPOCH`: that epoch's checkpoint write fails as on
/// a full disk (ENOSPC), after its temporary file was created.
pub fn disk_full(epoch: usize) -> std::io::Result<()> {
    match fault() == Some(format!("disk-full@{epoch}").as_str()) {
        true => Err(std::io::Error::from_raw_os_error(28)),
        false => Ok(()),
    }
}

/// `TRAIN_FAULT=disk-full@NAME`: writing the run's file NAME (`config.json`,
/// `history.csv`) fails as on a full disk, before anything is written.
pub fn disk_full_file(name: &str) -> std::io::Result<()> {
    match fault().and_then(|f| f.strip_prefix("disk-full@")) == Some(name) {
        true => Err(std::io::Error::from_raw_os_error(28)),
        false => Ok(()),
    }
}

/// `TRAIN_FAULT=libtorch@EPOCH`: the first step of that epoch asks libtorch
/// for 128 TiB, which it refuses as it refuses a CUDA allocation when the
/// GPU is full: the same error path as an out-of-memory.
pub fn libtorch_failure(epoch: usize, batch: usize) {
    if batch == 0 && fault() == Some(format!("libtorch@{epoch}").as_str()) {
        let _ = tch::Tensor::zeros([1 << 45], (tch::Kind::Float, tch::Device::Cpu));
    }
}

/// `TRAIN_FAULT=libtorch-sync@EPOCH`: reading that epoch's sums back from
/// the device fails, as an asynchronous CUDA error surfaces at the next
/// read that waits for the device, outside the training step.
pub fn libtorch_sync_failure(epoch: usize) {
    if fault() == Some(format!("libtorch-sync@{epoch}").as_str()) {
        let _ = tch::Tensor::from_slice(&[1f32, 2.0]).double_value(&[]);
    }
}

/// Dies here if `TRAIN_FAULT` names this point and epoch (the `epoch`th
/// time a point without epochs is passed).
pub fn point(name: &str, epoch: usize) {
    static PASSES: AtomicUsize = AtomicUsize::new(0);
    let Some(fault) = fault() else { return };
    let Some(wanted) = fault.strip_prefix(name).and_then(|r| r.strip_prefix('@')) else { return };
    let epoch = if name == "force-clearing" { PASSES.fetch_add(1, Ordering::SeqCst) + 1 } else { epoch };
    if wanted == epoch.to_string() {
        eprintln!("fault injected: {name} in epoch {epoch}");
        std::process::abort();
    }
}
