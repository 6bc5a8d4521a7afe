//! Demo mode: two simulated partner tenants, each with its own simulated
//! Partner Center and Entra ID of [`crate::simulator`] inside the process,
//! and the exporter configured for both, so the exporter can be tried
//! without credentials.
//!
//! The configuration has `tenants`, shaped as loading a file with
//! `tenants` shapes it: shared `poll`, `sources`, `customers`, `skus` and
//! `subscriptions`, and per tenant an effective configuration of its own,
//! so every series carries a `tenant` label:
//!
//! - [`CONTOSO_TENANT`]: the demo's first partner,
//!   [`DemoPartner::contoso`], with some thirty customers.
//! - [`FABRIKAM_TENANT`]: a smaller one, [`DemoPartner::fabrikam`], with a
//!   few customers, products and workloads of its own, and partner-level
//!   figures moving on waves of their own.
//!
//! Each tenant's simulator (on 127.0.0.1, a port of its own) runs in the
//! demo configuration:
//!
//! - Entra ID's v1 token endpoint, `POST /{tenant}/oauth2/token`, for the
//!   refresh-token grant, with a random client and first refresh token. It
//!   answers with a short-lived access token and a new refresh token, and
//!   from then on accepts only that new refresh token (strict rotation),
//!   so the demo fails unless the exporter really uses the rotated one.
//! - Partner Center's license analytics endpoints, one moving dataset per
//!   source ([`crate::simulator::datasets::DEMO_DATASETS`]): the series of
//!   Microsoft's documented examples, with values that move over time,
//!   served only to access tokens it issued that have not expired.
//! - The partner's customers ([`demo_paths`]): the customer listing, each
//!   customer's licences per SKU (one of the first partner's refused for
//!   want of GDAP), and the commercial analytics rows about them, paged;
//!   the commercial analytics only on one of their two documented paths;
//!   each customer's subscriptions, renewing on dates that follow the
//!   calendar, and their SKUs.
//!
//! Each tenant is configured for the App+User method, with its own client
//! secret and first refresh token in a private temporary directory,
//! `state_dir` inside it and each tenant's in `<state_dir>/<name>`, and its
//! own request budget. So the demo runs the production refresh-token path
//! once per tenant: the token endpoint client, access token caching and
//! renewal, the rotated refresh token stored in the tenant's `state_dir`,
//! and the Partner Center client and decoders. Access tokens live 50 s, so
//! the exporter renews them, and rotates the refresh tokens, every 30 s.
//!
//! An [`OutageSwitch`] simulates an outage of the first tenant's Partner
//! Center only: while it is on, every license analytics endpoint of
//! [`CONTOSO_TENANT`]'s simulator answers `503` (its token endpoint keeps
//! working), so `partner_center_up{tenant="contoso-eu"}`, the poll error
//! counters and the alerts built on them can be watched going bad and
//! recovering, while [`FABRIKAM_TENANT`]'s simulator keeps answering and
//! its `partner_center_up` stays 1. The binary flips it on `SIGUSR1`
//! ([`toggle_outage_on_sigusr1`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use tokio_util::sync::CancellationToken;

use crate::config::{
    AuthConfig, Config, CustomersConfig, PartnerCenterConfig, PollConfig, SkusConfig,
    SourcesConfig, SubscriptionsConfig, TenantConfig,
};
use crate::secret::Secret;
use crate::simulator::demo_partner::DemoPartner;
use crate::simulator::entra::random_token;
use crate::simulator::{self, EntraSettings, PartnerCenterAuth, Simulator, datasets, demo_paths};
use crate::sources::SourceName;

pub use crate::simulator::datasets::{deployment_body, usage_body};

/// The demo polls often so changes show up quickly; the simulation has no rate limit.
pub const DEMO_POLL_INTERVAL: Duration = Duration::from_secs(15);

/// The first tenant: the `tenant` label of its series.
pub const CONTOSO_TENANT: &str = "contoso-eu";

/// The second tenant, smaller: the `tenant` label of its series.
pub const FABRIKAM_TENANT: &str = "fabrikam-us";

/// The demo's tenants, in the order they are configured and polled.
pub const DEMO_TENANTS: [&str; 2] = [CONTOSO_TENANT, FABRIKAM_TENANT];

/// Lifetime of the simulated access tokens. Short, so that rotation shows
/// within a minute: below ten minutes the exporter renews at half-life (see
/// `RENEWAL_MARGIN`), here after 25 s, so with the 15 s poll interval every
/// second poll redeems the refresh token and stores the rotated one in
/// `state_dir`, every 30 s. Exactly half of it would be 30 s, a tie with the
/// poll timer that would let renewals slip to every 45 s at random.
pub const DEMO_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(50);

/// The (workload, service, channel) sets of the documented example response.
pub const DEMO_SERIES: [(&str, &str, &str); 5] = datasets::DOCUMENTED_USAGE_SERIES;

