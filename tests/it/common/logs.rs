//! The exporter's logs, captured in memory, for the tests that read them;
//! each such test runs in a process of its own.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::{ChildGuard, describe, read_all};

/// Log lines collected in memory, in logfmt as the exporter writes them.
#[derive(Clone, Default)]
pub struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

/// Set in the environment of a test's own process (see
/// [`CapturedLogs::in_own_process`]) to the test's name.
const OWN_PROCESS: &str = "PARTNER_CENTER_EXPORTER_TEST_OWN_PROCESS";

impl CapturedLogs {
    /// For a test that reads the exporter's logs; `test` is its name as
    /// libtest knows it (`logging::failures_and_...`). Events of every
    /// exporter in the process reach the one process-wide subscriber, so
    /// such a test runs in a process of its own, where all of them are
    /// its own: in the test binary this runs the test binary again with
    /// only `test`, checks that it passed and returns `None`; in that
    /// process it returns the log.
    ///
    /// Blocks while the other process runs: call it first, before the test
    /// starts anything.
    pub fn in_own_process(test: &str) -> Option<&'static CapturedLogs> {
        match std::env::var(OWN_PROCESS) {
            Ok(running) => {
                assert_eq!(running, test, "a test's own process runs that test only");
                return Some(Self::global());
            }
            Err(std::env::VarError::NotUnicode(value)) => panic!("{OWN_PROCESS}={value:?}"),
            Err(std::env::VarError::NotPresent) => {}
        }
        let binary = std::env::current_exe().expect("the test binary's path");
        let mut child = ChildGuard(
            Command::new(binary)
                .args([test, "--exact", "--test-threads=1", "--nocapture"])
                .env(OWN_PROCESS, test)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run the test binary again"),
        );
        let stdout = read_all(child.0.stdout.take().expect("stdout"));
        let stderr = read_all(child.0.stderr.take().expect("stderr"));
        let status = child.wait_bounded(OWN_PROCESS_LIMIT);
        if status.is_none() {
            let _ = child.0.kill();
        }
        let output = Output {
            status: status.unwrap_or_else(|| child.0.wait().expect("reap")),
            stdout: stdout.join().expect("stdout reader"),
            stderr: stderr.join().expect("stderr reader"),
        };
        // Shown with this test's output (on failure, or with --nocapture).
        println!("{}", describe(&output));
        assert!(
            status.is_some(),
            "{test} did not end within {OWN_PROCESS_LIMIT:?} in its own process"
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains("running 1 test") && stdout.contains("test result: ok. 1 passed"),
            "{test} did not run, or failed, in its own process"
        );
        assert!(output.status.success(), "{test} failed in its own process");
        None
    }

    /// The log of this whole process: every thread's events, from the
    /// first call on. A process-wide subscriber, because tracing caches
    /// per call site whether anyone listens, and with thread-local ones a
    /// test running beside another can miss its own events. Only a test's
    /// own process installs it.
    fn global() -> &'static CapturedLogs {
        static LOGS: std::sync::OnceLock<CapturedLogs> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            use tracing_subscriber::layer::SubscriberExt;
            let logs = CapturedLogs::default();
            let writer = logs.clone();
            let subscriber = tracing_subscriber::registry()
                .with(
                    tracing_logfmt::builder()
                        .layer()
                        .with_writer(move || writer.clone()),
                )
                .with(
                    tracing_subscriber::filter::Targets::new()
                        .with_target("partner_center_exporter", tracing::Level::TRACE),
                );
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in the test binary");
            logs
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }

    /// The first line containing every one of `needles`, or a failure
    /// showing all lines.
    pub fn line_with(&self, needles: &[&str]) -> String {
        let text = self.text();
        text.lines()
            .find(|line| needles.iter().all(|needle| line.contains(needle)))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no log line contains all of {needles:?}:\n{text}"))
    }
}

/// Longest run of a test in a process of its own.
const OWN_PROCESS_LIMIT: Duration = Duration::from_secs(120);

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
