//! The one harness for starting the exporter and scraping it: in-process
//! ([`RunningExporter`], `app::run` on a loopback listener of this
//! process) or as the built binary ([`ExporterProcess`]), both scraped
//! through the same [`Scrape`] methods.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use partner_center_exporter::AppError;
use partner_center_exporter::ServerSettings;
use partner_center_exporter::{CLIENT_SECRET_ENV, Config, REFRESH_TOKEN_ENV};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    ChildGuard, Exposition, WAIT, http, promtool_check_metrics, read_all, test_config,
    test_server_settings,
};

/// The built exporter.
pub const BIN: &str = env!("CARGO_BIN_EXE_partner-center-exporter");

/// The flag that has the binary listen on 127.0.0.1 on a port of its
/// choosing (the `listening` log line names it).
pub const LISTEN: &str = "--web.listen-address=127.0.0.1:0";

/// Longest wait for the binary to log that it listens: generous for a
/// loaded machine, but finite.
pub const LISTENING_LIMIT: Duration = Duration::from_secs(30);

/// Longest wait for the binary's first good poll to show on `/metrics`.
const BINARY_UP_LIMIT: Duration = Duration::from_secs(20);

/// How long the streams of an exited process may take to close.
const STREAMS_CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// The time between two scrapes, and between two looks at a process's output.
const PAUSE: Duration = Duration::from_millis(50);

/// An exporter on 127.0.0.1 that the tests scrape, in-process or the binary.
pub trait Scrape {
    /// How long [`Scrape::until_up`] waits for the first good poll.
    const UP_LIMIT: Duration;

    /// Where it listens.
    fn address(&self) -> SocketAddr;

    /// The HTTP client for its requests, deaf to any proxy settings.
    fn client(&self) -> reqwest::Client;

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address())
    }

    /// GETs `path`.
    async fn get(&self, path: &str) -> reqwest::Response {
        let url = self.url(path);
        self.client()
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET {url}: {err:?}"))
    }

    /// Scrapes `/metrics` and returns the body, checked by promtool.
    async fn scrape(&self) -> String {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let body = response.text().await.expect("body");
        promtool_check_metrics(&body);
        body
    }

    /// The landing page's HTML.
    async fn landing_page(&self) -> String {
        let response = self.get("/").await;
        assert_eq!(response.status(), 200);
        response.text().await.expect("landing page")
    }

    /// Scrapes until a scrape satisfies `condition`, or fails after `limit`.
    async fn scrape_until(
        &self,
        limit: Duration,
        condition: impl Fn(&Exposition) -> bool,
    ) -> Exposition {
        let deadline = Instant::now() + limit;
        loop {
            let exposition = Exposition::parse(&self.scrape().await);
            if condition(&exposition) {
                return exposition;
            }
            assert!(
                Instant::now() < deadline,
                "condition not met within {limit:?}; last scrape:\n{}",
                exposition.text
            );
            tokio::time::sleep(PAUSE).await;
        }
    }

    /// Waits for a scrape showing `partner_center_up{source="license_usage"} 1`.
    async fn until_up(&self) -> Exposition {
        self.scrape_until(Self::UP_LIMIT, |m| {
            m.value("partner_center_up", &[("source", "license_usage")]) == Some(1.0)
        })
        .await
    }

    /// Waits for a scrape showing
    /// `partner_center_up{tenant="…",source="license_usage"} 1` for every
    /// one of `tenants` (an exporter with `tenants`, such as the demo).
    async fn until_tenants_up(&self, tenants: &[&str]) -> Exposition {
        self.scrape_until(Self::UP_LIMIT, |m| {
            tenants.iter().all(|tenant| {
                m.value(
                    "partner_center_up",
                    &[("tenant", tenant), ("source", "license_usage")],
                ) == Some(1.0)
            })
        })
        .await
    }

    /// Waits for a scrape counting at least `count` failed polls for
    /// `reason`, and checks that it shows `partner_center_up 0`.
    async fn until_poll_errors(&self, reason: &str, count: f64) -> Exposition {
        let metrics = self
            .scrape_until(WAIT, |m| {
                m.value(
                    "partner_center_poll_errors_total",
                    &[("source", "license_usage"), ("reason", reason)],
                )
                .is_some_and(|errors| errors >= count)
            })
            .await;
        assert_eq!(
            metrics.value("partner_center_up", &[("source", "license_usage")]),
            Some(0.0),
            "up after a {reason} failure"
        );
        metrics
    }
}

// ---------------------------------------------------------------------------
// In-process
// ---------------------------------------------------------------------------

