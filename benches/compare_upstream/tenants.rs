//! The `tenants` mode of the fake Partner Center, for
//! `benches/tenants.sh`: N partner tenants, each a partner of its own on a
//! port of its own, with M customers of K subscribed SKUs each, serving the
//! path of every source:
//!
//! - `/v1/analytics/licenses/usage` and `/v1/analytics/licenses/deployment`:
//!   the demo's moving collections (Microsoft's documented examples);
//! - `/v1/customers`: the listing, paged by `size` with `links.next` and
//!   `MS-ContinuationToken`;
//! - `/v1/customers/{id}/subscribedskus`: the customer's K SKUs, built as
//!   the `customers` mode builds them (`customers.rs`);
//! - `/v1/customers/{id}/subscriptions`: one new-commerce subscription per
//!   SKU, its seats the SKU's units, of monthly, annual and triennial
//!   terms; and `…/subscriptions/{id}/provisioningstatus` of each, naming
//!   the SKU;
//! - `/partner/v1/analytics/commercial/usage/license` and
//!   `…/deployment/license`: the commercial reports' rows of every
//!   customer (two to four workloads per SKU for the usage, one row per
//!   SKU for the deployment), in server pages of 10,000 rows, the usage
//!   paged by `skip`, the deployment by `@nextLink`. Served under
//!   `/partner/v1`, the prefix `commercial_api_prefix: auto` tries first.
//!
//! Every tenant's customers are its own (names, IDs and licences from a
//! seed of the tenant's), fixed at every start so that runs compare; the
//! bodies are built once, so that serving costs next to nothing but the
//! commercial pages' serialisation. All ports are served by one runtime
//! with one worker thread, leaving the other core of a two-core machine
//! to the exporter.
//!
//! Routes besides Partner Center's, on every port:
//! - `/_stats`: that tenant's counts, as `key value` lines: `requests`
//!   (every Partner Center request), `listing_requests`, `sku_requests`,
//!   `subscription_requests`, `lookup_requests`, `commercial_requests`.

use std::time::SystemTime;

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use partner_center_exporter::simulator::datasets::{self, COMMERCIAL_MAX_TOP, NextLink};
use partner_center_exporter::simulator::demo_partner::{
    CUSTOMERS_PATH, Customer, customer_listing, subscribed_skus_path,
};
use partner_center_exporter::simulator::demo_subscriptions::{
    provisioning_status_path, subscriptions_path,
};
use partner_center_exporter::simulator::{Answer, Dataset, RequestLog, Simulator};
use serde_json::{Value, json};

use crate::customers;

/// The seed of tenant 0; tenant `t`'s is this plus `t`.
const SEED: u64 = 0x7e4a_4175;
/// Requests kept whole in each tenant's record: none are read back, the
/// counts (kept whole anyway) are what `/_stats` reports.
const RECORD_LIMIT: usize = 100;
/// Customers per listing page when a request gives no `size`.
const DEFAULT_PAGE_SIZE: usize = 100;
/// The commercial reports' root served, the first `auto` tries.
const COMMERCIAL_ROOT: &str = "/partner/v1";

/// A workload of the usage rows: (code, name), by a service plan's name.
fn workload(service_plan: &str) -> Option<(&'static str, &'static str)> {
    Some(match service_plan {
        "EXCHANGE_S_ENTERPRISE" | "EXCHANGE_S_STANDARD" => ("EXO", "Exchange"),
        "SHAREPOINTENTERPRISE" | "SHAREPOINTSTANDARD" => ("SPO", "SharePoint"),
        "TEAMS1" => ("TEAMS", "Microsoft Teams"),
        "OFFICESUBSCRIPTION" | "OFFICE_BUSINESS" => ("PROPLUS", "Microsoft 365 Apps"),
        "YAMMER_ENTERPRISE" => ("YAM", "Yammer"),
        "INTUNE_A" => ("INTUNE", "Microsoft Intune"),
        "AAD_PREMIUM" | "AAD_PREMIUM_P2" => ("AAD", "Microsoft Entra ID"),
        "MCOEV" | "MCOMEETADV" => ("SFB", "Skype for Business"),
        "BI_AZURE_P2" => ("PBI", "Power BI"),
        "PROJECT_CLIENT_SUBSCRIPTION" => ("PROJECT", "Project"),
        "VISIO_CLIENT_SUBSCRIPTION" => ("VISIO", "Visio"),
        "FORMS_PLAN_E3" => ("FORMS", "Microsoft Forms"),
        "POWERAPPS_PER_USER" | "POWERAPPS_O365_P2" => ("POWERAPPS", "Power Apps"),
        "FLOW_O365_P2" => ("FLOW", "Power Automate"),
        "ATP_ENTERPRISE" | "WINDEFATP" => ("DEFENDER", "Microsoft Defender"),
        _ => return None,
    })
}

