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

/// The temporary file that stages `name` for process `pid`; `attempt`
/// above 0 when a live writer holds the plain name (the same PID in
/// another PID namespace writing the same target): `.NAME.PID-K.ae-partial`.
fn partial_name(name: &std::ffi::OsStr, pid: u32, attempt: u32) -> String {
    match attempt {
        0 => format!(".{}.{pid}{PARTIAL_SUFFIX}", name.to_string_lossy()),
        k => format!(".{}.{pid}-{k}{PARTIAL_SUFFIX}", name.to_string_lossy()),
    }
}

/// Whether `name` is a temporary file of this toolchain.
fn is_partial(name: &str) -> bool {
    let Some(stem) = name.strip_prefix('.').and_then(|n| n.strip_suffix(PARTIAL_SUFFIX)) else { return false };
    let number = |s: &str| s.parse::<u32>().is_ok();
    stem.rsplit_once('.').is_some_and(|(target, pid)| {
        !target.is_empty()
            && match pid.split_once('-') {
                None => number(pid),
                Some((pid, k)) => number(pid) && number(k),
            }
    })
}

/// Removes the temporary files that writers no longer alive left in `dir`
/// (`.NAME.PID.ae-partial`, after a kill -9 or a power loss). A writer
/// holds an exclusive lock on its file (`flock`, through std's
/// [`File::try_lock`]) from the moment it is created until it is committed
/// or dropped ([`Staged::create`]), and the kernel releases the lock when
/// the writer dies: a file that can be locked has no writer, whichever PID
/// namespace, container or machine sharing the volume it came from, and
/// whether or not `/proc` shows its PID. Only names this toolchain makes
/// are touched. Best effort: what cannot be read or removed stays.
pub fn remove_stale(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if !entry.file_name().to_str().is_some_and(is_partial) {
            continue;
        }
        let Ok(file) = File::open(entry.path()) else { continue };
        if file.try_lock().is_ok() {
            // Removed while the sweeper holds the lock: a writer that had
            // just created the file cannot take it, and starts again.
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// What became of an attempt to take a temporary file.
enum Take {
    Taken(File, File),
    /// A live writer holds it (its lock is taken): never touched.
    Held,
}

/// Opens `tmp` (created if missing, never truncated before it is ours) and
/// takes its exclusive lock, so that from then on no sweeper removes it;
/// only then is it emptied. A file whose lock another writer holds is left
/// as it is ([`Take::Held`]). A sweeper may remove the file between the
/// open and the lock; the writer then sees that the path is no longer its
/// file and opens it again.
fn create_locked(tmp: &Path) -> io::Result<Take> {
    use std::os::unix::fs::MetadataExt;
    for _ in 0..100 {
        let file = fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(tmp)?;
        let lock = file.try_clone()?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                // The sweeper holds it for a moment; a writer for as long as it writes.
                let (held, there) = (lock.metadata()?, fs::metadata(tmp));
                if there.is_ok_and(|m| (m.dev(), m.ino()) == (held.dev(), held.ino())) {
                    return Ok(Take::Held);
                }
                continue;
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(io::Error::other(format!("cannot lock the temporary file {}: {e}", tmp.display())));
            }
        }
        let (ours, there) = (lock.metadata()?, fs::metadata(tmp));
        if there.is_ok_and(|m| (m.dev(), m.ino()) == (ours.dev(), ours.ino())) {
            file.set_len(0)?;
            return Ok(Take::Taken(file, lock));
        }
    }
    Err(io::Error::other(format!("{}: removed by another process each time it was created", tmp.display())))
}

/// A temporary file beside `target` that becomes `target` on
/// [`Staged::commit`]; dropped without commit, it is removed.
#[derive(Debug)]
pub struct Staged {
    target: PathBuf,
    tmp: PathBuf,
    committed: bool,
    /// A handle that holds the file's exclusive lock until the stage ends
    /// (committed or removed): the sweeper leaves a locked file alone.
    _lock: File,
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
        for attempt in 0..64 {
            let tmp = dir.join(partial_name(name, std::process::id(), attempt));
            if let Take::Taken(file, lock) = create_locked(&tmp)? {
                return Ok((Staged { target, tmp, committed: false, _lock: lock }, file));
            }
        }
        Err(io::Error::other(format!("{}: 64 live writers stage it already", target.display())))
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
    fn only_unlocked_temporary_files_of_this_toolchain_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        // A writer's file: locked, whatever its PID says (another PID
        // namespace's, or one /proc hides).
        let (writer, _file) = Staged::create(p("live.csv")).unwrap();
        // Writers that died: unlocked files, whichever PID they name (the
        // highest one Linux allows, 4194304, and this very process's).
        let dead = [
            partial_name("p.csv".as_ref(), 4_194_304, 0),
            partial_name("q.csv".as_ref(), std::process::id(), 0),
            partial_name("r.csv".as_ref(), 12, 3),
        ];
        let theirs = [".notes.7.tmp".to_string(), format!("notes.7{PARTIAL_SUFFIX}"), "keep.csv".into()];
        for n in dead.iter().chain(&theirs) {
            fs::write(p(n), b"x").unwrap();
        }
        remove_stale(dir.path());
        assert!(writer.staged_path().exists(), "a live writer's locked file stays");
        for n in &dead {
            assert!(!p(n).exists(), "{n}: a dead writer's file is removed");
        }
        for n in &theirs {
            assert!(p(n).exists(), "{n} is not ours and must stay");
        }
        writer.commit().unwrap();
        assert!(p("live.csv").exists());
    }

    /// A second writer of the same target under the same PID (another PID
    /// namespace's process, sharing the volume) never truncates the first
    /// one's staged bytes: it stages under a name of its own, and both
    /// commit whole files. (The temporary file used to be opened with
    /// O_TRUNC before its lock was tried.)
    #[test]
    fn a_live_stage_of_the_same_name_is_never_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.csv");
        // The other writer: the plain name for this PID, locked, half written.
        let theirs = dir.path().join(partial_name("out.csv".as_ref(), std::process::id(), 0));
        let mut other = File::create(&theirs).unwrap();
        other.write_all(b"their first half").unwrap();
        other.try_lock().unwrap();
        let (staged, mut file) = Staged::create(&target).unwrap();
        assert_ne!(staged.staged_path(), theirs.as_path(), "a name of its own");
        assert_eq!(fs::read(&theirs).unwrap(), b"their first half", "the live stage was truncated");
        file.write_all(b"ours").unwrap();
        staged.commit().unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"ours");
        assert_eq!(fs::read(&theirs).unwrap(), b"their first half");
    }
}