/// An exporter started in-process on 127.0.0.1 with a random port.
pub struct RunningExporter {
    pub address: SocketAddr,
    pub token_file: PathBuf,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<Result<(), AppError>>>,
    _dir: tempfile::TempDir,
}

impl Scrape for RunningExporter {
    const UP_LIMIT: Duration = WAIT;

    fn address(&self) -> SocketAddr {
        self.address
    }

    /// A new client for every request, so no connection outlives it.
    fn client(&self) -> reqwest::Client {
        http()
    }
}

impl RunningExporter {
    /// Scrapes `/metrics` without promtool, for loops that wait for a
    /// state (promtool on every round would slow the loop, and some
    /// tests time what the exporter does meanwhile).
    pub async fn scrape_plain(&self) -> Exposition {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), 200);
        Exposition::parse(&response.text().await.expect("metrics body"))
    }

    /// Waits up to `limit` for a plain scrape satisfying `condition`;
    /// `what` names the awaited state in the failure.
    pub async fn metrics_until(
        &self,
        limit: Duration,
        what: &str,
        condition: impl Fn(&Exposition) -> bool,
    ) -> Exposition {
        let deadline = Instant::now() + limit;
        loop {
            let metrics = self.scrape_plain().await;
            if condition(&metrics) {
                return metrics;
            }
            assert!(
                Instant::now() < deadline,
                "no scrape showed {what} within {limit:?}; last scrape:\n{}",
                metrics.text
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Starts an exporter polling `base_url` every `interval`.
    pub async fn start(base_url: &str, interval: Duration) -> Self {
        let (config, dir) = test_config(base_url, interval);
        Self::start_with(config, dir).await
    }

    /// Starts an exporter with a prepared configuration.
    pub async fn start_with(config: Config, dir: tempfile::TempDir) -> Self {
        Self::start_with_settings(config, dir, test_server_settings()).await
    }

    /// Starts an exporter with a prepared configuration and server settings.
    pub async fn start_with_settings(
        config: Config,
        dir: tempfile::TempDir,
        settings: ServerSettings,
    ) -> Self {
        let token_file = config.auth.bearer_token_file.clone().expect("token file");
        Self::spawn(config, token_file, dir, settings).await
    }

    /// Starts an exporter with a configuration of any authentication method
    /// (App+User included, which has no token file): `token_file` is the
    /// configured bearer token file if there is one, else empty. Files the
    /// configuration names are the caller's to keep.
    pub async fn start_with_any_auth(config: Config) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let token_file = config.auth.bearer_token_file.clone().unwrap_or_default();
        Self::spawn(config, token_file, dir, test_server_settings()).await
    }

    /// Runs `app::run` on a fresh 127.0.0.1 listener.
    async fn spawn(
        config: Config,
        token_file: PathBuf,
        dir: tempfile::TempDir,
        settings: ServerSettings,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(partner_center_exporter::run(
            config,
            vec![listener],
            settings,
            shutdown.clone(),
        ));
        Self {
            address,
            token_file,
            shutdown,
            handle: Some(handle),
            _dir: dir,
        }
    }

    /// Sends the stop signal and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), AppError> {
        self.shutdown.cancel();
        let handle = self.handle.take().expect("running");
        tokio::time::timeout(Duration::from_secs(15), handle)
            .await
            .expect("exporter stops within 15s")
            .expect("exporter task did not panic")
    }
}

impl Drop for RunningExporter {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

// ---------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------

/// One of a process's output streams, line by line, as far as read.
#[derive(Default)]
struct Lines {
    lines: Vec<String>,
    /// Set once the process closed the stream.
    closed: bool,
    /// Set if a line was not UTF-8 (it is kept, made valid).
    not_utf8: bool,
}

impl Lines {
    /// The lines so far, which must be text.
    fn text(stream: &Mutex<Lines>, name: &str) -> Vec<String> {
        let lines = stream.lock().expect("lines lock");
        assert!(
            !lines.not_utf8,
            "the exporter wrote a line that is not UTF-8 to {name}:\n{}",
            lines.lines.join("\n")
        );
        lines.lines.clone()
    }
}

/// Reads `stream` line by line in a thread of its own.
fn collect_lines(stream: impl Read + Send + 'static) -> Arc<Mutex<Lines>> {
    let lines = Arc::new(Mutex::new(Lines::default()));
    let writer = lines.clone();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let bytes = line.strip_suffix(b"\n").unwrap_or(&line);
                    let text = String::from_utf8_lossy(bytes).into_owned();
                    let mut lines = writer.lock().expect("lines lock");
                    lines.not_utf8 |= std::str::from_utf8(bytes).is_err();
                    lines.lines.push(text);
                }
            }
        }
        writer.lock().expect("lines lock").closed = true;
    });
    lines
}

