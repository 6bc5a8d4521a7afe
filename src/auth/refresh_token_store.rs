//! Keeps the current refresh token in `state_dir`, so that a rotated token
//! survives restarts.
//!
//! Entra ID replaces the refresh token on every use and the configured one
//! dies 90 days after it was issued, so the newest token must be on disk
//! at all times. Each save writes a temporary file in the same directory
//! (mode 0600), flushes it to disk, renames it over the state file and
//! flushes the directory: a crash at any moment leaves either the previous
//! state file or the new one, never a partial file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The state file's name inside `state_dir`.
pub const STATE_FILE_NAME: &str = "refresh-token.json";

/// Temporary files start with this; leftovers of a crash are removed at startup.
const TEMP_FILE_PREFIX: &str = ".refresh-token.json.tmp-";

/// A temporary file younger than this may belong to a save in progress (a
/// `login` running beside the exporter), so it is left alone.
const STALE_TEMP_FILE_AGE: Duration = Duration::from_secs(60);

/// Largest state file read; a refresh token is a few kilobytes.
const MAX_STATE_FILE_BYTES: u64 = 256 * 1024;

/// The current version of the state file's format.
const FORMAT_VERSION: u32 = 1;

/// A refresh token and what it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRefreshToken {
    pub refresh_token: Secret,
    /// When Entra ID issued it; the newer of two tokens wins.
    pub obtained_at: DateTime<Utc>,
    /// The app registration it was issued to; a token of another client is useless.
    pub client_id: String,
    /// The tenant as configured when it was stored.
    pub tenant_id: String,
    /// [`Secret::fingerprint`] of the configured refresh token this chain of
    /// rotations grew from, if there was one: when the configured token is
    /// replaced later, its fingerprint differs and it is taken as the newer.
    pub seed_fingerprint: Option<String>,
}

/// The state file on disk.
#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    refresh_token: String,
    obtained_at: DateTime<Utc>,
    client_id: String,
    tenant_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seed_fingerprint: Option<String>,
}

/// Why the state directory could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use state directory {}: {message}", path.display())]
    Directory { path: PathBuf, message: String },
    #[error("cannot read {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("{} is not a refresh token state file ({message}); remove it or run `partner-center-exporter login`", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("cannot store the refresh token in {}: {message}", path.display())]
    Write { path: PathBuf, message: String },
}

/// The steps of a save, named so tests can stop a save between any two of
/// them as a crash would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SaveStep {
    /// The temporary file exists but is empty.
    Created,
    /// Half of the content is written.
    PartlyWritten,
    /// All content is written but not yet flushed to disk.
    Written,
    /// The content is on disk; the rename has not happened.
    Synced,
}

/// The refresh token state kept in one directory.
#[derive(Debug, Clone)]
pub struct RefreshTokenStore {
    dir: PathBuf,
}

