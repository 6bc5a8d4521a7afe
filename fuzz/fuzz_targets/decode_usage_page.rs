//! Fuzz target: any bytes as a Partner Center answer, through every
//! source's decoding, snapshot and rendering (license usage with the full
//! `/metrics` body, license deployment, a customer's subscribed SKUs and
//! subscriptions, a provisioning status, the two commercial reports),
//! which must never panic and must always give
//! UTF-8 with one line per series (and status) and every decoded item.
//!
//! From the repository root, with the stable toolchain:
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run decode_usage_page -- -dict=fuzz/decode_usage_page.dict`
//! (`.ci/run` runs it for a minute). A crash leaves its input in
//! `fuzz/artifacts/decode_usage_page/`; replay it with
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run decode_usage_page <that file>`.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use partner_center_exporter::ExporterMetrics;
use partner_center_exporter::customer_deployment::{
    CustomerDeploymentSource, decode_customer_deployment_page,
};
use partner_center_exporter::customer_licenses::{
    CustomerLicensesSource, decode_subscribed_skus_page,
};
use partner_center_exporter::customer_usage::{CustomerUsageSource, decode_customer_usage_page};
use partner_center_exporter::license_deployment::{
    LicenseDeploymentSource, decode_deployment_page,
};
use partner_center_exporter::license_usage::{LicenseUsageSource, decode_usage_page};
use partner_center_exporter::subscriptions::{
    SubscriptionsSource, decode_provisioning_status, decode_subscriptions_page,
};
use partner_center_exporter::{Snapshot, Source};

/// The exporter's own metrics, made once: making them per input would
/// register a new process collector every time.
fn exporter_metrics() -> &'static ExporterMetrics {
    static METRICS: OnceLock<ExporterMetrics> = OnceLock::new();
    METRICS.get_or_init(|| ExporterMetrics::new().expect("the exporter's metrics register"))
}

