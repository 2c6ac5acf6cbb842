//! Durable file writes: [`write_atomic`] replaces a file so that a crash at any moment
//! leaves either the old content or the new, never a torn mix, and the new content is
//! on disk when it returns. Validator state, keyfiles, finetune state and pending
//! weight reveals are all written this way. [`open_regular`] is the matching reader's
//! open for files an attacker may have replaced (keyfiles, models).

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Flushes written data to stable storage. [`Fsync`] is the real one; tests pass a
/// recorder to check that (and when) each flush happens.
pub trait Flush {
    /// Makes a written file's data durable.
    fn file(&self, file: &File) -> io::Result<()>;
    /// Makes a directory's entries (a rename into it) durable.
    fn dir(&self, dir: &Path) -> io::Result<()>;
}

/// `fsync(2)` of the file, then of the directory holding it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fsync;

impl Flush for Fsync {
    fn file(&self, file: &File) -> io::Result<()> {
        file.sync_all()
    }

    fn dir(&self, dir: &Path) -> io::Result<()> {
        #[cfg(unix)]
        {
            File::open(dir)?.sync_all()
        }
        #[cfg(not(unix))]
        {
            let _ = dir;
            Ok(())
        }
    }
}

/// Replaces `path` with `bytes` atomically and durably: writes a temporary file in the
/// same directory with permissions `mode` (Unix; e.g. `0o600` for secrets), fsyncs it,
/// renames it over `path` and fsyncs the directory. Parent directories are created.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_with(path, bytes, mode, &Fsync)
}

/// [`write_atomic`] with the given [`Flush`].
pub fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    flush: &dyn Flush,
) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.write_all(bytes)?;
    flush.file(tmp.as_file())?;
    tmp.persist(path).map_err(|e| e.error)?;
    flush.dir(dir)
}

/// Opens `path` for reading if it is a regular file (symlinks followed). A FIFO, a
/// device such as `/dev/zero` or a directory is refused with `InvalidInput` instead of
/// blocking the open (a FIFO without a writer) or a read (a device that never ends).
pub fn open_regular(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Opening a FIFO for reading waits for a writer unless non-blocking; on a
        // regular file the flag changes nothing.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// One flush: which kind, and what `path` held at that moment.
    type Flushed = (&'static str, Option<Vec<u8>>);

    /// Records each flush.
    struct Recorder<'a> {
        path: &'a Path,
        log: Mutex<Vec<Flushed>>,
    }

    impl Flush for Recorder<'_> {
        fn file(&self, file: &File) -> io::Result<()> {
            file.sync_all()?;
            self.log
                .lock()
                .unwrap()
                .push(("file", std::fs::read(self.path).ok()));
            Ok(())
        }

        fn dir(&self, dir: &Path) -> io::Result<()> {
            assert_eq!(Some(dir), self.path.parent());
            self.log
                .lock()
                .unwrap()
                .push(("dir", std::fs::read(self.path).ok()));
            Ok(())
        }
    }

    #[test]
    fn flushes_the_file_before_the_rename_and_the_directory_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("state.json");
        write_atomic(&path, b"old", 0o600).unwrap();
        let recorder = Recorder {
            path: &path,
            log: Mutex::new(Vec::new()),
        };
        write_atomic_with(&path, b"new", 0o600, &recorder).unwrap();
        assert_eq!(
            recorder.log.into_inner().unwrap(),
            vec![
                ("file", Some(b"old".to_vec())),
                ("dir", Some(b"new".to_vec()))
            ],
            "the data is flushed while the old file is still in place, the rename after"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }

    #[cfg(unix)]
    #[test]
    fn sets_the_mode_and_leaves_no_temporary_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_atomic(&path, b"secret", 0o600).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the target remains: {names:?}");
    }

    #[test]
    fn a_failed_flush_leaves_the_old_content() {
        struct Failing;
        impl Flush for Failing {
            fn file(&self, _: &File) -> io::Result<()> {
                Err(io::Error::other("disk full"))
            }
            fn dir(&self, _: &Path) -> io::Result<()> {
                Ok(())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"old", 0o644).unwrap();
        let err = write_atomic_with(&path, b"new", 0o644, &Failing).unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }
}
