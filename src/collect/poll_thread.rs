//! The poller's own thread and async runtime, at a lower scheduling
//! priority than the web server's.
//!
//! A poll is the exporter's only heavy work: receiving an answer of tens
//! of megabytes, decoding it, folding and rendering the snapshot. On the
//! server's runtime it competed with scrapes for the runtime's worker
//! threads and I/O driver: with 100 000-item polls back to back, a
//! scrape's 99th percentile rose from about 0.2 ms to about 3 ms on two
//! cores, even with decoding on the blocking pool, because receiving the
//! answer alone did it. Here the poll has a current-thread runtime of its
//! own, whose blocking pool decodes and renders, so it shares nothing with
//! the server but the processor; and there, on Linux, its threads run
//! [`NICE_INCREMENT`] nice levels below the exporter's, so the kernel lets
//! a woken server thread go first while the poll still gets the processor
//! whenever nothing else wants it.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

/// How much lower the poll's threads run than the exporter's. Ten steps
/// give a thread about a tenth of a normal one's weight: scrapes go first,
/// and a poll still finishes on a machine kept busy by other work.
pub const NICE_INCREMENT: i32 = 10;

/// The highest (least favoured) nice value Linux knows.
#[cfg(target_os = "linux")]
const MAX_NICE: i32 = 19;

/// The running poll thread.
#[derive(Debug)]
pub struct PollThread {
    ended: tokio::sync::oneshot::Receiver<Result<(), String>>,
}

impl PollThread {
    /// Starts a thread named `name` that runs `task` to completion on a
    /// current-thread runtime of its own.
    pub fn spawn<F>(name: &str, task: F) -> std::io::Result<Self>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let priority = PollPriority::below_caller();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name(format!("{name}-blocking"))
            // A poll's blocking work is sequential (decode a page, then the
            // next, then build the snapshot); one thread keeps its large
            // allocations in one of the C allocator's per-thread arenas,
            // which then reuses the memory from poll to poll.
            .max_blocking_threads(1)
            // The blocking pool's threads, where pages are decoded and
            // snapshots rendered.
            .on_thread_start(move || priority.apply())
            .build()?;
        let (report, ended) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                priority.apply();
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| runtime.block_on(task)))
                    .map_err(|panic| panic_message(&*panic));
                // Work left on the blocking pool (a decoding cut short by
                // the stop) is not waited for: nothing reads its result.
                runtime.shutdown_background();
                // The receiver is gone only when nobody waits for the end.
                let _ = report.send(outcome);
            })?;
        Ok(Self { ended })
    }

    /// Waits for the task to end; an error carries the message of the
    /// panic that ended it.
    pub async fn join(self) -> Result<(), String> {
        self.ended
            .await
            .unwrap_or_else(|_| Err("the poll thread ended without a result".to_owned()))
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        format!("panicked: {message}")
    } else if let Some(message) = panic.downcast_ref::<String>() {
        format!("panicked: {message}")
    } else {
        "panicked".to_owned()
    }
}

/// The nice value of the poll's threads: [`NICE_INCREMENT`] above that of
/// the thread that starts them. Each thread sets it for itself: on Linux
/// a nice value belongs to a thread, not to the whole process (elsewhere
/// `setpriority` would lower the whole exporter, so it is left alone).
#[derive(Debug, Clone, Copy)]
struct PollPriority {
    #[cfg(target_os = "linux")]
    nice: Option<i32>,
}

impl PollPriority {
    #[cfg(target_os = "linux")]
    fn below_caller() -> Self {
        let caller = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
        if let Err(err) = &caller {
            tracing::warn!(error = %err, "cannot read the exporter's priority; the poll thread keeps it");
        }
        Self {
            nice: caller
                .ok()
                .map(|nice| nice.saturating_add(NICE_INCREMENT).min(MAX_NICE)),
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn below_caller() -> Self {
        Self {}
    }

    /// Sets the calling thread's nice value, unless it is that low already
    /// (a thread inherits its creator's). A failure costs scrape latency
    /// under load, not correctness: it is logged.
    #[cfg(target_os = "linux")]
    fn apply(self) {
        use rustix::process::{getpriority_process, setpriority_process};
        let Some(nice) = self.nice else { return };
        let thread = Some(rustix::thread::gettid());
        let set = getpriority_process(thread).and_then(|current| {
            if current >= nice {
                Ok(())
            } else {
                setpriority_process(thread, nice)
            }
        });
        if let Err(err) = set {
            tracing::warn!(error = %err, "cannot lower the priority of the poll thread; large polls may slow scrapes");
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn apply(self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    fn own_nice() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("getpriority")
    }

    #[tokio::test]
    async fn the_task_runs_on_its_own_named_thread() {
        let (seen, seen_rx) = std::sync::mpsc::channel();
        let caller = std::thread::current().id();
        let thread = PollThread::spawn("poll-test", async move {
            let on_blocking = tokio::task::spawn_blocking(|| std::thread::current().id())
                .await
                .expect("blocking task");
            let current = std::thread::current();
            seen.send((current.id(), current.name().map(str::to_owned), on_blocking))
                .expect("send");
        })
        .expect("spawned");
        assert_eq!(thread.join().await, Ok(()));
        let (id, name, blocking) = seen_rx.recv().expect("the task ran");
        assert_ne!(id, caller);
        assert_ne!(blocking, id, "blocking work leaves the poll thread");
        assert_eq!(name.as_deref(), Some("poll-test"));
    }

    #[tokio::test]
    async fn a_panic_ends_the_thread_with_its_message() {
        let thread =
            PollThread::spawn("poll-test", async { panic!("bug in the poller") }).expect("spawned");
        assert_eq!(
            thread.join().await,
            Err("panicked: bug in the poller".to_owned())
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_thread_and_its_blocking_pool_run_at_a_lower_priority() {
        let expected = (own_nice() + NICE_INCREMENT).min(MAX_NICE);
        let (seen, seen_rx) = std::sync::mpsc::channel();
        let thread = PollThread::spawn("poll-test", async move {
            let blocking = tokio::task::spawn_blocking(own_nice)
                .await
                .expect("blocking task");
            seen.send((own_nice(), blocking)).expect("send");
        })
        .expect("spawned");
        assert_eq!(thread.join().await, Ok(()));
        assert_eq!(seen_rx.recv().expect("the task ran"), (expected, expected));
    }
}
