//! Processes the tests run: the exporter binary, Prometheus or
//! Alertmanager, each on loopback with its log kept for failure messages.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{ChildGuard, read_all};

const BIN: &str = env!("CARGO_BIN_EXE_partner-center-exporter");

/// Longest wait for a process to start answering, or for Prometheus to
/// have scraped a few times.
pub const START_LIMIT: Duration = Duration::from_secs(30);

/// The exporter binary on 127.0.0.1, its standard error collected line by line.
pub struct Exporter {
    pub child: ChildGuard,
    pub address: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Exporter {
    /// Starts the binary with `args` and `--web.listen-address=127.0.0.1:0`,
    /// and waits for the address it listens on.
    pub async fn start(args: &[&str]) -> Self {
        let mut child = ChildGuard(
            Command::new(BIN)
                .args(args)
                .arg("--web.listen-address=127.0.0.1:0")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start the exporter binary"),
        );
        let stderr = child.0.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                writer.lock().expect("log lock").push(line);
            }
        });
        let mut exporter = Self {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        let listening = exporter
            .wait_for_line("message=listening", START_LIMIT, |line| {
                line.contains("message=listening")
            })
            .await;
        exporter.address = listening
            .split_whitespace()
            .find_map(|field| field.strip_prefix("address="))
            .and_then(|address| address.parse().ok())
            .unwrap_or_else(|| panic!("no address in {listening:?}"));
        exporter
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// Waits up to `limit` for a log line satisfying `wanted`.
    pub async fn wait_for_line(
        &self,
        what: &str,
        limit: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self
                .log
                .lock()
                .expect("log lock")
                .iter()
                .find(|line| wanted(line))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no exporter log line with {what} within {limit:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a signal with kill(1), e.g. `-USR1`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed: {status:?}");
    }

    pub fn terminate(&self) {
        self.signal("-TERM");
    }
}

/// Prometheus or Alertmanager, logging into a file of the test's directory.
pub struct Server {
    pub name: &'static str,
    pub child: ChildGuard,
    pub url: String,
    pub log: PathBuf,
}

impl Server {
    pub fn start(name: &'static str, program: &Path, args: &[String], log: PathBuf) -> Self {
        let log_file = std::fs::File::create(&log).expect("create a log file");
        let stderr = log_file.try_clone().expect("clone the log file");
        let child = ChildGuard(
            Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(log_file)
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|err| panic!("start {}: {err}", program.display())),
        );
        let address = args
            .iter()
            .find_map(|arg| arg.strip_prefix("--web.listen-address="))
            .expect("a listen address");
        Self {
            name,
            child,
            url: format!("http://{address}"),
            log,
        }
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Waits until `/-/ready` answers 200, failing early if the process exits.
    pub async fn wait_ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Ok(response) = client.get(format!("{}/-/ready", self.url)).send().await
                && response.status() == 200
            {
                return;
            }
            if let Ok(Some(status)) = self.child.0.try_wait() {
                panic!(
                    "{} exited with {status} before it was ready:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} was not ready within {START_LIMIT:?}:\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago, for servers that cannot
/// be told to pick one themselves. Another process could take it in
/// between; the server then fails to start and says so.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Runs the binary with `args` in `dir` (if given) and waits, within
/// `limit`, for it to exit by itself.
pub fn run_to_exit(dir: Option<&Path>, args: &[&str], limit: Duration) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
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
