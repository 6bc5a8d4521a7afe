//! Credentials kept in files: reading them safely, for the bearer token, the
//! client secret and the configured refresh token alike.
//!
//! Both [`crate::config`], which checks the files when the configuration is
//! validated, and [`crate::auth`], which reads them for every token, use it;
//! it depends on neither.

use std::path::{Path, PathBuf};

use crate::secret::Secret;

/// Largest token file read; an access token is a few kilobytes.
const MAX_TOKEN_FILE_BYTES: usize = 64 * 1024;

/// Why a credential file could not be used. Never carries the file's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("{} is empty", path.display())]
    Empty { path: PathBuf },
    #[error("{} is larger than {MAX_TOKEN_FILE_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("{} holds characters that cannot be sent in an HTTP header (a line break inside the value?)", path.display())]
    InvalidCharacters { path: PathBuf },
}

/// Reads a credential file without blocking the async runtime.
pub async fn read_token_file(path: &Path) -> Result<Secret, TokenFileError> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || read_token_file_blocking(&owned))
        .await
        .unwrap_or_else(|err| {
            Err(TokenFileError::Read {
                path: path.to_owned(),
                message: err.to_string(),
            })
        })
}

/// Reads a credential file: the value, trimmed of surrounding white space.
pub fn read_token_file_blocking(path: &Path) -> Result<Secret, TokenFileError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| {
            file.take(MAX_TOKEN_FILE_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(|err| TokenFileError::Read {
            path: path.to_owned(),
            message: err.to_string(),
        })?;
    token_from_file_content(path, bytes)
}

fn token_from_file_content(path: &Path, bytes: Vec<u8>) -> Result<Secret, TokenFileError> {
    if bytes.len() > MAX_TOKEN_FILE_BYTES {
        return Err(TokenFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| TokenFileError::Read {
        path: path.to_owned(),
        message: "not UTF-8 text".to_owned(),
    })?;
    // Files written by `echo` or editors end in a newline that is not part of the token.
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenFileError::Empty {
            path: path.to_owned(),
        });
    }
    // Checked here, not when sending, so `--config.check` catches it and a
    // poll fails as an authentication problem rather than a network one.
    if !token
        .bytes()
        .all(|byte| byte.is_ascii_graphic() || byte == b' ')
    {
        return Err(TokenFileError::InvalidCharacters {
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
        std::fs::write(&path, "first-token\n").expect("write");
        assert_eq!(
            read_token_file(&path).await.expect("token").expose(),
            "first-token"
        );

        std::fs::write(&path, "  second-token\r\n").expect("write");
        assert_eq!(
            read_token_file(&path).await.expect("token").expose(),
            "second-token"
        );
    }

    #[tokio::test]
    async fn unusable_token_files_are_errors_without_content() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = read_token_file(&dir.path().join("missing"))
            .await
            .expect_err("missing file");
        assert!(err.to_string().contains("missing"), "{err}");

        let empty_path = dir.path().join("empty");
        std::fs::write(&empty_path, " \n").expect("write");
        let err = read_token_file(&empty_path).await.expect_err("empty file");
        assert!(err.to_string().contains("is empty"), "{err}");

        let huge_path = dir.path().join("huge");
        std::fs::write(&huge_path, "x".repeat(MAX_TOKEN_FILE_BYTES + 1)).expect("write");
        let err = read_token_file(&huge_path).await.expect_err("huge file");
        assert!(err.to_string().contains("larger than"), "{err}");
        assert!(
            !err.to_string().contains("xxxx"),
            "content must not leak: {err}"
        );
    }
}
