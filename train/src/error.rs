//! Everything that can stop `train`, with the exit code each deserves:
//! 2 for bad input (caught before training), 1 for runtime faults, 130 for
//! an interrupt.

use std::path::PathBuf;

use crate::model::autoencoder::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Idx(#[from] infer::idx::IdxError),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{}: {what}: {msg}", path.display())]
    Io { path: PathBuf, what: String, msg: String },
    #[error("{}: not a run directory: {why}", path.display())]
    NotARun { path: PathBuf, why: String },
    #[error("{}: {msg}", path.display())]
    BadRun { path: PathBuf, msg: String },
    #[error("{0}")]
    Invalid(String),
    #[error("training diverged: the loss became NaN in epoch {epoch}")]
    NanLoss { epoch: usize },
    #[error("interrupted: epoch {epoch} is the last one saved in {}; continue with the same command and --resume", run.display())]
    Interrupted { run: PathBuf, epoch: usize },
    #[error(transparent)]
    Session(#[from] infer::session::SessionError),
    #[error("{}: the ONNX model differs from the trained model: max |difference| {diff:.3e} exceeds {tol:.0e}", path.display())]
    Parity { path: PathBuf, diff: f32, tol: f32 },
    #[error("{0}")]
    Runtime(String),
}

impl TrainError {
    pub fn exit_code(&self) -> i32 {
        match self {
            TrainError::Interrupted { .. } => 130,
            TrainError::NanLoss { .. } | TrainError::Parity { .. } | TrainError::Runtime(_) => 1,
            TrainError::Session(e) if e.is_runtime() => 1,
            TrainError::Io { .. } => 2,
            _ => 2,
        }
    }
}
