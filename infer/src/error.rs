//! Errors of the `infer` commands, each with its exit code: 2 for bad input
//! (found before anything runs or is written), 1 for runtime faults.

use std::path::PathBuf;

use crate::session::SessionError;
use ae_core::idx::IdxError;
use ae_onnx::OnnxError;

#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error(transparent)]
    Idx(#[from] IdxError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error(transparent)]
    Folder(#[from] ae_core::folder::FolderError),
    #[error(transparent)]
    Picture(#[from] ae_core::picture::PictureError),
    /// An input file that is not what the command needs.
    #[error("{}: {msg}", path.display())]
    Input { path: PathBuf, msg: String },
    /// Pictures that cannot be decoded or fitted, one line each.
    #[error("{}", bad_pictures(bad, *total))]
    BadPictures { bad: Vec<ae_core::picture::PictureError>, total: usize },
    /// An output that cannot be created where it was asked for.
    #[error("{}: {msg}", path.display())]
    Unwritable { path: PathBuf, msg: String },
    /// Writing an output failed; the source says why.
    #[error("{}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing the report to stdout failed (a closed pipe is no error).
    #[error("stdout")]
    Stdout(#[source] std::io::Error),
    /// Ctrl-C: the command stopped and wrote nothing.
    #[error("interrupted: nothing was written")]
    Interrupted,
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Runtime(String),
}

impl InferError {
    pub fn exit_code(&self) -> u8 {
        match self {
            InferError::Runtime(_) | InferError::Stdout(_) => 1,
            InferError::Interrupted => ae_core::interrupt::EXIT_CODE,
            InferError::Session(e) if e.is_runtime() => 1,
            _ => 2,
        }
    }

    /// The `map_err` closure for a failed write of `path`.
    pub fn write(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> InferError {
        let path = path.to_path_buf();
        move |source| InferError::Write { path, source }
    }

    /// Whether the reader of stdout went away (`infer … | head`): the
    /// command's work is done, and it exits 0.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, InferError::Stdout(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

fn bad_pictures(bad: &[ae_core::picture::PictureError], total: usize) -> String {
    let head = if bad.len() == total {
        format!("none of the {total} pictures can be used")
    } else {
        format!(
            "{} of {total} pictures cannot be used; nothing was run or written (--skip-bad leaves them out)",
            bad.len()
        )
    };
    bad.iter().fold(head, |s, b| s + &format!("\n  {}: {}", b.path.display(), b.msg))
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
        return Err(InferError::Unwritable { path: path.to_path_buf(), msg: format!("{} {why}", dir.display()) });
    }
    ae_core::atomic::check_writable_dir(&dir)
        .map_err(|e| InferError::Unwritable { path: path.to_path_buf(), msg: format!("cannot write there: {e}") })
}

/// A contract refusal is a bad input like any other.
impl From<crate::contract::ContractError> for InferError {
    fn from(e: crate::contract::ContractError) -> InferError {
        InferError::Input { path: e.path, msg: e.msg }
    }
}
