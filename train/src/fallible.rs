//! libtorch errors as values. tch's `f_` calls return them; its other calls
//! (the `nn` layers' `forward`, operators) panic with them. [`torch`] runs
//! such code and turns that panic into an error — silently, so a CUDA or
//! CPU out-of-memory ends in one line and an exit code, not a panic message
//! and a backtrace. Other panics (bugs) still print as panics.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use crate::error::TrainError;

thread_local! {
    /// Set while [`torch`] runs: the panic hook keeps quiet then.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`; a panic inside it (libtorch's error surfacing through tch)
/// becomes `TrainError::Runtime` with the error's first line.
pub fn torch<T>(f: impl FnOnce() -> T) -> Result<T, TrainError> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !INSIDE.with(Cell::get) {
                previous(info);
            }
        }));
    });
    INSIDE.with(|c| c.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    INSIDE.with(|c| c.set(false));
    result.map_err(|payload| {
        let text = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("libtorch failed");
        TrainError::Runtime(format!("libtorch: {}", first_line(text)))
    })
}

/// A libtorch message's first meaningful line: tch wraps it as
/// `called `Result::unwrap()` on an `Err` value: Torch("…")`, and libtorch
/// appends its C++ backtrace on further lines.
fn first_line(text: &str) -> String {
    let inner = text.split_once("Torch(\"").map_or(text, |(_, rest)| rest);
    let line = inner.lines().find(|l| !l.trim().is_empty()).unwrap_or(inner).trim();
    line.trim_end_matches("\")").trim_end_matches("\\n").to_string()
}

impl From<tch::TchError> for TrainError {
    fn from(e: tch::TchError) -> TrainError {
        TrainError::Runtime(format!("libtorch: {}", first_line(&e.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allocation_libtorch_refuses_is_an_error_not_a_panic() {
        let e = torch(|| tch::Tensor::zeros([1 << 45], (tch::Kind::Float, tch::Device::Cpu))).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("libtorch: ") && msg.contains("allocate"), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }
}