/// The address of a logfmt `message=listening address=HOST:PORT` line.
fn logfmt_listening_address(line: &str) -> Option<SocketAddr> {
    let mut fields = line.split_whitespace();
    fields.find(|field| *field == "message=listening")?;
    let address = fields.next()?.strip_prefix("address=")?;
    Some(address.parse().expect("listening address is host:port"))
}

/// The exporter binary running, its standard output and error read line
/// by line in the background. Stopped and reaped when dropped.
pub struct ExporterProcess {
    pub child: ChildGuard,
    stdout: Arc<Mutex<Lines>>,
    stderr: Arc<Mutex<Lines>>,
    /// The first listening address, once logged.
    address: Option<SocketAddr>,
    /// One client for all of the test's requests, as Prometheus keeps one:
    /// its idle keep-alive connections stay open between requests.
    client: reqwest::Client,
}

impl Scrape for ExporterProcess {
    const UP_LIMIT: Duration = BINARY_UP_LIMIT;

    /// Where it listens; [`ExporterProcess::start`] or
    /// [`ExporterProcess::listening`] waits for it first.
    fn address(&self) -> SocketAddr {
        self.address
            .expect("the listening address is awaited before it is used")
    }

    fn client(&self) -> reqwest::Client {
        self.client.clone()
    }
}

/// Environment variables that would send the binary's requests to
/// 127.0.0.1 elsewhere.
const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

impl ExporterProcess {
    /// The binary with `args`, deaf to the machine's proxy settings (every
    /// fake server is on 127.0.0.1) and without a secret from this
    /// process's environment; callers may add variables of their own.
    pub fn command(args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command.args(args);
        for name in PROXY_VARIABLES {
            command.env_remove(name);
        }
        command
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .env_remove(CLIENT_SECRET_ENV)
            .env_remove(REFRESH_TOKEN_ENV);
        command
    }

    /// Starts the binary with `args` and returns at once.
    pub fn spawn(args: &[&str]) -> Self {
        Self::spawn_command(Self::command(args))
    }

    /// Starts `command` (the binary, or something that becomes it), its
    /// standard input closed and its output read.
    pub fn spawn_command(mut command: Command) -> Self {
        let mut child = ChildGuard(
            command
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start the exporter binary"),
        );
        let stdout = collect_lines(child.0.stdout.take().expect("stdout"));
        let stderr = collect_lines(child.0.stderr.take().expect("stderr"));
        Self {
            child,
            stdout,
            stderr,
            address: None,
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(WAIT)
                .build()
                .expect("HTTP client"),
        }
    }

