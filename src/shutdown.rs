//! The stop signal: SIGTERM and SIGINT (ctrl-c) feed one cancellation token.

use std::future::Future;

use tokio_util::sync::CancellationToken;

/// Installs the SIGTERM and SIGINT handlers now, and returns the future
/// that cancels `token` when one of the signals arrives (or ends when the
/// token is cancelled some other way). Installing before anything else
/// starts means a signal sent right after launch still stops the exporter
/// cleanly instead of killing it.
#[cfg(unix)]
pub fn cancel_on_signal(
    token: CancellationToken,
) -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
            () = token.cancelled() => return,
        };
        tracing::info!(signal = name, "received signal, shutting down");
        token.cancel();
    })
}

/// Installs the ctrl-c handler and returns the future that cancels `token` on it.
#[cfg(not(unix))]
pub fn cancel_on_signal(
    token: CancellationToken,
) -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async move {
        tokio::select! {
            result = tokio::signal::ctrl_c() => {
                if result.is_ok() {
                    tracing::info!(signal = "SIGINT", "received signal, shutting down");
                    token.cancel();
                }
            }
            () = token.cancelled() => {}
        }
    })
}
