//! Where the access token for Partner Center comes from.
//!
//! Each configured method is one [`Authenticator`] variant; the poller asks
//! for a token before every poll and never sees how it was obtained.

use std::path::{Path, PathBuf};

use crate::config::AuthConfig;
use crate::secret::Secret;

/// Largest token file read; an access token is a few kilobytes.
const MAX_TOKEN_FILE_BYTES: usize = 64 * 1024;

/// A source of access tokens.
#[derive(Debug, Clone)]
pub enum Authenticator {
    /// A ready access token in a file, re-read before every poll so that an
    /// external tool can replace it without restarting the exporter.
    BearerTokenFile(PathBuf),
}

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read token file {}: {source}", path.display())]
    ReadTokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token file {} is empty", path.display())]
    EmptyTokenFile { path: PathBuf },
    #[error("token file {} is larger than {MAX_TOKEN_FILE_BYTES} bytes", path.display())]
    TokenFileTooLarge { path: PathBuf },
    #[error("token file {} holds characters that cannot be sent in an HTTP header (a line break inside the token?)", path.display())]
    InvalidToken { path: PathBuf },
}

impl Authenticator {
    /// The authenticator a validated `auth` section describes, or `None` if it names none.
    pub fn from_config(auth: &AuthConfig) -> Option<Self> {
        auth.bearer_token_file
            .as_ref()
            .map(|path| Self::BearerTokenFile(path.clone()))
    }

    /// A token to send now.
    pub async fn access_token(&self) -> Result<Secret, AuthError> {
        match self {
            Self::BearerTokenFile(path) => read_token_file(path).await,
        }
    }
}

async fn read_token_file(path: &Path) -> Result<Secret, AuthError> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || read_token_file_blocking(&owned))
        .await
        .unwrap_or_else(|err| {
            Err(AuthError::ReadTokenFile {
                path: path.to_owned(),
                source: std::io::Error::other(err.to_string()),
            })
        })
}

/// Reads a token file outside the async runtime, for configuration checks.
pub fn read_token_file_blocking(path: &Path) -> Result<Secret, AuthError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| {
            file.take(MAX_TOKEN_FILE_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(|source| AuthError::ReadTokenFile {
            path: path.to_owned(),
            source,
        })?;
    token_from_file_content(path, bytes)
}

fn token_from_file_content(path: &Path, bytes: Vec<u8>) -> Result<Secret, AuthError> {
    if bytes.len() > MAX_TOKEN_FILE_BYTES {
        return Err(AuthError::TokenFileTooLarge {
            path: path.to_owned(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| AuthError::ReadTokenFile {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
    })?;
    // Files written by `echo` or editors end in a newline that is not part of the token.
    let token = text.trim();
    if token.is_empty() {
        return Err(AuthError::EmptyTokenFile {
            path: path.to_owned(),
        });
    }
    // Checked here, not when sending, so `--config.check` catches it and a
    // poll fails as an authentication problem rather than a network one.
    if !token
        .bytes()
        .all(|byte| byte.is_ascii_graphic() || byte == b' ')
    {
        return Err(AuthError::InvalidToken {
            path: path.to_owned(),
        });
    }
    Ok(Secret::new(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn token_file_is_reread_and_trimmed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("token");
        let auth = Authenticator::BearerTokenFile(path.clone());

        std::fs::write(&path, "first-token\n").expect("write");
        assert_eq!(
            auth.access_token().await.expect("token").expose(),
            "first-token"
        );

        std::fs::write(&path, "  second-token\r\n").expect("write");
        assert_eq!(
            auth.access_token().await.expect("token").expose(),
            "second-token"
        );
    }

    #[tokio::test]
    async fn unusable_token_files_are_errors_without_content() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = Authenticator::BearerTokenFile(dir.path().join("missing"));
        let err = missing.access_token().await.expect_err("missing file");
        assert!(err.to_string().contains("missing"), "{err}");

        let empty_path = dir.path().join("empty");
        std::fs::write(&empty_path, " \n").expect("write");
        let err = Authenticator::BearerTokenFile(empty_path)
            .access_token()
            .await
            .expect_err("empty file");
        assert!(err.to_string().contains("is empty"), "{err}");

        let huge_path = dir.path().join("huge");
        std::fs::write(&huge_path, "x".repeat(MAX_TOKEN_FILE_BYTES + 1)).expect("write");
        let err = Authenticator::BearerTokenFile(huge_path)
            .access_token()
            .await
            .expect_err("huge file");
        assert!(err.to_string().contains("larger than"), "{err}");
        assert!(
            !err.to_string().contains("xxxx"),
            "content must not leak: {err}"
        );
    }
}
