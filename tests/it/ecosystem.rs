//! The deploy kit against the real servers: Debian's Prometheus scrapes the
//! exporter binary in `--demo` mode (two partner tenants, `contoso-eu` and
//! `fabrikam-us`) with `deploy/prometheus/prometheus.yml`
//! and evaluates the rule files it loads (`recording_rules.yml`,
//! `alerts.yml`); every PromQL expression of the Grafana dashboard and of
//! the rules runs against it; the demo's customer problems (over-assigned
//! SKUs, a customer answering 403) raise the customer alerts, named and
//! explained; its subscription problems (an annual subscription renewing
//! within days with unassigned seats, a reduction window closing within a
//! day, a suspended subscription) raise the subscription alerts, the
//! renewal one reaching Alertmanager's licence-management receiver; and an
//! outage of the first tenant's simulated Partner Center (SIGUSR1) makes an
//! exporter-health alert fire for that tenant only, reach Debian's
//! Alertmanager running `deploy/alertmanager/alertmanager.yml`, and resolve
//! again, while the second tenant stays up.
//!
//! The configurations are the shipped files with only what a test has to
//! change: addresses, 1 s intervals, 2 s `for:` durations, and receivers
//! pointed at a local webhook. The shipped durations and thresholds are
//! checked by promtool's unit tests, `deploy/prometheus/alerts_test.yml`.
//!
//! Without `prometheus` or `prometheus-alertmanager` on the PATH the test is
//! skipped with a warning on a developer machine, and fails when `CI` is set.

use crate::common;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

use common::exporter::LISTEN;
use common::processes::{START_LIMIT, Server, free_port};
use common::{ExporterProcess, Scrape, find_tool};
use partner_center_exporter::demo::{CONTOSO_TENANT, DEMO_SERIES, DEMO_TENANTS, FABRIKAM_TENANT};
use partner_center_exporter::simulator::demo_subscriptions::{
    RENEWING_WITH_UNASSIGNED_CUSTOMER, RENEWING_WITH_UNASSIGNED_SKU, subscription_id,
};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
/// The job name the shipped scrape configuration and alerts agree on.
const JOB: &str = "partner-center-exporter";
/// The scrape, evaluation and notification interval of the test variants.
const FAST: &str = "1s";
/// Every `for:` of the test variant of the rules: short, but still a
/// pending phase before firing.
const FAST_FOR: &str = "2s";
/// The alert the outage must raise.
const OUTAGE_ALERT: &str = "PartnerCenterPollsFailing";
/// Where the shipped Alertmanager configuration routes it (severity critical).
const OUTAGE_RECEIVER: &str = "on-call";
/// The alert a stopped exporter must raise.
const DOWN_ALERT: &str = "PartnerCenterExporterDown";
/// The rules that may match a healthy demo: the demo's usage figures swing
/// between 5 and 95 and its deployment figures lie between 0 and 100, so
/// some are below the thresholds at times.
const BUSINESS_ALERTS: [&str; 2] = [
    "PartnerCenterLicenseUsageLow",
    "PartnerCenterLicenseDeploymentLow",
];
/// The customer alert the demo's unassigned seats may raise.
const UNASSIGNED_ALERT: &str = "PartnerCenterCustomerUnassignedLicenses";
/// The alert the demo's over-assigned customers must raise.
const OVER_ASSIGNED_ALERT: &str = "PartnerCenterCustomerOverAssigned";
/// The alert the demo's one customer answering 403 must raise, for that
/// customer only.
const UNREACHABLE_ALERT: &str = "PartnerCenterCustomerUnreachable";
/// The alert the demo's annual subscriptions renewing within days with
/// unassigned seats must raise.
const RENEWAL_ALERT: &str = "PartnerCenterSubscriptionRenewsWithUnassignedLicenses";
/// Where the shipped Alertmanager configuration routes the subscription alerts.
const LICENCE_RECEIVER: &str = "license-management";
/// The alert the demo's reduction window closing within a day must raise.
const WINDOW_ALERT: &str = "PartnerCenterSubscriptionCancellationWindowClosing";
/// The alert the demo's one suspended subscription must raise.
const SUSPENDED_ALERT: &str = "PartnerCenterSubscriptionSuspended";
/// The dashboard's variable of the partner tenant (the `tenant` label of
/// an exporter with `tenants`, such as the demo's two).
const TENANT_VARIABLE: &str = "tenant";

