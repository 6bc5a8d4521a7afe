//! Micro-benchmarks of what one poll costs, stage by stage, and of what one
//! scrape costs, at 5, 10 000 and 100 000 items:
//!
//! - `decode`: a Partner Center page into items (`decode_usage_page`);
//! - `snapshot`: items folded into series, sorted and deduplicated
//!   (`snapshot::fold_items`);
//! - `render`: series rendered and compressed, as a poll publishes them;
//! - `poll`: the three above together, as a poll runs them;
//! - `serde_json_value`: `serde_json::from_slice::<Value>` of the same
//!   body, the baseline the poll's cost is read against;
//! - `scrape`: putting a gzip-compressed `/metrics` body together.
//!
//! `cargo bench --bench pipeline`; one stage: `cargo bench --bench pipeline -- decode/`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use partner_center_exporter::ExporterMetrics;
use partner_center_exporter::SourceName;
use partner_center_exporter::license_usage::{LicenseUsage, LicenseUsageSource, decode_usage_page};
use partner_center_exporter::{ExporterState, TenantLabel};
use partner_center_exporter::{Snapshot, fold_items, render};

const SIZES: [usize; 3] = [5, 10_000, 100_000];

/// A page of `count` distinct items in Partner Center's JSON shape, with
/// the realistic spread of names a large partner has.
fn body(count: usize) -> Vec<u8> {
    const WORKLOADS: [&str; 5] = ["Exchange", "SharePoint", "Teams", "OneDrive", "Skype"];
    const CHANNELS: [&str; 2] = ["reseller", "direct"];
    let items: Vec<serde_json::Value> = (0..count)
        .map(|i| {
            serde_json::json!({
                "proratedLicensesUsagePercent": (i % 10_000) as f64 / 100.0,
                "workloadName": WORKLOADS[i % WORKLOADS.len()],
                "processedDateTime": format!("2024-05-{:02}T10:{:02}:00Z", 1 + i % 28, i % 60),
                "serviceName": format!("service-{}", i / (WORKLOADS.len() * CHANNELS.len())),
                "channel": CHANNELS[(i / WORKLOADS.len()) % CHANNELS.len()],
                "attributes": { "objectType": "PartnerLicensesUsageInsights" }
            })
        })
        .collect();
    let collection = serde_json::json!({
        "totalCount": count,
        "items": items,
        "attributes": { "objectType": "Collection" }
    });
    serde_json::to_vec(&collection).expect("a JSON value serializes")
}

fn items_of(body: &[u8]) -> Vec<LicenseUsage> {
    let page = decode_usage_page(body).expect("the generated page decodes");
    assert!(page.skipped.is_empty(), "every generated item is usable");
    page.items
}

fn stages(c: &mut Criterion) {
    let bodies: Vec<(usize, Vec<u8>)> = SIZES.iter().map(|&n| (n, body(n))).collect();

    let mut group = c.benchmark_group("serde_json_value");
    for (n, body) in &bodies {
        group.throughput(Throughput::Elements(*n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), body, |b, body| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(body)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("decode");
    for (n, body) in &bodies {
        group.throughput(Throughput::Elements(*n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), body, |b, body| {
            b.iter(|| decode_usage_page(black_box(body)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("snapshot");
    for (n, body) in &bodies {
        let items = items_of(body);
        group.throughput(Throughput::Elements(*n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &items, |b, items| {
            b.iter_batched(
                || items.clone(),
                fold_items::<LicenseUsageSource>,
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();

    let mut group = c.benchmark_group("render");
    for (n, body) in &bodies {
        let (series, _) = fold_items::<LicenseUsageSource>(items_of(body));
        group.throughput(Throughput::Elements(*n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &series, |b, series| {
            b.iter(|| render::<LicenseUsageSource>(&TenantLabel::NONE, black_box(series)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("poll");
    for (n, body) in &bodies {
        group.throughput(Throughput::Elements(*n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), body, |b, body| {
            b.iter(|| {
                let page = decode_usage_page(black_box(body)).expect("decodes");
                Snapshot::<LicenseUsageSource>::from_vec(page.items)
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("scrape");
    for (n, body) in &bodies {
        let metrics = ExporterMetrics::new().expect("metrics");
        let state = Arc::new(ExporterState::new(metrics, Some(Duration::from_secs(3600))));
        let tenant = state
            .add_tenant(TenantLabel::NONE, SourceName::ALL)
            .expect("tenant metrics");
        tenant.record_snapshot(
            Snapshot::<LicenseUsageSource>::from_vec(items_of(body)),
            0,
            Duration::from_millis(10),
            Utc::now(),
        );
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| state.exposition().gzip_frames())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Ten samples: a 100 000-item stage takes a good part of a second, and
    // the ratios between stages are what is read off, not small changes.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = stages
}
criterion_main!(benches);
