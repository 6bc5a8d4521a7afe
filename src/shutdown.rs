//! The stop signal: SIGTERM and SIGINT (ctrl-c) feed one cancellation token.

use tokio_util::sync::CancellationToken;

/// Cancels `token` when the process receives SIGTERM or SIGINT.
///
/// Runs until a signal arrives or the token is cancelled some other way.
pub async fn cancel_on_signal(token: CancellationToken) {
    let signal = wait_for_signal();
    tokio::select! {
        name = signal => {
            tracing::info!(signal = name, "received signal, shutting down");
            token.cancel();
        }
        () = token.cancelled() => {}
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        },
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGTERM; only SIGINT will stop the exporter");
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "SIGINT"
}
