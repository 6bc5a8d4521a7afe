//! A fake Partner Center for fault tests: a raw TCP server on 127.0.0.1
//! that answers each request with the next step of a script, including
//! answers no well-behaved HTTP library would produce (truncated bodies,
//! bytes dripping in, endless bodies, silence).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Step {
    /// Sends these bytes (a whole HTTP response) and closes the connection.
    Raw(Vec<u8>),
    /// Reads the request and never answers, keeping the connection open.
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
}

impl Step {
    /// A complete answer with `status`, extra `headers` and `body`.
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
            &[("Content-Type", "application/json; charset=utf-8")],
            body.as_bytes(),
        )
    }

    /// A `200` JSON answer with raw bytes, which need not be UTF-8.
    pub fn json_bytes(body: &[u8]) -> Self {
        Self::response(
            200,
            &[("Content-Type", "application/json; charset=utf-8")],
            body,
        )
    }

    /// An answer whose `Content-Length` promises more than is sent.
    pub fn truncated(body: &str) -> Self {
        let sent = &body[..body.len() / 2];
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
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// Header names in lower case, values as sent.
    pub headers: Vec<(String, String)>,
    /// When the request had been read.
    pub at: Instant,
}

impl ReceivedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Default)]
struct Script {
    steps: VecDeque<Step>,
    /// Repeated once `steps` is used up.
    then: Option<Step>,
    received: Vec<ReceivedRequest>,
}

/// The running server; it stops when dropped.
pub struct ScriptedUpstream {
    pub base_url: String,
    script: Arc<Mutex<Script>>,
    task: JoinHandle<()>,
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedUpstream {
    /// Starts a server that plays `steps` in order, then repeats `then`.
    pub async fn start(steps: Vec<Step>, then: Step) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let script = Arc::new(Mutex::new(Script::default()));
        let upstream = Self {
            base_url: format!("http://{address}"),
            script: script.clone(),
            task: tokio::spawn(accept_loop(listener, script)),
        };
        upstream.replace(steps, then);
        upstream
    }

    /// Replaces what is left of the script.
    pub fn replace(&self, steps: Vec<Step>, then: Step) {
        let mut script = self.script.lock().expect("script lock");
        script.steps = steps.into();
        script.then = Some(then);
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        self.script.lock().expect("script lock").received.clone()
    }

    /// Waits until at least `count` requests have arrived.
    pub async fn wait_for_requests(&self, count: usize, limit: Duration) -> Vec<ReceivedRequest> {
        let give_up = Instant::now() + limit;
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(
                Instant::now() < give_up,
                "expected {count} requests within {limit:?}, got {}: {received:#?}",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn accept_loop(listener: TcpListener, script: Arc<Mutex<Script>>) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        connections.spawn(serve(stream, script.clone()));
    }
}

async fn serve(mut stream: TcpStream, script: Arc<Mutex<Script>>) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let step = {
        let mut script = script.lock().expect("script lock");
        script.received.push(request);
        match script.steps.pop_front() {
            Some(step) => step,
            None => script.then.clone().unwrap_or(Step::Close),
        }
    };
    match step {
        Step::Raw(bytes) => {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
        Step::Hang => {
            // Hold the connection until the client gives up.
            let mut sink = [0u8; 1024];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        Step::Drip { head, body, every } => {
            if stream.write_all(&head).await.is_err() {
                return;
            }
            for byte in body {
                tokio::time::sleep(every).await;
                if stream.write_all(&[byte]).await.is_err() {
                    return;
                }
            }
        }
        Step::Endless => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let _ = stream.write_all(b"b\r\n{\"items\": [\r\n").await;
            let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "1".repeat(64 * 1024));
            while stream.write_all(chunk.as_bytes()).await.is_ok() {}
        }
        Step::Close => {}
    }
}

/// Reads a request head (the exporter only sends GETs without a body).
async fn read_request(stream: &mut TcpStream) -> Option<ReceivedRequest> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buffer.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 || buffer.len() > 64 * 1024 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let text = String::from_utf8_lossy(&buffer);
    let mut lines = text.split("\r\n");
    // The request line; what is asked for does not change the answer.
    lines.next()?;
    let headers = lines
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Some(ReceivedRequest {
        headers,
        at: Instant::now(),
    })
}
