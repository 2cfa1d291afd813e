//! Everything that can stop `train`, with the exit code each deserves
//! ([`ae_core::exit::EXIT_CODES`]): 2 for bad input or usage found before the work starts,
//! 1 for a failure during the work, 130 for an interrupt. A variant that wraps an error shows it through `source()`,
//! not in its own message: the edge prints the chain ([`ae_core::exit::chain`]).

use std::io;
use std::path::{Path, PathBuf};

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Idx(#[from] ae_core::idx::IdxError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `--precision` this machine cannot run (well).
    #[error(transparent)]
    Precision(#[from] crate::precision::PrecisionError),
    /// A file operation on `path` that failed; `what` says which.
    #[error("{}: {what}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a run directory: {why}", path.display())]
    NotARun { path: PathBuf, why: String },
    #[error("{}: {msg}", path.display())]
    BadRun { path: PathBuf, msg: String },
    #[error("{}: not a run configuration", path.display())]
    BadConfig {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("training diverged: the loss became NaN in epoch {epoch}")]
    NanLoss { epoch: usize },
    #[error("interrupted: epoch {epoch} is the last one saved in {}; continue with the same command and --resume", run.display())]
    Interrupted { run: PathBuf, epoch: usize },
    /// The work failed after training started (a checkpoint on a full disk,
    /// libtorch out of memory): the run keeps its last saved epoch.
    #[error("{}: {during} failed; epoch {saved} is the last one saved: fix the cause and continue with the same command and --resume", run.display())]
    Failed {
        run: PathBuf,
        /// What failed: "epoch 3", "the figures and reports".
        during: String,
        saved: usize,
        #[source]
        source: Box<TrainError>,
    },
    /// Ctrl-C outside training (export, sweeps): nothing was written.
    #[error("interrupted: nothing was written")]
    Cancelled,
    #[error(transparent)]
    Session(#[from] infer::session::SessionError),
    /// An image folder that cannot be trained on.
    #[error(transparent)]
    Folder(#[from] ae_core::folder::FolderError),
    #[error("{}: the ONNX model differs from the trained model: max |difference| {diff:.3e} exceeds {tol:.0e}", path.display())]
    Parity { path: PathBuf, diff: f32, tol: f32 },
    #[error("{}: the int8 model misses the accuracy gate: {summary}; --int8-ungated writes it anyway", path.display())]
    Int8Gate { path: PathBuf, summary: String },
    /// Reading answers from, or writing to, the terminal failed.
    #[error("terminal")]
    Terminal(#[source] io::Error),
    #[error("{0}")]
    Runtime(String),
}

impl TrainError {
    /// The `map_err` closure for a failed file operation on `path`.
    pub fn io(path: impl AsRef<Path>, what: &'static str) -> impl FnOnce(io::Error) -> TrainError {
        let path = path.as_ref().to_path_buf();
        move |source| TrainError::Io { path, what, source }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            TrainError::Interrupted { .. } | TrainError::Cancelled => 130,
            TrainError::NanLoss { .. }
            | TrainError::Failed { .. }
            | TrainError::Parity { .. }
            | TrainError::Int8Gate { .. }
            | TrainError::Runtime(_)
            | TrainError::Terminal(_) => 1,
            TrainError::Session(e) if e.is_runtime() => 1,
            // A write that failed once the work began (a full disk, an I/O
            // error): not bad input, and something may be written already.
            TrainError::Io { what, source, .. }
                if what.starts_with("cannot write")
                    || matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded) =>
            {
                1
            }
            _ => 2,
        }
    }
}
