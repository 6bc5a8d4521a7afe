//! The simulator's HTTP/1.1 on raw TCP: a small, bounded request reader and
//! the writing of plain answers.
//!
//! Raw rather than hyper, so that the same connection can also carry the
//! broken answers of the fault script (see [`super::script`]), which no HTTP
//! library would send. Only what the exporter's clients send is understood:
//! a request head of at most [`MAX_HEAD_BYTES`] and, for the token
//! requests, a `Content-Length` body. Everything else is refused with an
//! answer and the connection closed, so a hostile client cannot make a
//! connection task grow or wait forever once it has started a request.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Longest request head read (request line and headers); the exporter's
/// are well below a kilobyte.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Largest request body kept; a real token request is a few kilobytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A larger body is still read, and thrown away, up to this size, so the
/// client gets its answer rather than a connection reset by unread data.
/// Beyond it the body is not read and the connection is closed after the
/// answer.
pub const MAX_DISCARDED_BYTES: usize = 1024 * 1024;

/// Longest wait for the rest of a request once its first byte arrived, so
/// a stalled client cannot hold a connection task forever. Between
/// requests a keep-alive connection may stay idle as long as the client
/// likes, as with hyper.
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A request as read from the connection.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    /// Header names in lower case, values as sent (invalid UTF-8 replaced).
    pub headers: Vec<(String, String)>,
    pub body: Body,
    /// Whether the connection must be closed after the answer: the client
    /// asked for it, or the body could not be read to its end.
    pub close: bool,
    /// When the request had been read.
    pub at: Instant,
}

impl Request {
    /// The target's path, without the query.
    pub fn path(&self) -> &str {
        path_of(&self.target)
    }

    /// The target's query, if it has one.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
}

/// The path of a request target: everything before `?`.
pub fn path_of(target: &str) -> &str {
    target.split('?').next().unwrap_or(target)
}

/// The first value of header `name` in `headers`, case-insensitively.
pub fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// A request body, or why there is none to look at.
#[derive(Debug)]
pub enum Body {
    /// The whole body (empty when none was sent).
    Complete(Vec<u8>),
    /// Longer than [`MAX_BODY_BYTES`]; read and thrown away if it was at
    /// most [`MAX_DISCARDED_BYTES`], else not read at all.
    TooLarge,
    /// Its end cannot be found or it did not arrive in time: a chunked or
    /// otherwise unsupported body, or a stalled client.
    Unreadable(&'static str),
}

/// What reading the next request gave.
#[derive(Debug)]
pub enum Read {
    Request(Request),
    /// The client closed the connection (or vanished mid-request).
    Closed,
    /// Not a request this reader understands; answered with `status`,
    /// after which the connection is closed.
    Malformed {
        status: u16,
        reason: &'static str,
    },
}

/// One side of a connection: the stream and what was read past the last
/// request (a pipelined next one).
pub struct Connection {
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    pub fn new(stream: TcpStream) -> Self {
        // Answers are written whole; do not hold their last segment back.
        let _ = stream.set_nodelay(true);
        Self {
            stream,
            buffer: Vec::with_capacity(4096),
        }
    }

    /// Reads the next request: its head, then a `Content-Length` body.
    pub async fn read_request(&mut self) -> Read {
        let head_end = match self.read_head().await {
            Ok(Some(end)) => end,
            Ok(None) => return Read::Closed,
            Err(malformed) => return malformed,
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).into_owned();
        self.buffer.drain(..head_end);
        let Some(Head {
            method,
            target,
            version,
            headers,
        }) = parse_head(&head)
        else {
            return Read::Malformed {
                status: 400,
                reason: "malformed request head",
            };
        };
        let keep_alive = keep_alive(version, &headers);
        let mut request = Request {
            method,
            target,
            headers,
            body: Body::Complete(Vec::new()),
            close: !keep_alive,
            at: Instant::now(),
        };
        if header_in(&request.headers, "transfer-encoding").is_some() {
            // The exporter never sends chunked bodies; without reading the
            // body its end is unknown, so the connection cannot go on.
            request.body = Body::Unreadable("Transfer-Encoding is not supported");
            request.close = true;
            return Read::Request(request);
        }
        let length = match content_length(&request.headers) {
            Ok(length) => length,
            Err(()) => {
                return Read::Malformed {
                    status: 400,
                    reason: "invalid Content-Length",
                };
            }
        };
        if length > 0
            && header_in(&request.headers, "expect")
                .is_some_and(|expect| expect.eq_ignore_ascii_case("100-continue"))
            && length <= MAX_DISCARDED_BYTES
        {
            // The client waits for this before it sends the body.
            if self
                .stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
            {
                return Read::Closed;
            }
        }
        if length > MAX_DISCARDED_BYTES {
            request.body = Body::TooLarge;
            request.close = true;
        } else if length > 0 {
            match tokio::time::timeout(REQUEST_READ_TIMEOUT, self.read_body(length)).await {
                Ok(Some(body)) => {
                    request.body = if length > MAX_BODY_BYTES {
                        Body::TooLarge
                    } else {
                        Body::Complete(body)
                    };
                }
                Ok(None) => return Read::Closed,
                Err(_) => {
                    request.body = Body::Unreadable("the body did not arrive in time");
                    request.close = true;
                }
            }
        }
        request.at = Instant::now();
        Read::Request(request)
    }

