//! The per-customer sources against the simulated Partner Center on
//! 127.0.0.1: the customer listing followed page by page, each customer's
//! licences per SKU, one customer's failure kept to that customer,
//! customers leaving the listing, the filters that cost no requests, the
//! commercial reports' two prefixes and their paging, the tenant's request
//! budget and its 429 pause during a fan-out, and the whole scrape with
//! every source on.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::pacing::{arrivals, assert_spaced, timeline};
use common::{CapturedLogs, Exposition, RunningExporter, Scrape, WAIT, collection, test_config};
use partner_center_exporter::simulator::datasets::NextLink;
use partner_center_exporter::simulator::demo_partner::{
    self, Customer, DemoPartner, GDAP_REFUSAL_BODY, customer_listing, subscribed_skus_path,
};
use partner_center_exporter::simulator::demo_paths;
use partner_center_exporter::simulator::{
    Dataset, ReceivedRequest, Simulator, SimulatorBuilder, Step,
};
use partner_center_exporter::{CommercialApiPrefix, Config, SourceName};

const LISTING_PATH: &str = demo_partner::CUSTOMERS_PATH;
const USAGE_REPORT: &str = "analytics/commercial/usage/license";
const DEPLOYMENT_REPORT: &str = "analytics/commercial/deployment/license";

const UP: &str = "partner_center_up";
const POLL_ERRORS: &str = "partner_center_poll_errors_total";
const SKIPPED: &str = "partner_center_items_skipped_total";
const LICENSES: &str = "partner_center_customer_licenses";
const CONSUMED: &str = "partner_center_customer_licenses_consumed";
const SKU_INFO: &str = "partner_center_customer_sku_info";
const CUSTOMER_INFO: &str = "partner_center_customer_info";
const CUSTOMER_UP: &str = "partner_center_customer_up";
const ERROR_REASON: &str = "partner_center_customer_error_reason";
const CUSTOMER_ERRORS: &str = "partner_center_customer_errors_total";
const WORKLOAD_ACTIVE: &str = "partner_center_customer_workload_licenses_active";
const WORKLOAD_QUALIFIED: &str = "partner_center_customer_workload_licenses_qualified";
const PRODUCT_INFO: &str = "partner_center_product_info";
const WORKLOAD_INFO: &str = "partner_center_workload_info";
const DEPLOYED: &str = "partner_center_customer_product_licenses_deployed";
const SOLD: &str = "partner_center_customer_product_licenses_sold";

const LICENCES_SOURCE: (&str, &str) = ("source", "customer_licenses");
const USAGE_SOURCE: (&str, &str) = ("source", "customer_usage");
const DEPLOYMENT_SOURCE: (&str, &str) = ("source", "customer_deployment");

/// An interval that never comes round during a test: one poll only.
const ONCE: Duration = Duration::from_secs(3600);

/// Polls often enough that a test sees several within a second or two.
const OFTEN: Duration = Duration::from_millis(300);

const E3_ID: &str = "05e9a617-0261-4cee-bb44-138d3ef5d965";
const EMS_ID: &str = "efccb6f7-5641-4e0e-bd10-b4976e1bf68e";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A test configuration with only `customer_licenses` on, every `interval`:
/// the partner-level usage source would only add requests to the record.
fn licences_config(upstream: &Simulator, interval: Duration) -> (Config, tempfile::TempDir) {
    let (mut config, dir) = test_config(upstream.base_url(), interval);
    config.sources.entry(SourceName::LicenseUsage).enabled = Some(false);
    let licences = config.sources.entry(SourceName::CustomerLicenses);
    licences.enabled = Some(true);
    licences.interval = Some(interval);
    (config, dir)
}

/// A test configuration with only the commercial `source` on.
fn report_config(
    upstream: &Simulator,
    source: SourceName,
    interval: Duration,
) -> (Config, tempfile::TempDir) {
    let (mut config, dir) = test_config(upstream.base_url(), interval);
    config.sources.entry(SourceName::LicenseUsage).enabled = Some(false);
    let report = config.sources.entry(source);
    report.enabled = Some(true);
    report.interval = Some(interval);
    (config, dir)
}

/// A `SubscribedSku` item in Microsoft's documented shape; `units` are
/// active, warning, suspended and consumed.
fn subscribed_sku(
    id: &str,
    part_number: &str,
    name: &str,
    units: [u64; 4],
    status: &str,
) -> serde_json::Value {
    let [active, warning, suspended, consumed] = units;
    let total = active + warning;
    serde_json::json!({
        "availableUnits": total.saturating_sub(consumed),
        "activeUnits": active,
        "ceaseUnits": 0,
        "consumedUnits": consumed,
        "suspendedUnits": suspended,
        "totalUnits": total,
        "warningUnits": warning,
        "productSku": {
            "id": id,
            "name": name,
            "skuPartNumber": part_number,
            "targetType": "User",
            "licenseGroupId": "group1"
        },
        "servicePlans": [],
        "capabilityStatus": status,
        "attributes": { "objectType": "SubscribedSku" }
    })
}

/// A customer's subscribed SKUs as Partner Center serves them.
fn skus(items: Vec<serde_json::Value>) -> Dataset {
    Dataset::fixed(collection(items, None).to_string())
}

/// A Partner Center error body.
fn error_body(code: u16, description: &str) -> String {
    serde_json::json!({
        "code": code,
        "description": description,
        "data": [],
        "source": "PartnerFD"
    })
    .to_string()
}

/// The customer tenant IDs among the samples of `family`.
fn customers_in(metrics: &Exposition, family: &str) -> BTreeSet<String> {
    metrics
        .family(family)
        .iter()
        .filter_map(|sample| sample.labels.get("customer_tenant_id").cloned())
        .collect()
}

/// Whether any sample on the scrape is labelled with `customer`.
fn mentions(metrics: &Exposition, customer: &str) -> bool {
    metrics
        .samples
        .iter()
        .any(|sample| sample.labels.get("customer_tenant_id").map(String::as_str) == Some(customer))
}

/// The requests to `path`, oldest first.
fn requests_to(upstream: &Simulator, path: &str) -> Vec<ReceivedRequest> {
    upstream.log().requests_to(path)
}

/// The `/metrics` labels of one customer's licences of one SKU.
fn sku_labels<'a>(customer: &'a str, sku: &'a str) -> [(&'a str, &'a str); 2] {
    [("customer_tenant_id", customer), ("sku_id", sku)]
}

