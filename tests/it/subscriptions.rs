//! The `subscriptions` source against the simulated Partner Center on
//! 127.0.0.1: every family from Microsoft's documented shapes, each
//! subscription's SKU looked up once and kept across polls and restarts
//! in `state_dir`, a failed lookup costing only that SKU until a later
//! poll, unreadable dates costing only their series, the statuses
//! filter, and the lookups paced by the tenant's request budget.

use crate::common;

use std::time::Duration;

use common::pacing::{arrivals, assert_spaced};
use common::{Exposition, RunningExporter, WAIT, collection, test_config};
use partner_center_exporter::simulator::demo_partner::{self, Customer, customer_listing};
use partner_center_exporter::simulator::{Dataset, Simulator, SimulatorBuilder, Step};
use partner_center_exporter::{Config, SourceName};

const LISTING_PATH: &str = demo_partner::CUSTOMERS_PATH;

const UP: &str = "partner_center_up";
const SKIPPED: &str = "partner_center_items_skipped_total";
const CUSTOMER_UP: &str = "partner_center_customer_up";
const LICENSES: &str = "partner_center_subscription_licenses";
const COMMITMENT_END: &str = "partner_center_subscription_commitment_end_timestamp_seconds";
const CANCELLATION: &str =
    "partner_center_subscription_cancellation_allowed_until_timestamp_seconds";
const AUTO_RENEW: &str = "partner_center_subscription_auto_renew";
const INFO: &str = "partner_center_subscription_info";

const SOURCE: (&str, &str) = ("source", "subscriptions");

/// An interval that never comes round during a test: one poll only.
const ONCE: Duration = Duration::from_secs(3600);

/// Polls often enough that a test sees several within a second or two.
const OFTEN: Duration = Duration::from_millis(300);

const E3_SKU: &str = "05E9A617-0261-4CEE-BB44-138D3EF5D965";
const E1_SKU: &str = "18181A46-0D4E-45CD-891E-60AABD171B4E";

/// A subscription in the shape of Microsoft's documented new-commerce example.
struct Sub<'a> {
    id: &'a str,
    offer: &'a str,
    quantity: u32,
    term: &'a str,
    cycle: &'a str,
    status: &'a str,
    auto_renew: bool,
    commitment_end: &'a str,
    cancellation: Option<&'a str>,
    product_type: &'a str,
    unit_type: &'a str,
}

impl Sub<'_> {
    fn item(&self) -> serde_json::Value {
        let mut item = serde_json::json!({
            "id": self.id,
            "offerId": "CFQ7TTC0LFLX:0001:CFQ7TTC0MM8R",
            "offerName": self.offer,
            "friendlyName": self.offer,
            "productType": { "id": self.product_type, "displayName": self.product_type },
            "quantity": self.quantity,
            "unitType": self.unit_type,
            "creationDate": "2025-12-08T10:11:12.3058617Z",
            "effectiveStartDate": "2025-12-08T00:00:00Z",
            "commitmentEndDate": self.commitment_end,
            "status": self.status,
            "autoRenewEnabled": self.auto_renew,
            "isTrial": false,
            "billingType": "license",
            "billingCycle": self.cycle,
            "termDuration": self.term,
            "contractType": "subscription",
            "attributes": { "objectType": "Subscription" }
        });
        if let Some(until) = self.cancellation {
            item["cancellationAllowedUntilDate"] = until.into();
        }
        item
    }
}

fn annual<'a>(id: &'a str, offer: &'a str, quantity: u32) -> Sub<'a> {
    Sub {
        id,
        offer,
        quantity,
        term: "P1Y",
        cycle: "annual",
        status: "active",
        auto_renew: true,
        commitment_end: "2027-01-10T00:00:00Z",
        cancellation: Some("2026-12-03T23:59:00Z"),
        product_type: "OnlineServicesNCE",
        unit_type: "Licenses",
    }
}

fn subscriptions_path(customer: &Customer) -> String {
    format!("{LISTING_PATH}/{}/subscriptions", customer.id)
}

