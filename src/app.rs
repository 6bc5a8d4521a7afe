//! Wiring: builds the client, the sources' scheduler and the server from a
//! configuration and runs them until the stop signal.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::auth::{AuthError, Authenticator};
use crate::collect::poll_thread::PollThread;
use crate::collect::scheduler::{Schedule, Scheduler};
use crate::collect::state::ExporterState;
use crate::config::Config;
use crate::exposition::metrics::ExporterMetrics;
use crate::http::server::{self, ServerSettings};
use crate::partner_center::client::{Client, ClientError};
use crate::tenant::TenantLabel;

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Bind(#[from] server::BindError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot set up authentication: {0}")]
    Auth(#[from] AuthError),
    #[error("cannot start the demo: {0}")]
    Demo(std::io::Error),
    #[error("cannot install the SIGTERM/SIGINT handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot start the poll thread: {0}")]
    PollThread(std::io::Error),
    #[error("the poller failed: {0}")]
    Poller(String),
    /// A setting the configuration check lets through cannot be used.
    #[error("cannot set up polling: {0}")]
    Setup(String),
}

impl AppError {
    /// True when the operator must fix the configuration (or run `login`)
    /// before the exporter can start: exit code 78, like a refused file.
    pub fn is_config_error(&self) -> bool {
        matches!(self, Self::Auth(err) if err.is_config_error()) || matches!(self, Self::Setup(_))
    }
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
    let metrics = ExporterMetrics::new()?;
    let state = Arc::new(ExporterState::new(
        metrics.clone(),
        config.poll.max_staleness,
    ));
    let mut tenants = Vec::new();
    for (name, tenant_config) in config.tenant_configs() {
        let tenant = name.map_or(TenantLabel::NONE, TenantLabel::named);
        tenants.push(prepare_tenant(tenant_config, tenant, &state, &metrics)?);
    }

    for listener in &listeners {
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, telemetry_path = %settings.telemetry_path, "listening");
        }
    }
    if let Some(web) = &settings.web {
        tracing::info!(
            file = %web.path().display(),
            config = %web.current().summary(),
            "web configuration in force"
        );
    }

    // Every tenant's pollers on one thread and runtime of their own, so
    // that receiving and decoding a large answer never holds up a scrape
    // (see `poll_thread`); each tenant's under its own client, budget and
    // throttle.
    let polls: Vec<_> = tenants
        .into_iter()
        .map(|prepared| {
            let span = match prepared.tenant.name() {
                Some(name) => tracing::info_span!("tenant", tenant = name),
                None => tracing::Span::none(),
            };
            prepared
                .scheduler
                .run(prepared.schedules, shutdown.clone())
                .instrument(span)
        })
        .collect();
    let poll_all = async move {
        futures_util::future::join_all(polls).await;
    };
    let poller = PollThread::spawn("poller", poll_all).map_err(AppError::PollThread)?;
    let poller = poller.join();
    tokio::pin!(poller);
    let server = server::serve(listeners, state, settings, shutdown.clone());
    tokio::pin!(server);
    // The poller only ends on the stop signal. If it ends any other way (a
    // bug), stop rather than keep serving data that will never be renewed.
    let poller_result = tokio::select! {
        () = &mut server => poller.await,
        ended = &mut poller => {
            shutdown.cancel();
            server.await;
            ended
        }
    };
    if let Err(err) = poller_result {
        tracing::error!(error = %err, "the poller failed");
        return Err(AppError::Poller(err));
    }
    tracing::info!("stopped");
    Ok(())
}

/// One partner tenant, ready to poll.
struct PreparedTenant {
    tenant: TenantLabel,
    scheduler: Scheduler,
    schedules: Vec<Schedule>,
}

/// Sets up `tenant` from its configuration: its authenticator, its client
/// (and so its own request budget and throttle), its slots in the state
/// and its scheduler.
fn prepare_tenant(
    config: &Config,
    tenant: TenantLabel,
    state: &Arc<ExporterState>,
    metrics: &ExporterMetrics,
) -> Result<PreparedTenant, AppError> {
    let authenticator = Authenticator::from_config(config, &tenant, metrics)?;
    let client = Client::new(&config.partner_center)?;
    let schedules = Schedule::from_config(config);
    let sources: Vec<_> = schedules.iter().map(|schedule| schedule.source).collect();
    let tenant_state = state.add_tenant(tenant.clone(), &sources)?;
    for schedule in &schedules {
        tracing::info!(
            tenant = tenant.name(),
            source = schedule.source.as_str(),
            requests = %schedule.source.fetch().describe(),
            interval = %humantime::format_duration(schedule.interval),
            "polling Partner Center"
        );
    }
    let scheduler = Scheduler::new(config, &schedules, client, authenticator, tenant_state)
        .map_err(AppError::Setup)?;
    Ok(PreparedTenant {
        tenant,
        scheduler,
        schedules,
    })
}
