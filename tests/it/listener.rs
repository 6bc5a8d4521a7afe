//! The web server against careless and hostile clients on 127.0.0.1: the
//! cap on parallel scrapes, clients that stop reading, the header-read
//! timeout for slow and idle connections, the request head size limit,
//! methods that change nothing, and the raised open file limit. In each
//! case a normal scrape must still succeed.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::exporter::{BIN, LISTEN};
use common::{
    ExporterProcess, RunningExporter, Scrape, USAGE_PATH, WAIT, collection, item, test_config,
    wait_for,
};
use partner_center_exporter::ServerSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// An interval that never comes round during a test: one poll only.
const ONCE: Duration = Duration::from_secs(3600);

/// How long tests wait for many clients at once on a busy machine.
const SLOW_WAIT: Duration = Duration::from_secs(60);

/// How long clients wait to be closed after a header-read or write-stall
/// timeout of a few seconds at most: generous, yet short of the 30 s of
/// hyper's default header-read timeout and of the default stall limit, so
/// that a server which ignored the test's setting fails.
const CLOSE_WAIT: Duration = Duration::from_secs(20);

/// Usage items behind a `/metrics` of about 12 MB: far more than loopback
/// socket buffers take in, so a client that does not read holds up the
/// body's sending.
const MANY_ITEMS: usize = 50_000;

/// The most a TCP send buffer can grow to on this host, 4 MiB by default.
fn max_send_buffer() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|text| text.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 * 1024 * 1024)
}

/// A fake Partner Center answering with `count` items, one series pair each.
async fn upstream_with_items(count: usize) -> MockServer {
    let items = (0..count)
        .map(|i| {
            item(
                &format!("Workload{i:06}"),
                "o365",
                "reseller",
                42.5,
                "2024-05-01T00:00:00Z",
            )
        })
        .collect();
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(collection(items, None)))
        .mount(&server)
        .await;
    server
}

/// Starts an exporter on `upstream` and waits until its first poll has
/// succeeded (through `/readyz`, which is cheap to ask for repeatedly).
async fn start_ready(upstream: &MockServer, settings: ServerSettings) -> RunningExporter {
    let (config, dir) = test_config(&upstream.uri(), ONCE);
    let exporter = RunningExporter::start_with_settings(config, dir, settings).await;
    let readyz = exporter.url("/readyz");
    wait_for(SLOW_WAIT, "the first poll", || {
        let readyz = readyz.clone();
        async move { common::get(&readyz).await.status() == 200 }
    })
    .await;
    exporter
}

fn settings(change: impl FnOnce(&mut ServerSettings)) -> ServerSettings {
    let mut settings = common::test_server_settings();
    change(&mut settings);
    settings
}

/// GETs `path` with a bounded wait and returns the status and body.
async fn get_bounded(exporter: &RunningExporter, path: &str) -> (u16, String) {
    let url = exporter.url(path);
    tokio::time::timeout(WAIT, async {
        let response = common::get(&url).await;
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    })
    .await
    .unwrap_or_else(|_| panic!("GET {path} answered within {WAIT:?}"))
}

/// A scrape that must succeed within a bounded wait; the body is checked
/// by promtool. Returns it with the time the scrape took.
async fn scrape_bounded(exporter: &RunningExporter) -> (String, Duration) {
    let started = Instant::now();
    let body = tokio::time::timeout(WAIT, exporter.scrape())
        .await
        .unwrap_or_else(|_| panic!("a scrape succeeded within {WAIT:?}"));
    (body, started.elapsed())
}

/// Sends `GET path` and reads only the status line: the request is being
/// answered, and from then on nothing more is read. The small receive
/// buffer keeps the kernel from taking in much of the body on the
/// client's behalf.
async fn request_without_reading(address: SocketAddr, path: &str) -> (TcpStream, String) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(16 * 1024)
        .expect("receive buffer size");
    let mut stream = socket.connect(address).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut status_line = Vec::new();
    tokio::time::timeout(WAIT, async {
        while !status_line.ends_with(b"\r\n") {
            let byte = stream.read_u8().await.expect("status line");
            status_line.push(byte);
        }
    })
    .await
    .expect("a status line within the wait");
    (
        stream,
        String::from_utf8(status_line).expect("ASCII status"),
    )
}