fn provisioning_path(customer: &Customer, subscription: &str) -> String {
    format!(
        "{}/{subscription}/provisioningstatus",
        subscriptions_path(customer)
    )
}

fn provisioning(sku: &str) -> Dataset {
    Dataset::fixed(
        serde_json::json!({
            "skuId": sku,
            "status": "success",
            "quantity": 5,
            "endDate": "2027-01-10T00:00:00Z",
            "attributes": { "objectType": "SubscriptionProvisioningStatus" }
        })
        .to_string(),
    )
}

fn serve(builder: SimulatorBuilder, customer: &Customer, subs: &[Sub<'_>]) -> SimulatorBuilder {
    let items = subs.iter().map(Sub::item).collect();
    builder.dataset(
        &subscriptions_path(customer),
        Dataset::fixed(collection(items, None).to_string()),
    )
}

/// A test configuration with only `subscriptions` on, every `interval`,
/// its SKUs kept in `state_dir`.
fn subscriptions_config(
    upstream: &Simulator,
    interval: Duration,
    state_dir: &std::path::Path,
) -> (Config, tempfile::TempDir) {
    let (mut config, dir) = test_config(upstream.base_url(), interval);
    config.sources.entry(SourceName::LicenseUsage).enabled = Some(false);
    let source = config.sources.entry(SourceName::Subscriptions);
    source.enabled = Some(true);
    source.interval = Some(interval);
    config.state_dir = Some(state_dir.to_path_buf());
    (config, dir)
}

fn ids<'a>(customer: &'a Customer, subscription: &'a str) -> [(&'a str, &'a str); 2] {
    [
        ("customer_tenant_id", customer.id.as_str()),
        ("subscription_id", subscription),
    ]
}

/// The `sku_id` on a subscription's info series; `None` without the series.
fn sku_of(metrics: &Exposition, subscription: &str) -> Option<String> {
    metrics
        .family(INFO)
        .into_iter()
        .find(|sample| {
            sample.labels.get("subscription_id").map(String::as_str) == Some(subscription)
        })
        .map(|sample| sample.labels.get("sku_id").cloned().unwrap_or_default())
}

fn unix(text: &str) -> f64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("a date")
        .timestamp() as f64
}

const E3_SUB: &str = "a1b2c3d4-0000-4000-8000-000000000001";
const E1_SUB: &str = "a1b2c3d4-0000-4000-8000-000000000002";
const AZURE_SUB: &str = "a1b2c3d4-0000-4000-8000-000000000003";
const EXPIRED_SUB: &str = "a1b2c3d4-0000-4000-8000-000000000004";
const BAD_DATE_SUB: &str = "a1b2c3d4-0000-4000-8000-000000000005";
const FLAKY_SUB: &str = "b1b2c3d4-0000-4000-8000-000000000001";

