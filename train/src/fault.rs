//! Fault injection for the crash tests: `TRAIN_FAULT=POINT@EPOCH` makes
//! the process die at a named point of that epoch's checkpoint, the way a
//! `kill -9` would (no destructor, no cleanup). Unset, a point costs one
//! string comparison per epoch.

use std::sync::OnceLock;

/// The points: between the checkpoint's temporary file and its rename, and
/// between the checkpoint and `history.csv`.
pub const POINTS: [&str; 2] = ["checkpoint-before-rename", "checkpoint-before-history"];

/// Dies here if `TRAIN_FAULT` names this point and epoch.
pub fn point(name: &str, epoch: usize) {
    static FAULT: OnceLock<Option<String>> = OnceLock::new();
    let fault = FAULT.get_or_init(|| std::env::var("TRAIN_FAULT").ok());
    if fault.as_deref() == Some(format!("{name}@{epoch}").as_str()) {
        eprintln!("fault injected: {name} in epoch {epoch}");
        std::process::abort();
    }
}
