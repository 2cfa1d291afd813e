//! Ctrl-C for both binaries. The first one asks the running command to
//! stop at its next check: it then drops what it was writing (staged files
//! vanish) and exits 130. Where nothing checks — a prompt, loading a model
//! — and at a second Ctrl-C, the process exits 130 at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// Open [`Checked`] sections.
static CHECKING: AtomicUsize = AtomicUsize::new(0);

/// The exit code of an interrupted command (128 + SIGINT).
pub const EXIT_CODE: u8 = 130;

/// Installs the handler (once per process).
pub fn install() {
    let _ = ctrlc::set_handler(|| {
        if REQUESTED.swap(true, Ordering::SeqCst) || CHECKING.load(Ordering::SeqCst) == 0 {
            eprintln!("interrupted");
            std::process::exit(EXIT_CODE.into());
        }
    });
}

/// Whether Ctrl-C was pressed.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Asks for a stop as Ctrl-C would, or withdraws the request (tests).
pub fn set_requested(on: bool) {
    REQUESTED.store(on, Ordering::SeqCst);
}

/// A section that checks [`requested`] often enough to stop promptly and
/// cleanly; while one is open, the first Ctrl-C is left to it.
#[derive(Debug)]
pub struct Checked(());

impl Checked {
    pub fn begin() -> Checked {
        CHECKING.fetch_add(1, Ordering::SeqCst);
        Checked(())
    }
}

impl Drop for Checked {
    fn drop(&mut self) {
        CHECKING.fetch_sub(1, Ordering::SeqCst);
    }
}
