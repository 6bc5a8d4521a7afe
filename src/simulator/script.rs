//! The simulator's script of answers and faults: queues of [`Step`]s, one
//! consumed per request, for one path or for any, and how each step is
//! played on the connection, including the answers no HTTP library would
//! send (truncated bodies, bytes dripping in, endless bodies, silence).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::http::{JSON_CONTENT_TYPE, reason_phrase};
use super::record::normalise;

/// What the simulator does with one request.
#[derive(Debug, Clone)]
pub enum Step {
    /// Sends these bytes (a whole HTTP response) and closes the connection.
    Raw(Vec<u8>),
    /// Reads the request and never answers, keeping the connection open
    /// until the client closes it.
    Hang,
    /// Sends `head`, then `body` one byte every `every`, then closes.
    Drip {
        head: Vec<u8>,
        body: Vec<u8>,
        every: Duration,
    },
    /// Sends a 200 head and a chunked body that never ends.
    Endless,
    /// Closes the connection without a word.
    Close,
    /// Answers as without a script: the dataset, the token endpoint, the
    /// outage or a 404, on a connection that stays open.
    Normal,
}

impl Step {
    /// A complete answer with `status`, extra `headers` and `body`, after
    /// which the connection is closed.
    pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Self {
        let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        Self::Raw(bytes)
    }

    /// A JSON answer.
    pub fn json(status: u16, body: &str) -> Self {
        Self::response(
            status,
            &[("Content-Type", JSON_CONTENT_TYPE)],
            body.as_bytes(),
        )
    }

    /// A `200` JSON answer with raw bytes, which need not be UTF-8.
    pub fn json_bytes(body: &[u8]) -> Self {
        Self::response(200, &[("Content-Type", JSON_CONTENT_TYPE)], body)
    }

    /// An answer whose `Content-Length` promises more than is sent: the
    /// first half of `body` (cut at a character boundary).
    pub fn truncated(body: &str) -> Self {
        let mut half = body.len() / 2;
        while !body.is_char_boundary(half) {
            half -= 1;
        }
        let sent = &body[..half];
        Self::Raw(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{sent}",
                body.len()
            )
            .into_bytes(),
        )
    }

    /// A 200 JSON answer whose body arrives one byte every `every`.
    pub fn drip(body: &str, every: Duration) -> Self {
        Self::Drip {
            head: format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes(),
            body: body.as_bytes().to_vec(),
            every,
        }
    }

    /// Plays the step on `stream`. Every step but [`Step::Normal`] (which
    /// the caller answers itself) ends the connection; returns whether the
    /// answer was sent whole.
    pub(crate) async fn play(self, stream: &mut TcpStream) -> bool {
        match self {
            Self::Raw(bytes) => {
                let sent = stream.write_all(&bytes).await.is_ok();
                let _ = stream.shutdown().await;
                sent
            }
            Self::Hang => {
                // Hold the connection until the client gives up.
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                false
            }
            Self::Drip { head, body, every } => {
                if stream.write_all(&head).await.is_err() {
                    return false;
                }
                for byte in body {
                    tokio::time::sleep(every).await;
                    if stream.write_all(&[byte]).await.is_err() {
                        return false;
                    }
                }
                true
            }
            Self::Endless => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return false;
                }
                let _ = stream.write_all(b"b\r\n{\"items\": [\r\n").await;
                let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "1".repeat(64 * 1024));
                while stream.write_all(chunk.as_bytes()).await.is_ok() {}
                false
            }
            Self::Close | Self::Normal => false,
        }
    }
}

/// Which requests a script answers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Every request, whatever its path (as the test suites' scripted
    /// upstream did).
    Any,
    /// Requests to this path (without query; a leading `/` is added).
    Path(String),
}

impl Scope {
    /// Requests to `path`.
    pub fn path(path: &str) -> Self {
        Self::Path(normalise(path).into_owned())
    }
}

impl From<&str> for Scope {
    fn from(path: &str) -> Self {
        Self::path(path)
    }
}

impl From<String> for Scope {
    fn from(path: String) -> Self {
        Self::path(&path)
    }
}

/// One scope's queue.
#[derive(Debug, Default)]
struct Queue {
    steps: VecDeque<Step>,
    /// Played for every request once `steps` is used up; without it the
    /// request goes to the next scope (a path's script, then any path's,
    /// then the normal answer).
    then: Option<Step>,
}

/// The queues of every scope.
#[derive(Debug, Default)]
pub(crate) struct Scripts {
    queues: Mutex<BTreeMap<Scope, Queue>>,
}

impl Scripts {
    fn queues(&self) -> MutexGuard<'_, BTreeMap<Scope, Queue>> {
        // Nothing panics while the lock is held; the queues stay usable.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces what is left of `scope`'s script.
    pub(crate) fn replace(&self, scope: Scope, steps: Vec<Step>, then: Option<Step>) {
        self.queues().insert(
            scope,
            Queue {
                steps: steps.into(),
                then,
            },
        );
    }

    /// Adds `steps` to the end of `scope`'s queue, keeping its `then`.
    pub(crate) fn push(&self, scope: Scope, steps: impl IntoIterator<Item = Step>) {
        self.queues().entry(scope).or_default().steps.extend(steps);
    }

    /// Steps not played yet in `scope`'s queue (not counting `then`).
    pub(crate) fn pending(&self, scope: &Scope) -> usize {
        self.queues()
            .get(scope)
            .map_or(0, |queue| queue.steps.len())
    }

    /// The step for a request to `path`: the path's script first, then the
    /// script for any path; `None` when neither has one.
    pub(crate) fn next(&self, path: &str) -> Option<Step> {
        let mut queues = self.queues();
        for scope in [Scope::Path(path.to_owned()), Scope::Any] {
            if let Some(queue) = queues.get_mut(&scope) {
                if let Some(step) = queue.steps.pop_front() {
                    return Some(step);
                }
                if let Some(then) = &queue.then {
                    return Some(then.clone());
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_script_goes_first_then_any_path_then_nothing() {
        let scripts = Scripts::default();
        assert!(scripts.next("/a").is_none());
        scripts.replace(Scope::Any, vec![Step::Hang], Some(Step::Close));
        scripts.push("a".into(), [Step::Endless, Step::Normal]);
        assert!(matches!(scripts.next("/a"), Some(Step::Endless)));
        assert_eq!(scripts.pending(&Scope::path("/a")), 1);
        assert!(matches!(scripts.next("/b"), Some(Step::Hang)));
        assert!(matches!(scripts.next("/a"), Some(Step::Normal)));
        assert!(
            matches!(scripts.next("/a"), Some(Step::Close)),
            "any path's then"
        );
        assert!(matches!(scripts.next("/b"), Some(Step::Close)));
        scripts.replace(Scope::Any, vec![], None);
        assert!(scripts.next("/a").is_none());
    }

    #[test]
    fn helpers_build_whole_answers() {
        let Step::Raw(bytes) = Step::response(429, &[("Retry-After", "3")], b"{}") else {
            panic!("raw");
        };
        assert_eq!(
            String::from_utf8(bytes).expect("UTF-8"),
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        );
        // Half of the 4 bytes falls inside the `é`: the cut moves before it.
        let Step::Raw(bytes) = Step::truncated("{é}") else {
            panic!("raw");
        };
        let text = String::from_utf8(bytes).expect("cut at a character boundary");
        assert!(text.contains("Content-Length: 4\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{"), "{text}");
    }
}