/// A random GUID, lower-case, from `rng`.
fn guid(rng: &mut fastrand::Rng) -> String {
    let bits = rng.u128(..);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-4{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[13..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Upper-case letters and digits, as in a catalogue ID.
fn catalogue_code(rng: &mut fastrand::Rng, length: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRSTVWXZ";
    (0..length)
        .map(|_| char::from(ALPHABET[rng.usize(..ALPHABET.len())]))
        .collect()
}

/// A day as Partner Center writes one: `2026-12-08T00:00:00Z`.
fn day(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT00:00:00Z").to_string()
}

/// An instant as Partner Center writes one, with seven fractional digits.
fn instant(at: DateTime<Utc>) -> String {
    format!(
        "{}.{:07}Z",
        at.format("%Y-%m-%dT%H:%M:%S"),
        at.timestamp_subsec_nanos() / 100
    )
}

fn number(value: &Value, field: &str) -> u64 {
    value[field].as_u64().unwrap_or(0)
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or_default()
}

/// One customer of one tenant: its listing entry, its SKUs and what is
/// derived from them.
struct Built {
    paths: Vec<(String, Dataset)>,
    usage_rows: Vec<Value>,
    deployment_rows: Vec<Value>,
}

/// The subscription of one SKU, shaped as Microsoft's new-commerce
/// example, and its provisioning status.
fn subscription(
    rng: &mut fastrand::Rng,
    customer_id: &str,
    sku: &Value,
    now: DateTime<Utc>,
) -> (String, Value, Value) {
    let id = guid(rng);
    let product = &sku["productSku"];
    let sku_id = text(product, "id");
    let name = text(product, "name");
    let suspended = text(sku, "capabilityStatus") == "Suspended";
    let seats = number(sku, "totalUnits") + number(sku, "suspendedUnits");
    // Monthly, annual (billed annually or monthly) and triennial terms.
    let (term, months, billing) = match rng.u32(0..10) {
        0..=2 => ("P1M", 1, "monthly"),
        3..=5 => ("P1Y", 12, "annual"),
        6..=8 => ("P1Y", 12, "monthly"),
        _ => ("P3Y", 36, "triennial"),
    };
    let term_days = i64::from(months) * 30;
    let left = TimeDelta::days(rng.i64(0..term_days));
    let end = now + left;
    let start = end - TimeDelta::days(term_days);
    // Seats can be reduced for seven days after a purchase, a renewal or a
    // seat addition: mostly past, open for a few.
    let last_change = if rng.u32(0..20) == 0 {
        now - TimeDelta::hours(rng.i64(1..160))
    } else {
        start
    };
    let offer = format!(
        "{}:0001:{}",
        catalogue_code(rng, 12),
        catalogue_code(rng, 12)
    );
    let link = |uri: String| json!({ "uri": uri, "method": "GET", "headers": [] });
    let mut item = json!({
        "id": id,
        "offerId": offer,
        "offerName": name,
        "friendlyName": name,
        "productType": { "id": "OnlineServicesNCE", "displayName": "OnlineServicesNCE" },
        "quantity": seats,
        "unitType": "Licenses",
        "hasPurchasableAddons": false,
        "creationDate": instant(start),
        "effectiveStartDate": day(start),
        "commitmentEndDate": day(end),
        "status": if suspended { "suspended" } else { "active" },
        "autoRenewEnabled": !suspended && rng.u32(0..7) != 0,
        "isTrial": false,
        "billingType": "license",
        "billingCycle": billing,
        "termDuration": term,
        "renewalTermDuration": "",
        "isMicrosoftProduct": true,
        "partnerId": "",
        "attentionNeeded": false,
        "actionTaken": false,
        "contractType": "subscription",
        "links": {
            "product": link(format!("/products/{}?country=US", &offer[..12])),
            "self": link(format!("/customers/{customer_id}/subscriptions/{id}")),
        },
        "publisherName": "Microsoft",
        "orderId": catalogue_code(rng, 32).to_lowercase(),
        "attributes": { "objectType": "Subscription" }
    });
    item["cancellationAllowedUntilDate"] = instant(last_change + TimeDelta::days(7)).into();
    let status = json!({
        // Upper-case, as Partner Center sends it.
        "skuId": sku_id.to_uppercase(),
        "status": "success",
        "quantity": seats,
        "endDate": day(end),
        "attributes": { "objectType": "SubscriptionProvisioningStatus" }
    });
    (id, item, status)
}

/// Everything served about `customer`, of `skus` SKUs.
fn customer_paths(
    rng: &mut fastrand::Rng,
    customer: &Customer,
    skus: usize,
    now: DateTime<Utc>,
    processed: &str,
) -> Built {
    let items = customers::sku_items(rng, skus);
    let mut paths = Vec::with_capacity(2 + items.len());
    let mut usage_rows = Vec::new();
    let mut deployment_rows = Vec::with_capacity(items.len());
    let mut subscriptions = Vec::with_capacity(items.len());
    for sku in &items {
        let (id, item, status) = subscription(rng, &customer.id, sku, now);
        paths.push((
            provisioning_status_path(&customer.id, &id),
            Dataset::fixed(status.to_string()),
        ));
        subscriptions.push(item);
        if text(sku, "capabilityStatus") == "Suspended" {
            continue;
        }
        let product = &sku["productSku"];
        let row = |extra: Value| {
            let mut row = json!({
                "processedDateTime": processed,
                "serviceCode": "o365",
                "serviceName": "Microsoft Office 365",
                "channel": "reseller",
                "customerTenantId": customer.id.to_uppercase(),
                "customerName": customer.name,
                "productId": text(product, "id").to_uppercase(),
                "productName": text(product, "name").to_uppercase(),
            });
            if let (Some(row), Value::Object(extra)) = (row.as_object_mut(), extra) {
                row.extend(extra);
            }
            row
        };
        let sold = number(sku, "totalUnits");
        let assigned = number(sku, "consumedUnits");
        deployment_rows.push(row(json!({
            "licensesDeployed": assigned,
            "licensesSold": sold,
        })));
        // Each workload once, though several of the SKU's plans may serve it.
        let mut workloads: Vec<(&str, &str)> = Vec::new();
        for plan in sku["servicePlans"].as_array().into_iter().flatten() {
            if let Some(found) = workload(text(plan, "serviceName"))
                && !workloads.contains(&found)
            {
                workloads.push(found);
            }
        }
        let wanted = rng.usize(2..=4).min(workloads.len());
        for (code, name) in workloads.into_iter().take(wanted) {
            let share = 0.5 + 0.45 * rng.f64();
            let active = ((assigned.min(sold) as f64) * share).round() as u64;
            usage_rows.push(row(json!({
                "workloadCode": code,
                "workloadName": name,
                "licensesActive": active,
                "licensesQualified": sold,
            })));
        }
    }
    paths.push((
        subscribed_skus_path(&customer.id),
        Dataset::fixed(customers::sku_collection(items)),
    ));
    let collection = json!({
        "totalCount": subscriptions.len(),
        "items": subscriptions,
        "links": {
            "self": {
                "uri": format!("/customers/{}/subscriptions", customer.id),
                "method": "GET",
                "headers": []
            }
        },
        "attributes": { "objectType": "Collection" }
    });
    paths.push((
        subscriptions_path(&customer.id),
        Dataset::fixed(Bytes::from(collection.to_string())),
    ));
    Built {
        paths,
        usage_rows,
        deployment_rows,
    }
}

/// Every path one tenant serves, of `customers` customers of `skus` SKUs.
fn tenant_paths(tenant: usize, customers: usize, skus: usize) -> Vec<(String, Dataset)> {
    let mut rng = fastrand::Rng::with_seed(SEED + tenant as u64);
    let now = DateTime::<Utc>::from(SystemTime::now());
    // The commercial rows are refreshed daily: processed at yesterday's midnight.
    let processed = (now - TimeDelta::days(1))
        .format("%Y-%m-%dT00:00:00")
        .to_string();
    let listed: Vec<Customer> = customers::names(&mut rng, customers)
        .iter()
        .enumerate()
        .map(|(index, name)| Customer {
            // The tenant's own: two tenants' customers of one name differ.
            id: guid(&mut rng),
            name: name.clone(),
            domain: format!("{}.onmicrosoft.com", customers::label(name)),
            // One in ten through an advisor, as some partners' are.
            relationship: if index % 10 == 7 {
                "advisor"
            } else {
                "reseller"
            }
            .to_owned(),
        })
        .collect();
    let mut served: Vec<(String, Dataset)> = datasets::demo()
        .map(|(path, dataset)| (path.to_owned(), dataset))
        .collect();
    served.push((
        CUSTOMERS_PATH.to_owned(),
        customer_listing(&listed, DEFAULT_PAGE_SIZE),
    ));
    let mut usage_rows = Vec::new();
    let mut deployment_rows = Vec::new();
    for customer in &listed {
        let built = customer_paths(&mut rng, customer, skus, now, &processed);
        served.extend(built.paths);
        usage_rows.extend(built.usage_rows);
        deployment_rows.extend(built.deployment_rows);
    }
    served.push((
        format!("{COMMERCIAL_ROOT}/analytics/commercial/usage/license"),
        Dataset::commercial(usage_rows, COMMERCIAL_MAX_TOP, NextLink::Null),
    ));
    served.push((
        format!("{COMMERCIAL_ROOT}/analytics/commercial/deployment/license"),
        Dataset::commercial(deployment_rows, COMMERCIAL_MAX_TOP, NextLink::Absolute),
    ));
    served
}

/// The `/_stats` page of one tenant.
fn stats(log: &RequestLog) -> String {
    let (mut all, mut skus, mut subscriptions, mut lookups, mut commercial) = (0, 0, 0, 0, 0);
    let mut listing = 0;
    for (path, count) in log.counts() {
        if path.starts_with("/_") {
            continue;
        }
        all += count;
        if path == CUSTOMERS_PATH {
            listing += count;
        } else if path.ends_with("/subscribedskus") {
            skus += count;
        } else if path.ends_with("/subscriptions") {
            subscriptions += count;
        } else if path.ends_with("/provisioningstatus") {
            lookups += count;
        } else if path.contains("/analytics/commercial/") {
            commercial += count;
        }
    }
    format!(
        "requests {all}\nlisting_requests {listing}\nsku_requests {skus}\n\
         subscription_requests {subscriptions}\nlookup_requests {lookups}\n\
         commercial_requests {commercial}\n"
    )
}

/// Serves `tenants` partners of `customers` customers of `skus` SKUs each,
/// each on a port of its own, until stopped; writes the ports to
/// `port_file`, one a line in the tenants' order, once all listen.
pub fn serve(tenants: usize, customers: usize, skus: usize, port_file: &str) -> Result<(), String> {
    if skus > customers::MAX_SKUS {
        return Err(format!(
            "--skus is at most {}: a suite and the catalogue's add-ons",
            customers::MAX_SKUS
        ));
    }
    if tenants == 0 {
        return Err("--tenants must be at least 1".to_owned());
    }
    let served: Vec<Vec<(String, Dataset)>> = (0..tenants)
        .map(|tenant| tenant_paths(tenant, customers, skus))
        .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))?;
    runtime.block_on(async move {
        let mut simulators = Vec::with_capacity(tenants);
        for paths in served {
            let simulator = Simulator::builder()
                .record_limit(RECORD_LIMIT)
                .datasets(paths)
                .route("/_stats", |log| Answer::new(200, "text/plain", stats(log)))
                .start()
                .await
                .map_err(|err| format!("cannot listen on 127.0.0.1: {err}"))?;
            simulators.push(simulator);
        }
        let ports: String = simulators
            .iter()
            .map(|simulator| format!("{}\n", simulator.address().port()))
            .collect();
        let partial = format!("{port_file}.partial");
        std::fs::write(&partial, ports)
            .and_then(|()| std::fs::rename(&partial, port_file))
            .map_err(|err| format!("cannot write {port_file}: {err}"))?;
        // Serves until the script stops it.
        std::future::pending::<()>().await;
        drop(simulators);
        Ok(())
    })
}
