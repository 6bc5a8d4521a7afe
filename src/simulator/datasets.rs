//! The simulated Partner Center's datasets: what each collection path
//! serves when no script says otherwise.
//!
//! A [`Dataset`] is one of: a body generated per request from the wall
//! clock (the demo's moving values), a fixed body (a documented example,
//! or N generated items built once, as the benchmarks serve), items
//! served in pages chained by `links.next` (by page, or by the `size` the
//! request asks for, as the customer listing is), rows in the commercial
//! analytics envelope paged by `top` and `skip`, or a fixed refusal. The
//! demo's table, [`DEMO_DATASETS`], has one entry per source; adding a
//! source is adding its entry there (a test checks that every source has
//! one). Each demo partner serves it with [`PartnerFigures`] of its own
//! ([`demo_for`]). The per-customer demo partners are in
//! [`super::demo_partner`].

use std::f64::consts::TAU;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::http::{Answer, Request};
use crate::sources::license_deployment::LicenseDeploymentSource;
use crate::sources::license_usage::LicenseUsageSource;

/// A collection generated from the wall-clock time of the request.
pub type Generate = fn(SystemTime) -> serde_json::Value;

/// What one collection path serves.
#[derive(Clone)]
pub struct Dataset(Kind);

#[derive(Clone)]
enum Kind {
    Fixed(Bytes),
    Moving(Generate),
    /// As `Moving`, from a closure that holds data of its own (one
    /// customer's licences, say), which a `fn` pointer cannot.
    Generated(Arc<dyn Fn(SystemTime) -> serde_json::Value + Send + Sync>),
    Paged {
        items: Arc<[serde_json::Value]>,
        page_size: usize,
    },
    Sized {
        items: Arc<[serde_json::Value]>,
        default_size: usize,
    },
    Commercial {
        rows: Rows,
        page_size: usize,
        next_link: NextLink,
    },
    Refusal {
        status: u16,
        body: Bytes,
    },
}

/// The rows of a commercial analytics dataset.
#[derive(Clone)]
enum Rows {
    Fixed(Arc<[serde_json::Value]>),
    Moving(Arc<dyn Fn(SystemTime) -> Vec<serde_json::Value> + Send + Sync>),
}

/// Whether a commercial analytics page says where the next one is.
///
/// Microsoft documents only `"@nextLink": null`, and tells clients to page
/// by `skip` while rows keep coming: a simulated dataset can play either,
/// so that both ways of paging are exercised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextLink {
    /// `"@nextLink": null` on every page: the client pages by `skip` until
    /// it has `TotalCount` rows.
    Null,
    /// On every page but the last, `@nextLink` is the absolute URL of the
    /// next page (same origin and path, `top` and `skip` in its query).
    Absolute,
}

/// The most rows a commercial analytics request may ask for (`top`), and
/// what it gets without asking, as documented.
pub const COMMERCIAL_MAX_TOP: usize = 10_000;

/// The header that carries a page's position, as Partner Center's
/// continuation token does.
pub const CONTINUATION_HEADER: &str = "MS-ContinuationToken";

impl Dataset {
    /// Always these bytes, as `application/json`; cheap to serve however
    /// large, since they are built once.
    pub fn fixed(body: impl Into<Bytes>) -> Self {
        Self(Kind::Fixed(body.into()))
    }

    /// A body built for each request by `generate`.
    pub fn moving(generate: Generate) -> Self {
        Self(Kind::Moving(generate))
    }

    /// `items` in pages of `page_size` (at least 1): each page but the
    /// last has a `links.next` to the same path with a
    /// [`CONTINUATION_HEADER`] naming the next page, as Partner Center
    /// pages its collections. A request with an unknown token gets a 400.
    pub fn paged(items: Vec<serde_json::Value>, page_size: usize) -> Self {
        Self(Kind::Paged {
            items: items.into(),
            page_size: page_size.max(1),
        })
    }

    /// A body built for each request by `generate`, which may hold data of
    /// its own.
    pub fn generated(
        generate: impl Fn(SystemTime) -> serde_json::Value + Send + Sync + 'static,
    ) -> Self {
        Self(Kind::Generated(Arc::new(generate)))
    }