/// Checks the licence series of one customer's SKU: active, warning and
/// suspended units, and consumed ones.
fn assert_sku(metrics: &Exposition, customer: &str, sku: &str, units: [u64; 4]) {
    let [active, warning, suspended, consumed] = units;
    for (status, value) in [
        ("active", active),
        ("warning", warning),
        ("suspended", suspended),
    ] {
        let [c, s] = sku_labels(customer, sku);
        assert_eq!(
            metrics.value(LICENSES, &[c, s, ("status", status)]),
            Some(value as f64),
            "{status} units of {sku} at {customer}:\n{}",
            metrics.text
        );
    }
    assert_eq!(
        metrics.value(CONSUMED, &sku_labels(customer, sku)),
        Some(consumed as f64),
        "consumed units of {sku} at {customer}:\n{}",
        metrics.text
    );
}

// ---------------------------------------------------------------------------
// The listing and each customer's licences
// ---------------------------------------------------------------------------

/// The units each of the five customers of the first test has: E3 and EMS.
fn listed_units(index: u64) -> ([u64; 4], [u64; 4]) {
    ([20 + index, index, 0, 15 + 2 * index], [5, 0, index, 3])
}

#[tokio::test]
async fn the_listing_is_followed_to_its_end_and_every_customers_skus_are_published() {
    let mut customers = vec![
        Customer::new("Contoso", "contoso"),
        Customer::new("Fabrikam", "fabrikam"),
        Customer::new("Northwind Traders", "northwindtraders"),
        Customer::new("Tailspin Toys", "tailspintoys").with_relationship("advisor"),
        Customer::new("Litware", "litware"),
    ];
    let lower: Vec<String> = customers.iter().map(|c| c.id.clone()).collect();
    // Partner Center's GUIDs arrive upper-case from some APIs: the
    // exporter must still request and publish the one lower-case ID.
    customers[1].id = customers[1].id.to_uppercase();
    let mut builder = Simulator::builder().dataset(LISTING_PATH, customer_listing(&customers, 100));
    for (index, id) in lower.iter().enumerate() {
        let (e3, ems) = listed_units(index as u64);
        let (e3_id, ems_id) = if index == 1 {
            (E3_ID.to_uppercase(), EMS_ID.to_uppercase())
        } else {
            (E3_ID.to_owned(), EMS_ID.to_owned())
        };
        let ems_status = if index % 2 == 1 {
            "Suspended"
        } else {
            "Enabled"
        };
        builder = builder.dataset(
            &subscribed_skus_path(id),
            skus(vec![
                subscribed_sku(&e3_id, "SPE_E3", "Microsoft 365 E3", e3, "Enabled"),
                subscribed_sku(
                    &ems_id,
                    "EMS",
                    "Enterprise Mobility + Security E3",
                    ems,
                    ems_status,
                ),
            ]),
        );
    }
    let upstream = builder.start().await.expect("the simulator starts");
    let (mut config, dir) = licences_config(&upstream, ONCE);
    config.customers.page_size = 2;
    let exporter = RunningExporter::start_with(config, dir).await;
    exporter
        .scrape_until(WAIT, |m| m.value(UP, &[LICENCES_SOURCE]) == Some(1.0))
        .await;
    // Both polls' families are in: this scrape is checked by promtool too.
    let metrics = Exposition::parse(&exporter.scrape().await);

    let listing = requests_to(&upstream, LISTING_PATH);
    let pages: Vec<(&str, Option<&str>)> = listing
        .iter()
        .map(|request| {
            (
                request.target.as_str(),
                request.header("MS-ContinuationToken"),
            )
        })
        .collect();
    assert_eq!(
        pages,
        [
            ("/v1/customers?size=2", None),
            ("/v1/customers?size=2&seekOperation=Next", Some("from-2")),
            ("/v1/customers?size=2&seekOperation=Next", Some("from-4")),
        ],
        "five customers two a page: three pages, each later one asked with its continuation token"
    );

    for (index, id) in lower.iter().enumerate() {
        assert_eq!(
            upstream.request_count(&subscribed_skus_path(id)),
            1,
            "one request for customer {index}: {:?}",
            upstream.log().counts()
        );
        let (e3, ems) = listed_units(index as u64);
        assert_sku(&metrics, id, E3_ID, e3);
        assert_sku(&metrics, id, EMS_ID, ems);
        assert_eq!(
            metrics.value(
                SKU_INFO,
                &[
                    ("customer_tenant_id", id),
                    ("sku_id", EMS_ID),
                    ("sku_part_number", "EMS"),
                    ("sku_name", "Enterprise Mobility + Security E3"),
                    (
                        "capability_status",
                        if index % 2 == 1 {
                            "Suspended"
                        } else {
                            "Enabled"
                        }
                    ),
                ]
            ),
            Some(1.0),
            "{}",
            metrics.text
        );
        let customer = &customers[index];
        assert_eq!(
            metrics.value(
                CUSTOMER_INFO,
                &[
                    ("customer_tenant_id", id),
                    ("customer_name", &customer.name),
                    ("domain", &customer.domain),
                    ("relationship", &customer.relationship),
                ]
            ),
            Some(1.0),
            "{}",
            metrics.text
        );
        assert_eq!(
            metrics.value(CUSTOMER_UP, &[LICENCES_SOURCE, ("customer_tenant_id", id)]),
            Some(1.0)
        );
    }
    let all: BTreeSet<String> = lower.iter().cloned().collect();
    for family in [LICENSES, CONSUMED, SKU_INFO, CUSTOMER_INFO, CUSTOMER_UP] {
        assert_eq!(customers_in(&metrics, family), all, "{family}");
    }
    assert_eq!(metrics.family(LICENSES).len(), 5 * 2 * 3);
    assert_eq!(metrics.family(SKU_INFO).len(), 5 * 2);
    assert_eq!(metrics.family(CUSTOMER_INFO).len(), 5);
    for sample in &metrics.samples {
        for label in ["customer_tenant_id", "sku_id"] {
            if let Some(value) = sample.labels.get(label) {
                assert_eq!(value, &value.to_lowercase(), "{sample:?}");
            }
        }
    }
    assert!(
        metrics.family(ERROR_REASON).is_empty(),
        "no customer failed:\n{}",
        metrics.text
    );
    for sample in metrics.family(CUSTOMER_ERRORS) {
        assert_eq!(sample.value, 0.0, "{sample:?}");
    }
}

// ---------------------------------------------------------------------------
// One customer's failure is that customer's
// ---------------------------------------------------------------------------

const TENANT_ADDRESS: &str = "Tenant address information is not available";