/// Label values as the text format escapes them.
fn escaped(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The snapshot of `items`, every one of which is a series or folded
/// into one: none may be lost on the way.
fn snapshot_of<S: Source>(items: &[S::Item]) -> Snapshot<S> {
    let snapshot = Snapshot::<S>::from_items(items.iter().cloned());
    assert_eq!(items.len(), snapshot.series().len() + snapshot.duplicates());
    snapshot
}

/// Checks that `exposition` has `families` families of one line per series,
/// each after its HELP and TYPE, every sample of a known family with a
/// finite value: a label value that broke out of its quotes would add lines.
fn check_lines(exposition: &str, series: usize, families: &[&str]) {
    let expected_lines = if series == 0 {
        0
    } else {
        families.len() * (series + 2)
    };
    assert_eq!(exposition.lines().count(), expected_lines, "{exposition}");
    for line in exposition.lines().filter(|line| !line.starts_with('#')) {
        assert!(
            families
                .iter()
                .any(|family| line.starts_with(&format!("{family}{{channel=\""))),
            "unexpected line {line:?}"
        );
        let value = line.rsplit_once("} ").map(|(_, value)| value);
        assert!(
            value.is_some_and(|value| value.parse::<f64>().is_ok_and(f64::is_finite)),
            "no finite value in {line:?}"
        );
    }
}

/// The bytes as a license deployment page.
fn deployment(body: &[u8]) {
    let Ok(page) = decode_deployment_page(body) else {
        return;
    };
    let snapshot = snapshot_of::<LicenseDeploymentSource>(&page.items);
    let exposition = snapshot.text();
    check_lines(
        &exposition,
        snapshot.series().len(),
        &[
            "partner_center_license_deployment_prorated_percent",
            "partner_center_license_deployment_licenses_sold",
            "partner_center_license_deployment_processed_timestamp_seconds",
        ],
    );
    for item in &page.items {
        let labels = format!(
            "{{channel=\"{}\",service=\"{}\"}} ",
            escaped(&item.channel),
            escaped(&item.service)
        );
        assert!(
            exposition.contains(&labels),
            "{item:?} missing in {exposition}"
        );
    }
}

/// Checks that every sample line of `exposition` is of one of `families`,
/// with a finite value, and that each of `expected` label sets is there.
fn check_samples(exposition: &str, families: &[&str], expected: &[String]) {
    for line in exposition.lines().filter(|line| !line.starts_with('#')) {
        assert!(
            families
                .iter()
                .any(|family| line.starts_with(&format!("{family}{{"))),
            "unexpected line {line:?}"
        );
        let value = line.rsplit_once("} ").map(|(_, value)| value);
        assert!(
            value.is_some_and(|value| value.parse::<f64>().is_ok_and(f64::is_finite)),
            "no finite value in {line:?}"
        );
    }
    for labels in expected {
        assert!(
            exposition.contains(labels),
            "{labels} missing in {exposition}"
        );
    }
}

/// The bytes as a customer's subscriptions, and as a provisioning status.
fn subscriptions(body: &[u8]) {
    if let Ok(found) = decode_provisioning_status(body) {
        assert!(found.is_none_or(|sku| !sku.is_empty() && sku == sku.to_ascii_lowercase()));
    }
    let Ok(mut page) = decode_subscriptions_page(body) else {
        return;
    };
    for item in &mut page.items {
        SubscriptionsSource::assign_customer(item, "954ca09a-1132-4088-bb58-30438dea2756");
        // Whatever a part's fault, it leaves out only that part.
        assert!(SubscriptionsSource::parts_left_out(item).count() <= 4);
    }
    let snapshot = snapshot_of::<SubscriptionsSource>(&page.items);
    let exposition = snapshot.text();
    assert_eq!(
        exposition
            .lines()
            .filter(|line| line.starts_with("partner_center_subscription_info{"))
            .count(),
        snapshot.series().len(),
        "one info series per subscription"
    );
    let expected: Vec<String> = page
        .items
        .iter()
        .map(|item| format!("subscription_id=\"{}\",", escaped(&item.subscription_id)))
        .collect();
    check_samples(
        &exposition,
        &[
            "partner_center_subscription_licenses",
            "partner_center_subscription_commitment_end_timestamp_seconds",
            "partner_center_subscription_cancellation_allowed_until_timestamp_seconds",
            "partner_center_subscription_auto_renew",
            "partner_center_subscription_info",
        ],
        &expected,
    );
}

/// The bytes as a customer's subscribed SKUs and as the two commercial reports.
fn per_customer(body: &[u8]) {
    if let Ok(mut page) = decode_subscribed_skus_page(body) {
        for item in &mut page.items {
            CustomerLicensesSource::assign_customer(item, "b44bb1fb-c595-45b0-9e09-d657365580bf");
        }
        let snapshot = snapshot_of::<CustomerLicensesSource>(&page.items);
        let exposition = snapshot.text();
        assert_eq!(
            exposition
                .lines()
                .filter(|line| line.starts_with("partner_center_customer_licenses{"))
                .count(),
            3 * snapshot.series().len(),
            "one sample per SKU and status"
        );
        let expected: Vec<String> = page
            .items
            .iter()
            .map(|item| format!("sku_id=\"{}\",status=\"active\"}} ", escaped(&item.sku_id)))
            .collect();
        check_samples(
            &exposition,
            &[
                "partner_center_customer_licenses",
                "partner_center_customer_licenses_consumed",
                "partner_center_customer_sku_info",
            ],
            &expected,
        );
    }
    if let Ok(page) = decode_customer_usage_page(body) {
        let snapshot = snapshot_of::<CustomerUsageSource>(&page.items);
        let expected: Vec<String> = page
            .items
            .iter()
            .map(|item| {
                format!(
                    "{{channel=\"{}\",customer_tenant_id=\"{}\",product_id=\"{}\",workload_code=\"{}\"}} ",
                    escaped(&item.channel),
                    escaped(&item.customer_tenant_id),
                    escaped(&item.product_id),
                    escaped(&item.workload_code)
                )
            })
            .collect();
        check_samples(
            &snapshot.text(),
            &[
                "partner_center_customer_workload_licenses_active",
                "partner_center_customer_workload_licenses_qualified",
                "partner_center_product_info",
                "partner_center_workload_info",
            ],
            &expected,
        );
    }
    if let Ok(page) = decode_customer_deployment_page(body) {
        let snapshot = snapshot_of::<CustomerDeploymentSource>(&page.items);
        let expected: Vec<String> = page
            .items
            .iter()
            .map(|item| {
                format!(
                    "{{channel=\"{}\",customer_tenant_id=\"{}\",product_id=\"{}\"}} ",
                    escaped(&item.channel),
                    escaped(&item.customer_tenant_id),
                    escaped(&item.product_id)
                )
            })
            .collect();
        check_samples(
            &snapshot.text(),
            &[
                "partner_center_customer_product_licenses_deployed",
                "partner_center_customer_product_licenses_sold",
            ],
            &expected,
        );
    }
}

fuzz_target!(|body: &[u8]| {
    deployment(body);
    per_customer(body);
    subscriptions(body);
    let page = match decode_usage_page(body) {
        Ok(page) => page,
        Err(err) => {
            // Failures are logged and shown on the landing page.
            let message = err.to_string();
            assert!(
                !message.is_empty() && message.len() < 512 && !message.contains('\n'),
                "not one bounded line: {message:?}"
            );
            return;
        }
    };
    assert!(
        page.skipped
            .windows(2)
            .all(|pair| pair[0].index < pair[1].index),
        "skipped items out of order: {:?}",
        page.skipped
    );
    let decoded = page.items.len();
    let snapshot = Snapshot::<LicenseUsageSource>::from_items(page.items.iter().cloned());
    assert_eq!(decoded, snapshot.series().len() + snapshot.duplicates());
    for item in &page.items {
        assert!(
            item.prorated_percent.is_finite(),
            "a non-finite percent is served: {item:?}"
        );
    }

    let exposition = snapshot.text();
    check_lines(
        &exposition,
        snapshot.series().len(),
        &[
            "partner_center_license_usage_prorated_percent",
            "partner_center_license_usage_processed_timestamp_seconds",
        ],
    );
    // Every decoded item is among the rendered series.
    for item in &page.items {
        let labels = format!(
            "{{channel=\"{}\",service=\"{}\",workload=\"{}\"}} ",
            escaped(&item.channel),
            escaped(&item.service),
            escaped(&item.workload)
        );
        assert!(
            exposition.contains(&labels),
            "{item:?} missing in {exposition}"
        );
    }

    // The rest of /metrics is UTF-8 too and never writes a license family.
    let own = String::from_utf8(exporter_metrics().render()).expect("/metrics is UTF-8");
    assert!(
        !own.contains("partner_center_license_usage_"),
        "a license family outside the snapshot"
    );
});