    /// `items` as a v1 collection paged as Partner Center pages its
    /// customer listing: each page holds the request's `size` query
    /// parameter of items (`default_size`, at least 1, without one), and
    /// each page but the last has a `links.next` whose `uri` is relative
    /// (the path, `size` and `seekOperation=Next`) and whose
    /// [`CONTINUATION_HEADER`] says where the next page starts, so a
    /// client must send both. An unknown token or a `size` that is not a
    /// positive number gets a 400.
    pub fn paged_by_size(items: Vec<serde_json::Value>, default_size: usize) -> Self {
        Self(Kind::Sized {
            items: items.into(),
            default_size: default_size.max(1),
        })
    }

    /// `rows` in the commercial analytics envelope, `{"Value": [...],
    /// "@nextLink": ..., "TotalCount": n}`, with `TotalCount` the number
    /// of all rows. A request gets the rows from `skip` (default 0), as
    /// many as `top` asks (default and most [`COMMERCIAL_MAX_TOP`]) but
    /// never more than `page_size` (at least 1): a server-side page, so
    /// that paging shows even when the client asks for everything.
    /// `next_link` says whether pages point to the next. A `top` or `skip`
    /// that is not a number gets a 400.
    pub fn commercial(rows: Vec<serde_json::Value>, page_size: usize, next_link: NextLink) -> Self {
        Self(Kind::Commercial {
            rows: Rows::Fixed(rows.into()),
            page_size: page_size.max(1),
            next_link,
        })
    }

    /// As [`Dataset::commercial`], with the rows generated for each
    /// request by `generate` from the wall clock. For paging to be
    /// consistent, it must give the same rows in the same order at any
    /// time; only their values may move.
    pub fn commercial_moving(
        generate: impl Fn(SystemTime) -> Vec<serde_json::Value> + Send + Sync + 'static,
        page_size: usize,
        next_link: NextLink,
    ) -> Self {
        Self(Kind::Commercial {
            rows: Rows::Moving(Arc::new(generate)),
            page_size: page_size.max(1),
            next_link,
        })
    }

    /// Always `status` with `body`, as JSON: a collection Partner Center
    /// refuses, such as a customer without the partner's GDAP role.
    pub fn refusal(status: u16, body: impl Into<Bytes>) -> Self {
        Self(Kind::Refusal {
            status,
            body: body.into(),
        })
    }

    /// The answer to `request`; `origin` (`http://127.0.0.1:port`) is
    /// where `links.next` points.
    pub(crate) fn answer(&self, request: &Request, origin: &str, wall_now: SystemTime) -> Answer {
        match &self.0 {
            Kind::Fixed(body) => Answer::json(200, body.clone()),
            Kind::Moving(generate) => Answer::json(200, generate(wall_now).to_string()),
            Kind::Generated(generate) => Answer::json(200, generate(wall_now).to_string()),
            Kind::Refusal { status, body } => Answer::json(*status, body.clone()),
            Kind::Sized {
                items,
                default_size,
            } => sized_page(request, items, *default_size),
            Kind::Commercial {
                rows,
                page_size,
                next_link,
            } => {
                let moving;
                let rows: &[serde_json::Value] = match rows {
                    Rows::Fixed(rows) => rows,
                    Rows::Moving(generate) => {
                        moving = generate(wall_now);
                        &moving
                    }
                };
                commercial_page(request, origin, rows, *page_size, *next_link)
            }
            Kind::Paged { items, page_size } => {
                let page = match request.header(CONTINUATION_HEADER) {
                    None => Some(0),
                    Some(token) => token
                        .strip_prefix("page-")
                        .and_then(|page| page.parse::<usize>().ok())
                        .filter(|page| page * page_size < items.len()),
                };
                let Some(page) = page else {
                    return Answer::json(
                        400,
                        r#"{"code":400,"description":"Invalid continuation token","source":"simulator"}"#,
                    );
                };
                let start = page * page_size;
                let end = (start + page_size).min(items.len());
                let mut body = serde_json::json!({
                    "totalCount": end - start,
                    "items": &items[start..end],
                    "attributes": { "objectType": "Collection" }
                });
                if end < items.len() {
                    body["links"] = serde_json::json!({
                        "next": {
                            "uri": format!("{origin}{}?seekOperation=Next", request.path()),
                            "method": "GET",
                            "headers": [
                                { "key": CONTINUATION_HEADER, "value": format!("page-{}", page + 1) }
                            ]
                        }
                    });
                }
                Answer::json(200, body.to_string())
            }
        }
    }
}

/// A 400 with a Partner Center error body saying what was wrong.
fn bad_request(description: &str) -> Answer {
    let body = serde_json::json!({
        "code": 400,
        "description": description,
        "data": [],
        "source": "simulator"
    });
    Answer::json(400, body.to_string())
}