/// Longest wait for an outage's start or end to show in Prometheus and
/// Alertmanager: a demo poll interval (15 s), the retries of a failing
/// poll (about 3.5 s), a few 1 s rounds of scraping, evaluation and
/// notification, and room for a loaded machine.
const OUTAGE_LIMIT: Duration = Duration::from_secs(60);
/// Longest wait for an alert of a standing condition to fire and reach
/// Alertmanager: the 2 s `for:`, a few 1 s rounds of evaluation and
/// notification, and room for a loaded machine.
const FIRING_LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_and_alertmanager_run_the_deploy_kit_against_the_demo() {
    let Some(tools) = Tools::find() else {
        return;
    };
    let started = Instant::now();
    let stack = Stack::start(&tools).await;
    let s = &stack;

    // The series arrive with the exporter's labels, next to job and
    // instance: one partner_center_up per tenant.
    let up = s
        .eventually(
            START_LIMIT,
            "partner_center_up{source=\"license_usage\"} 1 in Prometheus for both tenants",
            || async move {
                let result = s
                    .query("partner_center_up{source=\"license_usage\"} == 1")
                    .await
                    .ok()?;
                (result.len() == DEMO_TENANTS.len()).then_some(result)
            },
        )
        .await;
    let mut tenants = Vec::new();
    for series in &up {
        let labels = &series["metric"];
        assert_eq!(labels["job"], JOB, "{labels}");
        assert_eq!(
            labels["instance"],
            s.exporter.address().to_string(),
            "{labels}"
        );
        tenants.push(labels["tenant"].as_str().unwrap_or_default().to_owned());
    }
    tenants.sort();
    assert_eq!(tenants, DEMO_TENANTS, "{up:?}");
    s.series_have_the_exporters_labels().await;

    // Range functions need a few samples.
    s.eventually(
        START_LIMIT,
        "five samples of partner_center_up",
        || async move {
            let result = s
                .query("count_over_time(partner_center_up[1m]) >= 5")
                .await
                .ok()?;
            (!result.is_empty()).then_some(())
        },
    )
    .await;
    // The per-customer fan-out paces its requests under the tenant's
    // budget and finishes seconds after the partner-level polls, and the
    // subscriptions' SKUs are looked up after their first listing: wait
    // for both figures, and for the recording rules to have evaluated them.
    for record in [
        "customer_sku:partner_center_customer_licenses_unassigned:sum",
        "customer_subscription:partner_center_customer_licenses_unassigned:sum",
    ] {
        s.eventually(
            START_LIMIT,
            &format!("three samples of {record}"),
            || async move {
                let result = s
                    .query(&format!("count_over_time({record}[1m]) >= 3"))
                    .await
                    .ok()?;
                (!result.is_empty()).then_some(())
            },
        )
        .await;
    }
    s.dashboard_queries_return_data().await;
    s.rule_expressions_parse_and_stay_quiet().await;
    s.customer_alerts_fire_named_and_explained().await;
    // Before the outage, whose inhibit rules would silence it.
    s.renewal_alert_fires_named_and_reaches_licence_management()
        .await;

    // Outage: the next poll fails, the health alert fires and is routed.
    s.exporter.signal("-USR1");
    s.exporter
        .wait_for_line("the outage start", START_LIMIT, |line| {
            line.contains("outage started")
        })
        .await;
    let firing = s
        .eventually(
            OUTAGE_LIMIT,
            "the outage alert firing in Prometheus for license_usage",
            // Every source of the first tenant fails in the outage; each
            // has its own alert.
            || async move {
                s.prometheus_alerts().await.ok()?.into_iter().find(|alert| {
                    alert["labels"]["alertname"] == OUTAGE_ALERT
                        && alert["labels"]["source"] == "license_usage"
                        && alert["state"] == "firing"
                })
            },
        )
        .await;
    assert_eq!(firing["labels"]["tenant"], CONTOSO_TENANT, "{firing}");
    s.the_second_tenant_stays_up().await;
    assert_eq!(firing["labels"]["severity"], "critical", "{firing}");
    assert_eq!(firing["labels"]["job"], JOB, "{firing}");
    assert_eq!(
        firing["labels"]["instance"],
        s.exporter.address().to_string(),
        "{firing}"
    );
    let description = firing["annotations"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        description.contains("by reason: http "),
        "the description's query template names the failure:\n{firing}"
    );
    for (name, text) in firing["annotations"].as_object().expect("annotations") {
        let text = text.as_str().unwrap_or_default();
        assert!(
            !text.is_empty() && !text.contains("error expanding template"),
            "annotation {name}: {text:?}"
        );
    }
    assert!(
        !s.query(&s.rule_expression(OUTAGE_ALERT))
            .await
            .expect("the rule's expression runs")
            .is_empty(),
        "the rule's expression matches during the outage"
    );
    let routed = s
        .eventually(OUTAGE_LIMIT, "the outage alert in Alertmanager", || {
            s.alertmanager_alert(OUTAGE_ALERT)
        })
        .await;
    assert_eq!(routed["status"]["state"], "active", "{routed}");
    let receivers = receiver_names(&routed);
    assert_eq!(receivers, [OUTAGE_RECEIVER], "{routed}");
    s.eventually(OUTAGE_LIMIT, "a firing notification at the webhook", || {
        s.notification(OUTAGE_RECEIVER, OUTAGE_ALERT, "firing")
    })
    .await;
    s.the_second_tenant_stays_up().await;

    // Recovery: the next poll succeeds and everything resolves.
    s.exporter.signal("-USR1");
    s.exporter
        .wait_for_line("the outage end", START_LIMIT, |line| {
            line.contains("outage ended")
        })
        .await;
    s.eventually(
        OUTAGE_LIMIT,
        "the outage alert gone from Prometheus",
        || async move {
            let alerts = s.prometheus_alerts().await.ok()?;
            (!alerts
                .iter()
                .any(|alert| alert["labels"]["alertname"] == OUTAGE_ALERT))
            .then_some(())
        },
    )
    .await;
    s.eventually(
        OUTAGE_LIMIT,
        "the outage alert gone from Alertmanager",
        || async move {
            s.alertmanager_alert(OUTAGE_ALERT)
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    s.eventually(
        OUTAGE_LIMIT,
        "a resolved notification at the webhook",
        || s.notification(OUTAGE_RECEIVER, OUTAGE_ALERT, "resolved"),
    )
    .await;

    // A stopped exporter: the scrape fails and the job's alert fires.
    s.exporter.terminate();
    let down = s
        .eventually(OUTAGE_LIMIT, "the exporter-down alert firing", || {
            s.prometheus_alert(DOWN_ALERT, "firing")
        })
        .await;
    assert_eq!(
        down["labels"]["instance"],
        s.exporter.address().to_string(),
        "{down}"
    );

    drop(stack);
    eprintln!(
        "tests/it/ecosystem.rs took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// The servers
// ---------------------------------------------------------------------------

/// Prometheus and Alertmanager, as Debian installs them.
struct Tools {
    prometheus: PathBuf,
    alertmanager: PathBuf,
}

impl Tools {
    /// Both servers, or `None` after a loud warning; in CI, a failure.
    fn find() -> Option<Self> {
        let prometheus = find_tool("prometheus");
        // Debian's name for it; upstream's archive calls it alertmanager.
        let alertmanager =
            find_tool("prometheus-alertmanager").or_else(|| find_tool("alertmanager"));
        if let (Some(prometheus), Some(alertmanager)) = (prometheus.clone(), alertmanager.clone()) {
            return Some(Self {
                prometheus,
                alertmanager,
            });
        }
        let missing: Vec<&str> = [
            (
                prometheus.is_none(),
                "prometheus (Debian package `prometheus`)",
            ),
            (
                alertmanager.is_none(),
                "prometheus-alertmanager (Debian package `prometheus-alertmanager`)",
            ),
        ]
        .into_iter()
        .filter_map(|(missing, name)| missing.then_some(name))
        .collect();
        let missing = missing.join(" and ");
        assert!(
            std::env::var_os("CI").is_none(),
            "{missing} required in CI but not found on the PATH"
        );
        eprintln!(
            "\n\
             ==================================================================\n\
             WARNING: SKIPPING tests/it/ecosystem.rs: {missing} not found on the PATH.\n\
             The deploy kit is NOT tested against Prometheus and Alertmanager.\n\
             ==================================================================\n"
        );
        None
    }
}

/// Everything the test runs. Fields drop in order: the processes stop
/// before their directory is removed.
struct Stack {
    exporter: ExporterProcess,
    prometheus: Server,
    alertmanager: Server,
    webhook: wiremock::MockServer,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Stack {
    async fn start(tools: &Tools) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");

        let webhook = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .respond_with(wiremock::ResponseTemplate::new(200))
            .mount(&webhook)
            .await;

        let exporter = ExporterProcess::start(&["--demo", LISTEN]).await;

        let alertmanager_address = format!("127.0.0.1:{}", free_port());
        let alertmanager_config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &alertmanager_config,
            alertmanager_config_for_test(&webhook.uri()),
        )
        .expect("write alertmanager.yml");
        let mut alertmanager = Server::start(
            "Alertmanager",
            &tools.alertmanager,
            &[
                format!("--config.file={}", alertmanager_config.display()),
                format!(
                    "--storage.path={}",
                    dir.path().join("alertmanager").display()
                ),
                format!("--web.listen-address={alertmanager_address}"),
                // No cluster: it would listen on every interface and gossip.
                "--cluster.listen-address=".to_owned(),
            ],
            dir.path().join("alertmanager.log"),
        );
        alertmanager.wait_ready(&client).await;

        let rules: Vec<PathBuf> = shipped_rule_files()
            .iter()
            .map(|file| {
                let path = dir.path().join(file);
                std::fs::write(&path, rules_for_test(file))
                    .unwrap_or_else(|err| panic!("write {file}: {err}"));
                path
            })
            .collect();
        let prometheus_config = dir.path().join("prometheus.yml");
        std::fs::write(
            &prometheus_config,
            prometheus_config_for_test(exporter.address(), &alertmanager_address, &rules),
        )
        .expect("write prometheus.yml");
        let mut prometheus = Server::start(
            "Prometheus",
            &tools.prometheus,
            &[
                format!("--config.file={}", prometheus_config.display()),
                format!("--storage.tsdb.path={}", dir.path().join("data").display()),
                format!("--web.listen-address=127.0.0.1:{}", free_port()),
                // Firing alerts are sent again this often (1 m by default),
                // should the first sending fail.
                "--rules.alert.resend-delay=1s".to_owned(),
            ],
            dir.path().join("prometheus.log"),
        );
        prometheus.wait_ready(&client).await;

        Self {
            exporter,
            prometheus,
            alertmanager,
            webhook,
            client,
            _dir: dir,
        }
    }

    /// The three logs, for failure messages.
    fn context(&self) -> String {
        format!(
            "--- exporter log ---\n{}\n--- Prometheus log (end) ---\n{}\n--- Alertmanager log (end) ---\n{}",
            self.exporter.log_text(),
            self.prometheus.log_tail(),
            self.alertmanager.log_tail()
        )
    }

    /// Retries `attempt` until it gives a value, for up to `limit`.
    async fn eventually<T, Fut>(&self, limit: Duration, what: &str, attempt: impl Fn() -> Fut) -> T
    where
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(value) = attempt().await {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {limit:?}\n{}",
                self.context()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn get_json(&self, url: &str, query: &[(&str, &str)]) -> Result<Json, String> {
        let url =
            reqwest::Url::parse_with_params(url, query).map_err(|err| format!("{url}: {err}"))?;
        let response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|err| format!("GET {url}: {err}"))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|err| format!("GET {url}: {err}"))?;
        let json: Json =
            serde_json::from_str(&body).map_err(|err| format!("{status}, {err}: {body}"))?;
        if !status.is_success() {
            return Err(format!("{status}: {body}"));
        }
        Ok(json)
    }

    /// An instant query's vector, or Prometheus' error (a parse error, say).
    async fn query(&self, expr: &str) -> Result<Vec<Json>, String> {
        let url = format!("{}/api/v1/query", self.prometheus.url);
        let body = self.get_json(&url, &[("query", expr)]).await?;
        if body["status"] != "success" || body["data"]["resultType"] != "vector" {
            return Err(format!("not a vector: {body}"));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Values of `label` on series matching `selector`.
    async fn label_values(&self, label: &str, selector: &str) -> Vec<String> {
        let url = format!("{}/api/v1/label/{label}/values", self.prometheus.url);
        let body = self
            .get_json(&url, &[("match[]", selector)])
            .await
            .unwrap_or_else(|err| panic!("label values of {label} for {selector}: {err}"));
        body["data"]
            .as_array()
            .unwrap_or_else(|| panic!("label values: {body}"))
            .iter()
            .filter_map(|value| value.as_str().map(str::to_owned))
            .collect()
    }

    /// Prometheus' pending and firing alerts.
    async fn prometheus_alerts(&self) -> Result<Vec<Json>, String> {
        let url = format!("{}/api/v1/alerts", self.prometheus.url);
        let body = self.get_json(&url, &[]).await?;
        Ok(body["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The alert called `name` in `state` (pending or firing), if Prometheus has it.
    async fn prometheus_alert(&self, name: &str, state: &str) -> Option<Json> {
        self.prometheus_alerts()
            .await
            .ok()?
            .into_iter()
            .find(|alert| alert["labels"]["alertname"] == name && alert["state"] == state)
    }

    /// The unresolved alert called `name`, if Alertmanager lists it.
    async fn alertmanager_alert(&self, name: &str) -> Option<Json> {
        let url = format!("{}/api/v2/alerts", self.alertmanager.url);
        self.get_json(&url, &[])
            .await
            .ok()?
            .as_array()?
            .iter()
            .find(|alert| alert["labels"]["alertname"] == name)
            .cloned()
    }

    /// A webhook notification to `receiver` of `alert` with `status`
    /// (firing or resolved), if one arrived.
    async fn notification(&self, receiver: &str, alert: &str, status: &str) -> Option<Json> {
        self.webhook
            .received_requests()
            .await?
            .into_iter()
            .filter(|request| request.url.path() == format!("/{receiver}"))
            .filter_map(|request| serde_json::from_slice::<Json>(&request.body).ok())
            .find(|body| {
                body["receiver"] == receiver
                    && body["status"] == status
                    && body["alerts"].as_array().is_some_and(|alerts| {
                        alerts
                            .iter()
                            .any(|a| a["labels"]["alertname"] == alert && a["status"] == status)
                    })
            })
    }

    /// The expression of the shipped rule `alert`.
    fn rule_expression(&self, alert: &str) -> String {
        shipped_rules()
            .into_iter()
            .find(|rule| rule.name == alert)
            .map(|rule| rule.expr)
            .unwrap_or_else(|| panic!("no rule {alert} in the shipped rule files"))
    }

    /// The license series carry exactly tenant, workload, service and
    /// channel from the exporter, and job and instance from Prometheus:
    /// nothing renamed to exported_*.
    async fn series_have_the_exporters_labels(&self) {
        for metric in [
            "partner_center_license_usage_prorated_percent",
            "partner_center_license_usage_processed_timestamp_seconds",
        ] {
            let result = self
                .query(metric)
                .await
                .unwrap_or_else(|err| panic!("{metric}: {err}"));
            let mut seen = BTreeSet::new();
            for series in &result {
                let labels = series["metric"].as_object().expect("labels");
                let names: BTreeSet<&str> = labels.keys().map(String::as_str).collect();
                assert_eq!(
                    names,
                    BTreeSet::from([
                        "__name__", "channel", "instance", "job", "service", "tenant", "workload"
                    ]),
                    "{series}"
                );
                assert_eq!(labels["job"], JOB);
                assert_eq!(labels["instance"], self.exporter.address().to_string());
                seen.insert((
                    labels["tenant"].as_str().unwrap_or_default().to_owned(),
                    labels["workload"].as_str().unwrap_or_default().to_owned(),
                    labels["service"].as_str().unwrap_or_default().to_owned(),
                    labels["channel"].as_str().unwrap_or_default().to_owned(),
                ));
            }
            // The documented series once per tenant.
            let expected: BTreeSet<(String, String, String, String)> = DEMO_TENANTS
                .iter()
                .flat_map(|tenant| {
                    DEMO_SERIES.iter().map(|(w, s, c)| {
                        (
                            (*tenant).to_owned(),
                            (*w).to_owned(),
                            (*s).to_owned(),
                            (*c).to_owned(),
                        )
                    })
                })
                .collect();
            assert_eq!(seen, expected, "{metric}");
        }
    }

    /// Every panel query of the dashboard, with its variables set as
    /// Grafana sets them (first to "All", then to one value each), runs and
    /// returns data: the demo uses App+User, so even the token panels have
    /// some. The demo polls two tenants: the tenant variable lists both,
    /// and its All, `.*`, matches both, and must also match series without
    /// the label, as a single-tenant exporter's are (for which the variable
    /// has no values, and Grafana's only choice is All).
    async fn dashboard_queries_return_data(&self) {
        let dashboard = dashboard();
        let variables = dashboard["templating"]["list"]
            .as_array()
            .expect("templating.list");
        assert!(
            variables
                .iter()
                .any(|v| v["type"] == "datasource" && v["name"] == "DS_PROMETHEUS"),
            "a data source variable named DS_PROMETHEUS, for provisioning"
        );
        let names: BTreeSet<&str> = variables
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        for wanted in ["tenant", "service", "channel", "workload"] {
            assert!(names.contains(wanted), "variable {wanted} in {names:?}");
        }
        let targets = dashboard_targets(&dashboard);
        assert!(targets.len() >= 10, "{} panel queries", targets.len());

        for all in [true, false] {
            // Variables in order, each query seeing the earlier ones' values.
            let mut values: Vec<(String, String)> = Vec::new();
            for variable in variables.iter().filter(|v| v["type"] == "query") {
                let name = variable["name"].as_str().expect("variable name");
                let definition = variable["query"]["query"]
                    .as_str()
                    .or_else(|| variable["query"].as_str())
                    .expect("variable query");
                let (selector, label) = parse_label_values(&substitute(definition, &values));
                let found = self.label_values(&label, &selector).await;
                let all_value = variable["allValue"].as_str();
                if name == TENANT_VARIABLE {
                    // Every selector of the dashboard takes the tenant, and
                    // its All must also match series without the label.
                    assert_eq!(variable["includeAll"], true, "variable {name}: {variable}");
                    assert_eq!(all_value, Some(".*"), "variable {name}: {variable}");
                    let mut tenants = found.clone();
                    tenants.sort();
                    assert_eq!(tenants, DEMO_TENANTS, "variable {name}");
                    // Prometheus' own `up` has no tenant label.
                    let unlabelled = format!("up{{job=\"{JOB}\", {label}=~\".*\"}}");
                    let matched = self
                        .query(&unlabelled)
                        .await
                        .unwrap_or_else(|err| panic!("{unlabelled}: {err}"));
                    assert_eq!(matched.len(), 1, "{unlabelled}: {matched:?}");
                }
                assert!(
                    !found.is_empty(),
                    "variable {name}: no values for label_values({selector}, {label})"
                );
                let value = if let (true, Some(all_value)) = (all, all_value) {
                    // Grafana's "All" with allValue: that value as it stands.
                    all_value.to_owned()
                } else if all {
                    // Grafana's "All" without allValue: every value, as a regex.
                    format!(
                        "({})",
                        found
                            .iter()
                            .map(|v| regex_escape(v))
                            .collect::<Vec<_>>()
                            .join("|")
                    )
                } else {
                    regex_escape(&found[0])
                };
                values.push((name.to_owned(), value));
            }
            for (title, expr) in &targets {
                let query = substitute(expr, &values);
                assert!(
                    !has_grafana_variable(&query),
                    "{title}: unknown variable in {query}"
                );
                let result = self
                    .query(&query)
                    .await
                    .unwrap_or_else(|err| panic!("{title}: {query}: {err}"));
                assert!(
                    !result.is_empty(),
                    "{title}: no data for {query} (variables {values:?})"
                );
            }
        }
    }

    /// Every rule expression of the shipped rule files parses and names
    /// only metrics the exporter (or Prometheus, for `up`) really has, or
    /// that a recording rule records; every recording rule records
    /// something from the demo; and in a healthy demo no alert matches
    /// except the business alerts, whose thresholds the demo's figures
    /// cross now and then, and the customer alerts for the demo's
    /// customers: some over-assigned, some with spare seats, and exactly
    /// one answering 403.
    async fn rule_expressions_parse_and_stay_quiet(&self) {
        let rules = shipped_rules();
        let alerts = rules.iter().filter(|rule| !rule.recorded).count();
        assert!(alerts >= 8, "{alerts} alerts");
        assert!(
            rules.iter().any(|rule| rule.recorded),
            "recording rules are shipped"
        );
        let known: BTreeSet<String> = self
            .label_values(
                "__name__",
                "{__name__=~\"partner_center_.+|.+:partner_center_.+|up\"}",
            )
            .await
            .into_iter()
            .collect();
        for rule in &rules {
            let (name, expr) = (&rule.name, &rule.expr);
            let result = self
                .query(expr)
                .await
                .unwrap_or_else(|err| panic!("{name}: {expr}: {err}"));
            for metric in metric_names(expr) {
                assert!(
                    known.contains(&metric),
                    "{name} reads {metric}, which Prometheus does not have; it has {known:?}"
                );
            }
            if rule.recorded {
                assert!(
                    !result.is_empty(),
                    "{name} records nothing from the demo: {expr}"
                );
                assert!(known.contains(name), "Prometheus has not recorded {name}");
            } else if name == UNREACHABLE_ALERT {
                assert_eq!(
                    result.len(),
                    1,
                    "{name} matches the demo's one customer answering 403: {expr} gave {result:?}"
                );
            } else if name == OVER_ASSIGNED_ALERT {
                assert!(
                    !result.is_empty(),
                    "{name} matches none of the demo's over-assigned customers: {expr}"
                );
            } else if name == RENEWAL_ALERT || name == WINDOW_ALERT {
                assert!(
                    !result.is_empty(),
                    "{name} matches none of the demo's subscriptions: {expr}"
                );
            } else if name == SUSPENDED_ALERT {
                assert_eq!(
                    result.len(),
                    1,
                    "{name} matches the demo's one suspended subscription: {expr} gave {result:?}"
                );
            } else if !BUSINESS_ALERTS.contains(&name.as_str()) && name != UNASSIGNED_ALERT {
                assert!(
                    result.is_empty(),
                    "{name} matches a healthy demo: {expr} gave {result:?}"
                );
            }
        }
    }

    /// The `label` of the one series `selector` selects.
    async fn only_label(&self, selector: &str, label: &str) -> String {
        let result = self
            .query(selector)
            .await
            .unwrap_or_else(|err| panic!("{selector}: {err}"));
        assert_eq!(result.len(), 1, "one series for {selector}: {result:?}");
        result[0]["metric"][label]
            .as_str()
            .unwrap_or_else(|| panic!("no {label} on {selector}: {result:?}"))
            .to_owned()
    }

    /// The customer alerts fire for the demo's customer problems, name the
    /// customer and SKU from the _info series, and explain the 403: one
    /// unreachable customer (of contoso-eu), reason forbidden, the GDAP
    /// roles it needs, routed to the operations queue; and over-assigned
    /// SKUs of each tenant by name, with the tenant.
    async fn customer_alerts_fire_named_and_explained(&self) {
        let unreachable = self
            .eventually(
                FIRING_LIMIT,
                "the unreachable-customer alert firing",
                || self.prometheus_alert(UNREACHABLE_ALERT, "firing"),
            )
            .await;
        let all = self.prometheus_alerts().await.expect("alerts");
        let count = all
            .iter()
            .filter(|alert| alert["labels"]["alertname"] == UNREACHABLE_ALERT)
            .count();
        assert_eq!(count, 1, "one unreachable customer: {all:?}");
        let labels = &unreachable["labels"];
        assert_eq!(labels["severity"], "warning", "{unreachable}");
        assert_eq!(labels["job"], JOB, "{unreachable}");
        assert_eq!(labels["tenant"], CONTOSO_TENANT, "{unreachable}");
        assert_eq!(
            labels["instance"],
            self.exporter.address().to_string(),
            "{unreachable}"
        );
        let tenant = labels["customer_tenant_id"].as_str().expect("customer");
        let source = labels["source"].as_str().expect("source");
        let name = self
            .only_label(
                &format!("partner_center_customer_info{{customer_tenant_id=\"{tenant}\"}}"),
                "customer_name",
            )
            .await;
        assert_annotations_expanded(&unreachable);
        let summary = unreachable["annotations"]["summary"]
            .as_str()
            .unwrap_or_default();
        assert!(
            summary.contains(&format!("customer {name} (source {source})")),
            "the summary names the customer:\n{unreachable}"
        );
        let description = unreachable["annotations"]["description"]
            .as_str()
            .unwrap_or_default();
        for wanted in [
            "the last one with reason forbidden.",
            "Directory Reader, Global Reader, User Administrator or License Administrator",
        ] {
            assert!(
                description.contains(wanted),
                "the description says {wanted:?}:\n{unreachable}"
            );
        }
        let routed = self
            .eventually(
                FIRING_LIMIT,
                "the unreachable-customer alert in Alertmanager",
                || self.alertmanager_alert(UNREACHABLE_ALERT),
            )
            .await;
        let receivers = receiver_names(&routed);
        assert_eq!(receivers, ["operations"], "{routed}");
        assert_eq!(routed["status"]["state"], "active", "{routed}");

        // Both tenants have over-assigned customers, and each alert is
        // about its own tenant's.
        let over_assigned = self
            .eventually(
                FIRING_LIMIT,
                "the over-assigned alert firing for both tenants",
                || async {
                    let firing: Vec<Json> = self
                        .prometheus_alerts()
                        .await
                        .ok()?
                        .into_iter()
                        .filter(|alert| {
                            alert["labels"]["alertname"] == OVER_ASSIGNED_ALERT
                                && alert["state"] == "firing"
                        })
                        .collect();
                    let mut tenants: Vec<&str> = firing
                        .iter()
                        .filter_map(|alert| alert["labels"]["tenant"].as_str())
                        .collect();
                    tenants.sort();
                    tenants.dedup();
                    (tenants == DEMO_TENANTS).then_some(firing)
                },
            )
            .await;
        for partner in DEMO_TENANTS {
            let over = over_assigned
                .iter()
                .find(|alert| alert["labels"]["tenant"] == partner)
                .expect("an alert of each tenant");
            assert_annotations_expanded(over);
            let tenant = over["labels"]["customer_tenant_id"]
                .as_str()
                .expect("customer");
            let sku = over["labels"]["sku_id"].as_str().expect("SKU");
            let name = self
                .only_label(
                    &format!(
                        "partner_center_customer_info{{tenant=\"{partner}\", customer_tenant_id=\"{tenant}\"}}"
                    ),
                    "customer_name",
                )
                .await;
            let part_number = self
                .only_label(
                    &format!(
                        "partner_center_customer_sku_info{{tenant=\"{partner}\", customer_tenant_id=\"{tenant}\", sku_id=\"{sku}\"}}"
                    ),
                    "sku_part_number",
                )
                .await;
            let summary = over["annotations"]["summary"].as_str().unwrap_or_default();
            assert_eq!(
                summary,
                format!(
                    "tenant {partner}: {name} has more users assigned to {part_number} than licences."
                ),
                "{over}"
            );
        }
    }
}

impl Stack {
    /// During the first tenant's outage the second tenant's Partner Center
    /// keeps answering: all of its sources are up in Prometheus, and no
    /// outage alert is pending or firing for it.
    async fn the_second_tenant_stays_up(&self) {
        let selector = format!("partner_center_up{{tenant=\"{FABRIKAM_TENANT}\"}}");
        let up = self
            .query(&selector)
            .await
            .unwrap_or_else(|err| panic!("{selector}: {err}"));
        assert_eq!(up.len(), 6, "every source of {FABRIKAM_TENANT}: {up:?}");
        for series in &up {
            assert_eq!(series["value"][1], "1", "{series}\n{}", self.context());
        }
        let alerts = self.prometheus_alerts().await.expect("alerts");
        assert!(
            !alerts.iter().any(|alert| {
                alert["labels"]["alertname"] == OUTAGE_ALERT
                    && alert["labels"]["tenant"] == FABRIKAM_TENANT
            }),
            "no outage alert for {FABRIKAM_TENANT}: {alerts:?}"
        );
    }

    /// The renewal alert fires for the demo's annual subscriptions that
    /// renew within days while seats of their SKU are unassigned (among
    /// them the first tenant's Contoso, on Microsoft 365 E3), names the
    /// customer and the product, and reaches the licence-management
    /// receiver.
    async fn renewal_alert_fires_named_and_reaches_licence_management(&self) {
        // Contoso's annual Microsoft 365 E3, which the first tenant's
        // simulator always renews within days with seats unassigned.
        let contoso = subscription_id(
            RENEWING_WITH_UNASSIGNED_CUSTOMER,
            RENEWING_WITH_UNASSIGNED_SKU,
        );
        let renewal = self
            .eventually(
                FIRING_LIMIT,
                "the renewal alert firing for Contoso's Microsoft 365 E3",
                || async {
                    self.prometheus_alerts()
                        .await
                        .ok()?
                        .into_iter()
                        .find(|alert| {
                            alert["labels"]["alertname"] == RENEWAL_ALERT
                                && alert["labels"]["subscription_id"] == contoso.as_str()
                                && alert["state"] == "firing"
                        })
                },
            )
            .await;
        let labels = &renewal["labels"];
        assert_eq!(labels["severity"], "warning", "{renewal}");
        assert_eq!(labels["job"], JOB, "{renewal}");
        assert_eq!(
            labels["sku_id"].as_str().map(str::to_lowercase).as_deref(),
            Some(RENEWING_WITH_UNASSIGNED_SKU),
            "{renewal}"
        );
        assert_eq!(labels["tenant"], CONTOSO_TENANT, "{renewal}");
        let tenant = labels["customer_tenant_id"].as_str().expect("customer");
        let subscription = labels["subscription_id"].as_str().expect("subscription");
        assert!(labels["sku_id"].as_str().is_some(), "{renewal}");
        assert_annotations_expanded(&renewal);
        let name = self
            .only_label(
                &format!("partner_center_customer_info{{customer_tenant_id=\"{tenant}\"}}"),
                "customer_name",
            )
            .await;
        let offer = self
            .only_label(
                &format!("partner_center_subscription_info{{subscription_id=\"{subscription}\"}}"),
                "offer_name",
            )
            .await;
        let term = self
            .only_label(
                &format!("partner_center_subscription_info{{subscription_id=\"{subscription}\"}}"),
                "term_duration",
            )
            .await;
        assert!(
            term == "P1Y" || term == "P3Y",
            "never a monthly term: {term}"
        );
        let summary = renewal["annotations"]["summary"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(name, RENEWING_WITH_UNASSIGNED_CUSTOMER, "{renewal}");
        for wanted in [name.as_str(), offer.as_str(), "unassigned licences"] {
            assert!(
                summary.contains(wanted),
                "the summary says {wanted:?}:\n{renewal}"
            );
        }
        let routed = self
            .eventually(FIRING_LIMIT, "the renewal alert in Alertmanager", || {
                self.alertmanager_alert(RENEWAL_ALERT)
            })
            .await;
        assert_eq!(routed["status"]["state"], "active", "{routed}");
        let receivers = receiver_names(&routed);
        assert_eq!(receivers, [LICENCE_RECEIVER], "{routed}");
        self.eventually(
            FIRING_LIMIT,
            "a renewal notification at the webhook",
            || self.notification(LICENCE_RECEIVER, RENEWAL_ALERT, "firing"),
        )
        .await;
    }
}

/// The receivers Alertmanager routed an alert to, by name.
fn receiver_names(alert: &Json) -> Vec<&str> {
    alert["receivers"]
        .as_array()
        .expect("receivers")
        .iter()
        .filter_map(|receiver| receiver["name"].as_str())
        .collect()
}

/// Every annotation of a firing alert is there and fully expanded.
fn assert_annotations_expanded(alert: &Json) {
    for wanted in ["summary", "description", "runbook"] {
        assert!(
            alert["annotations"].get(wanted).is_some(),
            "annotation {wanted}: {alert}"
        );
    }
    for (name, text) in alert["annotations"].as_object().expect("annotations") {
        let text = text.as_str().unwrap_or_default();
        assert!(
            !text.is_empty()
                && !text.contains("error expanding template")
                && !text.contains("<no value>"),
            "annotation {name}: {text:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// The shipped files and their test variants
// ---------------------------------------------------------------------------

fn read_yaml(path: &str) -> Yaml {
    let path = format!("{DEPLOY}/{path}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|err| panic!("{path}: {err}"))
}

fn dashboard() -> Json {
    let path = format!("{DEPLOY}/grafana/partner-center-license-usage.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// (panel title, expression) of every query of every panel, rows' nested
/// panels included; each uses the `${DS_PROMETHEUS}` data source.
fn dashboard_targets(dashboard: &Json) -> Vec<(String, String)> {
    fn walk(panels: &Json, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            walk(&panel["panels"], out);
            let title = panel["title"].as_str().unwrap_or_default();
            for target in panel["targets"].as_array().into_iter().flatten() {
                for datasource in [&panel["datasource"], &target["datasource"]] {
                    assert_eq!(datasource["uid"], "${DS_PROMETHEUS}", "{title}");
                }
                let expr = target["expr"].as_str().expect("a PromQL target");
                out.push((title.to_owned(), expr.to_owned()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Replaces Grafana's `$name` and `${name}` with the given values, and
/// Grafana's interval variables with values fit for a short test.
fn substitute(expr: &str, values: &[(String, String)]) -> String {
    let mut all: Vec<(String, String)> = values.to_vec();
    for (name, value) in [
        ("__rate_interval", "1m"),
        ("__interval", "15s"),
        ("__range", "1h"),
    ] {
        all.push((name.to_owned(), value.to_owned()));
    }
    // Longest names first, so that $instance is not read as $in + stance.
    all.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    let mut out = expr.to_owned();
    for (name, value) in &all {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    out
}

/// Whether a query still holds a Grafana variable (`$name`, `${name}`),
/// not counting a regex group reference (`$1`) of label_replace, which
/// Grafana leaves alone: no variable's name is a number.
fn has_grafana_variable(query: &str) -> bool {
    query.match_indices('$').any(|(at, _)| {
        query[at + 1..]
            .chars()
            .next()
            .is_some_and(|next| next == '{' || next == '_' || next.is_ascii_alphabetic())
    })
}

/// Escapes a label value for a regex inside a PromQL string, as Grafana
/// does for multi-value variables.
fn regex_escape(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\\\\\"),
            '$' | '^' | '*' | '{' | '}' | '[' | ']' | '\'' | '+' | '?' | '.' | '(' | ')' | '|' => {
                out.push_str("\\\\");
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// (selector, label) of Grafana's `label_values(selector, label)`.
fn parse_label_values(query: &str) -> (String, String) {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not label_values(...): {query}"));
    let (selector, label) = inner
        .rsplit_once(',')
        .unwrap_or_else(|| panic!("label_values needs a selector: {query}"));
    (selector.trim().to_owned(), label.trim().to_owned())
}

/// The metric names an expression reads: every `partner_center_*` word,
/// every recorded `level:partner_center_*:operations` one, and `up` where
/// it is selected.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = expr
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("partner_center_") || word.contains(":partner_center_"))
        .map(str::to_owned)
        .collect();
    if expr.contains("up{") {
        names.insert("up".to_owned());
    }
    names
}

/// The rule files the shipped prometheus.yml loads, in its order; they
/// sit beside it.
fn shipped_rule_files() -> Vec<String> {
    let config = read_yaml("prometheus/prometheus.yml");
    let files: Vec<String> = config["rule_files"]
        .as_sequence()
        .expect("rule_files")
        .iter()
        .map(|file| file.as_str().expect("a rule file").to_owned())
        .collect();
    assert!(
        files.iter().any(|file| file == "alerts.yml"),
        "prometheus.yml loads alerts.yml: {files:?}"
    );
    files
}

/// One rule of the shipped rule files.
struct ShippedRule {
    /// The alert's name, or the name of the series a recording rule records.
    name: String,
    expr: String,
    recorded: bool,
}

/// Every rule of every shipped rule file.
fn shipped_rules() -> Vec<ShippedRule> {
    let mut out = Vec::new();
    for file in shipped_rule_files() {
        let rules = read_yaml(&format!("prometheus/{file}"));
        for group in rules["groups"].as_sequence().expect("groups") {
            for rule in group["rules"].as_sequence().expect("rules") {
                let (name, recorded) = match (rule["alert"].as_str(), rule["record"].as_str()) {
                    (Some(alert), None) => (alert, false),
                    (None, Some(record)) => (record, true),
                    _ => panic!("{file}: a rule is an alert or a record: {rule:?}"),
                };
                let expr = rule["expr"].as_str().expect("an expression");
                out.push(ShippedRule {
                    name: name.to_owned(),
                    expr: expr.to_owned(),
                    recorded,
                });
            }
        }
    }
    out
}

/// A shipped rule file, evaluated every second, with `for:` cut to 2 s.
fn rules_for_test(file: &str) -> String {
    let mut rules = read_yaml(&format!("prometheus/{file}"));
    for group in rules["groups"].as_sequence_mut().expect("groups") {
        group["interval"] = Yaml::from(FAST);
        for rule in group["rules"].as_sequence_mut().expect("rules") {
            if rule.get("for").is_some() {
                rule["for"] = Yaml::from(FAST_FOR);
            }
        }
    }
    serde_yaml_ng::to_string(&rules).expect("YAML")
}

/// The shipped prometheus.yml with 1 s intervals, the test's exporter,
/// Alertmanager and rules, and only the exporter's job.
fn prometheus_config_for_test(
    exporter: SocketAddr,
    alertmanager: &str,
    rules: &[PathBuf],
) -> String {
    let mut config = read_yaml("prometheus/prometheus.yml");
    for key in ["scrape_interval", "scrape_timeout", "evaluation_interval"] {
        config["global"][key] = Yaml::from(FAST);
    }
    config["rule_files"] = Yaml::Sequence(
        rules
            .iter()
            .map(|rule| Yaml::from(rule.display().to_string()))
            .collect(),
    );
    let targets = &mut config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"];
    assert!(
        targets.is_sequence(),
        "the shipped configuration names an Alertmanager"
    );
    *targets = Yaml::Sequence(vec![Yaml::from(alertmanager)]);
    let jobs = config["scrape_configs"]
        .as_sequence_mut()
        .expect("scrape_configs");
    jobs.retain(|job| job["job_name"].as_str() == Some(JOB));
    let job = jobs
        .first_mut()
        .unwrap_or_else(|| panic!("the shipped configuration has a job {JOB}"));
    job["scrape_interval"] = Yaml::from(FAST);
    job["scrape_timeout"] = Yaml::from(FAST);
    let targets = &mut job["static_configs"][0]["targets"];
    assert!(targets.is_sequence(), "the job has static targets");
    *targets = Yaml::Sequence(vec![Yaml::from(exporter.to_string())]);
    serde_yaml_ng::to_string(&config).expect("YAML")
}

/// The shipped alertmanager.yml with every receiver replaced by the test's
/// webhook (at `/<receiver name>`), and grouping waits cut to 1 s. Routes
/// and inhibition stay as shipped.
fn alertmanager_config_for_test(webhook: &str) -> String {
    fn speed_up(route: &mut Yaml) {
        for key in ["group_wait", "group_interval"] {
            if route.get(key).is_some() {
                route[key] = Yaml::from(FAST);
            }
        }
        for child in route
            .get_mut("routes")
            .and_then(Yaml::as_sequence_mut)
            .into_iter()
            .flatten()
        {
            speed_up(child);
        }
    }
    let mut config = read_yaml("alertmanager/alertmanager.yml");
    speed_up(&mut config["route"]);
    // The top route's defaults (30 s and 5 m) apply when it sets none.
    config["route"]["group_wait"] = Yaml::from(FAST);
    config["route"]["group_interval"] = Yaml::from(FAST);
    for receiver in config["receivers"]
        .as_sequence_mut()
        .expect("receivers")
        .iter_mut()
    {
        let name = receiver["name"].as_str().expect("receiver name").to_owned();
        let mut webhook_config = serde_yaml_ng::Mapping::new();
        webhook_config.insert("url".into(), format!("{webhook}/{name}").into());
        webhook_config.insert("send_resolved".into(), true.into());
        let mut replacement = serde_yaml_ng::Mapping::new();
        replacement.insert("name".into(), name.into());
        replacement.insert(
            "webhook_configs".into(),
            Yaml::Sequence(vec![Yaml::Mapping(webhook_config)]),
        );
        *receiver = Yaml::Mapping(replacement);
    }
    serde_yaml_ng::to_string(&config).expect("YAML")
}

#[test]
fn grafana_variables_are_substituted_longest_name_first_and_escaped() {
    let values = vec![
        ("in".to_owned(), "x".to_owned()),
        ("instance".to_owned(), regex_escape("a.b:1")),
    ];
    assert_eq!(
        substitute(
            r#"up{instance=~"$instance", i=~"${in}"}[$__rate_interval]"#,
            &values
        ),
        r#"up{instance=~"a\\.b:1", i=~"x"}[1m]"#
    );
    assert!(!has_grafana_variable(
        r#"label_replace(m{t=~".*"}, "l", "$1", "t", "(.*)")"#
    ));
    for query in [
        r#"m{t=~"$tenant"}"#,
        r#"m{t=~"${tenant}"}"#,
        "m[$__rate_interval]",
    ] {
        assert!(has_grafana_variable(query), "{query}");
    }
    assert_eq!(
        parse_label_values(r#"label_values(m{job=~"$job"}, instance)"#),
        (r#"m{job=~"$job"}"#.to_owned(), "instance".to_owned())
    );
    assert_eq!(
        metric_names("time() - partner_center_a_b > on (job) up{job=\"x\"}"),
        BTreeSet::from(["partner_center_a_b".to_owned(), "up".to_owned()])
    );
    assert_eq!(
        metric_names("customer:partner_center_a_per_b:ratio / partner_center_c"),
        BTreeSet::from([
            "customer:partner_center_a_per_b:ratio".to_owned(),
            "partner_center_c".to_owned()
        ])
    );
}

#[test]
fn a_tenant_variable_set_to_all_matches_every_tenant() {
    // Grafana's All of a variable with allValue `.*`, as a tenant variable
    // has: every selector of the dashboard then matches both demo tenants.
    let values = vec![
        ("tenant".to_owned(), ".*".to_owned()),
        ("instance".to_owned(), regex_escape("127.0.0.1:10042")),
    ];
    let query = substitute(
        r#"sum by (tenant) (partner_center_up{tenant=~"$tenant", instance=~"${instance}"})"#,
        &values,
    );
    assert_eq!(
        query,
        r#"sum by (tenant) (partner_center_up{tenant=~".*", instance=~"127\\.0\\.0\\.1:10042"})"#
    );
    assert!(!query.contains('$'), "{query}");
    assert_eq!(
        substitute(
            r#"m{tenant=~"$tenant"}"#,
            &[("tenant".to_owned(), regex_escape(CONTOSO_TENANT))]
        ),
        r#"m{tenant=~"contoso-eu"}"#
    );
}
