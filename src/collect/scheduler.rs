//! Runs every enabled source's poller side by side on the poll thread.
//!
//! Each source polls on its own interval (the first poll at start), under
//! `poll.timeout`, through one client, so that they share the partner
//! tenant's throttle (`crate::partner_center::throttle`). A source's
//! failure is its own: the others poll and publish as before.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::collect::customers::CustomerDirectory;
use crate::collect::poller::{PollContext, Poller};
use crate::collect::state::TenantState;
use crate::config::Config;
use crate::partner_center::client::Client;
use crate::partner_center::commercial::ReportRoute;
use crate::sources::{Source, SourceName, SourceVisitor};

/// One source to poll, and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub source: SourceName,
    pub interval: Duration,
}

impl Schedule {
    /// The enabled sources of `config`, in the order of the table of
    /// sources, each with its interval.
    pub fn from_config(config: &Config) -> Vec<Schedule> {
        config
            .sources
            .entries()
            .filter(|(_, settings)| settings.enabled)
            .map(|(source, settings)| Schedule {
                source,
                interval: settings.interval_or(&config.poll),
            })
            .collect()
    }
}

/// Runs the pollers, with what they share.
#[derive(Clone)]
pub struct Scheduler {
    context: Arc<PollContext>,
}

type PollLoop = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Scheduler {
    /// The scheduler of `schedules`: one client (and so one tenant
    /// throttle) for all, and the customer listing when a per-customer
    /// source is among them.
    pub fn new(
        config: &Config,
        schedules: &[Schedule],
        client: Client,
        authenticator: Authenticator,
        state: TenantState,
    ) -> Result<Self, String> {
        let filters = Arc::new(
            config
                .filters()
                .map_err(|(key, message)| format!("{key}: {message}"))?,
        );
        // A listing younger than half the shortest per-customer interval is
        // taken over by the next source to ask, instead of listing again.
        let directory = schedules
            .iter()
            .filter(|schedule| schedule.source.is_per_customer())
            .map(|schedule| schedule.interval)
            .min()
            .map(|shortest| {
                Arc::new(CustomerDirectory::new(
                    client.clone(),
                    authenticator.clone(),
                    state.clone(),
                    filters.clone(),
                    config.customers.page_size,
                    shortest / 2,
                ))
            });
        Ok(Self {
            context: Arc::new(PollContext {
                client,
                authenticator,
                state,
                timeout: config.poll.timeout,
                directory,
                report_route: Arc::new(ReportRoute::new(
                    config.partner_center.commercial_api_prefix,
                )),
                report_page_size: config.partner_center.commercial_page_size,
                filters,
                state_dir: config.state_dir.clone(),
            }),
        })
    }

    /// The poll loop of one source.
    fn poll_loop(&self, schedule: Schedule, shutdown: CancellationToken) -> PollLoop {
        /// Builds the poller of the source type it is handed.
        struct Build<'a> {
            scheduler: &'a Scheduler,
            interval: Duration,
            shutdown: CancellationToken,
        }
        impl SourceVisitor for Build<'_> {
            type Output = PollLoop;
            fn visit<S: Source>(self) -> PollLoop {
                let poller = Poller::<S>::new(self.scheduler.context.clone(), self.interval);
                Box::pin(poller.run(self.shutdown))
            }
        }
        schedule.source.visit(Build {
            scheduler: self,
            interval: schedule.interval,
            shutdown,
        })
    }

    /// Polls every source of `schedules` until `shutdown` is cancelled. A
    /// panic in any poller (a bug) ends them all, and travels on.
    pub async fn run(self, schedules: Vec<Schedule>, shutdown: CancellationToken) {
        let mut pollers = JoinSet::new();
        for schedule in schedules {
            self.context
                .state
                .record_poll_interval(schedule.source, schedule.interval);
            pollers.spawn(self.poll_loop(schedule, shutdown.clone()));
        }
        while let Some(ended) = pollers.join_next().await {
            if let Err(err) = ended
                && err.is_panic()
            {
                std::panic::resume_unwind(err.into_panic());
            }
        }
    }
}