#[tokio::test]
async fn a_failing_customer_is_down_alone_with_its_reason_logged_once() {
    let Some(logs) = CapturedLogs::in_own_process(
        "customers::a_failing_customer_is_down_alone_with_its_reason_logged_once",
    ) else {
        return;
    };
    let good = Customer::new("Contoso", "contoso");
    let forbidden = Customer::new("Trey Research", "treyresearch");
    let unknown = Customer::new("Proseware", "proseware");
    let refused = Customer::new("Coho Winery", "cohowinery");
    let malformed = Customer::new("Fourth Coffee", "fourthcoffee");
    let lapsed = Customer::new("Litware", "litware");
    let customers = [&good, &forbidden, &unknown, &refused, &malformed, &lapsed];
    let e3 = |units| subscribed_sku(E3_ID, "SPE_E3", "Microsoft 365 E3", units, "Enabled");
    let upstream = Simulator::builder()
        .dataset(
            LISTING_PATH,
            customer_listing(&customers.map(Customer::clone), 100),
        )
        .dataset(
            &subscribed_skus_path(&good.id),
            skus(vec![e3([10, 0, 0, 7])]),
        )
        .dataset(
            &subscribed_skus_path(&forbidden.id),
            Dataset::refusal(403, GDAP_REFUSAL_BODY),
        )
        // `unknown` has no dataset: the simulator answers 404.
        .dataset(
            &subscribed_skus_path(&refused.id),
            Dataset::refusal(500, error_body(500, TENANT_ADDRESS)),
        )
        .dataset(
            &subscribed_skus_path(&malformed.id),
            Dataset::fixed(r#"{"totalCount": 1, "items": {"productSku": "not a list"}}"#),
        )
        .dataset(
            &subscribed_skus_path(&lapsed.id),
            skus(vec![e3([40, 0, 0, 33])]),
        )
        .start()
        .await
        .expect("the simulator starts");
    // `lapsed` answers once, then fails at every poll.
    upstream.script(
        subscribed_skus_path(&lapsed.id),
        vec![Step::Normal],
        Some(Step::json(503, &error_body(503, "Service unavailable"))),
    );
    let (config, dir) = licences_config(&upstream, OFTEN);
    let exporter = RunningExporter::start_with(config, dir).await;

    let errors = |reason| [LICENCES_SOURCE, ("reason", reason)];
    let metrics = exporter
        .metrics_until(WAIT, "three polls with failing customers", |m| {
            m.value(CUSTOMER_ERRORS, &errors("forbidden"))
                .is_some_and(|count| count >= 3.0)
        })
        .await;
    assert_eq!(
        metrics.value(UP, &[LICENCES_SOURCE]),
        Some(1.0),
        "the source is up while single customers fail:\n{}",
        metrics.text
    );
    let polls = metrics
        .value(CUSTOMER_ERRORS, &errors("forbidden"))
        .expect("counted");
    // One scrape shows one poll's outcome whole: every customer that
    // always fails has failed once per poll, the lapsed one once less.
    assert_eq!(
        metrics.value(CUSTOMER_ERRORS, &errors("not_found")),
        Some(polls)
    );
    assert_eq!(
        metrics.value(CUSTOMER_ERRORS, &errors("decode")),
        Some(polls)
    );
    assert_eq!(
        metrics.value(CUSTOMER_ERRORS, &errors("http")),
        Some(2.0 * polls - 1.0),
        "{}",
        metrics.text
    );
    for reason in ["throttled", "timeout", "network", "auth"] {
        assert_eq!(metrics.value(CUSTOMER_ERRORS, &errors(reason)), Some(0.0));
    }

    let failing = [
        (&forbidden, "forbidden"),
        (&unknown, "not_found"),
        (&refused, "http"),
        (&malformed, "decode"),
        (&lapsed, "http"),
    ];
    assert_eq!(
        metrics.value(
            CUSTOMER_UP,
            &[LICENCES_SOURCE, ("customer_tenant_id", &good.id)]
        ),
        Some(1.0)
    );
    for (customer, reason) in failing {
        let id = ("customer_tenant_id", customer.id.as_str());
        assert_eq!(
            metrics.value(CUSTOMER_UP, &[LICENCES_SOURCE, id]),
            Some(0.0),
            "{} is down:\n{}",
            customer.name,
            metrics.text
        );
        assert_eq!(
            metrics.value(ERROR_REASON, &[LICENCES_SOURCE, id, ("reason", reason)]),
            Some(1.0),
            "{} failed with {reason}:\n{}",
            customer.name,
            metrics.text
        );
    }
    assert_eq!(
        metrics.family(ERROR_REASON).len(),
        failing.len(),
        "only the failing customers have a reason:\n{}",
        metrics.text
    );
    assert_sku(&metrics, &good.id, E3_ID, [10, 0, 0, 7]);
    assert_sku(&metrics, &lapsed.id, E3_ID, [40, 0, 0, 33]);
    assert_eq!(
        customers_in(&metrics, LICENSES),
        BTreeSet::from([good.id.clone(), lapsed.id.clone()]),
        "the good customer's series, and the lapsed one's last good ones"
    );
    assert_eq!(
        customers_in(&metrics, CUSTOMER_INFO).len(),
        customers.len(),
        "every listed customer is described, failing or not"
    );
    exporter.stop().await.expect("clean stop");

    let text = logs.text();
    let failures: Vec<&str> = text
        .lines()
        // logfmt escapes the apostrophe of "customer's".
        .filter(|line| line.contains("request failed; its last good series stay"))
        .collect();
    for (customer, reason) in failing {
        let lines: Vec<&&str> = failures
            .iter()
            .filter(|line| line.contains(&customer.id))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "{} is logged once over {polls} polls: {failures:#?}",
            customer.name
        );
        let line = lines[0];
        for expected in [
            "level=warn",
            "source=customer_licenses",
            &format!("reason={reason}"),
        ] {
            assert!(line.contains(expected), "{expected:?} missing from: {line}");
        }
    }
    let gdap = failures
        .iter()
        .find(|line| line.contains(&forbidden.id))
        .expect("logged");
    for role in [
        "GDAP",
        "Directory Reader",
        "Global Reader",
        "User Administrator",
        "License Administrator",
    ] {
        assert!(gdap.contains(role), "{role:?} missing from: {gdap}");
    }
    let address = failures
        .iter()
        .find(|line| line.contains(&refused.id))
        .expect("logged");
    assert!(address.contains(TENANT_ADDRESS), "{address}");
    assert!(address.contains("HTTP 500"), "{address}");
    assert!(
        !failures.iter().any(|line| line.contains(&good.id)),
        "{failures:#?}"
    );
}

