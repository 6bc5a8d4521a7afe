//! What the exporter's two HTTP clients (Partner Center's and Entra ID's)
//! share: bodies read within a size limit, their text made fit for one log
//! line, and the retry loop ([`retry`]).

pub mod retry;

/// Why a body could not be read whole.
#[derive(Debug)]
pub enum BodyError {
    /// It is longer than the limit; reading stopped there.
    TooLarge,
    /// The connection failed while reading.
    Transport(reqwest::Error),
}

/// Reads `response`'s body, refusing one over `limit` bytes as soon as its
/// `Content-Length` or the bytes received say so, so a runaway answer
/// cannot exhaust memory.
pub async fn read_body_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    let announced = response.content_length();
    if announced.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    // Room for the announced length at once: a large answer grown by
    // doubling would hold two copies at the moment each larger buffer is
    // filled, and end up to twice as large as it is. A length that lies
    // costs at most `limit`, and only in address space until it is written.
    let mut body = Vec::with_capacity(announced.map_or(0, |length| length as usize));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `text` with control characters replaced by spaces and cut to
/// `max_chars`, marked with `…` when cut: an upstream message can neither
/// break a log line nor flood it.
pub fn one_line(text: &str, max_chars: usize) -> String {
    let mut clean: String = text
        .chars()
        .take(max_chars)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > max_chars {
        clean.push('…');
    }
    clean
}

/// An error and its causes on one line: reqwest's own message alone often
/// says only "error sending request".
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_replaced_and_length_capped() {
        assert_eq!(one_line("a\r\nb\tc", 100), "a  b c");
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(one_line("abc", 3), "abc");
    }

    #[test]
    fn causes_are_joined_without_repeats() {
        let inner = std::io::Error::other("connection refused");
        assert_eq!(
            error_chain(&WrapError(inner)),
            "request failed: connection refused"
        );
    }

    #[derive(Debug)]
    struct WrapError(std::io::Error);

    impl std::fmt::Display for WrapError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("request failed")
        }
    }

    impl std::error::Error for WrapError {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}