/// The (service, channel, licences sold) of Microsoft's documented license
/// deployment example, which the simulation serves with moving figures.
pub const DEMO_DEPLOYMENT_SERIES: [(&str, &str, u32); 2] = datasets::DOCUMENTED_DEPLOYMENT_SERIES;

/// One simulated partner tenant of the demo.
struct DemoTenant {
    /// Its name: the `tenant` label of its series, and its directory in
    /// `state_dir`.
    name: &'static str,
    /// The Entra ID tenant its simulated token endpoint answers for.
    entra_tenant_id: &'static str,
    /// What its simulated Partner Center serves.
    partner: fn() -> DemoPartner,
    /// Its own request budget (`partner_center.max_requests_per_minute`).
    max_requests_per_minute: u32,
    /// Whether [`Demo::outage`] takes its Partner Center down.
    outage: bool,
}

/// The demo's tenants, [`DEMO_TENANTS`] in order.
const TENANTS: [DemoTenant; 2] = [
    DemoTenant {
        name: CONTOSO_TENANT,
        entra_tenant_id: "contosoeu.onmicrosoft.com",
        partner: DemoPartner::contoso,
        // Every source every 15 s, far more often than a partner would
        // poll, plus the first poll's lookup of each subscription's SKU:
        // four times the default budget keeps up, still paced.
        max_requests_per_minute: 1200,
        outage: true,
    },
    DemoTenant {
        name: FABRIKAM_TENANT,
        entra_tenant_id: "fabrikamus.onmicrosoft.com",
        partner: DemoPartner::fabrikam,
        // Its few customers need about 80 requests a minute, and some 50
        // more for the first poll's SKU lookups: the default budget
        // (300) keeps up, still paced.
        max_requests_per_minute: 300,
        outage: false,
    },
];

/// A running simulation and the configuration that points the exporter at it.
pub struct Demo {
    /// The exporter configuration for the simulation, with [`DEMO_TENANTS`]
    /// as its `tenants`: each tenant's Partner Center base URL and Entra
    /// ID authority are both where its simulator listens.
    pub config: Config,
    /// Turns the simulated outage of the first tenant's Partner Center on
    /// and off; the second tenant's never goes down.
    pub outage: OutageSwitch,
    /// The simulations, one per tenant; they stop when the demo is dropped.
    _simulators: Vec<Simulator>,
    /// Holds the credential files and `state_dir`; removed when the demo ends.
    _dir: DemoDir,
}

impl Demo {
    /// Each tenant's name and its simulator's URL (its Partner Center base
    /// URL and Entra ID authority), in the order they are polled.
    pub fn tenant_urls(&self) -> Vec<(&str, &Url)> {
        self.config
            .tenants
            .iter()
            .map(|tenant| (tenant.name.as_str(), &tenant.config.partner_center.base_url))
            .collect()
    }
}

/// Whether the first tenant's simulated Partner Center is down. Clones
/// share one switch.
#[derive(Clone, Debug)]
pub struct OutageSwitch {
    switch: simulator::OutageSwitch,
    /// The tenant whose Partner Center it takes down.
    tenant: &'static str,
}

impl OutageSwitch {
    /// Whether the tenant's license analytics requests are answered `503` now.
    pub fn is_on(&self) -> bool {
        self.switch.is_on()
    }

    /// The tenant whose Partner Center it takes down: [`CONTOSO_TENANT`].
    pub fn tenant(&self) -> &'static str {
        self.tenant
    }

    /// Starts the outage if there is none, ends it otherwise, logs which at
    /// `info` (a person flipped it and wants to see that it took), and
    /// returns whether an outage is simulated now.
    pub fn toggle(&self) -> bool {
        let on = self.switch.toggle();
        if on {
            tracing::info!(
                tenant = self.tenant,
                "demo: simulated Partner Center outage started; every license analytics request of this tenant is answered 503 until the next toggle, the other tenant's keep being answered"
            );
        } else {
            tracing::info!(
                tenant = self.tenant,
                "demo: simulated Partner Center outage ended; this tenant's license analytics requests are answered again"
            );
        }
        on
    }
}

/// Installs the `SIGUSR1` handler now and returns the future that toggles
/// `outage` at every `SIGUSR1` until `shutdown` is cancelled. Installed
/// before the exporter starts serving, so a signal sent as soon as it
/// answers toggles the outage rather than killing the process (the default
/// action of `SIGUSR1`).
#[cfg(unix)]
pub fn toggle_outage_on_sigusr1(
    outage: OutageSwitch,
    shutdown: CancellationToken,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut user_defined1 = signal(SignalKind::user_defined1()).map_err(|err| {
        std::io::Error::new(
            err.kind(),
            format!("cannot install the SIGUSR1 handler: {err}"),
        )
    })?;
    Ok(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                received = user_defined1.recv() => {
                    if received.is_none() {
                        return;
                    }
                    outage.toggle();
                }
            }
        }
    })
}