// ---------------------------------------------------------------------------
// The listing changing, and failing
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_customer_that_leaves_the_listing_leaves_and_a_failed_listing_keeps_the_last() {
    let staying = [
        Customer::new("Contoso", "contoso"),
        Customer::new("Fabrikam", "fabrikam"),
    ];
    let leaving = Customer::new("Northwind Traders", "northwindtraders");
    let mut all = staying.to_vec();
    all.push(leaving.clone());
    let mut builder = Simulator::builder().dataset(LISTING_PATH, customer_listing(&all, 100));
    for (index, customer) in all.iter().enumerate() {
        let units = [10 + index as u64, 0, 0, 5];
        builder = builder.dataset(
            &subscribed_skus_path(&customer.id),
            skus(vec![subscribed_sku(
                E3_ID,
                "SPE_E3",
                "Microsoft 365 E3",
                units,
                "Enabled",
            )]),
        );
    }
    let upstream = builder.start().await.expect("the simulator starts");
    let (config, dir) = licences_config(&upstream, OFTEN);
    let exporter = RunningExporter::start_with(config, dir).await;
    let present = |m: &Exposition, customer: &Customer| {
        let id = customer.id.as_str();
        customers_in(m, LICENSES).contains(id)
            && customers_in(m, CUSTOMER_UP).contains(id)
            && customers_in(m, CUSTOMER_INFO).contains(id)
    };
    exporter
        .metrics_until(WAIT, "all three customers", |m| {
            all.iter().all(|customer| present(m, customer))
        })
        .await;

    // From now on the listing names two of the three.
    let two: Vec<serde_json::Value> = staying.iter().map(Customer::listing_item).collect();
    let two = collection(two, None).to_string();
    upstream.script(LISTING_PATH, vec![], Some(Step::json(200, &two)));
    let metrics = exporter
        .metrics_until(WAIT, "the customer that left gone", |m| {
            !mentions(m, &leaving.id)
        })
        .await;
    for customer in &staying {
        assert!(
            present(&metrics, customer),
            "{}:\n{}",
            customer.name,
            metrics.text
        );
    }
    assert_eq!(metrics.value(UP, &[LICENCES_SOURCE]), Some(1.0));
    let leaving_path = subscribed_skus_path(&leaving.id);
    let asked_for_leaving = upstream.request_count(&leaving_path);
    let listings = upstream.request_count(LISTING_PATH);
    upstream
        .log()
        .wait_for_path(LISTING_PATH, listings + 2, WAIT)
        .await
        .expect("two more polls");
    assert_eq!(
        upstream.request_count(&leaving_path),
        asked_for_leaving,
        "a customer no longer listed is not asked for"
    );

    // Then the listing fails: the poll with it, and the last good
    // series stay, the customers' info among them.
    upstream.script(
        LISTING_PATH,
        vec![],
        Some(Step::json(500, &error_body(500, "Internal error"))),
    );
    let http_errors = [LICENCES_SOURCE, ("reason", "http")];
    let failed = exporter
        .metrics_until(WAIT, "a failed listing", |m| {
            m.value(POLL_ERRORS, &http_errors).is_some_and(|n| n >= 1.0)
        })
        .await;
    let asked: Vec<u64> = staying
        .iter()
        .map(|customer| upstream.request_count(&subscribed_skus_path(&customer.id)))
        .collect();
    let metrics = exporter
        .metrics_until(WAIT, "two more failed polls", |m| {
            m.value(POLL_ERRORS, &http_errors).is_some_and(|n| n >= 3.0)
        })
        .await;
    for scrape in [&failed, &metrics] {
        assert_eq!(
            scrape.value(UP, &[LICENCES_SOURCE]),
            Some(0.0),
            "{}",
            scrape.text
        );
        for (index, customer) in staying.iter().enumerate() {
            assert!(
                present(scrape, customer),
                "{}:\n{}",
                customer.name,
                scrape.text
            );
            assert_sku(scrape, &customer.id, E3_ID, [10 + index as u64, 0, 0, 5]);
            assert_eq!(
                scrape.value(
                    CUSTOMER_UP,
                    &[LICENCES_SOURCE, ("customer_tenant_id", &customer.id)]
                ),
                Some(1.0)
            );
        }
        assert!(!mentions(scrape, &leaving.id), "{}", scrape.text);
    }
    let asked_since: Vec<u64> = staying
        .iter()
        .map(|customer| upstream.request_count(&subscribed_skus_path(&customer.id)))
        .collect();
    assert_eq!(
        asked_since, asked,
        "no customer is asked for without a listing"
    );
    for sample in metrics.family(CUSTOMER_ERRORS) {
        assert_eq!(
            sample.value, 0.0,
            "a failed listing is the poll's failure, not the customers': {sample:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------

#[tokio::test]
async fn filtered_customers_and_skus_cost_no_requests_and_publish_nothing() {
    let contoso = Customer::new("Contoso", "contoso");
    let fabrikam = Customer::new("Fabrikam", "fabrikam");
    let tailspin = Customer::new("Tailspin Toys", "tailspintoys");
    let northwind = Customer::new("Northwind Traders", "northwindtraders");
    let litware = Customer::new("Litware", "litware");
    let listed = [&contoso, &fabrikam, &tailspin, &northwind, &litware];
    let mut builder = Simulator::builder().dataset(
        LISTING_PATH,
        customer_listing(&listed.map(Customer::clone), 100),
    );
    const FLOW_FREE_ID: &str = "f30db892-07e9-47e9-837c-80727f46fd3d";
    const STREAM_ID: &str = "1f2f344a-700d-42c9-9427-5cea1d5d7ba6";
    const VISIO_ID: &str = "c5928f49-12ba-48f7-ada3-0d743a3601d5";
    for customer in listed {
        builder = builder.dataset(
            &subscribed_skus_path(&customer.id),
            skus(vec![
                subscribed_sku(
                    E3_ID,
                    "SPE_E3",
                    "Microsoft 365 E3",
                    [25, 0, 0, 20],
                    "Enabled",
                ),
                // Few units, but excluded by part number.
                subscribed_sku(
                    FLOW_FREE_ID,
                    "FLOW_FREE",
                    "Power Automate Free",
                    [3, 0, 0, 3],
                    "Enabled",
                ),
                // A trial's million seats: past skus.max_units.
                subscribed_sku(
                    STREAM_ID,
                    "STREAM",
                    "Microsoft Stream Trial",
                    [1_000_000, 0, 0, 2],
                    "Enabled",
                ),
                // One short of the limit, counting the warning units: kept.
                subscribed_sku(
                    VISIO_ID,
                    "VISIOCLIENT",
                    "Visio Plan 2",
                    [9_000, 999, 0, 1],
                    "Warning",
                ),
            ]),
        );
    }
    let upstream = builder.start().await.expect("the simulator starts");
    let (mut config, dir) = licences_config(&upstream, ONCE);
    config.customers.include = vec![
        "contoso".to_owned(),
        "Fabrikam".to_owned(),
        "Tailspin*".to_owned(),
        northwind.id.clone(),
    ];
    config.customers.exclude = vec![fabrikam.id.to_uppercase(), "*TOYS".to_owned()];
    config.skus.exclude = vec!["FLOW_FREE".to_owned()];
    config.skus.max_units = 10_000;
    let exporter = RunningExporter::start_with(config, dir).await;
    let metrics = exporter
        .metrics_until(WAIT, "the licences polled", |m| {
            m.value(UP, &[LICENCES_SOURCE]) == Some(1.0)
        })
        .await;

    let covered = BTreeSet::from([contoso.id.clone(), northwind.id.clone()]);
    for family in [LICENSES, CONSUMED, SKU_INFO, CUSTOMER_INFO, CUSTOMER_UP] {
        assert_eq!(
            customers_in(&metrics, family),
            covered,
            "{family}:\n{}",
            metrics.text
        );
    }
    for customer in [&fabrikam, &tailspin, &litware] {
        assert_eq!(
            upstream.request_count(&subscribed_skus_path(&customer.id)),
            0,
            "{} is filtered out before any request: {:?}",
            customer.name,
            upstream.log().counts()
        );
        assert!(!mentions(&metrics, &customer.id), "{}", metrics.text);
    }
    for customer in [&contoso, &northwind] {
        assert_eq!(
            upstream.request_count(&subscribed_skus_path(&customer.id)),
            1
        );
        let skus: BTreeSet<String> = metrics
            .family(CONSUMED)
            .iter()
            .filter(|s| s.labels["customer_tenant_id"] == customer.id)
            .map(|s| s.labels["sku_id"].clone())
            .collect();
        assert_eq!(
            skus,
            BTreeSet::from([E3_ID.to_owned(), VISIO_ID.to_owned()]),
            "FLOW_FREE by part number and STREAM by its size are left out"
        );
        assert_sku(&metrics, &customer.id, VISIO_ID, [9_000, 999, 0, 1]);
    }
    assert!(!metrics.text.contains("FLOW_FREE") && !metrics.text.contains("STREAM"));
    // The listing, and one request per covered customer: nothing else.
    assert_eq!(upstream.log().total(), 3, "{:?}", upstream.log().counts());
}

// ---------------------------------------------------------------------------
// The commercial reports: where they live, and their pages
// ---------------------------------------------------------------------------

/// A usage row of the commercial report; `active_field` is its spelling
/// of the active licences.
fn usage_row(
    customer: &str,
    product: &str,
    workload: &str,
    active_field: &str,
    active: u64,
    processed: &str,
) -> serde_json::Value {
    let mut row = serde_json::json!({
        "workloadCode": workload,
        "workloadName": format!("Workload {workload}"),
        "serviceCode": "o365",
        "serviceName": "Microsoft Office 365",
        "channel": "reseller",
        "customerTenantId": customer,
        "customerName": format!("Customer {customer}"),
        "productId": product,
        "productName": format!("PRODUCT {product}"),
        "licensesQualified": active + 1000,
        "processedDateTime": processed,
    });
    row[active_field] = serde_json::json!(active);
    row
}

/// A GUID in upper case, as the commercial reports send them.
fn upper_guid(kind: u32, index: usize) -> String {
    format!("{kind:08X}-ABCD-4EF0-8ABC-{index:012X}")
}

#[tokio::test]
async fn the_reports_prefix_falls_back_once_is_remembered_and_logged() {
    let Some(logs) = CapturedLogs::in_own_process(
        "customers::the_reports_prefix_falls_back_once_is_remembered_and_logged",
    ) else {
        return;
    };
    let customer = upper_guid(0xC0, 1);
    let rows = vec![usage_row(
        &customer,
        &upper_guid(0xB0, 1),
        "EXO",
        "licensesActive",
        4,
        "2026-01-01T00:00:00",
    )];
    // Served under `/v1` only: `/partner/v1` answers 404.
    let upstream = Simulator::builder()
        .dataset(LISTING_PATH, customer_listing(&[], 100))
        .dataset(
            &format!("/v1/{USAGE_REPORT}"),
            Dataset::commercial(rows, 100, NextLink::Null),
        )
        .start()
        .await
        .expect("the simulator starts");
    let (config, dir) = report_config(&upstream, SourceName::CustomerUsage, OFTEN);
    let exporter = RunningExporter::start_with(config, dir).await;
    upstream
        .log()
        .wait_for_path(&format!("/v1/{USAGE_REPORT}"), 3, WAIT)
        .await
        .expect("three polls");
    let metrics = exporter
        .metrics_until(WAIT, "the usage report polled", |m| {
            m.value(UP, &[USAGE_SOURCE]) == Some(1.0)
        })
        .await;
    exporter.stop().await.expect("clean stop");
    assert_eq!(metrics.family(WORKLOAD_ACTIVE).len(), 1, "{}", metrics.text);

    let reports: Vec<String> = upstream
        .received()
        .iter()
        .filter(|request| request.path().ends_with(USAGE_REPORT))
        .map(|request| request.path().to_owned())
        .collect();
    let partner = format!("/partner/v1/{USAGE_REPORT}");
    let v1 = format!("/v1/{USAGE_REPORT}");
    assert_eq!(reports[..2], [partner.clone(), v1.clone()], "{reports:#?}");
    assert!(
        reports[2..].iter().all(|path| *path == v1),
        "later polls ask where the report answered: {reports:#?}"
    );
    assert_eq!(upstream.request_count(&partner), 1);

    let text = logs.text();
    let answered: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("answer under this prefix"))
        .collect();
    assert_eq!(answered.len(), 1, "said once: {answered:#?}");
    assert!(answered[0].contains("prefix=/v1"), "{}", answered[0]);
    let not_found: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("not found under this prefix"))
        .collect();
    assert_eq!(not_found.len(), 1, "{not_found:#?}");
    assert!(
        not_found[0].contains("prefix=/partner/v1"),
        "{}",
        not_found[0]
    );
}

#[tokio::test]
async fn a_pinned_prefix_is_used_alone_even_where_the_other_would_answer() {
    let rows = vec![usage_row(
        &upper_guid(0xC0, 1),
        &upper_guid(0xB0, 1),
        "EXO",
        "licensesActive",
        4,
        "2026-01-01T00:00:00",
    )];
    let upstream = Simulator::builder()
        .dataset(LISTING_PATH, customer_listing(&[], 100))
        .dataset(
            &format!("/v1/{USAGE_REPORT}"),
            Dataset::commercial(rows, 100, NextLink::Null),
        )
        .start()
        .await
        .expect("the simulator starts");
    let (mut config, dir) = report_config(&upstream, SourceName::CustomerUsage, OFTEN);
    config.partner_center.commercial_api_prefix = CommercialApiPrefix::PartnerV1;
    let exporter = RunningExporter::start_with(config, dir).await;
    let metrics = exporter
        .metrics_until(WAIT, "two failed polls", |m| {
            m.value(POLL_ERRORS, &[USAGE_SOURCE, ("reason", "http")])
                .is_some_and(|n| n >= 2.0)
        })
        .await;
    assert_eq!(metrics.value(UP, &[USAGE_SOURCE]), Some(0.0));
    assert!(
        metrics.family(WORKLOAD_ACTIVE).is_empty(),
        "{}",
        metrics.text
    );
    assert!(upstream.request_count(&format!("/partner/v1/{USAGE_REPORT}")) >= 2);
    assert_eq!(
        upstream.request_count(&format!("/v1/{USAGE_REPORT}")),
        0,
        "a pinned prefix is never left: {:?}",
        upstream.log().counts()
    );
}

#[tokio::test]
async fn the_reports_are_paged_by_skip_and_by_next_link_and_every_row_is_published_once() {
    // Usage: 10 customers × 5 products × 5 workloads, less four, plus
    // two duplicates and two rows without an identifier: 250 rows.
    let mut usage = Vec::new();
    let mut expected: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    let mut index = 0u64;
    'rows: for c in 0..10 {
        for p in 0..5 {
            for w in 0..5 {
                if usage.len() == 246 {
                    break 'rows;
                }
                let (customer, product) = (upper_guid(0xC0, c), upper_guid(0xB0, p));
                let workload = format!("W{w}");
                // Every seventh row spells the field as the documented example does.
                let field = if index.is_multiple_of(7) {
                    "licenseActive"
                } else {
                    "licensesActive"
                };
                usage.push(usage_row(
                    &customer,
                    &product,
                    &workload,
                    field,
                    index,
                    "2026-01-02T00:00:00",
                ));
                expected.insert(
                    (customer.to_lowercase(), product.to_lowercase(), workload),
                    index,
                );
                index += 1;
            }
        }
    }
    // Product 4 is renamed in one row: still one product_info series.
    usage[4 * 5]["productName"] = serde_json::json!("PRODUCT FOUR RENAMED");
    // Two identities repeated, the newer first in one case and last in
    // the other: the newest processedDateTime wins either way.
    let (a, b) = (usage[10].clone(), usage[11].clone());
    let mut older_a = a.clone();
    older_a["processedDateTime"] = serde_json::json!("2026-01-01T00:00:00");
    older_a["licensesActive"] = serde_json::json!(9_001);
    let mut newer_b = b.clone();
    newer_b["processedDateTime"] = serde_json::json!("2026-01-03T00:00:00");
    newer_b["licensesActive"] = serde_json::json!(9_002);
    newer_b
        .as_object_mut()
        .expect("a row")
        .remove("licenseActive");
    let key = |row: &serde_json::Value| {
        (
            row["customerTenantId"].as_str().expect("id").to_lowercase(),
            row["productId"].as_str().expect("id").to_lowercase(),
            row["workloadCode"].as_str().expect("code").to_owned(),
        )
    };
    expected.insert(key(&newer_b), 9_002);
    usage.insert(150, older_a);
    usage.push(newer_b);
    let mut no_customer = usage[0].clone();
    no_customer
        .as_object_mut()
        .expect("a row")
        .remove("customerTenantId");
    let mut no_product = usage[1].clone();
    no_product
        .as_object_mut()
        .expect("a row")
        .remove("productId");
    usage.insert(60, no_customer);
    usage.insert(220, no_product);
    assert_eq!(usage.len(), 250);
    let spelt_singular = key(&usage[7]);
    assert!(usage[7].get("licenseActive").is_some());

    // Deployment: two pages, the first pointing at the second by an
    // absolute @nextLink the exporter cannot have made itself.
    let deployment_row = |c: usize, p: usize, deployed: u64| {
        serde_json::json!({
            "serviceCode": "o365",
            "serviceName": "Microsoft Office 365",
            "channel": "indirect",
            "customerTenantId": upper_guid(0xC0, c),
            "customerName": format!("Customer {c}"),
            "productId": upper_guid(0xB0, p),
            "productName": format!("PRODUCT {p}"),
            "licensesDeployed": deployed,
            "licensesSold": deployed + 2,
            "processedDateTime": "2026-01-02T00:00:00",
        })
    };
    let mut without_product = deployment_row(9, 9, 99);
    without_product
        .as_object_mut()
        .expect("a row")
        .remove("productId");
    let second_page = serde_json::json!({
        "Value": [deployment_row(1, 0, 4), deployment_row(1, 1, 5), without_product],
        "@nextLink": null,
        "TotalCount": 6,
    });
    let next_path = format!("/v1/{DEPLOYMENT_REPORT}/continued");
    let upstream = Simulator::builder()
        .dataset(LISTING_PATH, customer_listing(&[], 100))
        .dataset(
            &format!("/v1/{USAGE_REPORT}"),
            Dataset::commercial(usage, 100, NextLink::Null),
        )
        .dataset(&next_path, Dataset::fixed(second_page.to_string()))
        .start()
        .await
        .expect("the simulator starts");
    let first_page = serde_json::json!({
        "Value": [deployment_row(0, 0, 1), deployment_row(0, 1, 2), deployment_row(0, 2, 3)],
        "@nextLink": format!("{}?token=opaque-2", upstream.url(&next_path)),
        "TotalCount": 6,
    });
    upstream.script(
        format!("/v1/{DEPLOYMENT_REPORT}"),
        vec![Step::json(200, &first_page.to_string())],
        None,
    );
    let (mut config, dir) = report_config(&upstream, SourceName::CustomerUsage, ONCE);
    let deployment = config.sources.entry(SourceName::CustomerDeployment);
    deployment.enabled = Some(true);
    deployment.interval = Some(ONCE);
    config.partner_center.commercial_api_prefix = CommercialApiPrefix::V1;
    let exporter = RunningExporter::start_with(config, dir).await;
    exporter
        .scrape_until(WAIT, |m| {
            m.value(UP, &[USAGE_SOURCE]) == Some(1.0)
                && m.value(UP, &[DEPLOYMENT_SOURCE]) == Some(1.0)
        })
        .await;
    let metrics = Exposition::parse(&exporter.scrape().await);

    let usage_targets: Vec<String> = requests_to(&upstream, &format!("/v1/{USAGE_REPORT}"))
        .iter()
        .map(|request| request.target.clone())
        .collect();
    assert_eq!(
        usage_targets,
        [0, 100, 200].map(|skip| format!("/v1/{USAGE_REPORT}?top=10000&skip={skip}")),
        "pages of 100 asked by skip until TotalCount"
    );
    let published: BTreeMap<(String, String, String), u64> = metrics
        .family(WORKLOAD_ACTIVE)
        .iter()
        .map(|sample| {
            assert_eq!(sample.labels["channel"], "reseller", "{sample:?}");
            (
                (
                    sample.labels["customer_tenant_id"].clone(),
                    sample.labels["product_id"].clone(),
                    sample.labels["workload_code"].clone(),
                ),
                sample.value as u64,
            )
        })
        .collect();
    assert_eq!(metrics.family(WORKLOAD_ACTIVE).len(), 246);
    assert_eq!(
        published, expected,
        "every row once, the newest of each identity"
    );
    assert_eq!(published[&key(&a)], 10, "the older repeat lost");
    assert_eq!(published[&spelt_singular], 7, "licenseActive is read");
    assert_eq!(metrics.family(WORKLOAD_QUALIFIED).len(), 246);
    assert_eq!(metrics.value(SKIPPED, &[USAGE_SOURCE]), Some(2.0));

    let products: Vec<&str> = metrics
        .family(PRODUCT_INFO)
        .iter()
        .map(|sample| sample.labels["product_id"].as_str())
        .collect();
    let expected_products: BTreeSet<String> =
        (0..5).map(|p| upper_guid(0xB0, p).to_lowercase()).collect();
    assert_eq!(
        products.len(),
        5,
        "one product_info per product: {products:?}"
    );
    assert_eq!(
        products
            .iter()
            .map(|p| (*p).to_owned())
            .collect::<BTreeSet<_>>(),
        expected_products
    );
    let workloads: BTreeSet<(&str, &str)> = metrics
        .family(WORKLOAD_INFO)
        .iter()
        .map(|s| {
            (
                s.labels["workload_code"].as_str(),
                s.labels["workload_name"].as_str(),
            )
        })
        .collect();
    assert_eq!(metrics.family(WORKLOAD_INFO).len(), 5);
    assert_eq!(
        workloads,
        BTreeSet::from([
            ("W0", "Workload W0"),
            ("W1", "Workload W1"),
            ("W2", "Workload W2"),
            ("W3", "Workload W3"),
            ("W4", "Workload W4")
        ])
    );

    let continued = requests_to(&upstream, &next_path);
    assert_eq!(continued.len(), 1, "{:?}", upstream.log().counts());
    assert_eq!(continued[0].target, format!("{next_path}?token=opaque-2"));
    assert_eq!(
        upstream.request_count(&format!("/v1/{DEPLOYMENT_REPORT}")),
        1
    );
    let deployed: BTreeMap<(String, String), (f64, f64)> = metrics
        .family(DEPLOYED)
        .iter()
        .map(|sample| {
            let labels = [
                ("channel", "indirect"),
                (
                    "customer_tenant_id",
                    sample.labels["customer_tenant_id"].as_str(),
                ),
                ("product_id", sample.labels["product_id"].as_str()),
            ];
            (
                (
                    sample.labels["customer_tenant_id"].clone(),
                    sample.labels["product_id"].clone(),
                ),
                (sample.value, metrics.value(SOLD, &labels).expect("sold")),
            )
        })
        .collect();
    let expected_deployed: BTreeMap<(String, String), (f64, f64)> = [
        (0, 0, 1.0),
        (0, 1, 2.0),
        (0, 2, 3.0),
        (1, 0, 4.0),
        (1, 1, 5.0),
    ]
    .into_iter()
    .map(|(c, p, deployed)| {
        (
            (
                upper_guid(0xC0, c).to_lowercase(),
                upper_guid(0xB0, p).to_lowercase(),
            ),
            (deployed, deployed + 2.0),
        )
    })
    .collect();
    assert_eq!(deployed, expected_deployed, "both pages, lower-case IDs");
    assert_eq!(metrics.family(SOLD).len(), 5);
    assert_eq!(metrics.value(SKIPPED, &[DEPLOYMENT_SOURCE]), Some(1.0));
}

