//! Several partner tenants in one exporter: two simulated partner tenants,
//! each with its own Entra ID and Partner Center on 127.0.0.1, polled by
//! one exporter from one `tenants` file. Each tenant's series, health and
//! token metrics carry its `tenant` label, each keeps its refresh token in
//! its own file, and one tenant's outage, throttling, refused tokens or
//! missing sign-in change nothing for the other.

use std::path::{Path, PathBuf};
use std::time::Duration;

use partner_center_exporter::Config;
use partner_center_exporter::Secret;
use partner_center_exporter::simulator::entra::random_token;
use partner_center_exporter::simulator::{
    EntraSettings, PartnerCenterAuth, Scope, Simulator, Step, datasets,
};

use crate::common::exporter::{ExporterProcess, LISTEN, RunningExporter, Scrape};
use crate::common::exposition::{Exposition, promtool_check_metrics};
use crate::common::{USAGE_PATH, WAIT};

const UP: &str = "partner_center_up";
const USAGE: (&str, &str) = ("source", "license_usage");
const INTERVAL: &str = "1s";

/// One simulated partner tenant: its Entra ID and Partner Center, and the
/// credentials the exporter is given for it.
struct FakeTenant {
    name: &'static str,
    upstream: Simulator,
    client_id: String,
    entra_tenant: String,
    /// The first refresh token, or `None` for a tenant not signed in yet.
    refresh_token: Option<Secret>,
}

impl FakeTenant {
    async fn start(name: &'static str, signed_in: bool) -> Self {
        let client_id = uuid::Uuid::new_v4().to_string();
        let entra_tenant = format!("{name}.onmicrosoft.com");
        let refresh_token = Secret::new(random_token(&format!("{name}-rt")));
        let upstream = Simulator::builder()
            .datasets(datasets::demo())
            .entra(EntraSettings {
                tenant_id: entra_tenant.clone(),
                client_id: client_id.clone(),
                client_secret: Secret::new(format!("{name}-secret")),
                refresh_token: refresh_token.clone(),
                access_token_lifetime: Duration::from_secs(3600),
            })
            .partner_center_auth(PartnerCenterAuth::IssuedTokens)
            .start()
            .await
            .expect("the simulator starts");
        Self {
            name,
            upstream,
            client_id,
            entra_tenant,
            refresh_token: signed_in.then_some(refresh_token),
        }
    }

    /// The tenant's entry in the `tenants` list; its credential files are
    /// written into `dir`.
    fn entry(&self, dir: &Path) -> String {
        let secret = dir.join(format!("{}-client-secret", self.name));
        std::fs::write(&secret, format!("{}-secret\n", self.name)).expect("client secret");
        let mut entry = format!(
            "  - name: {name}\n    partner_center:\n      base_url: {base}\n    auth:\n      tenant_id: {tenant}\n      client_id: {client}\n      client_secret_file: {secret}\n      authority: {base}\n",
            name = self.name,
            base = self.upstream.base_url(),
            tenant = self.entra_tenant,
            client = self.client_id,
            secret = secret.display(),
        );
        if let Some(token) = &self.refresh_token {
            let file = dir.join(format!("{}-refresh-token", self.name));
            std::fs::write(&file, format!("{}\n", token.expose())).expect("refresh token");
            entry.push_str(&format!("      refresh_token_file: {}\n", file.display()));
        }
        entry
    }

    /// Stores `token` in this tenant's state file as `login --tenant` does.
    fn store_as_login_does(&self, state_dir: &Path, token: &Secret) {
        let dir = state_dir.join(self.name);
        std::fs::create_dir_all(&dir).expect("tenant state dir");
        let state = serde_json::json!({
            "version": 1,
            "refresh_token": token.expose(),
            "obtained_at": chrono::Utc::now().to_rfc3339(),
            "client_id": self.client_id,
            "tenant_id": self.entra_tenant,
        });
        std::fs::write(dir.join("refresh-token.json"), state.to_string()).expect("state file");
    }
}

/// A two-tenant file polling license usage every second, without retries
/// or a budget (the throttle and the budget have tests of their own; here
/// each failure must be one poll's).
fn two_tenant_file(dir: &Path, tenants: &[&FakeTenant]) -> PathBuf {
    let mut text = format!(
        "partner_center:\n  max_retries: 0\n  max_requests_per_minute: 0\n  request_timeout: 5s\npoll:\n  interval: {INTERVAL}\n  timeout: 10s\nsources:\n  license_deployment:\n    enabled: false\nstate_dir: {}\ntenants:\n",
        dir.join("state").display()
    );
    for tenant in tenants {
        text.push_str(&tenant.entry(dir));
    }
    let path = dir.join("config.yml");
    std::fs::write(&path, text).expect("config file");
    path
}

fn up_of(metrics: &Exposition, tenant: &str) -> Option<f64> {
    metrics.value(UP, &[("tenant", tenant), USAGE])
}

