//! Keeps the current refresh token in `state_dir`, so that a rotated token
//! survives restarts.
//!
//! Entra ID replaces the refresh token on every use and the configured one
//! dies 90 days after it was issued, so the newest token must be on disk
//! at all times. Saves go through [`crate::state_file`]: a crash at any
//! moment leaves either the previous state file or the new one, never a
//! partial file.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::state_file::{self, WriteStep};

/// The state file's name inside `state_dir`.
pub const STATE_FILE_NAME: &str = "refresh-token.json";

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
        state_file::create_dir(&self.dir).map_err(|err| directory_error(err.to_string()))?;
        state_file::remove_stale_temp_files(&self.dir, STATE_FILE_NAME);
        let (probe_path, probe) = state_file::create_temp_file(&self.dir, STATE_FILE_NAME)
            .map_err(|err| directory_error(err.to_string()))?;
        drop(probe);
        std::fs::remove_file(&probe_path).map_err(|err| directory_error(err.to_string()))?;
        Ok(())
    }

    /// The stored token, or `None` when nothing has been stored yet.
    pub fn load(&self) -> Result<Option<StoredRefreshToken>, StoreError> {
        let path = self.path();
        let corrupt = |message: String| StoreError::Corrupt {
            path: path.clone(),
            message,
        };
        let bytes = match state_file::read(&self.dir, STATE_FILE_NAME, MAX_STATE_FILE_BYTES) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(err) if err.kind() == std::io::ErrorKind::InvalidData => {
                return Err(corrupt(err.to_string()));
            }
            Err(err) => {
                return Err(StoreError::Read {
                    path,
                    message: err.to_string(),
                });
            }
        };
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
        crash_after: Option<WriteStep>,
    ) -> Result<(), StoreError> {
        let state = StateFile {
            version: FORMAT_VERSION,
            refresh_token: token.refresh_token.expose().to_owned(),
            obtained_at: token.obtained_at,
            client_id: token.client_id.clone(),
            tenant_id: token.tenant_id.clone(),
            seed_fingerprint: token.seed_fingerprint.clone(),
        };
        let write_error = |message: String| StoreError::Write {
            path: self.path(),
            message,
        };
        let mut content =
            serde_json::to_vec_pretty(&state).map_err(|err| write_error(err.to_string()))?;
        content.push(b'\n');
        state_file::write_until(&self.dir, STATE_FILE_NAME, &content, crash_after)
            .map_err(|err| write_error(err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::time::{Duration, SystemTime};

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
            .filter(|name| name.starts_with(&state_file::temp_prefix(STATE_FILE_NAME)))
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
            WriteStep::Created,
            WriteStep::PartlyWritten,
            WriteStep::Written,
            WriteStep::Synced,
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
            .save_until(&token("rt-1", 0), Some(WriteStep::Synced))
            .expect_err("crashed");
        assert_eq!(store.load().expect("load"), None);
    }

    #[test]
    fn stale_temporary_files_are_removed_at_startup_and_fresh_ones_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = RefreshTokenStore::new(dir.path());
        let stale = dir
            .path()
            .join(format!("{}old", state_file::temp_prefix(STATE_FILE_NAME)));
        let fresh = dir.path().join(format!(
            "{}in-progress",
            state_file::temp_prefix(STATE_FILE_NAME)
        ));
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