impl RefreshTokenStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE_NAME)
    }

    /// Creates the directory (mode 0700) if needed, removes temporary files
    /// left by a crash, and proves the directory is writable.
    pub fn prepare(&self) -> Result<(), StoreError> {
        let directory_error = |message: String| StoreError::Directory {
            path: self.dir.clone(),
            message,
        };
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(&self.dir)
            .map_err(|err| directory_error(err.to_string()))?;
        self.remove_stale_temp_files();
        let (probe_path, probe) =
            create_temp_file(&self.dir).map_err(|err| directory_error(err.to_string()))?;
        drop(probe);
        std::fs::remove_file(&probe_path).map_err(|err| directory_error(err.to_string()))?;
        Ok(())
    }

    fn remove_stale_temp_files(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let is_temp = entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with(TEMP_FILE_PREFIX));
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

    /// The stored token, or `None` when nothing has been stored yet.
    pub fn load(&self) -> Result<Option<StoredRefreshToken>, StoreError> {
        let path = self.path();
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                return Err(StoreError::Read {
                    path,
                    message: err.to_string(),
                });
            }
        };
        let mut bytes = Vec::new();
        file.take(MAX_STATE_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|err| StoreError::Read {
                path: path.clone(),
                message: err.to_string(),
            })?;
        let corrupt = |message: String| StoreError::Corrupt {
            path: path.clone(),
            message,
        };
        if bytes.len() as u64 > MAX_STATE_FILE_BYTES {
            return Err(corrupt(format!("larger than {MAX_STATE_FILE_BYTES} bytes")));
        }
        // serde_json's messages quote no input, so the token cannot leak through them.
        let state: StateFile =
            serde_json::from_slice(&bytes).map_err(|err| corrupt(err.to_string()))?;
        if state.version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "format version {} is not {FORMAT_VERSION}",
                state.version
            )));
        }
        let token = state.refresh_token.trim();
        if token.is_empty() || !token.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(corrupt(
                "the refresh token is empty or not printable".to_owned(),
            ));
        }
        Ok(Some(StoredRefreshToken {
            refresh_token: Secret::new(token),
            obtained_at: state.obtained_at,
            client_id: state.client_id,
            tenant_id: state.tenant_id,
            seed_fingerprint: state.seed_fingerprint,
        }))
    }

    /// Stores `token` durably, replacing what was there.
    pub fn save(&self, token: &StoredRefreshToken) -> Result<(), StoreError> {
        self.save_until(token, None)
    }

    /// [`save`](Self::save), stopping without cleaning up right after
    /// `crash_after` to simulate a crash there.
    pub(crate) fn save_until(
        &self,
        token: &StoredRefreshToken,
        crash_after: Option<SaveStep>,
    ) -> Result<(), StoreError> {
        let state = StateFile {
            version: FORMAT_VERSION,
            refresh_token: token.refresh_token.expose().to_owned(),
            obtained_at: token.obtained_at,
            client_id: token.client_id.clone(),
            tenant_id: token.tenant_id.clone(),
            seed_fingerprint: token.seed_fingerprint.clone(),
        };
        let mut content = serde_json::to_vec_pretty(&state).map_err(|err| StoreError::Write {
            path: self.path(),
            message: err.to_string(),
        })?;
        content.push(b'\n');

        let (temp_path, mut file) =
            create_temp_file(&self.dir).map_err(|err| StoreError::Write {
                path: self.path(),
                message: format!("cannot create a temporary file: {err}"),
            })?;
        let crash = |step: SaveStep| crash_after == Some(step);
        let simulated = || StoreError::Write {
            path: self.path(),
            message: "simulated crash".to_owned(),
        };
        if crash(SaveStep::Created) {
            return Err(simulated());
        }
        let result = (|| {
            let half = content.len() / 2;
            file.write_all(&content[..half])?;
            if crash(SaveStep::PartlyWritten) {
                return Ok(false);
            }
            file.write_all(&content[half..])?;
            if crash(SaveStep::Written) {
                return Ok(false);
            }
            file.sync_all()?;
            if crash(SaveStep::Synced) {
                return Ok(false);
            }
            drop(file);
            std::fs::rename(&temp_path, self.path())?;
            sync_directory(&self.dir)?;
            Ok::<bool, std::io::Error>(true)
        })();
        match result {
            Ok(true) => Ok(()),
            Ok(false) => Err(simulated()),
            Err(err) => {
                // The state file is untouched; only the temporary file goes.
                let _ = std::fs::remove_file(&temp_path);
                Err(StoreError::Write {
                    path: self.path(),
                    message: err.to_string(),
                })
            }
        }
    }
}

