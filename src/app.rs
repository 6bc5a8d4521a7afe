//! Wiring: builds the client, poller and server from a configuration and
//! runs them until the stop signal.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::metrics::ExporterMetrics;
use crate::partner_center::client::{Client, ClientError};
use crate::poller::Poller;
use crate::server::{self, ServerSettings};
use crate::state::ExporterState;

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Bind(#[from] server::BindError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("no authentication method is configured")]
    NoAuthentication,
    #[error("cannot start the demo: {0}")]
    Demo(std::io::Error),
    #[error("cannot install the SIGTERM/SIGINT handlers: {0}")]
    Signals(std::io::Error),
}

/// Binds every `--web.listen-address`, failing on the first that cannot be used.
pub async fn bind_all(addresses: &[String]) -> Result<Vec<TcpListener>, AppError> {
    let mut listeners = Vec::with_capacity(addresses.len());
    for address in addresses {
        listeners.push(server::bind(address).await?);
    }
    Ok(listeners)
}

/// Runs the exporter on already bound listeners until `shutdown` is
/// cancelled: the poller in the background, the server in front.
pub async fn run(
    config: Config,
    listeners: Vec<TcpListener>,
    settings: ServerSettings,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let authenticator =
        Authenticator::from_config(&config.auth).ok_or(AppError::NoAuthentication)?;
    let client = Client::new(&config.partner_center)?;
    let state = Arc::new(ExporterState::new(ExporterMetrics::new()?));

    for listener in &listeners {
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, telemetry_path = %settings.telemetry_path, "listening");
        }
    }
    tracing::info!(
        url = %client.license_usage_url(),
        interval = %humantime::format_duration(config.poll.interval),
        "polling Partner Center"
    );

    let poller = Poller::new(
        client,
        authenticator,
        state.clone(),
        config.poll.interval,
        config.poll.timeout,
    );
    let poller = tokio::spawn(poller.run(shutdown.clone()));
    server::serve(listeners, state, settings, shutdown).await;
    if let Err(err) = poller.await {
        tracing::error!(error = %err, "the poller ended abnormally");
    }
    tracing::info!("stopped");
    Ok(())
}