/// The value of query parameter `name` of `request`, if it has one.
fn query_value(request: &Request, name: &str) -> Option<String> {
    form_urlencoded::parse(request.query().unwrap_or_default().as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// A number given in the query, `default` when the parameter is absent;
/// `Err` when it is not a number.
fn query_number(request: &Request, name: &str, default: usize) -> Result<usize, ()> {
    match query_value(request, name) {
        None => Ok(default),
        Some(value) => value.trim().parse::<usize>().map_err(|_| ()),
    }
}

/// The prefix of [`Dataset::paged_by_size`]'s continuation tokens; the
/// rest is the index of the next page's first item.
const SIZED_TOKEN_PREFIX: &str = "from-";

/// One page of a [`Dataset::paged_by_size`] collection.
fn sized_page(request: &Request, items: &[serde_json::Value], default_size: usize) -> Answer {
    let size = match query_number(request, "size", default_size) {
        Ok(size) if size > 0 => size,
        _ => return bad_request("size must be a positive number"),
    };
    let start = match request.header(CONTINUATION_HEADER) {
        None => Some(0),
        Some(token) => token
            .strip_prefix(SIZED_TOKEN_PREFIX)
            .and_then(|start| start.parse::<usize>().ok())
            .filter(|start| *start < items.len()),
    };
    let Some(start) = start else {
        return bad_request("Invalid continuation token");
    };
    let end = start.saturating_add(size).min(items.len());
    let mut body = serde_json::json!({
        "totalCount": end - start,
        "items": &items[start..end],
        "links": {
            "self": { "uri": request.target, "method": "GET", "headers": [] }
        },
        "attributes": { "objectType": "Collection" }
    });
    if end < items.len() {
        // Relative, as Partner Center's own are: the client resolves it
        // against the API root.
        body["links"]["next"] = serde_json::json!({
            "uri": format!("{}?size={size}&seekOperation=Next", request.path()),
            "method": "GET",
            "headers": [
                { "key": CONTINUATION_HEADER, "value": format!("{SIZED_TOKEN_PREFIX}{end}") }
            ]
        });
    }
    Answer::json(200, body.to_string())
}

/// One page of a commercial analytics dataset.
fn commercial_page(
    request: &Request,
    origin: &str,
    rows: &[serde_json::Value],
    page_size: usize,
    next_link: NextLink,
) -> Answer {
    let (top, skip) = match (
        query_number(request, "top", COMMERCIAL_MAX_TOP),
        query_number(request, "skip", 0),
    ) {
        (Ok(top), Ok(skip)) => (top.min(COMMERCIAL_MAX_TOP), skip),
        _ => return bad_request("top and skip must be numbers"),
    };
    let start = skip.min(rows.len());
    let end = start.saturating_add(top.min(page_size)).min(rows.len());
    let link = match next_link {
        // Only past rows given: a link back to the same page would never end.
        NextLink::Absolute if start < end && end < rows.len() => {
            serde_json::Value::String(format!("{origin}{}?top={top}&skip={end}", request.path()))
        }
        _ => serde_json::Value::Null,
    };
    let body = serde_json::json!({
        "Value": &rows[start..end],
        "@nextLink": link,
        "TotalCount": rows.len(),
    });
    Answer::json(200, body.to_string())
}

/// A partner-level collection of one demo partner, generated from the
/// wall-clock time of the request.
pub type GenerateFor = fn(PartnerFigures, SystemTime) -> serde_json::Value;

/// The demo's datasets: every source's path (below the API root) and the
/// moving collection served there, for any partner's [`PartnerFigures`].
pub const DEMO_DATASETS: [(&str, GenerateFor); 2] = [
    (LicenseUsageSource::PATH, usage_body_for),
    (LicenseDeploymentSource::PATH, deployment_body_for),
];

/// How one demo partner's partner-level figures move: the documented
/// example's series, on waves of the partner's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartnerFigures {
    /// Mixed into every series' seed, so that the waves of two partners
    /// differ in phase and centre; empty for [`PartnerFigures::DOCUMENTED`].
    pub salt: &'static str,
    /// Licences sold, in per cent of the documented example's.
    pub sold_percent: u32,
}

impl PartnerFigures {
    /// The documented example's figures, as the demo's first partner
    /// serves them.
    pub const DOCUMENTED: Self = Self {
        salt: "",
        sold_percent: 100,
    };
}

/// [`DEMO_DATASETS`] with the documented example's figures.
pub fn demo() -> impl Iterator<Item = (&'static str, Dataset)> {
    demo_for(PartnerFigures::DOCUMENTED)
}

/// [`DEMO_DATASETS`] with `figures`.
pub fn demo_for(figures: PartnerFigures) -> impl Iterator<Item = (&'static str, Dataset)> {
    DEMO_DATASETS
        .into_iter()
        .map(move |(path, generate)| (path, Dataset::generated(move |now| generate(figures, now))))
}

/// The (workload, service, channel) sets of Microsoft's documented license
/// usage example response.
pub const DOCUMENTED_USAGE_SERIES: [(&str, &str, &str); 5] = [
    ("Microsoft Dynamics CRM", "crm", "reseller"),
    ("SharePoint", "crm", "reseller"),
    ("Exchange", "o365", "reseller"),
    ("SharePoint", "o365", "reseller"),
    ("Skype For Business", "o365", "reseller"),
];

/// The (service, channel, licences sold) of Microsoft's documented license
/// deployment example.
pub const DOCUMENTED_DEPLOYMENT_SERIES: [(&str, &str, u32); 2] =
    [("crm", "reseller", 343), ("o365", "reseller", 4464)];

/// One full swing of a simulated series.
const WAVE_PERIOD_SECONDS: f64 = 600.0;

/// The license usage collection served at `now`: the documented example's
/// five series, each on its own slow wave, processed at today's midnight UTC.
pub fn usage_body(now: SystemTime) -> serde_json::Value {
    usage_body_for(PartnerFigures::DOCUMENTED, now)
}

/// [`usage_body`] with the waves of `figures`.
pub fn usage_body_for(figures: PartnerFigures, now: SystemTime) -> serde_json::Value {
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let midnight =
        chrono::DateTime::from_timestamp((seconds as i64).div_euclid(86_400) * 86_400, 0)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%S+00:00")
            .to_string();
    let items: Vec<serde_json::Value> = DOCUMENTED_USAGE_SERIES
        .iter()
        .map(|(workload, service, channel)| {
            serde_json::json!({
                "proratedLicensesUsagePercent": percent_for(figures, [workload, service, channel], seconds),
                "workloadName": workload,
                "processedDateTime": midnight,
                "serviceName": service,
                "channel": channel,
                "attributes": { "objectType": "PartnerLicensesUsageInsights" }
            })
        })
        .collect();
    serde_json::json!({
        "totalCount": items.len(),
        "items": items,
        "attributes": { "objectType": "Collection" }
    })
}

/// The license deployment collection served at `now`: the documented
/// example's two series, the deployment share on a slow wave and the
/// licences sold growing by a few a day.
pub fn deployment_body(now: SystemTime) -> serde_json::Value {
    deployment_body_for(PartnerFigures::DOCUMENTED, now)
}

/// [`deployment_body`] with the waves and licences sold of `figures`.
pub fn deployment_body_for(figures: PartnerFigures, now: SystemTime) -> serde_json::Value {
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let processed =
        chrono::DateTime::from_timestamp((seconds as i64).div_euclid(86_400) * 86_400, 0)
            .unwrap_or_default()
            // The documented example's form: fractional seconds and an offset.
            .format("%Y-%m-%dT%H:%M:%S%.3f+00:00")
            .to_string();
    let items: Vec<serde_json::Value> = DOCUMENTED_DEPLOYMENT_SERIES
        .iter()
        .map(|(service, channel, sold)| {
            let growth = (seconds / WAVE_PERIOD_SECONDS).rem_euclid(50.0).floor();
            let sold = (u64::from(*sold) * u64::from(figures.sold_percent) / 100).max(1);
            serde_json::json!({
                "proratedDeploymentPercent": percent_for(figures, ["deployment", service, channel], seconds),
                "licensesSold": sold as f64 + growth,
                "processedDateTime": processed,
                "serviceName": service,
                "channel": channel,
                "attributes": { "objectType": "PartnerLicensesDeploymentInsights" }
            })
        })
        .collect();
    serde_json::json!({
        "totalCount": items.len(),
        "items": items,
        "attributes": { "objectType": "Collection" }
    })
}

/// A value between 5 and 95 that follows a slow wave whose phase and
/// centre are fixed per series, so every series moves differently but the
/// same series always gives the same value at the same time.
pub fn simulated_percent(workload: &str, service: &str, channel: &str, unix_seconds: f64) -> f64 {
    wave_percent(fnv1a(&[workload, service, channel]), unix_seconds)
}

/// [`simulated_percent`] of a series of `figures`' partner: the
/// documented figures' own, or, salted, a wave of its own.
fn percent_for(figures: PartnerFigures, series: [&str; 3], unix_seconds: f64) -> f64 {
    let [workload, service, channel] = series;
    if figures.salt.is_empty() {
        return simulated_percent(workload, service, channel, unix_seconds);
    }
    wave_percent(
        fnv1a(&[figures.salt, workload, service, channel]),
        unix_seconds,
    )
}

/// The value at `unix_seconds` of the wave whose phase and centre `seed`
/// fixes.
fn wave_percent(seed: u64, unix_seconds: f64) -> f64 {
    let phase = (seed % 1000) as f64 / 1000.0 * TAU;
    let centre = 35.0 + ((seed >> 16) % 30) as f64;
    let value = centre + 30.0 * (TAU * unix_seconds / WAVE_PERIOD_SECONDS + phase).sin();
    (value.clamp(5.0, 95.0) * 100.0).round() / 100.0
}

/// FNV-1a over the parts, each ended by a zero byte so that ("ab", "c")
/// and ("a", "bc") differ.
fn fnv1a(parts: &[&str]) -> u64 {
    crate::secret::fnv1a(
        parts
            .iter()
            .flat_map(|part| part.bytes().chain(std::iter::once(0))),
    )
}

/// Which series the items of a generated collection belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variety {
    /// Every item its own series.
    Distinct,
    /// The items cycle over the documented example's five series, so a
    /// large answer still makes a five-series snapshot.
    Cycling,
}

