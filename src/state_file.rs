//! Files the exporter keeps in `state_dir` (the refresh token, the
//! subscriptions' SKUs), written so that a crash at any moment leaves
//! either the previous file or the new one, never a partial file.
//!
//! Each write creates a temporary file in the same directory (mode
//! 0600), writes and flushes it to disk, renames it over the file and
//! flushes the directory.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A temporary file younger than this may belong to a write in progress
/// (a `login` running beside the exporter), so it is left alone.
const STALE_TEMP_FILE_AGE: Duration = Duration::from_secs(60);

/// The steps of a write, named so tests can stop a write between any two
/// of them as a crash would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteStep {
    /// The temporary file exists but is empty.
    Created,
    /// Half of the content is written.
    PartlyWritten,
    /// All content is written but not yet flushed to disk.
    Written,
    /// The content is on disk; the rename has not happened.
    Synced,
}

/// The prefix of `name`'s temporary files.
pub(crate) fn temp_prefix(name: &str) -> String {
    format!(".{name}.tmp-")
}

/// Creates `dir` (mode 0700) and its parents if needed.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Replaces `dir/name` with `content`, durably.
pub fn write(dir: &Path, name: &str, content: &[u8]) -> std::io::Result<()> {
    write_until(dir, name, content, None)
}

/// [`write`], stopping without cleaning up right after `crash_after` to
/// simulate a crash there (then failing with an error saying so).
pub(crate) fn write_until(
    dir: &Path,
    name: &str,
    content: &[u8],
    crash_after: Option<WriteStep>,
) -> std::io::Result<()> {
    let (temp_path, mut file) = create_temp_file(dir, name).map_err(|err| {
        std::io::Error::new(err.kind(), format!("cannot create a temporary file: {err}"))
    })?;
    let crash = |step: WriteStep| crash_after == Some(step);
    let simulated = || std::io::Error::other("simulated crash");
    if crash(WriteStep::Created) {
        return Err(simulated());
    }
    let result = (|| {
        let half = content.len() / 2;
        file.write_all(&content[..half])?;
        if crash(WriteStep::PartlyWritten) {
            return Ok(false);
        }
        file.write_all(&content[half..])?;
        if crash(WriteStep::Written) {
            return Ok(false);
        }
        file.sync_all()?;
        if crash(WriteStep::Synced) {
            return Ok(false);
        }
        drop(file);
        std::fs::rename(&temp_path, dir.join(name))?;
        sync_directory(dir)?;
        Ok::<bool, std::io::Error>(true)
    })();
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(simulated()),
        Err(err) => {
            // The file is untouched; only the temporary file goes.
            let _ = std::fs::remove_file(&temp_path);
            Err(err)
        }
    }
}

/// `dir/name`'s content, `None` when there is no such file, an error when
/// it cannot be read or is larger than `max_bytes`.
pub fn read(dir: &Path, name: &str, max_bytes: u64) -> std::io::Result<Option<Vec<u8>>> {
    let file = match File::open(dir.join(name)) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let mut bytes = Vec::new();
    file.take(max_bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max_bytes} bytes"),
        ));
    }
    Ok(Some(bytes))
}

/// Removes `name`'s temporary files in `dir` left by a crash, keeping
/// recent ones, which may belong to a write in progress.
pub fn remove_stale_temp_files(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = temp_prefix(name);
    for entry in entries.flatten() {
        let is_temp = entry
            .file_name()
            .to_str()
            .is_some_and(|file| file.starts_with(&prefix));
        let stale = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| SystemTime::now().duration_since(modified).ok())
            .is_some_and(|age| age >= STALE_TEMP_FILE_AGE);
        if is_temp && stale {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::debug!(path = %entry.path().display(), "removed a temporary file left by an interrupted save")
                }
                Err(err) => {
                    tracing::debug!(path = %entry.path().display(), error = %err, "cannot remove a leftover temporary file")
                }
            }
        }
    }
}

/// A new, empty, owner-only temporary file for `name` in `dir`, with a
/// name of its own.
pub fn create_temp_file(dir: &Path, name: &str) -> std::io::Result<(PathBuf, File)> {
    let path = dir.join(format!(
        "{}{}-{}",
        temp_prefix(name),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(&path)?;
    Ok((path, file))
}

/// Flushes a directory, so a rename inside it survives a power loss.
fn sync_directory(dir: &Path) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_reads_back_owner_only_and_replaces_the_previous() {
        let dir = tempfile::tempdir().expect("a directory");
        write(dir.path(), "state.json", b"one").expect("written");
        write(dir.path(), "state.json", b"two").expect("written");
        assert_eq!(
            read(dir.path(), "state.json", 10).expect("read"),
            Some(b"two".to_vec())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("state.json"))
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(read(dir.path(), "absent.json", 10).expect("no file"), None);
        let err = read(dir.path(), "state.json", 2).expect_err("too large");
        assert!(err.to_string().contains("larger than 2 bytes"), "{err}");
    }

    #[test]
    fn a_crash_at_any_step_leaves_the_previous_content() {
        let dir = tempfile::tempdir().expect("a directory");
        write(dir.path(), "state.json", b"previous").expect("written");
        for step in [
            WriteStep::Created,
            WriteStep::PartlyWritten,
            WriteStep::Written,
            WriteStep::Synced,
        ] {
            let err = write_until(dir.path(), "state.json", b"next", Some(step))
                .expect_err("a simulated crash");
            assert!(err.to_string().contains("simulated"), "{err}");
            assert_eq!(
                read(dir.path(), "state.json", 100).expect("read"),
                Some(b"previous".to_vec()),
                "after a crash at {step:?}"
            );
        }
    }
}