fn counter(metrics: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics.value(name, labels).unwrap_or(-1.0)
}

fn polls_of(upstream: &Simulator) -> u64 {
    upstream.request_count(USAGE_PATH)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_have_their_own_series_tokens_and_state_files() {
    let eu = FakeTenant::start("contoso-eu", true).await;
    let us = FakeTenant::start("contoso-us", true).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::load(&two_tenant_file(dir.path(), &[&eu, &us])).expect("valid");
    let exporter = RunningExporter::start_with_any_auth(config).await;
    let metrics = exporter
        .metrics_until(WAIT, "both tenants up", |m| {
            up_of(m, "contoso-eu") == Some(1.0) && up_of(m, "contoso-us") == Some(1.0)
        })
        .await;
    for tenant in ["contoso-eu", "contoso-us"] {
        assert_eq!(
            counter(
                &metrics,
                "partner_center_token_requests_total",
                &[("tenant", tenant), ("result", "success")]
            ),
            1.0,
            "{tenant} redeemed its own refresh token once:\n{}",
            metrics.text
        );
        assert!(
            metrics
                .value(
                    "partner_center_access_token_expiry_timestamp_seconds",
                    &[("tenant", tenant)]
                )
                .is_some_and(|at| at > 0.0),
            "{}",
            metrics.text
        );
        assert!(
            metrics
                .family("partner_center_license_usage_prorated_percent")
                .iter()
                .any(|sample| sample.labels.get("tenant").map(String::as_str) == Some(tenant)),
            "{tenant}'s usage series:\n{}",
            metrics.text
        );
        assert!(
            metrics
                .value(
                    "partner_center_request_retries_total",
                    &[("tenant", tenant), ("reason", "http")]
                )
                .is_some(),
            "{}",
            metrics.text
        );
    }
    for sample in &metrics.samples {
        let own = !sample.name.starts_with("partner_center_")
            || sample.name == "partner_center_exporter_build_info";
        assert_eq!(
            sample.labels.contains_key("tenant"),
            !own,
            "only process-wide series go without a tenant: {sample:?}"
        );
    }
    assert_eq!(
        eu.upstream.token_redemptions(),
        1,
        "each Entra ID saw its own tenant's redemption"
    );
    assert_eq!(us.upstream.token_redemptions(), 1);

    // Each rotated refresh token is in its own tenant's file, 0600.
    for tenant in [&eu, &us] {
        let file = dir
            .path()
            .join("state")
            .join(tenant.name)
            .join("refresh-token.json");
        let stored: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).expect("state file")).expect("JSON");
        let current = tenant.upstream.current_refresh_token().expect("rotated");
        assert_eq!(
            stored["refresh_token"],
            current.expose(),
            "{}",
            file.display()
        );
        assert_eq!(stored["client_id"], tenant.client_id.as_str());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        }
    }
    promtool_check_metrics(&exporter.get("/metrics").await.text().await.expect("body"));

    let ready = exporter.get("/readyz").await.text().await.expect("body");
    assert!(ready.contains("contoso-eu/license_usage: up"), "{ready}");
    assert!(ready.contains("contoso-us/license_usage: up"), "{ready}");
    let page = exporter.get("/").await.text().await.expect("body");
    assert!(page.contains("<th align=\"left\">Tenant</th>"), "{page}");
    assert!(
        page.contains("<td>contoso-us</td><td>license_usage</td>"),
        "{page}"
    );
    exporter.stop().await.expect("clean stop");
}