/// A new, empty, owner-only file with a unique name in `dir`.
fn create_temp_file(dir: &Path) -> std::io::Result<(PathBuf, File)> {
    let path = dir.join(format!(
        "{TEMP_FILE_PREFIX}{}-{}",
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

    fn token(value: &str, seconds: i64) -> StoredRefreshToken {
        StoredRefreshToken {
            refresh_token: Secret::new(value),
            obtained_at: DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("time"),
            client_id: "3f2c5e2a-0000-4000-8000-000000000001".to_owned(),
            tenant_id: "contoso.onmicrosoft.com".to_owned(),
            seed_fingerprint: Some("0123456789abcdef".to_owned()),
        }
    }

    fn temp_files(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .expect("read dir")
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| name.starts_with(TEMP_FILE_PREFIX))
            .collect()
    }

    #[test]
    fn nothing_stored_is_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = RefreshTokenStore::new(dir.path().join("state"));
        store.prepare().expect("prepare creates the directory");
        assert_eq!(store.load().expect("load"), None);
    }

    #[test]
    fn saved_token_is_loaded_back_and_owner_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = RefreshTokenStore::new(dir.path().join("nested/state"));
        store.prepare().expect("prepare");
        store.save(&token("rt-1", 0)).expect("save");
        store.save(&token("rt-2", 60)).expect("save again");
        assert_eq!(store.load().expect("load"), Some(token("rt-2", 60)));
        assert!(
            temp_files(store.dir()).is_empty(),
            "no temporary file stays"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |path: &Path| {
                std::fs::metadata(path)
                    .expect("metadata")
                    .permissions()
                    .mode()
                    & 0o777
            };
            assert_eq!(mode(&store.path()), 0o600);
            assert_eq!(mode(store.dir()), 0o700);
        }
    }

    #[test]
    fn a_crash_at_any_step_leaves_the_previous_token() {
        for step in [
            SaveStep::Created,
            SaveStep::PartlyWritten,
            SaveStep::Written,
            SaveStep::Synced,
        ] {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = RefreshTokenStore::new(dir.path());
            store.prepare().expect("prepare");
            store.save(&token("rt-old", 0)).expect("save");
            let err = store
                .save_until(&token("rt-new", 60), Some(step))
                .expect_err("crashed");
            assert!(err.to_string().contains("simulated crash"), "{err}");
            assert_eq!(
                temp_files(store.dir()).len(),
                1,
                "{step:?}: the crash leaves its temporary file"
            );
            assert_eq!(
                store.load().expect("the state file is intact"),
                Some(token("rt-old", 0)),
                "{step:?}"
            );
            // The next save works beside the leftover.
            store
                .save(&token("rt-newer", 120))
                .expect("save after crash");
            assert_eq!(store.load().expect("load"), Some(token("rt-newer", 120)));
        }
    }

    #[test]
    fn a_crash_before_the_first_save_leaves_no_state_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = RefreshTokenStore::new(dir.path());
        store.prepare().expect("prepare");
        store
            .save_until(&token("rt-1", 0), Some(SaveStep::Synced))
            .expect_err("crashed");
        assert_eq!(store.load().expect("load"), None);
    }

    #[test]
    fn stale_temporary_files_are_removed_at_startup_and_fresh_ones_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = RefreshTokenStore::new(dir.path());
        let stale = dir.path().join(format!("{TEMP_FILE_PREFIX}old"));
        let fresh = dir.path().join(format!("{TEMP_FILE_PREFIX}in-progress"));
        std::fs::write(&stale, "{").expect("write");
        std::fs::write(&fresh, "{").expect("write");
        let old = SystemTime::now() - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&stale)
            .and_then(|file| file.set_modified(old))
            .expect("age the file");
        store.prepare().expect("prepare");
        assert!(!stale.exists(), "stale leftover removed");
        assert!(fresh.exists(), "a save in progress is left alone");
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_that_does_not_echo_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = RefreshTokenStore::new(dir.path());
        std::fs::write(store.path(), "secret-looking-garbage").expect("write");
        let err = store.load().expect_err("corrupt");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(!err.to_string().contains("secret-looking"), "{err}");
        assert!(err.to_string().contains("login"), "{err}");

        std::fs::write(
            store.path(),
            r#"{"version": 9, "refresh_token": "x", "obtained_at": "2026-01-01T00:00:00Z", "client_id": "c", "tenant_id": "t"}"#,
        )
        .expect("write");
        let err = store.load().expect_err("unknown version");
        assert!(err.to_string().contains("version 9"), "{err}");
    }

    #[test]
    fn an_unusable_directory_fails_prepare() {
        // A regular file where the directory should be fails for every
        // user, root included (a read-only directory would not stop root).
        let dir = tempfile::tempdir().expect("temp dir");
        let occupied = dir.path().join("occupied");
        std::fs::write(&occupied, "not a directory").expect("write");
        let err = RefreshTokenStore::new(&occupied)
            .prepare()
            .expect_err("not a directory");
        assert!(matches!(err, StoreError::Directory { .. }), "{err}");
        assert!(err.to_string().contains("occupied"), "{err}");
    }
}