// ---------------------------------------------------------------------------
// The tenant's request budget and its 429 pause during a fan-out
// ---------------------------------------------------------------------------

/// `count` customers, each with one SKU, and their listing.
fn fan_out_partner(count: usize) -> (Vec<Customer>, SimulatorBuilder) {
    let customers: Vec<Customer> = (0..count)
        .map(|index| {
            Customer::new(
                &format!("Customer {index:02}"),
                &format!("customer{index:02}"),
            )
        })
        .collect();
    let mut builder = Simulator::builder().dataset(LISTING_PATH, customer_listing(&customers, 100));
    for customer in &customers {
        builder = builder.dataset(
            &subscribed_skus_path(&customer.id),
            skus(vec![subscribed_sku(
                E3_ID,
                "SPE_E3",
                "Microsoft 365 E3",
                [10, 0, 0, 4],
                "Enabled",
            )]),
        );
    }
    (customers, builder)
}

// Two worker threads: the simulator records arrivals on the test's
// runtime, which must not be held up by the test's own work meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_goes_at_the_request_budget_never_faster() {
    // 120 a minute: one request every 500 ms, wide enough that an arrival
    // lagging its start on a busy machine does not pass for a burst.
    const BUDGET: u32 = 120;
    let spacing = Duration::from_secs(60) / BUDGET;
    let (customers, builder) = fan_out_partner(10);
    let upstream = builder.start().await.expect("the simulator starts");
    let (mut config, dir) = licences_config(&upstream, ONCE);
    config.partner_center.max_requests_per_minute = BUDGET;
    let exporter = RunningExporter::start_with(config, dir).await;
    let requests = customers.len() + 1;
    // No scraping while the requests are timed: waiting on the record
    // costs the simulator nothing.
    upstream
        .wait_for_requests(requests, WAIT)
        .await
        .expect("the listing and every customer");
    exporter
        .metrics_until(WAIT, "the fan-out done", |m| {
            m.value(UP, &[LICENCES_SOURCE]) == Some(1.0)
        })
        .await;
    exporter.stop().await.expect("clean stop");
    let (arrivals, shown) = arrivals(&upstream);
    assert_eq!(arrivals.len(), requests, "{:?}", upstream.log().counts());
    assert_spaced(&arrivals, spacing, &shown);
    // The minute scaled down to the budget's share in one second: no such
    // window holds more than 2 requests, less one lagging arrival's slack.
    let per_window = (BUDGET / 60) as usize;
    for window in arrivals.windows(per_window + 1) {
        let span = window[per_window] - window[0];
        assert!(
            span >= Duration::from_secs(1) - spacing.mul_f64(0.5),
            "{} requests within {span:?}, under a budget of {per_window} a second: {shown:#?}",
            per_window + 1,
        );
    }
    // And the budget is used: the fan-out is not held far below it.
    let least = spacing * (requests as u32 - 1);
    let took = arrivals[requests - 1] - arrivals[0];
    assert!(
        took >= least.mul_f64(0.9) && took <= least.mul_f64(1.6),
        "{requests} requests took {took:?}, at least {least:?} under the budget: {shown:#?}"
    );
}

