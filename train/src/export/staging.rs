//! One export's files, staged beside their targets (`ae_core::atomic`'s
//! scheme) with the folders made for them: `commit` renames them all into
//! place; dropped before that — an error, a failed gate, Ctrl-C — it removes
//! the staged files, then the folders it made, deepest first, so a failed
//! export leaves the output folder as it found it.

use std::io::Write;
use std::path::{Path, PathBuf};

use ae_core::atomic::Staged;

use super::Exported;
use crate::error::TrainError;

#[derive(Debug)]
pub struct Staging {
    /// The output folder: exists already, never removed.
    out: PathBuf,
    files: Vec<(Staged, Exported)>,
    /// Made for the files (a Triton layout's `<model>/1/`), in the order made.
    made_dirs: Vec<PathBuf>,
}

impl Staging {
    pub fn new(out: &Path) -> Staging {
        Staging { out: out.to_path_buf(), files: Vec::new(), made_dirs: Vec::new() }
    }

    /// Writes `bytes` to a staged file for `target` (making the folders
    /// between the output folder and it); returns the staged file's path,
    /// for checks that read it back from disk.
    pub fn stage(&mut self, target: PathBuf, bytes: &[u8]) -> Result<PathBuf, TrainError> {
        let dir = target.parent().expect("a file in a folder").to_path_buf();
        let missing: Vec<&Path> = dir.ancestors().take_while(|d| *d != self.out).filter(|d| !d.exists()).collect();
        for d in missing.into_iter().rev() {
            std::fs::create_dir(d).map_err(TrainError::io(d, "cannot create the folder"))?;
            self.made_dirs.push(d.to_path_buf());
        }
        let (staged, mut f) = Staged::create(&target).map_err(TrainError::io(&target, "cannot write"))?;
        f.write_all(bytes).map_err(TrainError::io(&target, "cannot write"))?;
        let path = staged.staged_path().to_path_buf();
        self.files.push((staged, Exported { path: target, bytes: bytes.len(), max_diff: None, gate: None }));
        Ok(path)
    }

    /// What the last staged file will report when it is exported.
    pub fn last_mut(&mut self) -> &mut Exported {
        &mut self.files.last_mut().expect("a file was staged").1
    }

    /// Renames every staged file into place, in the order staged, calling
    /// `each` after each one; the folders made stay (they hold the files).
    /// A file that cannot be renamed stops it: the ones after it are removed.
    pub fn commit(mut self, mut each: impl FnMut(&Exported)) -> Result<Vec<Exported>, TrainError> {
        self.made_dirs.clear();
        let mut done = Vec::with_capacity(self.files.len());
        for (staged, exported) in std::mem::take(&mut self.files) {
            staged.commit().map_err(TrainError::io(&exported.path, "cannot write"))?;
            each(&exported);
            done.push(exported);
        }
        Ok(done)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // The staged files are removed as they drop; then the folders made
        // for them, deepest first.
        self.files.clear();
        for d in self.made_dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}