/// How a connection ended for a client.
#[derive(Debug, PartialEq)]
enum Ending {
    /// The server closed it after sending this (possibly nothing).
    Closed(String),
    /// The server reset it.
    Reset,
}

/// Reads until the server ends the connection, within `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Ending {
    let mut answer = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut answer)).await {
        Ok(Ok(_)) => Ending::Closed(String::from_utf8_lossy(&answer).into_owned()),
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionReset => Ending::Reset,
        Ok(Err(err)) => panic!("reading: {err}"),
        Err(_) => panic!("the server did not close the connection within {limit:?}"),
    }
}

/// Sends `request` (ignoring a refusal half-way) and reads the answer
/// until the server closes the connection.
async fn send_and_read(address: SocketAddr, request: &[u8]) -> Ending {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    // The server may stop reading and close before all is sent.
    let _ = stream.write_all(request).await;
    read_until_closed(&mut stream, WAIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_beyond_max_requests_get_503_while_health_answers() {
    let upstream = upstream_with_items(MANY_ITEMS).await;
    let exporter = start_ready(&upstream, settings(|s| s.max_requests = 2)).await;
    let (body, _) = scrape_bounded(&exporter).await;
    assert!(
        body.len() > 2 * max_send_buffer(),
        "the body ({} bytes) is too small to outlast the socket buffers (up to {} bytes)",
        body.len(),
        max_send_buffer()
    );

    // Two clients ask for the metrics and do not read them: both slots stay taken.
    let (first, status) = request_without_reading(exporter.address, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK\r\n");
    let (second, status) = request_without_reading(exporter.address, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK\r\n");

    let (status, refusal) = get_bounded(&exporter, "/metrics").await;
    assert_eq!(status, 503, "{refusal}");
    assert!(refusal.contains("limit 2"), "{refusal}");
    // The cap is on scrapes only: health and readiness still answer.
    assert_eq!(get_bounded(&exporter, "/healthz").await.0, 200);
    assert_eq!(get_bounded(&exporter, "/readyz").await.0, 200);
    assert_eq!(get_bounded(&exporter, "/").await.0, 200);
    // A refused scrape takes no slot: still refused.
    assert_eq!(get_bounded(&exporter, "/metrics").await.0, 503);

    // Once the readers go away, their slots come back.
    drop(first);
    drop(second);
    let metrics = exporter.url("/metrics");
    wait_for(WAIT, "a scrape to be accepted again", || {
        let metrics = metrics.clone();
        async move {
            // HEAD: a slot is taken and given back without a 10 MB download.
            let head = common::http().head(&metrics).send().await.expect("HEAD");
            head.status() == 200
        }
    })
    .await;
    let (again, _) = scrape_bounded(&exporter).await;
    assert!(again.contains("Workload049999"), "the whole body arrived");
    exporter.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_zero_means_no_limit() {
    let upstream = upstream_with_items(MANY_ITEMS).await;
    let exporter = start_ready(&upstream, settings(|s| s.max_requests = 0)).await;
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (reader, status) = request_without_reading(exporter.address, "/metrics").await;
        assert_eq!(status, "HTTP/1.1 200 OK\r\n");
        readers.push(reader);
    }
    let (body, _) = scrape_bounded(&exporter).await;
    assert!(body.contains("Workload049999"), "the whole body arrived");
    drop(readers);
    exporter.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_and_frees_its_slot() {
    let upstream = upstream_with_items(MANY_ITEMS).await;
    let exporter = start_ready(
        &upstream,
        settings(|s| {
            s.max_requests = 1;
            s.write_stall_timeout = Duration::from_secs(1);
        }),
    )
    .await;
    let (full, _) = scrape_bounded(&exporter).await;

    let (mut stalled, status) = request_without_reading(exporter.address, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK\r\n");
    // Without a limit on stalls, the one slot would stay taken for as long
    // as this client keeps its connection open without reading.
    let metrics = exporter.url("/metrics");
    wait_for(CLOSE_WAIT, "the stalled scrape's slot to come back", || {
        let metrics = metrics.clone();
        async move {
            let head = common::http().head(&metrics).send().await.expect("HEAD");
            head.status() == 200
        }
    })
    .await;
    // The server gave up on it: what is left to read ends before the body.
    match read_until_closed(&mut stalled, WAIT).await {
        Ending::Reset => {}
        Ending::Closed(partial) => assert!(
            partial.len() < full.len(),
            "the whole body arrived after all ({} bytes)",
            partial.len()
        ),
    }
    scrape_bounded(&exporter).await;
    exporter.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_that_keeps_reading_gets_the_whole_body() {
    let upstream = upstream_with_items(MANY_ITEMS).await;
    let stall_limit = Duration::from_secs(2);
    let exporter = start_ready(&upstream, settings(|s| s.write_stall_timeout = stall_limit)).await;
    let (full, _) = scrape_bounded(&exporter).await;

    let (mut slow, status) = request_without_reading(exporter.address, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK\r\n");
    // A pause far shorter than the limit after every read: the whole body
    // takes several times the limit to arrive.
    let started = Instant::now();
    let mut received = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    let ending = loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        match tokio::time::timeout(WAIT, slow.read(&mut chunk)).await {
            Ok(Ok(0)) => break "closed",
            Ok(Ok(n)) => received += n,
            Ok(Err(err)) => panic!("reading after {received} bytes: {err}"),
            Err(_) => break "stuck",
        }
        if received >= full.len() {
            break "complete";
        }
    };
    let took = started.elapsed();
    assert_eq!(ending, "complete", "after {received} bytes and {took:?}");
    eprintln!("a slow reader took {took:?} for {received} bytes");
    exporter.stop().await.expect("clean stop");
}

/// Sends `header` one byte every `pace` until the server closes the
/// connection; returns how it ended and how many bytes went out.
async fn trickle(address: SocketAddr, header: Arc<Vec<u8>>, pace: Duration) -> (Ending, usize) {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let mut sent = 0;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 512];
    loop {
        tokio::select! {
            read = stream.read(&mut buffer) => match read {
                Ok(0) => return (Ending::Closed(String::from_utf8_lossy(&answer).into_owned()), sent),
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return (Ending::Reset, sent),
                Err(err) => panic!("reading: {err}"),
            },
            () = tokio::time::sleep(pace) => {
                let byte = header.get(sent).copied().expect("the header never ends within the test");
                if stream.write_all(&[byte]).await.is_err() {
                    return (Ending::Reset, sent);
                }
                sent += 1;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_clients_are_closed_and_do_not_hold_up_scrapes() {
    let upstream = upstream_with_items(10).await;
    let timeout = Duration::from_secs(1);
    let exporter = start_ready(&upstream, settings(|s| s.header_read_timeout = timeout)).await;

    // Each byte comes well within the timeout of the one before: only a
    // limit on the whole head, not on the pause between bytes, ends these.
    let pace = Duration::from_millis(200);
    let mut header = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_vec();
    header.resize(header.len() + 10_000, b'a');
    let header = Arc::new(header);
    let clients: Vec<_> = (0..200)
        .map(|_| tokio::spawn(trickle(exporter.address, header.clone(), pace)))
        .collect();

    let (_, took) = scrape_bounded(&exporter).await;
    eprintln!("scrape with 200 slow clients took {took:?}");
    assert_eq!(get_bounded(&exporter, "/healthz").await.0, 200);

    let endings = tokio::time::timeout(CLOSE_WAIT, async {
        let mut endings = Vec::new();
        for client in clients {
            endings.push(client.await.expect("client task"));
        }
        endings
    })
    .await
    .expect("every slow client is closed");
    for (ending, sent) in endings {
        assert!(
            sent < header.len(),
            "closed before the head was complete, after {sent} bytes"
        );
        match ending {
            Ending::Reset => {}
            Ending::Closed(answer) => assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
                "{answer:?}"
            ),
        }
    }
    let (_, took) = scrape_bounded(&exporter).await;
    eprintln!("scrape after the slow clients took {took:?}");
    exporter.stop().await.expect("clean stop");
}

/// Sends `GET /healthz` on a keep-alive connection and reads the answer,
/// leaving the connection open.
async fn one_keep_alive_request(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 512];
    // The answer is small and complete once "OK\n" has arrived.
    while !answer.ends_with(b"\r\n\r\nOK\n") {
        let n = stream.read(&mut buffer).await.expect("answer");
        assert!(n > 0, "closed before answering: {answer:?}");
        answer.extend_from_slice(&buffer[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_are_closed_and_do_not_hold_up_scrapes() {
    const IDLE: usize = 2000;
    // Both ends of every connection are in this process, plus some room.
    let needed = 2 * IDLE as u64 + 512;
    let limit = rlimit::increase_nofile_limit(needed).expect("raise the open file limit");
    assert!(
        limit >= needed,
        "this test needs {needed} open files; the hard limit allows {limit}"
    );

    let upstream = upstream_with_items(1000).await;
    let timeout = Duration::from_secs(5);
    let exporter = start_ready(&upstream, settings(|s| s.header_read_timeout = timeout)).await;
    let (_, alone) = scrape_bounded(&exporter).await;

    // Half of them idle after a request (keep-alive), half before any.
    // Connects go 100 at a time so that the listen backlog is not overrun.
    let connecting = Arc::new(tokio::sync::Semaphore::new(100));
    let ready = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let opened = Instant::now();
    let clients: Vec<_> = (0..IDLE)
        .map(|i| {
            let (connecting, ready, closed) = (connecting.clone(), ready.clone(), closed.clone());
            let address = exporter.address;
            tokio::spawn(async move {
                let turn = connecting.acquire_owned().await.expect("semaphore");
                let mut stream = TcpStream::connect(address).await.expect("connect");
                if i % 2 == 0 {
                    one_keep_alive_request(&mut stream).await;
                }
                drop(turn);
                ready.fetch_add(1, Ordering::SeqCst);
                let ending = read_until_closed(&mut stream, CLOSE_WAIT).await;
                closed.fetch_add(1, Ordering::SeqCst);
                ending
            })
        })
        .collect();
    let counter = ready.clone();
    wait_for(SLOW_WAIT, "every idle connection to be set up", || {
        let counter = counter.clone();
        async move { counter.load(Ordering::SeqCst) == IDLE }
    })
    .await;
    let set_up = opened.elapsed();

    let (_, crowded) = scrape_bounded(&exporter).await;
    let open_throughout = IDLE - closed.load(Ordering::SeqCst);
    eprintln!(
        "scrape alone took {alone:?}; with {open_throughout} of {IDLE} idle connections \
         open throughout, {crowded:?} (setting them up took {set_up:?})"
    );

    for client in clients {
        // Each client waits at most CLOSE_WAIT after going idle.
        match client.await.expect("every idle connection is closed") {
            Ending::Reset => {}
            Ending::Closed(answer) => assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
                "{answer:?}"
            ),
        }
    }
    scrape_bounded(&exporter).await;
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn oversized_request_heads_are_refused_and_the_next_client_is_served() {
    let upstream = upstream_with_items(10).await;
    let exporter = start_ready(&upstream, common::test_server_settings()).await;
    let head_with = |header_bytes: usize| {
        let mut request =
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: ".to_vec();
        request.resize(request.len() + header_bytes, b'a');
        request.extend_from_slice(b"\r\n\r\n");
        request
    };

    // Headers of a few KiB, like a long bearer token, are fine.
    match send_and_read(exporter.address, &head_with(8 * 1024)).await {
        Ending::Closed(answer) => assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.200}"),
        Ending::Reset => panic!("an 8 KiB header was refused"),
    }
    // 64 KiB is refused: with 431 when the answer gets through, else by
    // closing the connection with unread input, which resets it.
    match send_and_read(exporter.address, &head_with(64 * 1024)).await {
        Ending::Reset => {}
        Ending::Closed(answer) => assert!(
            answer.starts_with("HTTP/1.1 431"),
            "a 64 KiB header was not refused: {answer:.200}"
        ),
    }
    // The same in many lines.
    let mut many_lines = b"GET /metrics HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..90 {
        many_lines.extend_from_slice(format!("X-Line-{i}: {}\r\n", "b".repeat(700)).as_bytes());
    }
    many_lines.extend_from_slice(b"\r\n");
    match send_and_read(exporter.address, &many_lines).await {
        Ending::Reset => {}
        Ending::Closed(answer) => assert!(
            answer.starts_with("HTTP/1.1 431"),
            "a 64 KiB head in many lines was not refused: {answer:.200}"
        ),
    }
    scrape_bounded(&exporter).await;
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn no_method_or_body_changes_anything() {
    let upstream = upstream_with_items(10).await;
    let exporter = start_ready(&upstream, common::test_server_settings()).await;
    let state_of = |text: &str| {
        common::Exposition::parse(text)
            .samples
            .into_iter()
            .filter(|sample| sample.name.starts_with("partner_center_"))
            .map(|sample| format!("{sample:?}"))
            .collect::<Vec<_>>()
    };
    let (before, _) = scrape_bounded(&exporter).await;
    let polls = upstream.received_requests().await.expect("recorded").len();

    let client = common::http();
    // A push in the text format, as a client might try against a Pushgateway.
    let push = "partner_center_up{source=\"license_usage\"} 0\npartner_center_license_usage_prorated_percent{channel=\"reseller\",service=\"o365\",workload=\"Workload000001\"} 0\n";
    for path in ["/metrics", "/", "/healthz", "/readyz"] {
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let response = client
                .request(method.clone(), exporter.url(path))
                .header("content-type", "text/plain; version=0.0.4")
                .body(push)
                .send()
                .await
                .unwrap_or_else(|err| panic!("{method} {path}: {err}"));
            assert_eq!(response.status(), 405, "{method} {path}");
            assert_eq!(response.headers()["allow"], "GET, HEAD", "{method} {path}");
        }
    }

    let (after, _) = scrape_bounded(&exporter).await;
    assert_eq!(state_of(&after), state_of(&before));
    assert_eq!(
        upstream.received_requests().await.expect("recorded").len(),
        polls,
        "no request made the exporter poll"
    );
    exporter.stop().await.expect("clean stop");
}

/// The soft and hard "Max open files" of a running process.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("/proc limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open file limit in:\n{limits}"));
    let mut values = line["Max open files".len()..].split_whitespace();
    let soft = values.next().expect("soft limit").to_owned();
    let hard = values.next().expect("hard limit").to_owned();
    (soft, hard)
}

#[tokio::test]
async fn the_binary_raises_its_open_file_limit_to_the_hard_limit() {
    const LOW: u32 = 256;
    let (_, hard) = open_file_limits(std::process::id());
    assert!(
        hard == "unlimited" || hard.parse::<u64>().expect("hard limit") > u64::from(LOW),
        "the hard limit ({hard}) leaves nothing to raise"
    );
    // The shell lowers the soft limit, as systemd's 1024 would, and then
    // becomes the exporter.
    let mut command = std::process::Command::new("sh");
    command.args([
        "-c",
        &format!("ulimit -S -n {LOW} && exec \"$0\" \"$@\""),
        BIN,
        "--demo",
        LISTEN,
        "--log.level=debug",
    ]);
    let exporter = ExporterProcess::spawn_command(command);
    exporter
        .wait_for_line("message=listening", SLOW_WAIT, |line| {
            line.contains("message=listening")
        })
        .await;
    // The log up to the listening line.
    let mut log = exporter.log_lines();
    let listening = log
        .iter()
        .position(|line| line.contains("message=listening"))
        .expect("the listening line");
    log.truncate(listening + 1);
    let (soft, hard) = open_file_limits(exporter.pid());
    assert_eq!(soft, hard, "soft limit raised to the hard limit");
    assert!(
        log.iter()
            .any(|line| line.contains("open file limit") && line.contains(&format!("limit={hard}"))),
        "the new limit is logged:\n{}",
        log.join("\n")
    );
}