/// A license usage collection of `items` items in the documented
/// example's shape, as text in Partner Center's layout; build it once and
/// serve it with [`Dataset::fixed`].
pub fn generated_usage(items: usize, variety: Variety) -> Vec<u8> {
    use std::fmt::Write;
    const SERVICES: [&str; 4] = ["o365", "crm", "azure", "intune"];
    const CHANNELS: [&str; 2] = ["reseller", "direct"];
    let mut out = String::with_capacity(items * 240 + 128);
    let _ = write!(out, "{{\"totalCount\": {items}, \"items\": [");
    let mut distinct_name = String::new();
    for index in 0..items {
        if index > 0 {
            out.push_str(", ");
        }
        let (workload, service, channel) = match variety {
            Variety::Distinct => {
                distinct_name.clear();
                let _ = write!(distinct_name, "Workload {index:06}");
                (
                    distinct_name.as_str(),
                    SERVICES[index % SERVICES.len()],
                    CHANNELS[index % CHANNELS.len()],
                )
            }
            Variety::Cycling => DOCUMENTED_USAGE_SERIES[index % DOCUMENTED_USAGE_SERIES.len()],
        };
        // Spread the values so the renderer formats real numbers, not only 0.
        let percent = (index % 10_000) as f64 / 100.0;
        let day = 1 + index % 28;
        let _ = write!(
            out,
            r#"{{"proratedLicensesUsagePercent": {percent}, "workloadName": "{workload}", "processedDateTime": "2024-05-{day:02}T00:00:00+00:00", "serviceName": "{service}", "channel": "{channel}", "attributes": {{"objectType": "PartnerLicensesUsageInsights"}}}}"#
        );
    }
    out.push_str("], \"attributes\": {\"objectType\": \"Collection\"}}");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::license_usage::decode_usage_page;
    use crate::sources::{Fetch, Source, SourceName};
    use std::time::Duration;

    #[test]
    fn every_partner_level_source_has_a_demo_dataset() {
        let mut collections = 0;
        for source in SourceName::ALL {
            if let Fetch::Collection(path) = source.fetch() {
                collections += 1;
                assert!(
                    DEMO_DATASETS.iter().any(|(served, _)| *served == path),
                    "{source} has no entry in DEMO_DATASETS"
                );
            }
        }
        assert_eq!(DEMO_DATASETS.len(), collections);
    }

    #[test]
    fn simulated_answer_decodes_to_the_documented_label_sets() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_123);
        let body = usage_body(now).to_string();
        let page = decode_usage_page(body.as_bytes()).expect("decodes");
        assert!(page.skipped.is_empty());
        let labels: Vec<(&str, &str, &str)> = page
            .items
            .iter()
            .map(|i| (i.workload.as_str(), i.service.as_str(), i.channel.as_str()))
            .collect();
        assert_eq!(labels, DOCUMENTED_USAGE_SERIES.to_vec());
        for item in &page.items {
            assert!((0.0..=100.0).contains(&item.prorated_percent), "{item:?}");
            assert_eq!(
                item.processed_at.timestamp(),
                1_700_000_123 / 86_400 * 86_400
            );
        }
    }

    #[test]
    fn simulated_deployment_decodes_to_the_documented_series() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_123);
        let body = deployment_body(now).to_string();
        let page = crate::partner_center::collection::decode_page(
            body.as_bytes(),
            LicenseDeploymentSource::decode_item,
        )
        .expect("decodes");
        assert!(page.skipped.is_empty());
        let series: Vec<(&str, &str)> = page
            .items
            .iter()
            .map(|i| (i.service.as_str(), i.channel.as_str()))
            .collect();
        assert_eq!(series, [("crm", "reseller"), ("o365", "reseller")]);
        for (item, (_, _, sold)) in page.items.iter().zip(DOCUMENTED_DEPLOYMENT_SERIES) {
            assert!((5.0..=95.0).contains(&item.prorated_percent), "{item:?}");
            assert!(item.licenses_sold >= f64::from(sold), "{item:?}");
        }
    }

    #[test]
    fn a_partners_figures_are_the_documented_series_on_waves_of_its_own() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_123);
        let documented = PartnerFigures::DOCUMENTED;
        assert_eq!(usage_body_for(documented, now), usage_body(now));
        assert_eq!(deployment_body_for(documented, now), deployment_body(now));
        let other = PartnerFigures {
            salt: "other",
            sold_percent: 15,
        };
        let usage =
            decode_usage_page(usage_body_for(other, now).to_string().as_bytes()).expect("decodes");
        let documented_usage =
            decode_usage_page(usage_body(now).to_string().as_bytes()).expect("decodes");
        let labels = |items: &[crate::sources::license_usage::LicenseUsage]| {
            items
                .iter()
                .map(|i| (i.workload.clone(), i.service.clone(), i.channel.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(labels(&usage.items), labels(&documented_usage.items));
        let differ = usage
            .items
            .iter()
            .zip(&documented_usage.items)
            .filter(|(ours, theirs)| ours.prorated_percent != theirs.prorated_percent)
            .count();
        assert!(differ >= 4, "{differ} of 5 series differ");
        let deployment = crate::partner_center::collection::decode_page(
            deployment_body_for(other, now).to_string().as_bytes(),
            LicenseDeploymentSource::decode_item,
        )
        .expect("decodes");
        let growth = (1_700_000_123.0 / WAVE_PERIOD_SECONDS)
            .rem_euclid(50.0)
            .floor();
        for (item, (_, _, sold)) in deployment.items.iter().zip(DOCUMENTED_DEPLOYMENT_SERIES) {
            assert_eq!(
                item.licenses_sold,
                f64::from(sold * 15 / 100) + growth,
                "{item:?}"
            );
            assert!((5.0..=95.0).contains(&item.prorated_percent), "{item:?}");
        }
    }

    #[test]
    fn values_are_deterministic_and_move_over_time() {
        let at = |seconds| simulated_percent("Exchange", "o365", "reseller", seconds);
        assert_eq!(at(1000.0), at(1000.0));
        assert_ne!(
            at(1000.0),
            at(1150.0),
            "a value must change within a few polls"
        );
        assert_ne!(
            simulated_percent("Exchange", "o365", "reseller", 1000.0),
            simulated_percent("SharePoint", "o365", "reseller", 1000.0),
            "series differ"
        );
        for step in 0..200 {
            let value = at(f64::from(step) * 7.0);
            assert!((5.0..=95.0).contains(&value), "{value}");
        }
    }

    #[test]
    fn generated_collections_decode_with_the_asked_variety() {
        let distinct = generated_usage(12, Variety::Distinct);
        let page = decode_usage_page(&distinct).expect("decodes");
        assert_eq!(page.items.len(), 12);
        assert!(page.skipped.is_empty());
        assert_eq!(page.items[11].workload, "Workload 000011");
        assert_eq!(page.items[11].prorated_percent, 0.11);
        let cycling = decode_usage_page(&generated_usage(12, Variety::Cycling)).expect("decodes");
        let workloads: std::collections::BTreeSet<_> =
            cycling.items.iter().map(|i| i.workload.as_str()).collect();
        assert_eq!(workloads.len(), 4, "five series over four workload names");
        assert_eq!(cycling.items[5].workload, DOCUMENTED_USAGE_SERIES[0].0);
        let empty = decode_usage_page(&generated_usage(0, Variety::Distinct)).expect("decodes");
        assert!(empty.items.is_empty());
    }
}