    /// Reads until the buffer holds a whole head; returns where it ends,
    /// or `None` when the client closed the connection first.
    async fn read_head(&mut self) -> Result<Option<usize>, Read> {
        let mut searched = 0;
        let mut deadline = None;
        loop {
            // Empty lines before a request line are allowed (RFC 9112, 2.2).
            while self.buffer.starts_with(b"\r\n") {
                self.buffer.drain(..2);
                searched = 0;
            }
            if let Some(at) = find_head_end(&self.buffer, searched) {
                return Ok(Some(at));
            }
            if self.buffer.len() > MAX_HEAD_BYTES {
                return Err(Read::Malformed {
                    status: 431,
                    reason: "request head too large",
                });
            }
            // Where the next search starts: a terminator may straddle reads.
            searched = self.buffer.len().saturating_sub(3);
            let mut chunk = [0u8; 4096];
            let read = match deadline {
                // Idle between requests: wait as long as the client likes.
                None => self.stream.read(&mut chunk).await,
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                        Ok(read) => read,
                        Err(_) => return Ok(None),
                    }
                }
            };
            match read {
                Ok(0) | Err(_) => return Ok(None),
                Ok(read) => self.buffer.extend_from_slice(&chunk[..read]),
            }
            deadline.get_or_insert_with(|| Instant::now() + REQUEST_READ_TIMEOUT);
        }
    }

    /// Reads a body of `length` bytes (at most [`MAX_DISCARDED_BYTES`]),
    /// keeping at most [`MAX_BODY_BYTES`] of it; `None` if the client
    /// closed the connection before its end.
    async fn read_body(&mut self, length: usize) -> Option<Vec<u8>> {
        let kept_length = length.min(MAX_BODY_BYTES);
        let from_buffer = self.buffer.len().min(length);
        let mut kept: Vec<u8> = self.buffer.drain(..from_buffer).collect();
        kept.truncate(kept_length);
        let mut remaining = length - from_buffer;
        let mut chunk = [0u8; 8192];
        while remaining > 0 {
            let want = remaining.min(chunk.len());
            let read = match self.stream.read(&mut chunk[..want]).await {
                Ok(0) | Err(_) => return None,
                Ok(read) => read,
            };
            let room = kept_length - kept.len();
            kept.extend_from_slice(&chunk[..read.min(room)]);
            remaining -= read;
        }
        Some(kept)
    }

    /// Writes a plain answer; `close` adds `Connection: close`.
    pub async fn write_answer(&mut self, answer: &Answer, close: bool) -> std::io::Result<()> {
        let head = answer.head(close);
        // Small answers go out in one write, so they leave in one segment.
        if answer.body.len() <= 16 * 1024 {
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(&answer.body);
            self.stream.write_all(&bytes).await?;
        } else {
            self.stream.write_all(head.as_bytes()).await?;
            self.stream.write_all(&answer.body).await?;
        }
        self.stream.flush().await
    }
}

/// Where the head in `buffer` ends (just after its empty line), searching
/// from `from`.
fn find_head_end(buffer: &[u8], from: usize) -> Option<usize> {
    buffer
        .get(from..)?
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| from + at + 4)
}

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    /// The minor version: `HTTP/1.0` or `HTTP/1.1`.
    version: u8,
    headers: Vec<(String, String)>,
}

/// The request line's method, target and minor version, and the headers.
fn parse_head(head: &str) -> Option<Head> {
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next().filter(|m| is_token(m))?.to_owned();
    let target = request_line.next().filter(|t| !t.is_empty())?.to_owned();
    let version = match request_line.next()? {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        _ => return None,
    };
    if request_line.next().is_some() {
        return None;
    }
    let mut headers = Vec::new();
    for line in lines.take_while(|line| !line.is_empty()) {
        // Folded header lines are obsolete and refused (RFC 9112, 5.2).
        if line.starts_with([' ', '\t']) {
            return None;
        }
        let (name, value) = line.split_once(':')?;
        if !is_token(name) {
            return None;
        }
        headers.push((
            name.to_ascii_lowercase(),
            value.trim_matches([' ', '\t']).to_owned(),
        ));
    }
    Some(Head {
        method,
        target,
        version,
        headers,
    })
}

