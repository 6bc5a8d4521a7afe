//! Runs every enabled source's poller side by side on the poll thread:
//! the table from source names to their pollers.
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
use crate::collect::poller::Poller;
use crate::collect::state::ExporterState;
use crate::config::Config;
use crate::partner_center::client::Client;
use crate::sources::license_deployment::LicenseDeploymentSource;
use crate::sources::license_usage::LicenseUsageSource;
use crate::sources::{Source, SourceName};

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
        let sources = &config.sources;
        SourceName::ALL
            .into_iter()
            .filter_map(|source| {
                let settings = match source {
                    SourceName::LicenseUsage => &sources.license_usage,
                    SourceName::LicenseDeployment => &sources.license_deployment,
                };
                settings.enabled.then(|| Schedule {
                    source,
                    interval: settings.interval_or(&config.poll),
                })
            })
            .collect()
    }
}

/// What every poller shares.
#[derive(Clone)]
pub struct Scheduler {
    pub client: Client,
    pub authenticator: Authenticator,
    pub state: Arc<ExporterState>,
    /// `poll.timeout`: the limit for one poll of any source.
    pub timeout: Duration,
}

type PollLoop = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Scheduler {
    /// The poll loop of one source.
    fn poll_loop(&self, schedule: Schedule, shutdown: CancellationToken) -> PollLoop {
        fn of<S: Source>(
            scheduler: &Scheduler,
            interval: Duration,
            shutdown: CancellationToken,
        ) -> PollLoop {
            let poller = Poller::<S>::new(
                scheduler.client.clone(),
                scheduler.authenticator.clone(),
                scheduler.state.clone(),
                interval,
                scheduler.timeout,
            );
            Box::pin(poller.run(shutdown))
        }
        match schedule.source {
            SourceName::LicenseUsage => of::<LicenseUsageSource>(self, schedule.interval, shutdown),
            SourceName::LicenseDeployment => {
                of::<LicenseDeploymentSource>(self, schedule.interval, shutdown)
            }
        }
    }

    /// Polls every source of `schedules` until `shutdown` is cancelled. A
    /// panic in any poller (a bug) ends them all, and travels on.
    pub async fn run(self, schedules: Vec<Schedule>, shutdown: CancellationToken) {
        let mut pollers = JoinSet::new();
        for schedule in schedules {
            self.state
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
