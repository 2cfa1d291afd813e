//! Errors of the `infer` commands, each with its exit code: 2 for bad input
//! (found before anything runs or is written), 1 for runtime faults.

use std::path::PathBuf;

use crate::idx::IdxError;
use crate::onnx::OnnxError;
use crate::session::SessionError;

#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error(transparent)]
    Idx(#[from] IdxError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// An input file that is not what the command needs.
    #[error("{}: {msg}", path.display())]
    Input { path: PathBuf, msg: String },
    /// An output that cannot be written.
    #[error("{}: {msg}", path.display())]
    Output { path: PathBuf, msg: String },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Runtime(String),
}

impl InferError {
    pub fn exit_code(&self) -> u8 {
        match self {
            InferError::Runtime(_) => 1,
            InferError::Session(e) if e.is_runtime() => 1,
            _ => 2,
        }
    }

    pub fn output(path: &std::path::Path, e: impl std::fmt::Display) -> InferError {
        InferError::Output { path: path.to_path_buf(), msg: e.to_string() }
    }
}

/// Checks before any work that `path` can be created: its directory exists
/// and is writable.
pub fn check_writable(path: &std::path::Path) -> Result<(), InferError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        let why = if dir.exists() { "is not a directory" } else { "does not exist" };
        return Err(InferError::Output { path: path.to_path_buf(), msg: format!("{} {why}", dir.display()) });
    }
    let probe = dir.join(format!(".infer-write-test.{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| InferError::Output { path: path.to_path_buf(), msg: format!("cannot write there: {e}") })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}