#[tokio::test]
async fn skus_are_looked_up_once_kept_across_restarts_and_a_failed_lookup_costs_only_its_sku() {
    let contoso = Customer::new("Contoso", "contoso");
    let fabrikam = Customer::new("Fabrikam", "fabrikam");
    let monthly = Sub {
        term: "P1M",
        cycle: "monthly",
        commitment_end: "2026-12-31T00:00:00Z",
        cancellation: None,
        ..annual(E1_SUB, "Office 365 E1", 12)
    };
    let azure = Sub {
        quantity: 1,
        term: "",
        cycle: "none",
        auto_renew: false,
        commitment_end: "9999-12-31T00:00:00Z",
        cancellation: None,
        product_type: "Azure",
        unit_type: "Usage-based",
        ..annual(AZURE_SUB, "Azure plan", 1)
    };
    let expired = Sub {
        status: "expired",
        ..annual(EXPIRED_SUB, "Microsoft 365 E3", 3)
    };
    let bad_date = Sub {
        commitment_end: "soon",
        cancellation: Some("tomorrow"),
        ..annual(BAD_DATE_SUB, "Microsoft 365 E3", 4)
    };
    let builder = Simulator::builder().dataset(
        LISTING_PATH,
        customer_listing(&[contoso.clone(), fabrikam.clone()], 100),
    );
    let builder = serve(
        builder,
        &contoso,
        &[
            annual(E3_SUB, "Microsoft 365 E3", 25),
            monthly,
            azure,
            expired,
            bad_date,
        ],
    );
    let builder = serve(builder, &fabrikam, &[annual(FLAKY_SUB, "Office 365 E1", 7)])
        .dataset(&provisioning_path(&contoso, E3_SUB), provisioning(E3_SKU))
        .dataset(&provisioning_path(&contoso, E1_SUB), provisioning(E1_SKU))
        .dataset(
            &provisioning_path(&contoso, BAD_DATE_SUB),
            provisioning(E3_SKU),
        )
        .dataset(
            &provisioning_path(&fabrikam, FLAKY_SUB),
            provisioning(E1_SKU),
        );
    let upstream = builder.start().await.expect("the simulator starts");
    // Fabrikam's lookup fails at the first three polls, then works.
    let flaky = provisioning_path(&fabrikam, FLAKY_SUB);
    upstream.script(
        flaky.clone(),
        vec![Step::json(500, r#"{"code":500,"description":"Internal error"}"#); 3],
        None,
    );
    let state = tempfile::tempdir().expect("a state directory");
    let (config, dir) = subscriptions_config(&upstream, OFTEN, state.path());
    let exporter = RunningExporter::start_with(config, dir).await;

    // While Fabrikam's lookup fails, its subscription is published
    // without a SKU, and neither the customer nor the source is down.
    let metrics = exporter
        .metrics_until(WAIT, "a poll with the failing lookup", |m| {
            m.value(UP, &[SOURCE]) == Some(1.0) && sku_of(m, FLAKY_SUB).is_some()
        })
        .await;
    assert_eq!(
        sku_of(&metrics, FLAKY_SUB).as_deref(),
        Some(""),
        "{}",
        metrics.text
    );
    let fabrikam_up = [SOURCE, ("customer_tenant_id", fabrikam.id.as_str())];
    assert_eq!(metrics.value(CUSTOMER_UP, &fabrikam_up), Some(1.0));
    assert_eq!(
        metrics.value(LICENSES, &ids(&fabrikam, FLAKY_SUB)),
        Some(7.0),
        "only the SKU waits for the lookup"
    );

    let metrics = exporter
        .metrics_until(WAIT, "Fabrikam's SKU looked up at last", |m| {
            sku_of(m, FLAKY_SUB).as_deref() == Some(&E1_SKU.to_ascii_lowercase())
        })
        .await;
    let e3 = ids(&contoso, E3_SUB);
    assert_eq!(metrics.value(LICENSES, &e3), Some(25.0));
    assert_eq!(
        metrics.value(COMMITMENT_END, &e3),
        Some(unix("2027-01-11T00:00:00Z")),
        "the end of the inclusive day"
    );
    assert_eq!(
        metrics.value(CANCELLATION, &e3),
        Some(unix("2026-12-03T23:59:00Z"))
    );
    assert_eq!(metrics.value(AUTO_RENEW, &e3), Some(1.0));
    assert_eq!(
        sku_of(&metrics, E3_SUB).as_deref(),
        Some(&E3_SKU.to_ascii_lowercase()[..])
    );
    let info = metrics
        .family(INFO)
        .into_iter()
        .find(|s| s.labels["subscription_id"] == E1_SUB)
        .expect("the monthly subscription's info");
    for (label, value) in [
        ("term_duration", "P1M"),
        ("billing_cycle", "monthly"),
        ("status", "active"),
        ("offer_name", "Office 365 E1"),
        ("offer_id", "CFQ7TTC0LFLX:0001:CFQ7TTC0MM8R"),
        ("is_trial", "false"),
    ] {
        assert_eq!(info.labels[label], value, "{label}");
    }
    assert_eq!(metrics.value(CANCELLATION, &ids(&contoso, E1_SUB)), None);

    // The Azure plan: no seats, no term end, no SKU, but its info and auto-renewal.
    let azure = ids(&contoso, AZURE_SUB);
    assert_eq!(metrics.value(LICENSES, &azure), None);
    assert_eq!(metrics.value(COMMITMENT_END, &azure), None);
    assert_eq!(metrics.value(AUTO_RENEW, &azure), Some(0.0));
    assert_eq!(sku_of(&metrics, AZURE_SUB).as_deref(), Some(""));
    // Not in `subscriptions.statuses`: not published.
    assert_eq!(sku_of(&metrics, EXPIRED_SUB), None);
    // Unreadable dates cost their series only, and are counted, two a poll.
    let bad = ids(&contoso, BAD_DATE_SUB);
    assert_eq!(metrics.value(COMMITMENT_END, &bad), None);
    assert_eq!(metrics.value(CANCELLATION, &bad), None);
    assert_eq!(metrics.value(LICENSES, &bad), Some(4.0));
    assert_eq!(metrics.value(AUTO_RENEW, &bad), Some(1.0));
    let skipped = metrics.value(SKIPPED, &[SOURCE]).expect("counted");
    assert!(skipped >= 8.0 && skipped % 2.0 == 0.0, "{skipped}");

    // One lookup per subscription that has a SKU, at the first poll;
    // Fabrikam's again after each failure, until it worked.
    let polls_before = upstream.log().count(&subscriptions_path(&contoso));
    assert!(polls_before >= 4, "{polls_before} polls");
    for subscription in [E3_SUB, E1_SUB, BAD_DATE_SUB] {
        assert_eq!(
            upstream
                .log()
                .count(&provisioning_path(&contoso, subscription)),
            1,
            "{subscription}: {:?}",
            upstream.log().counts()
        );
    }
    for never in [AZURE_SUB, EXPIRED_SUB] {
        assert_eq!(upstream.log().count(&provisioning_path(&contoso, never)), 0);
    }
    assert_eq!(upstream.log().count(&flaky), 4);
    let lookups = |result| {
        metrics.value(
            "partner_center_lookups_total",
            &[SOURCE, ("result", result)],
        )
    };
    assert_eq!(
        (lookups("success"), lookups("failure")),
        (Some(4.0), Some(3.0))
    );
    exporter.stop().await.expect("clean stop");

    // The SKUs are kept in state_dir, owner-only.
    let kept_path = state.path().join("subscription-skus.json");
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&kept_path).expect("the kept SKUs")).expect("JSON");
    assert_eq!(
        kept["answers"][FLAKY_SUB],
        serde_json::Value::from(E1_SKU.to_ascii_lowercase())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kept_path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // A restart asks for none of them again.
    let (config, dir) = subscriptions_config(&upstream, ONCE, state.path());
    let exporter = RunningExporter::start_with(config, dir).await;
    let metrics = exporter
        .metrics_until(WAIT, "a poll after the restart", |m| {
            m.value(UP, &[SOURCE]) == Some(1.0)
        })
        .await;
    assert_eq!(
        sku_of(&metrics, E3_SUB).as_deref(),
        Some(&E3_SKU.to_ascii_lowercase()[..])
    );
    assert_eq!(
        sku_of(&metrics, FLAKY_SUB).as_deref(),
        Some(&E1_SKU.to_ascii_lowercase()[..])
    );
    exporter.stop().await.expect("clean stop");
    for subscription in [E3_SUB, E1_SUB, BAD_DATE_SUB] {
        assert_eq!(
            upstream
                .log()
                .count(&provisioning_path(&contoso, subscription)),
            1,
            "{subscription} looked up again after the restart"
        );
    }
    assert_eq!(upstream.log().count(&flaky), 4);
    assert!(upstream.log().count(&subscriptions_path(&contoso)) > polls_before);
}

#[tokio::test]
async fn the_configured_statuses_are_published_and_a_forbidden_customer_fails_alone() {
    let contoso = Customer::new("Contoso", "contoso");
    let trey = Customer::new("Trey Research", "treyresearch");
    let suspended = Sub {
        status: "suspended",
        auto_renew: false,
        ..annual(E1_SUB, "Office 365 E1", 2)
    };
    let expired = Sub {
        status: "expired",
        ..annual(EXPIRED_SUB, "Microsoft 365 E3", 3)
    };
    let builder = Simulator::builder().dataset(
        LISTING_PATH,
        customer_listing(&[contoso.clone(), trey.clone()], 100),
    );
    let upstream = serve(builder, &contoso, &[suspended, expired])
        .dataset(
            &subscriptions_path(&trey),
            Dataset::refusal(403, demo_partner::GDAP_REFUSAL_BODY),
        )
        .dataset(&provisioning_path(&contoso, E1_SUB), provisioning(E1_SKU))
        .dataset(
            &provisioning_path(&contoso, EXPIRED_SUB),
            provisioning(E3_SKU),
        )
        .start()
        .await
        .expect("the simulator starts");
    let state = tempfile::tempdir().expect("a state directory");
    let (mut config, dir) = subscriptions_config(&upstream, ONCE, state.path());
    config.subscriptions.statuses = vec!["expired".to_owned(), "Suspended".to_owned()];
    let exporter = RunningExporter::start_with(config, dir).await;
    let metrics = exporter
        .metrics_until(WAIT, "one poll", |m| m.value(UP, &[SOURCE]) == Some(1.0))
        .await;
    let statuses: std::collections::BTreeSet<&str> = metrics
        .family(INFO)
        .iter()
        .map(|s| s.labels["status"].as_str())
        .collect();
    assert_eq!(
        statuses,
        ["expired", "suspended"].into(),
        "{}",
        metrics.text
    );
    let trey_up = [SOURCE, ("customer_tenant_id", trey.id.as_str())];
    assert_eq!(metrics.value(CUSTOMER_UP, &trey_up), Some(0.0));
    assert_eq!(
        metrics.value(
            "partner_center_customer_errors_total",
            &[SOURCE, ("reason", "forbidden")]
        ),
        Some(1.0)
    );
    exporter.stop().await.expect("clean stop");
}

// Two worker threads: the simulator records arrivals on the test's
// runtime, which must not be held up by the test's own work meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_are_paced_by_the_request_budget_with_the_collections() {
    // 120 a minute: one request every 500 ms.
    const BUDGET: u32 = 120;
    let spacing = Duration::from_secs(60) / BUDGET;
    let customer = Customer::new("Contoso", "contoso");
    let subscriptions: Vec<String> = (1..=4)
        .map(|index| format!("c0ffee00-0000-4000-8000-00000000000{index}"))
        .collect();
    let subs: Vec<Sub<'_>> = subscriptions
        .iter()
        .map(|id| annual(id, "Microsoft 365 E3", 5))
        .collect();
    let mut builder = Simulator::builder().dataset(
        LISTING_PATH,
        customer_listing(std::slice::from_ref(&customer), 100),
    );
    builder = serve(builder, &customer, &subs);
    for id in &subscriptions {
        builder = builder.dataset(&provisioning_path(&customer, id), provisioning(E3_SKU));
    }
    let upstream = builder.start().await.expect("the simulator starts");
    let state = tempfile::tempdir().expect("a state directory");
    let (mut config, dir) = subscriptions_config(&upstream, ONCE, state.path());
    config.partner_center.max_requests_per_minute = BUDGET;
    let exporter = RunningExporter::start_with(config, dir).await;
    // The listing, the customer's subscriptions, and a lookup each.
    let requests = 2 + subscriptions.len();
    upstream
        .wait_for_requests(requests, WAIT)
        .await
        .expect("every request");
    exporter
        .metrics_until(WAIT, "the poll done", |m| {
            m.value(UP, &[SOURCE]) == Some(1.0)
        })
        .await;
    exporter.stop().await.expect("clean stop");
    let (arrivals, shown) = arrivals(&upstream);
    assert_eq!(arrivals.len(), requests, "{:?}", upstream.log().counts());
    assert_spaced(&arrivals, spacing, &shown);
}