const THROTTLED: &[u8] =
    br#"{"statusCode":429,"message":"Rate limit is exceeded. Try again in 2 seconds."}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_for_one_customer_pauses_every_request_to_the_tenant_then_the_fan_out_goes_on() {
    // 240 a minute: a request every 250 ms.
    const BUDGET: u32 = 240;
    let spacing = Duration::from_secs(60) / BUDGET;
    let hold = Duration::from_secs(2);
    // A request the exporter sent before it had read the 429 may arrive
    // just after the 429 left; one sent during the hold would arrive at
    // its slot, a spacing or more later.
    let grace = Duration::from_millis(200);
    let (customers, builder) = fan_out_partner(6);
    let rows = vec![usage_row(
        &upper_guid(0xC0, 1),
        &upper_guid(0xB0, 1),
        "EXO",
        "licensesActive",
        4,
        "2026-01-01T00:00:00",
    )];
    let upstream = builder
        .dataset(
            &format!("/v1/{USAGE_REPORT}"),
            Dataset::commercial(rows, 100, NextLink::Null),
        )
        .start()
        .await
        .expect("the simulator starts");
    let throttled = &customers[2];
    let throttled_path = subscribed_skus_path(&throttled.id);
    upstream.script(
        throttled_path.as_str(),
        vec![Step::response(
            429,
            &[("Content-Type", "application/json"), ("Retry-After", "2")],
            THROTTLED,
        )],
        None,
    );
    let (mut config, dir) = licences_config(&upstream, ONCE);
    config.partner_center.max_requests_per_minute = BUDGET;
    config.partner_center.max_retries = 1;
    // The usage report polls all along, so the pause must hold it too.
    let usage = config.sources.entry(SourceName::CustomerUsage);
    usage.enabled = Some(true);
    usage.interval = Some(Duration::from_secs(1));
    let exporter = RunningExporter::start_with(config, dir).await;
    let metrics = exporter
        .metrics_until(WAIT, "the throttled customer served", |m| {
            m.value(UP, &[LICENCES_SOURCE]) == Some(1.0)
                && m.value(
                    CUSTOMER_UP,
                    &[LICENCES_SOURCE, ("customer_tenant_id", &throttled.id)],
                ) == Some(1.0)
        })
        .await;
    // A few more of the report's polls, after the pause.
    let reports = upstream.request_count(&format!("/v1/{USAGE_REPORT}"));
    upstream
        .log()
        .wait_for_path(&format!("/v1/{USAGE_REPORT}"), reports + 2, WAIT)
        .await
        .expect("the report polled on");
    exporter.stop().await.expect("clean stop");

    assert_sku(&metrics, &throttled.id, E3_ID, [10, 0, 0, 4]);
    assert_eq!(
        customers_in(&metrics, LICENSES).len(),
        customers.len(),
        "every customer served:\n{}",
        metrics.text
    );
    assert_eq!(
        metrics.value(
            "partner_center_request_retries_total",
            &[("reason", "throttled")]
        ),
        Some(1.0)
    );
    assert_eq!(
        upstream.request_count(&throttled_path),
        2,
        "the 429, then the retry"
    );

    let mut record = upstream.received();
    record.sort_by_key(|request| request.at);
    let refused = record
        .iter()
        .find(|request| request.path() == throttled_path)
        .expect("the 429'd request");
    let refused_at = refused.answered_at.expect("the 429 was sent");
    let shown = timeline(&record, refused_at);
    let resumed = refused_at + hold.mul_f64(0.95);
    let (before, after): (Vec<&ReceivedRequest>, Vec<&ReceivedRequest>) =
        record.iter().partition(|request| request.at <= refused_at);
    let (on_its_way, after): (Vec<&ReceivedRequest>, Vec<&ReceivedRequest>) = after
        .into_iter()
        .partition(|request| request.at < refused_at + grace);
    assert!(
        on_its_way.len() <= 1,
        "at most the one request already on its way under the budget: {shown:#?}"
    );
    for request in &after {
        assert!(
            request.at >= resumed,
            "{} started during the 429's Retry-After: {shown:#?}",
            request.target
        );
    }
    assert!(
        before.len() >= 3,
        "the listing and the first customers went before the 429: {shown:#?}"
    );
    // Every kind of request was held, not merely absent.
    let after_paths: BTreeSet<&str> = after.iter().map(|request| request.path()).collect();
    for path in [
        LISTING_PATH,
        throttled_path.as_str(),
        &format!("/v1/{USAGE_REPORT}"),
    ] {
        assert!(
            after_paths.contains(path),
            "no {path} after the pause: {shown:#?}"
        );
    }
    assert!(
        customers[3..]
            .iter()
            .any(|customer| after_paths.contains(subscribed_skus_path(&customer.id).as_str())),
        "other customers waited for the pause: {shown:#?}"
    );
    // After the pause the requests go at the budget again, not in a burst
    // of those that waited (which come within a millisecond or two): any
    // four span three spacings, less what an arrival may lag its start.
    for window in after.windows(4) {
        let span = window[3].at - window[0].at;
        assert!(
            span >= (spacing * 3).mul_f64(0.5),
            "four requests within {span:?} after the pause, under a budget of one per {spacing:?}: {shown:#?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Every source on one scrape
// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_source_on_one_scrape_passes_promtool_with_each_family_once() {
    let upstream = Simulator::builder()
        .datasets(demo_paths::datasets(&DemoPartner::contoso()))
        .datasets(partner_center_exporter::simulator::datasets::demo())
        .start()
        .await
        .expect("the simulator starts");
    let (mut config, dir) = test_config(upstream.base_url(), ONCE);
    for source in SourceName::ALL {
        let entry = config.sources.entry(*source);
        entry.enabled = Some(true);
        entry.interval = Some(ONCE);
    }
    let exporter = RunningExporter::start_with(config, dir).await;
    exporter
        .metrics_until(WAIT, "every source up", |m| {
            SourceName::ALL
                .iter()
                .all(|source| m.value(UP, &[("source", source.as_str())]) == Some(1.0))
        })
        .await;
    // `scrape` runs promtool on the body.
    let body = exporter.scrape().await;
    let metrics = Exposition::parse(&body);
    for line in body
        .lines()
        .filter(|line| line.starts_with("# TYPE ") || line.starts_with("# HELP "))
    {
        assert_eq!(
            body.lines().filter(|other| other == &line).count(),
            1,
            "{line} more than once in\n{body}"
        );
    }
    let helps: BTreeSet<&str> = body
        .lines()
        .filter_map(|line| line.strip_prefix("# HELP "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    let mut families: Vec<&str> = SourceName::ALL
        .iter()
        .flat_map(|source| source.family_names())
        .collect();
    families.extend([CUSTOMER_INFO, CUSTOMER_UP, ERROR_REASON, CUSTOMER_ERRORS]);
    for family in families {
        assert_eq!(
            metrics.types.get(family).map(String::as_str),
            Some(if family.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            }),
            "{family}"
        );
        assert!(helps.contains(family), "{family} has no HELP");
        assert!(
            !metrics.family(family).is_empty(),
            "{family} has no samples"
        );
    }
    // The demo's customer without a GDAP role is the one failing.
    let refused: Vec<_> = metrics.family(ERROR_REASON);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].labels["reason"], "forbidden");
}
