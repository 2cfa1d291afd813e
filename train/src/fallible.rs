//! libtorch errors as values. tch's `f_` calls return them; its other calls
//! (the `nn` layers' `forward`, operators, `double_value` and the other
//! reads that wait for the device) panic with them. [`torch`] runs such
//! code and turns that panic into an error — silently, so a CUDA or CPU
//! out-of-memory, or an asynchronous CUDA error surfacing at a sync point,
//! ends in one line and an exit code, not a panic message and a backtrace.
//! Any other panic is a bug: it prints as a panic and goes on unwinding.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use crate::error::TrainError;

thread_local! {
    /// Set while [`torch`] runs: the panic hook keeps quiet then.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// The text of a panic's payload.
fn payload_text(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied())
}

/// Whether a panic is libtorch's error surfacing through tch (an unwrapped
/// `TchError::Torch`), not a bug of ours.
fn is_libtorch(payload: &(dyn std::any::Any + Send)) -> bool {
    payload_text(payload).is_some_and(|t| t.contains("Torch(\""))
}

/// Runs `f`; libtorch's error surfacing through tch as a panic inside it
/// becomes `TrainError::Runtime` with the error's first line. Any other
/// panic prints and unwinds on.
pub fn torch<T>(f: impl FnOnce() -> T) -> Result<T, TrainError> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !(INSIDE.with(Cell::get) && is_libtorch(info.payload())) {
                previous(info);
            }
        }));
    });
    let outer = INSIDE.with(|c| c.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    INSIDE.with(|c| c.set(outer));
    result.map_err(|payload| {
        if !is_libtorch(&*payload) {
            panic::resume_unwind(payload);
        }
        TrainError::Runtime(format!("libtorch: {}", first_line(payload_text(&*payload).unwrap_or_default())))
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

    #[test]
    fn a_bug_inside_is_still_a_panic() {
        let caught = std::panic::catch_unwind(|| torch(|| -> u8 { panic!("index out of bounds") }));
        let payload = caught.expect_err("a panic that is not libtorch's goes on unwinding");
        assert_eq!(payload_text(&*payload), Some("index out of bounds"));
    }

    #[test]
    fn a_read_that_waits_for_libtorch_is_an_error_inside() {
        // double_value on a tensor of two values: libtorch refuses (as a
        // sync point reports an asynchronous CUDA error).
        let t = tch::Tensor::from_slice(&[1f32, 2.0]);
        let e = torch(|| t.double_value(&[])).unwrap_err();
        assert!(e.to_string().starts_with("libtorch: "), "{e}");
    }
}
