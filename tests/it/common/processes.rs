//! Servers the tests run beside the exporter: Prometheus or Alertmanager,
//! each on loopback with its log kept for failure messages.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::ChildGuard;

/// Longest wait for a server to be ready, or for Prometheus to have
/// scraped a few times.
pub const START_LIMIT: Duration = Duration::from_secs(30);

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