/// Starts each tenant's simulated Partner Center and Entra ID on 127.0.0.1
/// (a free port each) until `shutdown` is cancelled or the demo is dropped.
pub async fn start(shutdown: CancellationToken) -> std::io::Result<Demo> {
    // Created first, so that a failure further on removes it again.
    let dir = DemoDir::create()?;
    // What every tenant shares, as the top level of a file with `tenants`.
    let shared = Config {
        partner_center: PartnerCenterConfig {
            request_timeout: Duration::from_secs(5),
            ..PartnerCenterConfig::default()
        },
        auth: AuthConfig::default(),
        poll: PollConfig {
            interval: DEMO_POLL_INTERVAL,
            timeout: Duration::from_secs(10),
            ..PollConfig::default()
        },
        // Every source, the per-customer ones too, on the demo's interval.
        sources: every_source_on(DEMO_POLL_INTERVAL),
        // Small pages, so that the listing pages as a large partner's does.
        customers: CustomersConfig {
            page_size: 10,
            ..CustomersConfig::default()
        },
        skus: SkusConfig::default(),
        subscriptions: SubscriptionsConfig::default(),
        // Not created here: the exporter prepares each tenant's, as in
        // production.
        state_dir: Some(dir.path().join("state")),
        tenants: Vec::new(),
    };
    let outage = OutageSwitch {
        switch: simulator::OutageSwitch::default(),
        tenant: CONTOSO_TENANT,
    };
    let mut simulators = Vec::with_capacity(TENANTS.len());
    let mut tenants = Vec::with_capacity(TENANTS.len());
    for tenant in &TENANTS {
        let switch = if tenant.outage {
            outage.switch.clone()
        } else {
            simulator::OutageSwitch::default()
        };
        let (simulator, config) =
            start_tenant(tenant, &shared, &dir, switch, shutdown.clone()).await?;
        simulators.push(simulator);
        tenants.push(TenantConfig {
            name: tenant.name.to_owned(),
            config,
        });
    }
    let config = Config { tenants, ..shared };
    Ok(Demo {
        config,
        outage,
        _simulators: simulators,
        _dir: dir,
    })
}

/// Starts `tenant`'s simulator and returns it with the tenant's effective
/// configuration: `shared` with its own Partner Center, budget, `auth`
/// and `state_dir`.
async fn start_tenant(
    tenant: &DemoTenant,
    shared: &Config,
    dir: &DemoDir,
    outage: simulator::OutageSwitch,
    shutdown: CancellationToken,
) -> std::io::Result<(Simulator, Config)> {
    let client_id = uuid::Uuid::new_v4().to_string();
    let client_secret = Secret::new(random_token("demo-secret"));
    let refresh_token = Secret::new(random_token("demo-rt"));
    let client_secret_file =
        dir.write_secret(&format!("{}.client-secret", tenant.name), &client_secret)?;
    let refresh_token_file =
        dir.write_secret(&format!("{}.refresh-token", tenant.name), &refresh_token)?;

    let partner = (tenant.partner)();
    let simulator = Simulator::builder()
        .datasets(datasets::demo_for(partner.figures()))
        .datasets(demo_paths::datasets(&partner))
        .entra(EntraSettings {
            tenant_id: tenant.entra_tenant_id.to_owned(),
            client_id: client_id.clone(),
            client_secret,
            refresh_token,
            access_token_lifetime: DEMO_ACCESS_TOKEN_LIFETIME,
        })
        .partner_center_auth(PartnerCenterAuth::IssuedTokens)
        .outage(outage)
        // A demo runs for hours: keep the record small.
        .record_limit(256)
        .shutdown(shutdown)
        .start()
        .await?;
    let base_url =
        Url::parse(simulator.base_url()).map_err(|err| std::io::Error::other(err.to_string()))?;
    let config = Config {
        partner_center: PartnerCenterConfig {
            base_url: base_url.clone(),
            max_requests_per_minute: tenant.max_requests_per_minute,
            ..shared.partner_center.clone()
        },
        auth: AuthConfig {
            tenant_id: Some(tenant.entra_tenant_id.to_owned()),
            client_id: Some(client_id),
            client_secret_file: Some(client_secret_file),
            refresh_token_file: Some(refresh_token_file),
            authority: Some(base_url),
            ..AuthConfig::default()
        },
        state_dir: shared
            .state_dir
            .as_ref()
            .map(|state_dir| state_dir.join(tenant.name)),
        tenants: Vec::new(),
        ..shared.clone()
    };
    Ok((simulator, config))
}

/// Every source enabled, each polled every `interval`.
fn every_source_on(interval: Duration) -> SourcesConfig {
    let mut sources = SourcesConfig::default();
    for source in SourceName::ALL {
        let entry = sources.entry(*source);
        entry.enabled = Some(true);
        entry.interval = Some(interval);
    }
    sources
}