    /// Starts the binary with `args` (among them a listen address, e.g.
    /// [`LISTEN`]) and waits until it listens.
    pub async fn start(args: &[&str]) -> Self {
        let mut exporter = Self::spawn(args);
        exporter.listening().await;
        exporter
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Standard error's lines so far: the log.
    pub fn log_lines(&self) -> Vec<String> {
        Lines::text(&self.stderr, "stderr")
    }

    /// Standard error so far.
    pub fn log_text(&self) -> String {
        self.log_lines().join("\n")
    }

    /// Standard output so far.
    pub fn stdout(&self) -> String {
        Lines::text(&self.stdout, "stdout").join("\n")
    }

    /// Waits up to `limit` for a standard error line satisfying `wanted`
    /// and returns the first; fails early if the process closes standard
    /// error without one.
    pub async fn wait_for_line(
        &self,
        what: &str,
        limit: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        Self::wait_for(&self.stderr, "stderr", what, limit, wanted, || {
            self.log_text()
        })
        .await
    }

    /// Like [`ExporterProcess::wait_for_line`], on standard output.
    pub async fn wait_for_stdout_line(
        &self,
        what: &str,
        limit: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        Self::wait_for(&self.stdout, "stdout", what, limit, wanted, || {
            format!("{}\n--- stderr ---\n{}", self.stdout(), self.log_text())
        })
        .await
    }

    async fn wait_for(
        stream: &Mutex<Lines>,
        name: &str,
        what: &str,
        limit: Duration,
        wanted: impl Fn(&str) -> bool,
        output: impl Fn() -> String,
    ) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let closed = {
                let lines = stream.lock().expect("lines lock");
                if let Some(line) = lines.lines.iter().find(|line| wanted(line)) {
                    return line.clone();
                }
                lines.closed
            };
            assert!(
                !closed,
                "the exporter closed {name} before a line with {what}; {name}:\n{}",
                output()
            );
            assert!(
                Instant::now() < deadline,
                "no {name} line with {what} within {limit:?}; {name} so far:\n{}",
                output()
            );
            tokio::time::sleep(PAUSE).await;
        }
    }

    /// Waits up to `limit` until `count` standard error lines satisfy `wanted`.
    pub async fn wait_for_line_count(
        &self,
        what: &str,
        count: usize,
        limit: Duration,
        wanted: impl Fn(&str) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        while self.log_lines().iter().filter(|line| wanted(line)).count() < count {
            assert!(
                Instant::now() < deadline,
                "fewer than {count} log lines with {what} within {limit:?}; stderr:\n{}",
                self.log_text()
            );
            tokio::time::sleep(PAUSE).await;
        }
    }

    /// Waits for `count` logfmt `message=listening address=HOST:PORT` lines
    /// and returns their addresses; the first is then [`Scrape::address`].
    pub async fn listening_addresses(&mut self, count: usize) -> Vec<SocketAddr> {
        let deadline = Instant::now() + LISTENING_LIMIT;
        loop {
            let addresses: Vec<SocketAddr> = self
                .log_lines()
                .iter()
                .filter_map(|line| logfmt_listening_address(line))
                .collect();
            if addresses.len() >= count {
                assert_eq!(addresses.len(), count, "{}", self.log_text());
                self.address = Some(addresses[0]);
                return addresses;
            }
            assert!(
                !self.stderr.lock().expect("lines lock").closed,
                "the exporter closed stderr (exit status {:?}) before logging \
                 message=listening address=...; stderr:\n{}",
                self.child.0.try_wait(),
                self.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "no log line with message=listening address=... within {LISTENING_LIMIT:?}; \
                 stderr so far:\n{}",
                self.log_text()
            );
            tokio::time::sleep(PAUSE).await;
        }
    }

    /// Waits for the first `message=listening` line and returns its address.
    pub async fn listening(&mut self) -> SocketAddr {
        if let Some(address) = self.address {
            return address;
        }
        let line = self
            .wait_for_line("message=listening address=...", LISTENING_LIMIT, |line| {
                logfmt_listening_address(line).is_some()
            })
            .await;
        let address = logfmt_listening_address(&line).expect("a listening address");
        self.address = Some(address);
        address
    }

    /// Whether the process has not exited yet.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.0.try_wait(), Ok(None))
    }

    /// Sends a signal with kill(1), e.g. `-USR1`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed: {status:?}");
    }

    /// Sends SIGTERM, as an init system would.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// SIGKILL, as a crash or the OOM killer would; reaps the process and
    /// waits for the rest of its output.
    pub async fn kill(&mut self) {
        self.child.0.kill().expect("SIGKILL");
        self.child.0.wait().expect("reap");
        self.wait_for_streams_to_close().await;
    }

    /// Waits up to `limit` for the process to exit by itself, then for the
    /// rest of its output; fails if standard error stays open after the exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.0.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.0.kill();
                let _ = self.child.0.wait();
                self.wait_for_streams_to_close().await;
                panic!(
                    "the exporter did not exit within {limit:?}; stderr:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.wait_for_streams_to_close().await;
        assert!(
            self.stderr.lock().expect("lines lock").closed,
            "stderr still open after exit:\n{}",
            self.log_text()
        );
        status
    }

    /// Waits a little for both streams to reach their end.
    async fn wait_for_streams_to_close(&self) {
        let deadline = Instant::now() + STREAMS_CLOSE_LIMIT;
        while !(self.stdout.lock().expect("lines lock").closed
            && self.stderr.lock().expect("lines lock").closed)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Runs the binary with `args` in `dir` (if given) and waits, within
    /// `limit`, for it to exit by itself. Blocking: for plain `#[test]`s.
    pub fn run_to_exit(dir: Option<&Path>, args: &[&str], limit: Duration) -> Output {
        let mut command = Self::command(args);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let mut child = ChildGuard(command.spawn().expect("start the exporter binary"));
        let stdout = read_all(child.0.stdout.take().expect("stdout"));
        let stderr = read_all(child.0.stderr.take().expect("stderr"));
        let status = child.wait_bounded(limit);
        // Kill a hung process first, so its pipes close and the readers finish.
        if status.is_none() {
            let _ = child.0.kill();
        }
        let stdout = stdout.join().expect("stdout reader");
        let stderr = stderr.join().expect("stderr reader");
        let Some(status) = status else {
            panic!(
                "{args:?} did not exit within {limit:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            );
        };
        Output {
            status,
            stdout,
            stderr,
        }
    }
}