/// Waits until `failing` shows `reason` and checks that `healthy` went on
/// polling meanwhile, on time and up.
async fn fails_alone(
    exporter: &RunningExporter,
    failing: &FakeTenant,
    healthy: &FakeTenant,
    reason: &str,
) -> Exposition {
    let errors = |m: &Exposition| {
        m.value(
            "partner_center_poll_errors_total",
            &[("tenant", failing.name), USAGE, ("reason", reason)],
        )
        .unwrap_or(0.0)
    };
    let before = exporter.scrape_plain().await;
    let healthy_polls = polls_of(&healthy.upstream);
    let metrics = exporter
        .metrics_until(
            WAIT,
            &format!("{} failing with {reason}", failing.name),
            |m| errors(m) > errors(&before) && up_of(m, failing.name) == Some(0.0),
        )
        .await;
    // The healthy tenant polls on (every second) and stays up.
    let healthy_now = exporter
        .metrics_until(WAIT, &format!("{} still polling", healthy.name), |m| {
            up_of(m, healthy.name) == Some(1.0) && polls_of(&healthy.upstream) >= healthy_polls + 2
        })
        .await;
    let healthy_errors = |m: &Exposition| -> f64 {
        m.family("partner_center_poll_errors_total")
            .iter()
            .filter(|sample| sample.labels.get("tenant").map(String::as_str) == Some(healthy.name))
            .map(|sample| sample.value)
            .sum()
    };
    assert_eq!(
        healthy_errors(&healthy_now),
        healthy_errors(&before),
        "{} failed no poll meanwhile:\n{}",
        healthy.name,
        healthy_now.text
    );
    assert_eq!(
        healthy_now.value(
            "partner_center_poll_interval_seconds",
            &[("tenant", healthy.name), USAGE]
        ),
        Some(1.0),
        "{} keeps its interval:\n{}",
        healthy.name,
        healthy_now.text
    );
    metrics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_outage_throttling_and_refused_tokens_leave_the_other_alone() {
    let eu = FakeTenant::start("contoso-eu", true).await;
    let us = FakeTenant::start("contoso-us", true).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::load(&two_tenant_file(dir.path(), &[&eu, &us])).expect("valid");
    let exporter = RunningExporter::start_with_any_auth(config).await;
    exporter
        .metrics_until(WAIT, "both tenants up", |m| {
            up_of(m, "contoso-eu") == Some(1.0) && up_of(m, "contoso-us") == Some(1.0)
        })
        .await;

    // An outage of contoso-eu's Partner Center.
    eu.upstream.outage().set(true);
    let metrics = fails_alone(&exporter, &eu, &us, "http").await;
    assert!(
        metrics
            .family("partner_center_license_usage_prorated_percent")
            .iter()
            .any(|sample| sample.labels.get("tenant").map(String::as_str) == Some("contoso-eu")),
        "the failing tenant's last values stay:\n{}",
        metrics.text
    );
    eu.upstream.outage().set(false);

    // contoso-us is throttled: only its own polls slow down.
    us.upstream.script(
        Scope::path(USAGE_PATH),
        vec![Step::response(
            429,
            &[("Retry-After", "3")],
            br#"{"code":"429","description":"Rate limit is exceeded"}"#,
        )],
        None,
    );
    let metrics = fails_alone(&exporter, &us, &eu, "throttled").await;
    assert!(
        metrics
            .value(
                "partner_center_poll_interval_seconds",
                &[("tenant", "contoso-us"), USAGE]
            )
            .is_some_and(|interval| interval >= 3.0),
        "the throttled tenant waits as asked:\n{}",
        metrics.text
    );

    // contoso-eu's access tokens are refused (revoked consent).
    eu.upstream.script(
        Scope::path(USAGE_PATH),
        vec![
            Step::response(401, &[], b"{\"code\":\"401\"}"),
            Step::response(401, &[], b"{\"code\":\"401\"}"),
        ],
        None,
    );
    fails_alone(&exporter, &eu, &us, "auth").await;
    exporter
        .metrics_until(WAIT, "contoso-eu recovered", |m| {
            up_of(m, "contoso-eu") == Some(1.0)
        })
        .await;
    exporter.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_without_a_refresh_token_waits_for_its_login_while_the_other_polls() {
    let eu = FakeTenant::start("contoso-eu", true).await;
    let us = FakeTenant::start("contoso-us", false).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = two_tenant_file(dir.path(), &[&eu, &us]);
    let mut exporter =
        ExporterProcess::start(&["--config.file", file.to_str().expect("UTF-8 path"), LISTEN])
            .await;
    exporter
        .wait_for_line("the advice to sign in", WAIT, |line| {
            line.contains("tenant contoso-us has no refresh token yet")
                && line.contains("login --tenant contoso-us")
        })
        .await;
    let metrics = exporter
        .scrape_until(WAIT, |m| {
            up_of(m, "contoso-eu") == Some(1.0) && up_of(m, "contoso-us") == Some(0.0)
        })
        .await;
    assert!(
        metrics
            .value(
                "partner_center_poll_errors_total",
                &[("tenant", "contoso-us"), USAGE, ("reason", "auth")]
            )
            .is_some_and(|errors| errors >= 1.0),
        "{}",
        metrics.text
    );
    assert_eq!(polls_of(&us.upstream), 0, "nothing is sent without a token");
    // Each tenant's log lines name it.
    exporter
        .wait_for_line("a poll logged with its tenant", WAIT, |line| {
            line.contains("tenant=contoso-eu") && line.contains("source=license_usage")
        })
        .await;

    // `login --tenant contoso-us` stores the tenant's first refresh token;
    // the running exporter takes it up at the next poll.
    let token = us
        .upstream
        .current_refresh_token()
        .expect("the first token");
    us.store_as_login_does(&dir.path().join("state"), &token);
    exporter
        .scrape_until(WAIT, |m| {
            up_of(m, "contoso-us") == Some(1.0) && up_of(m, "contoso-eu") == Some(1.0)
        })
        .await;
    assert!(exporter.is_running());
    exporter.terminate();
    let status = exporter.wait_exit(WAIT).await;
    assert!(status.success(), "{status:?}\n{}", exporter.log_text());
}
