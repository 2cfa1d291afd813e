//! Atomic file output: write to a temporary file beside the target, then
//! rename over it. A crash or an error leaves either the old file or none,
//! never a half-written one.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The suffix of this toolchain's temporary files, `.NAME.PID.ae-partial`:
/// a name no other program makes, so the sweeper never touches theirs
/// (`.notes.123.tmp` is someone else's).
pub const PARTIAL_SUFFIX: &str = ".ae-partial";

/// The temporary file that stages `name` for process `pid`.
fn partial_name(name: &std::ffi::OsStr, pid: u32) -> String {
    format!(".{}.{pid}{PARTIAL_SUFFIX}", name.to_string_lossy())
}

/// Whether `name` is a temporary file of this toolchain, and of which process.
fn partial_pid(name: &str) -> Option<u32> {
    let stem = name.strip_prefix('.')?.strip_suffix(PARTIAL_SUFFIX)?;
    let (target, pid) = stem.rsplit_once('.')?;
    (!target.is_empty()).then_some(())?;
    pid.parse().ok()
}

/// Removes the temporary files that this toolchain's processes, no longer
/// running, left in `dir` (`.NAME.PID.ae-partial`, after a kill -9 or a
/// power loss). Only names this toolchain makes are touched. Best effort:
/// what cannot be read or removed stays.
pub fn remove_stale(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(partial_pid) else { continue };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A temporary file beside `target` that becomes `target` on
/// [`Staged::commit`]; dropped without commit, it is removed.
#[derive(Debug)]
pub struct Staged {
    target: PathBuf,
    tmp: PathBuf,
    committed: bool,
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl Staged {
    /// The staged file and a handle to write it.
    pub fn create(target: impl AsRef<Path>) -> io::Result<(Staged, File)> {
        let target = target.as_ref().to_path_buf();
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "output path has no file name"))?;
        let dir = parent(&target);
        if !dir.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("directory {} does not exist", dir.display())));
        }
        remove_stale(&dir);
        let tmp = dir.join(partial_name(name, std::process::id()));
        let file = File::create(&tmp)?;
        Ok((Staged { target, tmp, committed: false }, file))
    }

    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Where the content is until the commit (to read it back and check it).
    pub fn staged_path(&self) -> &Path {
        &self.tmp
    }

    /// Syncs the written file, renames it into place and syncs the
    /// directory, so the rename survives a power loss too.
    pub fn commit(mut self) -> io::Result<()> {
        File::open(&self.tmp)?.sync_all()?;
        fs::rename(&self.tmp, &self.target)?;
        self.committed = true;
        File::open(parent(&self.target))?.sync_all()
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// A file being written; it appears at its path only on [`AtomicFile::commit`].
#[derive(Debug)]
pub struct AtomicFile {
    staged: Staged,
    out: BufWriter<File>,
}

impl AtomicFile {
    pub fn create(target: impl AsRef<Path>) -> io::Result<AtomicFile> {
        let (staged, file) = Staged::create(target)?;
        Ok(AtomicFile { staged, out: BufWriter::with_capacity(1 << 16, file) })
    }

    pub fn path(&self) -> &Path {
        self.staged.path()
    }

    /// Flushes and renames into place.
    pub fn commit(self) -> io::Result<()> {
        let AtomicFile { staged, out } = self;
        drop(out.into_inner().map_err(|e| e.into_error())?);
        staged.commit()
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes(path: impl AsRef<Path>, bytes: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)?;
    f.commit()
}

/// Writes rows as CSV (header from the row type) to `path`, atomically.
pub fn write_csv<T: serde::Serialize>(path: impl AsRef<Path>, rows: impl IntoIterator<Item = T>) -> io::Result<()> {
    let mut csv = csv::Writer::from_writer(AtomicFile::create(path)?);
    for row in rows {
        csv.serialize(row)?;
    }
    csv.into_inner().map_err(|e| e.into_error())?.commit()
}

/// Checks that files can be created in `dir` now, before any work is done
/// for them, by creating and removing an empty probe file of a fresh name
/// (never one that exists).
pub fn check_writable_dir(dir: &Path) -> io::Result<()> {
    tempfile::Builder::new().prefix(".ae-write-test.").suffix(PARTIAL_SUFFIX).tempfile_in(dir)?.close()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_toolchains_dead_temporary_files_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let dead = 3_999_999; // above Linux's pid_max: never a live process
        let ours = partial_name(std::ffi::OsStr::new("p.csv"), dead);
        let live = partial_name(std::ffi::OsStr::new("p.csv"), std::process::id());
        let theirs = [format!(".notes.{dead}.tmp"), format!("notes.{dead}{PARTIAL_SUFFIX}"), "keep.csv".into()];
        for n in theirs.iter().chain([&ours, &live]) {
            fs::write(dir.path().join(n), b"x").unwrap();
        }
        remove_stale(dir.path());
        assert!(!dir.path().join(&ours).exists(), "a dead process's partial file is removed");
        assert!(dir.path().join(&live).exists(), "a running process's partial file stays");
        for n in &theirs {
            assert!(dir.path().join(n).exists(), "{n} is not ours and must stay");
        }
    }
}