/// The demo's private temporary directory (mode 0700): the credential files
/// and `state_dir`. Removed on drop.
struct DemoDir {
    path: PathBuf,
}

impl DemoDir {
    fn create() -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "partner-center-exporter-demo-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let mut builder = std::fs::DirBuilder::new();
        // Private from the moment it exists, not only once secrets are in it.
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&path)?;
        let dir = Self { path };
        // The mode above is narrowed by the umask; make it exactly 0700.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(dir)
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a credential file (mode 0600) the way an operator would, with
    /// a final newline, and returns its path.
    fn write_secret(&self, name: &str, secret: &Secret) -> std::io::Result<PathBuf> {
        let path = self.path.join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path)?;
        file.write_all(secret.expose().as_bytes())?;
        file.write_all(b"\n")?;
        Ok(path)
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Source;
    use crate::sources::license_deployment::LicenseDeploymentSource;
    use crate::sources::license_usage::LicenseUsageSource;
    use reqwest::StatusCode;
    use reqwest::header::{self, HeaderValue};

    use crate::simulator::entra::FORM_CONTENT_TYPE;
    use crate::simulator::http::{MAX_BODY_BYTES as MAX_FORM_BYTES, MAX_DISCARDED_BYTES};

    use crate::auth::Authenticator;
    use crate::auth::entra::{EntraClient, EntraError, Problem};
    use crate::auth::refresh_token_store::RefreshTokenStore;
    use crate::config::{AuthMethod, RefreshTokenSettings};
    use crate::exposition::metrics::ExporterMetrics;
    use crate::partner_center::client::Client;
    use crate::tenant::TenantLabel;
    use crate::token_file::read_token_file_blocking;

    /// A started demo whose servers stop when the test ends.
    struct Running {
        demo: Demo,
        shutdown: CancellationToken,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.shutdown.cancel();
        }
    }

    impl Running {
        /// The effective configuration of the tenant called `name`.
        fn tenant(&self, name: &str) -> &Config {
            self.demo
                .config
                .tenants
                .iter()
                .find(|tenant| tenant.name == name)
                .map(|tenant| &tenant.config)
                .unwrap_or_else(|| panic!("the demo has a tenant {name}"))
        }

        fn contoso(&self) -> &Config {
            self.tenant(CONTOSO_TENANT)
        }

        fn fabrikam(&self) -> &Config {
            self.tenant(FABRIKAM_TENANT)
        }
    }

    async fn running() -> Running {
        let shutdown = CancellationToken::new();
        let demo = start(shutdown.clone()).await.expect("demo starts");
        Running { demo, shutdown }
    }

    fn settings(config: &Config) -> RefreshTokenSettings {
        match config.auth.method().expect("a valid auth section") {
            AuthMethod::RefreshToken(settings) => *settings,
            other => panic!("the demo must use App+User, not {other:?}"),
        }
    }

    fn entra(settings: &RefreshTokenSettings) -> EntraClient {
        EntraClient::new(settings, Duration::from_secs(5)).expect("Entra ID client")
    }

    fn file_secret(path: Option<&PathBuf>) -> Secret {
        read_token_file_blocking(path.expect("configured")).expect("readable")
    }

    fn problem(result: Result<crate::auth::entra::TokenGrant, EntraError>) -> Problem {
        let err = result.expect_err("refused");
        err.problem()
            .unwrap_or_else(|| panic!("an OAuth refusal, not {err}"))
    }

    /// A grant for `config`'s tenant, from its configured refresh token.
    async fn first_grant(config: &Config) -> crate::auth::entra::TokenGrant {
        entra(&settings(config))
            .redeem_refresh_token(
                &file_secret(config.auth.refresh_token_file.as_ref()),
                &file_secret(config.auth.client_secret_file.as_ref()),
            )
            .await
            .expect("the configured refresh token works")
    }

    /// Status of a license usage request carrying `authorization`.
    async fn usage_status(config: &Config, authorization: HeaderValue) -> StatusCode {
        let url = config
            .partner_center
            .base_url
            .join(LicenseUsageSource::PATH)
            .expect("usage URL");
        reqwest::Client::new()
            .get(url)
            .header(header::AUTHORIZATION, authorization)
            .send()
            .await
            .expect("Partner Center answers")
            .status()
    }

    fn bearer(token: &Secret) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {}", token.expose())).expect("header-safe")
    }

    #[tokio::test]
    async fn the_demo_configures_two_tenants_as_a_tenants_file_does() {
        let running = running().await;
        let config = &running.demo.config;
        assert!(config.is_multi_tenant());
        let names: Vec<Option<&str>> = config
            .tenant_configs()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, DEMO_TENANTS.map(Some));
        // The top level holds what is shared; each tenant has its own auth.
        assert_eq!(config.auth.method().ok(), None, "no top-level auth");
        let state_dir = config.state_dir.clone().expect("state_dir");
        assert!(state_dir.starts_with(std::env::temp_dir()), "{state_dir:?}");
        assert!(!state_dir.exists(), "the exporter prepares it");
        let mut urls = Vec::new();
        let mut refresh_token_files = Vec::new();
        for (tenant, expected_budget) in config.tenants.iter().zip([1200, 300]) {
            let own = &tenant.config;
            assert!(own.tenants.is_empty(), "{}", tenant.name);
            assert_eq!(own.state_dir, Some(state_dir.join(&tenant.name)));
            for (section, ours, shared) in [
                (
                    "poll",
                    format!("{:?}", own.poll),
                    format!("{:?}", config.poll),
                ),
                (
                    "sources",
                    format!("{:?}", own.sources),
                    format!("{:?}", config.sources),
                ),
                (
                    "customers",
                    format!("{:?}", own.customers),
                    format!("{:?}", config.customers),
                ),
            ] {
                assert_eq!(ours, shared, "{}: the shared {section}", tenant.name);
            }
            assert_eq!(
                own.partner_center.max_requests_per_minute, expected_budget,
                "{}: a budget of its own",
                tenant.name
            );
            assert_eq!(
                own.partner_center.request_timeout,
                config.partner_center.request_timeout
            );
            let settings = settings(own);
            assert_eq!(
                settings.authority.as_str(),
                own.partner_center.base_url.as_str(),
                "{}: one simulator plays both",
                tenant.name
            );
            own.validate(Path::new("demo"))
                .unwrap_or_else(|err| panic!("{}: {err}", tenant.name));
            urls.push(own.partner_center.base_url.clone());
            refresh_token_files.push(own.auth.refresh_token_file.clone());
        }
        assert_ne!(urls[0], urls[1], "a simulator each");
        assert_ne!(refresh_token_files[0], refresh_token_files[1]);
        let logged: Vec<(&str, &Url)> = running.demo.tenant_urls();
        assert_eq!(
            logged,
            [(CONTOSO_TENANT, &urls[0]), (FABRIKAM_TENANT, &urls[1])]
        );
        assert_eq!(running.demo.outage.tenant(), CONTOSO_TENANT);
    }

    #[tokio::test]
    async fn the_demo_is_served_through_the_production_refresh_token_path() {
        let running = running().await;
        let metrics = ExporterMetrics::new().expect("metrics");
        let mut percents = Vec::new();
        for (name, least_sold) in [(CONTOSO_TENANT, 343.0), (FABRIKAM_TENANT, 51.0)] {
            let config = running.tenant(name);
            assert!(config.auth.bearer_token_file.is_none());
            let authenticator =
                Authenticator::from_config(config, &TenantLabel::named(name), &metrics)
                    .expect("authenticator");
            assert!(matches!(authenticator, Authenticator::AppUser(_)));
            let client = Client::new(&config.partner_center).expect("client");
            let report = client
                .fetch_collection(
                    LicenseUsageSource::PATH,
                    LicenseUsageSource::decode_item,
                    &authenticator,
                    uuid::Uuid::new_v4(),
                    tokio::time::Instant::now() + Duration::from_secs(10),
                    &mut Default::default(),
                )
                .await
                .expect("the simulated Partner Center answers");
            let labels: Vec<(&str, &str, &str)> = report
                .items
                .iter()
                .map(|i| (i.workload.as_str(), i.service.as_str(), i.channel.as_str()))
                .collect();
            assert_eq!(labels, DEMO_SERIES.to_vec(), "{name}");
            assert!(report.skipped.is_empty());
            assert_eq!(report.pages, 1);
            percents.push(
                report
                    .items
                    .iter()
                    .map(|i| i.prorated_percent)
                    .collect::<Vec<_>>(),
            );

            let deployment = client
                .fetch_collection(
                    LicenseDeploymentSource::PATH,
                    LicenseDeploymentSource::decode_item,
                    &authenticator,
                    uuid::Uuid::new_v4(),
                    tokio::time::Instant::now() + Duration::from_secs(10),
                    &mut Default::default(),
                )
                .await
                .expect("the simulated Partner Center answers");
            let labels: Vec<(&str, &str)> = deployment
                .items
                .iter()
                .map(|i| (i.service.as_str(), i.channel.as_str()))
                .collect();
            let expected: Vec<(&str, &str)> = DEMO_DEPLOYMENT_SERIES
                .iter()
                .map(|(service, channel, _)| (*service, *channel))
                .collect();
            assert_eq!(labels, expected, "{name}");
            assert!(deployment.skipped.is_empty());
            for item in &deployment.items {
                assert!((5.0..=95.0).contains(&item.prorated_percent), "{item:?}");
                assert!(item.licenses_sold >= least_sold, "{name}: {item:?}");
            }
        }
        assert_ne!(
            percents[0], percents[1],
            "each tenant's figures move their own way"
        );

        let exposition = String::from_utf8(metrics.render()).expect("UTF-8");
        for name in DEMO_TENANTS {
            assert!(
                exposition.contains(&format!(
                    "partner_center_token_requests_total{{result=\"success\",tenant=\"{name}\"}} 1\n"
                )),
                "{name}:\n{exposition}"
            );
            assert!(
                !exposition.contains(&format!(
                    "partner_center_refresh_token_rotated_timestamp_seconds{{tenant=\"{name}\"}} 0\n"
                )),
                "{name}: the rotated token was stored:\n{exposition}"
            );
        }
    }

    #[tokio::test]
    async fn the_demo_partner_is_served_to_issued_tokens_only() {
        use crate::simulator::demo_partner::{
            COMMERCIAL_DEPLOYMENT_PATH, COMMERCIAL_USAGE_PATH, CUSTOMERS_PATH,
            GDAP_REFUSED_CUSTOMER, subscribed_skus_path,
        };
        let running = running().await;
        let status = |config: &Config, path: String, authorization: HeaderValue| {
            let url = config.partner_center.base_url.join(&path).expect("URL");
            async move {
                reqwest::Client::new()
                    .get(url)
                    .header(header::AUTHORIZATION, authorization)
                    .send()
                    .await
                    .expect("Partner Center answers")
                    .status()
            }
        };
        let mut tokens = Vec::new();
        for (config, partner) in [
            (running.contoso(), DemoPartner::contoso()),
            (running.fabrikam(), DemoPartner::fabrikam()),
        ] {
            let token = bearer(&first_grant(config).await.access_token);
            let customers = partner.customers();
            let mut paths = vec![
                CUSTOMERS_PATH.to_owned(),
                COMMERCIAL_USAGE_PATH.to_owned(),
                COMMERCIAL_DEPLOYMENT_PATH.to_owned(),
            ];
            paths.extend(
                customers
                    .iter()
                    .filter(|customer| customer.name != GDAP_REFUSED_CUSTOMER)
                    .map(|customer| subscribed_skus_path(&customer.id)),
            );
            for path in &paths {
                assert_eq!(
                    status(config, path.clone(), token.clone()).await,
                    StatusCode::OK,
                    "{path}"
                );
                assert_eq!(
                    status(
                        config,
                        path.clone(),
                        HeaderValue::from_static("Bearer not-issued")
                    )
                    .await,
                    StatusCode::UNAUTHORIZED,
                    "{path}"
                );
            }
            assert_eq!(
                status(
                    config,
                    format!("/partner{COMMERCIAL_USAGE_PATH}"),
                    token.clone()
                )
                .await,
                StatusCode::NOT_FOUND,
                "only one of the documented paths answers"
            );
            tokens.push(token);
        }
        let contoso = DemoPartner::contoso().customers();
        let refused = contoso
            .iter()
            .find(|customer| customer.name == GDAP_REFUSED_CUSTOMER)
            .expect("the refused customer is the first tenant's");
        assert_eq!(
            status(
                running.contoso(),
                subscribed_skus_path(&refused.id),
                tokens[0].clone()
            )
            .await,
            StatusCode::FORBIDDEN
        );
        // Each tenant's Partner Center knows only the tokens of its own Entra ID.
        assert_eq!(
            status(
                running.fabrikam(),
                CUSTOMERS_PATH.to_owned(),
                tokens[0].clone()
            )
            .await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(
                running.contoso(),
                CUSTOMERS_PATH.to_owned(),
                tokens[1].clone()
            )
            .await,
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn the_token_endpoint_rotates_strictly_and_checks_the_client() {
        let running = running().await;
        let config = running.contoso();
        let settings = settings(config);
        let entra = entra(&settings);
        let secret = file_secret(config.auth.client_secret_file.as_ref());
        let first = file_secret(config.auth.refresh_token_file.as_ref());

        let grant = entra
            .redeem_refresh_token(&first, &secret)
            .await
            .expect("the configured refresh token works once");
        assert_eq!(grant.expires_in, Some(DEMO_ACCESS_TOKEN_LIFETIME));
        let second = grant.refresh_token.expect("a rotated refresh token");
        assert_ne!(second.expose(), first.expose());
        assert_eq!(
            usage_status(config, bearer(&grant.access_token)).await,
            StatusCode::OK
        );

        let err = entra
            .redeem_refresh_token(&first, &secret)
            .await
            .expect_err("a used refresh token is refused");
        match &err {
            EntraError::Rejected(rejection) => {
                assert_eq!(rejection.problem, Problem::RefreshTokenRejected, "{err}");
                assert_eq!(rejection.http_status, 400);
                assert_eq!(rejection.code, Some(70_008));
                assert!(rejection.trace_id.is_some() && rejection.correlation_id.is_some());
            }
            other => panic!("an OAuth refusal, not {other}"),
        }
        assert_eq!(
            problem(
                entra
                    .redeem_refresh_token(&second, &Secret::new("not-the-secret"))
                    .await
            ),
            Problem::ClientSecretInvalid
        );
        let mut other_client = settings.clone();
        other_client.client_id = uuid::Uuid::new_v4().to_string();
        assert_eq!(
            problem(
                self::entra(&other_client)
                    .redeem_refresh_token(&second, &secret)
                    .await
            ),
            Problem::UnknownClient
        );
        let mut other_tenant = settings.clone();
        other_tenant.tenant_id = "contoso.onmicrosoft.com".to_owned();
        assert_eq!(
            problem(
                self::entra(&other_tenant)
                    .redeem_refresh_token(&second, &secret)
                    .await
            ),
            Problem::UnknownTenant
        );
        // The second tenant's client and Entra ID tenant are its own.
        let fabrikam = self::settings(running.fabrikam());
        let mut fabrikam_client = settings.clone();
        fabrikam_client.client_id = fabrikam.client_id.clone();
        assert_eq!(
            problem(
                self::entra(&fabrikam_client)
                    .redeem_refresh_token(&second, &secret)
                    .await
            ),
            Problem::UnknownClient
        );
        let mut fabrikam_tenant = settings.clone();
        fabrikam_tenant.tenant_id = fabrikam.tenant_id.clone();
        assert_eq!(
            problem(
                self::entra(&fabrikam_tenant)
                    .redeem_refresh_token(&second, &secret)
                    .await
            ),
            Problem::UnknownTenant
        );

        let third = entra
            .redeem_refresh_token(&second, &secret)
            .await
            .expect("refused requests leave the latest refresh token usable")
            .refresh_token
            .expect("rotated again");
        assert_ne!(third.expose(), second.expose());
        assert_eq!(
            problem(entra.redeem_refresh_token(&second, &secret).await),
            Problem::RefreshTokenRejected
        );
    }

    #[tokio::test]
    async fn a_simulated_outage_answers_503_until_switched_off_for_the_first_tenant_only() {
        let running = running().await;
        let config = running.contoso();
        let entra = entra(&settings(config));
        let secret = file_secret(config.auth.client_secret_file.as_ref());
        let grant = first_grant(config).await;
        assert_eq!(
            usage_status(config, bearer(&grant.access_token)).await,
            StatusCode::OK
        );
        let other = running.fabrikam();
        let other_grant = first_grant(other).await;
        assert_eq!(
            usage_status(other, bearer(&other_grant.access_token)).await,
            StatusCode::OK
        );

        let outage = running.demo.outage.clone();
        assert!(!outage.is_on(), "no outage at the start");
        assert!(outage.toggle(), "the first toggle starts an outage");
        assert!(running.demo.outage.is_on(), "clones share one switch");
        assert_eq!(
            usage_status(config, bearer(&grant.access_token)).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            usage_status(config, HeaderValue::from_static("Bearer not-issued")).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "the outage answers before the token is looked at"
        );
        assert_eq!(
            usage_status(other, bearer(&other_grant.access_token)).await,
            StatusCode::OK,
            "the second tenant's Partner Center keeps answering"
        );
        // Only Partner Center is down: Entra ID still rotates tokens.
        let renewed = entra
            .redeem_refresh_token(
                &grant.refresh_token.expect("a rotated refresh token"),
                &secret,
            )
            .await
            .expect("Entra ID answers during the outage");

        assert!(!outage.toggle(), "the second toggle ends the outage");
        assert!(!running.demo.outage.is_on());
        assert_eq!(
            usage_status(config, bearer(&renewed.access_token)).await,
            StatusCode::OK
        );
        assert_eq!(
            usage_status(other, bearer(&other_grant.access_token)).await,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn each_tenants_latest_refresh_token_is_stored_in_its_own_state_dir() {
        let running = running().await;
        let metrics = ExporterMetrics::new().expect("metrics");
        let store_of =
            |config: &Config| RefreshTokenStore::new(config.state_dir.clone().expect("state_dir"));
        for name in DEMO_TENANTS {
            assert!(
                store_of(running.tenant(name))
                    .load()
                    .expect("readable")
                    .is_none(),
                "{name}: nothing yet"
            );
        }
        let mut stored_tokens = Vec::new();
        for (index, name) in DEMO_TENANTS.into_iter().enumerate() {
            let config = running.tenant(name);
            let entra = entra(&settings(config));
            let secret = file_secret(config.auth.client_secret_file.as_ref());
            let configured = file_secret(config.auth.refresh_token_file.as_ref());
            let store = store_of(config);
            let authenticator =
                Authenticator::from_config(config, &TenantLabel::named(name), &metrics)
                    .expect("authenticator");
            let first_access = authenticator.access_token().await.expect("access token");
            let first_stored = store
                .load()
                .expect("readable")
                .expect("stored after the first redemption")
                .refresh_token;
            assert_ne!(first_stored.expose(), configured.expose());
            assert_eq!(
                authenticator.access_token().await.expect("cached").expose(),
                first_access.expose(),
                "the access token is cached, not redeemed again"
            );
            for later in &DEMO_TENANTS[index + 1..] {
                assert!(
                    store_of(running.tenant(later))
                        .load()
                        .expect("readable")
                        .is_none(),
                    "{later}'s state_dir is its own"
                );
            }

            // Force a renewal, as after Partner Center refused the token.
            let second_access = authenticator.renew(&first_access).await.expect("renewed");
            assert_ne!(second_access.expose(), first_access.expose());
            let stored = store
                .load()
                .expect("readable")
                .expect("still stored")
                .refresh_token;
            assert_ne!(stored.expose(), first_stored.expose(), "rotated again");

            // Strict rotation accepts only the latest token issued: the stored one.
            for older in [&configured, &first_stored] {
                assert_eq!(
                    problem(entra.redeem_refresh_token(older, &secret).await),
                    Problem::RefreshTokenRejected
                );
            }
            let latest = entra
                .redeem_refresh_token(&stored, &secret)
                .await
                .expect("the stored refresh token is the latest issued");
            stored_tokens.push(latest.access_token);
        }
        assert_ne!(stored_tokens[0].expose(), stored_tokens[1].expose());
    }

    #[tokio::test]
    async fn hostile_requests_are_refused_without_harm() {
        let running = running().await;
        let config = running.contoso();
        let entra = entra(&settings(config));
        let token_url = entra.token_url().clone();
        let http = reqwest::Client::new();

        let mut oversized = b"grant_type=refresh_token&padding=".to_vec();
        oversized.resize(MAX_FORM_BYTES + 1, b'a');
        let cases: [(&str, Option<&str>, Vec<u8>); 8] = [
            ("empty", Some(FORM_CONTENT_TYPE), Vec::new()),
            (
                "not UTF-8",
                Some(FORM_CONTENT_TYPE),
                b"grant_type=\xff\xfe&client_id=%ff%00%zz&&&=&refresh_token".to_vec(),
            ),
            (
                "JSON",
                Some("application/json"),
                br#"{"grant_type":"refresh_token"}"#.to_vec(),
            ),
            (
                "no content type",
                None,
                b"grant_type=refresh_token".to_vec(),
            ),
            (
                "duplicated parameter",
                Some(FORM_CONTENT_TYPE),
                b"grant_type=refresh_token&grant_type=refresh_token".to_vec(),
            ),
            (
                "other grant",
                Some(FORM_CONTENT_TYPE),
                b"grant_type=password&username=a&password=b".to_vec(),
            ),
            ("just over the limit", Some(FORM_CONTENT_TYPE), oversized),
            (
                "half a megabyte",
                Some(FORM_CONTENT_TYPE),
                vec![b'%'; 512 * 1024],
            ),
        ];
        for (name, content_type, body) in cases {
            let mut request = http.post(token_url.clone()).body(body);
            if let Some(content_type) = content_type {
                request = request.header(header::CONTENT_TYPE, content_type);
            }
            let response = request
                .send()
                .await
                .unwrap_or_else(|err| panic!("{name}: {err}"));
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
            let answer: serde_json::Value = response
                .json()
                .await
                .unwrap_or_else(|err| panic!("{name}: {err}"));
            assert!(
                answer["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{name}: {answer}"
            );
        }
        let get = http.get(token_url.clone()).send().await.expect("GET");
        assert_eq!(get.status(), StatusCode::BAD_REQUEST);
        // Far beyond what is even discarded: the connection may be dropped
        // instead of answered, but the server carries on.
        if let Ok(response) = http
            .post(token_url.clone())
            .header(header::CONTENT_TYPE, FORM_CONTENT_TYPE)
            .body(vec![b'a'; 4 * MAX_DISCARDED_BYTES])
            .send()
            .await
        {
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        }

        let refresh_token = file_secret(config.auth.refresh_token_file.as_ref());
        for authorization in [
            HeaderValue::from_bytes(b"Bearer \xff\xfe").expect("obs-text is allowed"),
            HeaderValue::from_static("Bearer"),
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
            bearer(&refresh_token),
        ] {
            assert_eq!(
                usage_status(config, authorization.clone()).await,
                StatusCode::UNAUTHORIZED,
                "{authorization:?}"
            );
        }
        let base = config
            .partner_center
            .base_url
            .as_str()
            .trim_end_matches('/');
        let tenant_id = config.auth.tenant_id.clone().expect("a tenant");
        for path in [
            format!("/{tenant_id}/oauth2/v2.0/token"),
            "/oauth2/token".to_owned(),
            "//oauth2/token".to_owned(),
        ] {
            let response = http
                .post(format!("{base}{path}"))
                .send()
                .await
                .expect("answer");
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        }

        entra
            .redeem_refresh_token(
                &refresh_token,
                &file_secret(config.auth.client_secret_file.as_ref()),
            )
            .await
            .expect("the server still works, and refusals used up no token");
    }
}