/// Whether `text` is an HTTP token (a method or header name).
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether the connection may carry another request after this one.
fn keep_alive(version: u8, headers: &[(String, String)]) -> bool {
    let tokens = || {
        headers
            .iter()
            .filter(|(name, _)| name == "connection")
            .flat_map(|(_, value)| value.split(','))
            .map(str::trim)
    };
    if tokens().any(|token| token.eq_ignore_ascii_case("close")) {
        return false;
    }
    version == 1 || tokens().any(|token| token.eq_ignore_ascii_case("keep-alive"))
}

/// The body length the headers announce: 0 without `Content-Length`; an
/// error when it is not a number or given twice with different values.
fn content_length(headers: &[(String, String)]) -> Result<usize, ()> {
    let mut length = None;
    for (_, value) in headers.iter().filter(|(name, _)| name == "content-length") {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        // Saturated, so an absurd length is "too large", not an error.
        let parsed = value.parse::<usize>().unwrap_or(usize::MAX);
        if length.is_some_and(|seen| seen != parsed) {
            return Err(());
        }
        length = Some(parsed);
    }
    Ok(length.unwrap_or(0))
}

/// A well-formed answer with a `Content-Length` body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// Sent as given, before `Content-Length`.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Answer {
    /// An answer with `content_type` and `body`.
    pub fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".to_owned(), content_type.to_owned())],
            body: body.into(),
        }
    }

    /// A JSON answer, as Partner Center and Entra ID label theirs.
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Self::new(status, JSON_CONTENT_TYPE, body)
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The first value of header `name`, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    /// The status line and headers, ending with the empty line.
    fn head(&self, close: bool) -> String {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\n",
            self.status,
            reason_phrase(self.status)
        );
        for (name, value) in &self.headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        head
    }
}

/// The media type of every JSON answer.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// The reason phrase of `status`; clients ignore it, people read it.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_parsed_strictly() {
        let Head {
            method,
            target,
            version,
            headers,
        } = parse_head("GET /v1/x?a=b HTTP/1.1\r\nHost: 127.0.0.1\r\nMS-RequestId:  abc \r\n\r\n")
            .expect("parses");
        assert_eq!(method, "GET");
        assert_eq!(target, "/v1/x?a=b");
        assert_eq!(version, 1);
        assert_eq!(header_in(&headers, "ms-requestid"), Some("abc"));
        assert_eq!(header_in(&headers, "Host"), Some("127.0.0.1"));
        for bad in [
            "GET /x HTTP/2\r\n\r\n",
            "GET /x\r\n\r\n",
            "GET  /x HTTP/1.1\r\n\r\n",
            "G(T /x HTTP/1.1\r\n\r\n",
            "GET /x HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            "GET /x HTTP/1.1\r\nno colon\r\n\r\n",
            "GET /x HTTP/1.1 extra\r\n\r\n",
        ] {
            assert!(parse_head(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection() {
        let headers = |value: &str| vec![("connection".to_owned(), value.to_owned())];
        assert!(keep_alive(1, &[]));
        assert!(!keep_alive(0, &[]));
        assert!(!keep_alive(1, &headers("Close")));
        assert!(!keep_alive(1, &headers("keep-alive, close")));
        assert!(keep_alive(0, &headers("Keep-Alive")));
    }

    #[test]
    fn content_length_must_be_one_number() {
        let headers = |values: &[&str]| -> Vec<(String, String)> {
            values
                .iter()
                .map(|v| ("content-length".to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(content_length(&[]), Ok(0));
        assert_eq!(content_length(&headers(&["12"])), Ok(12));
        assert_eq!(content_length(&headers(&["12", "12"])), Ok(12));
        assert_eq!(
            content_length(&headers(&["99999999999999999999999"])),
            Ok(usize::MAX)
        );
        for bad in [&["12", "13"][..], &["-1"], &["1 2"], &[""], &["0x10"]] {
            assert_eq!(content_length(&headers(bad)), Err(()), "{bad:?}");
        }
    }

    #[test]
    fn answers_carry_their_length_and_close_when_asked() {
        let answer = Answer::json(503, "{}").with_header("Retry-After", "1");
        assert_eq!(
            answer.head(false),
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\nRetry-After: 1\r\nContent-Length: 2\r\n\r\n"
        );
        assert!(answer.head(true).ends_with("Connection: close\r\n\r\n"));
        assert_eq!(answer.header("retry-after"), Some("1"));
    }

    #[test]
    fn the_head_end_is_found_across_reads() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest", 0), Some(18));
        // After a read that ended in "\r\n\r", the search starts 3 back.
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\n", 17 - 3), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n", 0), None);
        assert_eq!(find_head_end(b"ab", 5), None);
    }
}
