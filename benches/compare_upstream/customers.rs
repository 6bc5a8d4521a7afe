//! The `customers` mode of the fake Partner Center, for
//! `benches/customers.sh`: a partner with N customers, each with K
//! subscribed SKUs, served as Partner Center serves them (the listing
//! paged by `size` with `links.next` and `MS-ContinuationToken`, one
//! `SubscribedSku` collection per customer), from bodies built once so
//! that the fake spends next to nothing per request on the two cores it
//! shares with the exporter.
//!
//! Everything comes from a fixed seed: the same customers, SKUs and units
//! at every start, so runs compare.
//!
//! Routes besides Partner Center's:
//! - `/_stats`: counts, as `key value` lines;
//! - `/_arrivals`: when each Partner Center request in the record arrived,
//!   in seconds since the fake started (the budget's achieved rate);
//! - `/_hang`: from now on every listing request is read and never
//!   answered, so that the exporter sits idle after its last complete
//!   poll (the steady memory and the idle scrape latency are read then).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use partner_center_exporter::simulator::demo_partner::{
    CUSTOMERS_PATH, Customer, customer_listing, subscribed_skus_path,
};
use partner_center_exporter::simulator::{Answer, Dataset, RequestLog, Simulator, Step};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The seed of every choice made here.
const SEED: u64 = 0x5eed_c0de;
/// Requests kept whole in the record: a budget run's ~1,200 many times
/// over; older ones (of the unbudgeted runs) are only counted.
const RECORD_LIMIT: usize = 50_000;
/// Customers per listing page when a request gives no `size`; the
/// exporter always gives one (`customers.page_size`).
const DEFAULT_PAGE_SIZE: usize = 100;
/// Not yet armed, in [`Control::hung_after`].
const NOT_ARMED: u64 = u64::MAX;

/// A service plan: display name, service name, ID, target type.
type Plan = (&'static str, &'static str, &'static str, &'static str);

const EXO_P2: Plan = (
    "Exchange Online (Plan 2)",
    "EXCHANGE_S_ENTERPRISE",
    "efb87545-963c-4e0d-99df-69c6916d9eb0",
    "User",
);
const EXO_P1: Plan = (
    "Exchange Online (Plan 1)",
    "EXCHANGE_S_STANDARD",
    "9aaf7827-d63c-4b61-89c3-182f06f82e5c",
    "User",
);
const EXO_FOUNDATION: Plan = (
    "Exchange Foundation",
    "EXCHANGE_S_FOUNDATION",
    "113feb6c-3fe4-4440-bddc-54d774bf0318",
    "Tenant",
);
const SPO_P2: Plan = (
    "SharePoint (Plan 2)",
    "SHAREPOINTENTERPRISE",
    "5dbe027f-2339-4123-9542-606e4d348a72",
    "User",
);
const SPO_P1: Plan = (
    "SharePoint (Plan 1)",
    "SHAREPOINTSTANDARD",
    "c7699d2e-19aa-44de-8edf-1736da088ca1",
    "User",
);
const TEAMS: Plan = (
    "Microsoft Teams",
    "TEAMS1",
    "57ff2da0-773e-42df-b2af-ffb7a2317929",
    "User",
);
const APPS: Plan = (
    "Microsoft 365 Apps for enterprise",
    "OFFICESUBSCRIPTION",
    "43de0ff5-c92c-492b-9116-175376d08c38",
    "User",
);
const APPS_BUSINESS: Plan = (
    "Microsoft 365 Apps for business",
    "OFFICE_BUSINESS",
    "094e7854-93fc-4d55-b2c0-3ab5369ebdc1",
    "User",
);
const YAMMER: Plan = (
    "Yammer Enterprise",
    "YAMMER_ENTERPRISE",
    "7547a3fe-08ee-4ccb-b430-5077c5041653",
    "User",
);
const INTUNE: Plan = (
    "Microsoft Intune A Direct",
    "INTUNE_A",
    "c1ec4a95-1f05-45b3-a911-aa3fa01094f5",
    "User",
);
const AAD_P1: Plan = (
    "Azure Active Directory Premium P1",
    "AAD_PREMIUM",
    "41781fb2-bc02-4b7c-bd55-b576c07bb09d",
    "User",
);
const AAD_P2: Plan = (
    "Azure Active Directory Premium P2",
    "AAD_PREMIUM_P2",
    "eec0eb4f-6444-4f95-aba0-50c24d67f998",
    "User",
);
const RMS_P1: Plan = (
    "Azure Information Protection Premium P1",
    "RMS_S_PREMIUM",
    "6c57d4b6-3b23-47a5-9bc9-69f17b4947b3",
    "User",
);
const RMS: Plan = (
    "Microsoft Azure Active Directory Rights",
    "RMS_S_ENTERPRISE",
    "bea4c11e-220a-4e6d-8eb8-8ea15d019f90",
    "User",
);
const MFA: Plan = (
    "Microsoft Azure Multi-Factor Authentication",
    "MFA_PREMIUM",
    "8a256a2b-b617-496d-b51b-e76466e88db0",
    "User",
);
const POWER_BI: Plan = (
    "Power BI Pro",
    "BI_AZURE_P2",
    "70d33638-9c74-4d01-bfd3-562de28bd4ba",
    "User",
);
const VISIO: Plan = (
    "Visio Desktop App",
    "VISIO_CLIENT_SUBSCRIPTION",
    "663a804f-1c30-4ff0-9915-9db84f0d1cea",
    "User",
);
const PROJECT: Plan = (
    "Project Online Desktop Client",
    "PROJECT_CLIENT_SUBSCRIPTION",
    "fafd7243-e5c1-4a3a-9e40-495efcb1d3c3",
    "User",
);
const FORMS: Plan = (
    "Microsoft Forms (Plan E3)",
    "FORMS_PLAN_E3",
    "2789c901-c14e-48ab-a76a-be334d9d793a",
    "User",
);
const SWAY: Plan = (
    "Sway",
    "SWAY",
    "a23b959c-7ce8-4e57-9140-b90eb88a9e97",
    "User",
);
const FLOW_O365: Plan = (
    "Power Automate for Office 365",
    "FLOW_O365_P2",
    "76846ad7-7776-4c40-a281-a386362dd1b9",
    "User",
);
const POWERAPPS_O365: Plan = (
    "Power Apps for Office 365",
    "POWERAPPS_O365_P2",
    "c68f8d98-5534-41c8-bf36-22fa496fa792",
    "User",
);
const POWERAPPS: Plan = (
    "Power Apps per User",
    "POWERAPPS_PER_USER",
    "ea2cf03b-ac60-46ae-9c1d-eeaeb63cec86",
    "User",
);
const DEFENDER_O365: Plan = (
    "Microsoft Defender for Office 365 (Plan 1)",
    "ATP_ENTERPRISE",
    "f20fedf3-f3c3-43c3-8267-2bfdd51c0939",
    "User",
);
const DEFENDER_ENDPOINT: Plan = (
    "Microsoft Defender for Endpoint",
    "WINDEFATP",
    "871d91ec-ec1a-452b-a83f-bd76c7d770ef",
    "User",
);
const PHONE: Plan = (
    "Microsoft 365 Phone System",
    "MCOEV",
    "4828c8ec-dc2e-4779-b502-87ac9ce28ab7",
    "User",
);
const CONFERENCING: Plan = (
    "Microsoft 365 Audio Conferencing",
    "MCOMEETADV",
    "3e26ee1f-8a5f-4d52-aee2-b81ce45c8f40",
    "User",
);

/// A product of the catalogue: ID, part number, name, service plans.
type Product = (&'static str, &'static str, &'static str, &'static [Plan]);

/// Suites, one per customer, chosen by the customer's size.
#[rustfmt::skip]
const SUITES: [Product; 7] = [
    ("3b555118-da6a-4418-894f-7df1e2096870", "O365_BUSINESS_ESSENTIALS", "Microsoft 365 Business Basic", &[EXO_P1, SPO_P1, TEAMS, FORMS, SWAY]),
    ("f245ecc8-75af-4f8e-b61f-27d8114de5f3", "O365_BUSINESS_PREMIUM", "Microsoft 365 Business Standard", &[EXO_P1, SPO_P1, TEAMS, APPS_BUSINESS, FORMS, SWAY, FLOW_O365]),
    ("cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46", "SPB", "Microsoft 365 Business Premium", &[EXO_P1, SPO_P1, TEAMS, APPS_BUSINESS, INTUNE, AAD_P1, DEFENDER_O365, RMS_P1]),
    ("18181a46-0d4e-45cd-891e-60aabd171b4e", "STANDARDPACK", "Office 365 E1", &[EXO_P1, SPO_P1, TEAMS, YAMMER, FORMS, SWAY]),
    ("6fd2c87f-b296-42f0-b197-1e91e994b900", "ENTERPRISEPACK", "Office 365 E3", &[EXO_P2, SPO_P2, TEAMS, APPS, YAMMER, FORMS, SWAY, FLOW_O365, POWERAPPS_O365]),
    ("05e9a617-0261-4cee-bb44-138d3ef5d965", "SPE_E3", "Microsoft 365 E3", &[EXO_P2, SPO_P2, TEAMS, APPS, INTUNE, AAD_P1, RMS_P1, MFA, FORMS, FLOW_O365]),
    ("06ebc4ee-1bb5-47dd-8120-11324bc54e06", "SPE_E5", "Microsoft 365 E5", &[EXO_P2, SPO_P2, TEAMS, APPS, INTUNE, AAD_P2, RMS_P1, DEFENDER_O365, DEFENDER_ENDPOINT, PHONE, CONFERENCING, POWER_BI]),
];

/// Add-ons, a customer's others picked from these at random; each with
/// the seats it has per hundred people, at most.
#[rustfmt::skip]
const ADD_ONS: [(Product, u32); 16] = [
    (("efccb6f7-5641-4e0e-bd10-b4976e1bf68e", "EMS", "Enterprise Mobility + Security E3", &[RMS_P1, INTUNE, RMS, AAD_P1, MFA]), 80),
    (("b05e124f-c7cc-45a0-a6aa-8cf78c946968", "EMSPREMIUM", "Enterprise Mobility + Security E5", &[RMS_P1, INTUNE, RMS, AAD_P2, MFA]), 40),
    (("f8a1db68-be16-40ed-86d5-cb42ce701560", "POWER_BI_PRO", "Power BI Pro", &[EXO_FOUNDATION, POWER_BI]), 30),
    (("4b9405b0-7788-4568-add1-99614e613b69", "EXCHANGESTANDARD", "Exchange Online (Plan 1)", &[EXO_P1]), 25),
    (("19ec0d23-8335-4cbd-94ac-6050e30712fa", "EXCHANGEENTERPRISE", "Exchange Online (Plan 2)", &[EXO_P2]), 10),
    (("c5928f49-12ba-48f7-ada3-0d743a3601d5", "VISIOCLIENT", "Visio Plan 2", &[EXO_FOUNDATION, VISIO]), 6),
    (("53818b1b-4a27-454b-8896-0dba576410e6", "PROJECTPROFESSIONAL", "Project Plan 3", &[EXO_FOUNDATION, SPO_P1, PROJECT]), 6),
    (("078d2b04-f1bd-4111-bbd4-b4b1b354cef4", "AAD_PREMIUM", "Microsoft Entra ID P1", &[AAD_P1, MFA]), 50),
    (("84a661c4-e949-4bd2-a560-ed7766fcaf2b", "AAD_PREMIUM_P2", "Microsoft Entra ID P2", &[AAD_P1, AAD_P2, MFA]), 20),
    (("061f9ace-7d42-4136-88ac-31dc755f143f", "INTUNE_A", "Intune", &[EXO_FOUNDATION, INTUNE]), 60),
    (("4ef96642-f096-40de-a3e9-d83fb2f90211", "ATP_ENTERPRISE", "Microsoft Defender for Office 365 (Plan 1)", &[DEFENDER_O365]), 70),
    (("111046dd-295b-4d6d-9724-d52ac90bd1f2", "WIN_DEF_ATP", "Microsoft Defender for Endpoint", &[EXO_FOUNDATION, DEFENDER_ENDPOINT]), 70),
    (("e43b5b99-8dfb-405f-9987-dc307f34bcbd", "MCOEV", "Microsoft Teams Phone Standard", &[PHONE]), 15),
    (("0c266dff-15dd-4b49-8397-2bb16070ed52", "MCOMEETADV", "Microsoft Teams Audio Conferencing", &[CONFERENCING]), 20),
    (("b30411f5-fea1-4a59-9ad9-3db7c7ead579", "POWERAPPS_PER_USER", "Power Apps per user plan", &[EXO_FOUNDATION, POWERAPPS]), 8),
    (("710779e8-3d4a-4c88-adb9-386c958d1fdf", "TEAMS_EXPLORATORY", "Microsoft Teams Exploratory", &[EXO_P1, SPO_P1, TEAMS]), 15),
];

/// Customers' names are built from a stem, a trade and a legal form:
/// Microsoft's fictitious companies in the variety a large partner has.
const STEMS: [&str; 40] = [
    "Contoso",
    "Fabrikam",
    "Northwind",
    "Adventure Works",
    "Tailspin",
    "Wingtip",
    "Litware",
    "Woodgrove",
    "Proseware",
    "Lucerne",
    "Margie's",
    "Alpine Ski",
    "Coho",
    "Trey",
    "Fourth Coffee",
    "Wide World",
    "Blue Yonder",
    "City Power & Light",
    "Consolidated",
    "Graphic Design",
    "Humongous",
    "Southridge",
    "VanArsdel",
    "Relecloud",
    "Munson's",
    "A. Datum",
    "Best For You",
    "Bellows",
    "Tailwind",
    "Lamna",
    "Liberty's",
    "Nod",
    "Olympia",
    "Wide Horizon",
    "Boulangerie Émile",
    "Müller & Söhne",
    "Baldwin",
    "Kiruna",
    "São Bento",
    "Zürich Alpen",
];
const TRADES: [&str; 25] = [
    "Traders",
    "Health",
    "Logistics",
    "Bank",
    "Insurance",
    "Energy",
    "Foods",
    "Engineering",
    "Legal",
    "Consulting",
    "Pharmaceuticals",
    "Electronics",
    "Manufacturing",
    "Retail",
    "Media",
    "Architects",
    "Dental Care",
    "Travel",
    "Construction",
    "Software",
    "Hotels",
    "Motors",
    "Textiles",
    "Analytics",
    "Publishing",
];
const FORMS_OF_COMPANY: [&str; 8] = [
    "", " Ltd", " GmbH", " Inc.", " S.A.", " B.V.", " Pty Ltd", " AB",
];

/// The most SKUs a customer can have: a suite and every add-on.
pub const MAX_SKUS: usize = 1 + ADD_ONS.len();

/// What the routes of the fake share with its main task.
struct Control {
    started: Instant,
    /// Wakes the main task to make every listing request hang.
    hang: Notify,
    /// The listing requests counted when the hang was armed.
    hung_after: AtomicU64,
    customers: usize,
    skus: usize,
    /// The SKU collections' bytes, all customers together: one poll's worth.
    sku_bytes: usize,
}

/// `count` distinct customer names, in the listing's (shuffled) order.
pub fn names(rng: &mut fastrand::Rng, count: usize) -> Vec<String> {
    let mut names = Vec::with_capacity(STEMS.len() * TRADES.len() * FORMS_OF_COMPANY.len());
    for stem in STEMS {
        for trade in TRADES {
            for form in FORMS_OF_COMPANY {
                names.push(format!("{stem} {trade}{form}"));
            }
        }
    }
    rng.shuffle(&mut names);
    // Beyond the combinations, numbered branches keep names distinct
    // (the tenant IDs derive from them).
    let combinations = names.len();
    for extra in combinations..count {
        let branch = names[extra % combinations].clone();
        names.push(format!("{branch} (branch {})", extra / combinations));
    }
    names.truncate(count);
    names
}

/// The customer's domain label: its name's letters and digits, lower-case.
pub fn label(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(27)
        .collect()
}

/// One `SubscribedSku` item, shaped as `tests/fixtures/subscribed-skus.json`.
fn sku_item(rng: &mut fastrand::Rng, product: &Product, units: u32) -> serde_json::Value {
    let (id, part_number, name, plans) = *product;
    let units = units.max(1);
    // Mostly seats to spare, some over-assigned, a few in their grace
    // period or suspended, as a partner's tenants are.
    let (mut active, mut warning, mut suspended, mut consumed, capability);
    let roll = rng.u32(0..100);
    active = units;
    warning = 0;
    suspended = 0;
    consumed = (f64::from(units) * (0.55 + 0.43 * rng.f64())).round() as u32;
    capability = match roll {
        0..=2 => {
            consumed = units + 1 + units / 20;
            "Enabled"
        }
        3..=4 => {
            warning = (units / 5).max(1);
            active = units.saturating_sub(warning);
            "Warning"
        }
        5 => {
            suspended = units;
            active = 0;
            consumed = 0;
            "Suspended"
        }
        _ => "Enabled",
    };
    let total = active + warning;
    let plans: Vec<serde_json::Value> = plans
        .iter()
        .map(|(display, service, plan_id, target)| {
            serde_json::json!({
                "displayName": display,
                "serviceName": service,
                "id": plan_id,
                "capabilityStatus": capability,
                "targetType": target
            })
        })
        .collect();
    serde_json::json!({
        "availableUnits": total.saturating_sub(consumed),
        "activeUnits": active,
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
        "servicePlans": plans,
        "capabilityStatus": capability,
        "attributes": { "objectType": "SubscribedSku" }
    })
}

/// A customer's collection of `skus` SKUs: a suite fitting its size,
/// then distinct add-ons; under 10,000 units each, so that
/// `skus.max_units` keeps them all.
fn subscribed_skus(rng: &mut fastrand::Rng, skus: usize) -> Bytes {
    sku_collection(sku_items(rng, skus))
}

/// The `SubscribedSku` items of [`subscribed_skus`], one per SKU.
pub fn sku_items(rng: &mut fastrand::Rng, skus: usize) -> Vec<serde_json::Value> {
    // People per company: log-uniform from 5 to 5,000.
    let people = (5.0 * 1000f64.powf(rng.f64())).round() as u32;
    let suite = match people {
        0..=30 => &SUITES[rng.usize(0..2)],
        31..=300 => &SUITES[rng.usize(1..4)],
        _ => &SUITES[rng.usize(4..7)],
    };
    let mut items = Vec::with_capacity(skus);
    if skus > 0 {
        items.push(sku_item(rng, suite, people + people / 20));
    }
    let mut add_ons: Vec<&(Product, u32)> = ADD_ONS.iter().collect();
    rng.shuffle(&mut add_ons);
    for (product, per_hundred) in add_ons.into_iter().take(skus.saturating_sub(1)) {
        let share = f64::from(*per_hundred) / 100.0 * (0.2 + 0.8 * rng.f64());
        items.push(sku_item(
            rng,
            product,
            (f64::from(people) * share).round() as u32,
        ));
    }
    items
}

/// `items` as a customer's collection of subscribed SKUs.
pub fn sku_collection(items: Vec<serde_json::Value>) -> Bytes {
    serde_json::json!({
        "totalCount": items.len(),
        "items": items,
        "attributes": { "objectType": "Collection" }
    })
    .to_string()
    .into()
}

/// The `/_stats` page.
fn stats(control: &Control, log: &RequestLog) -> String {
    let counts = log.counts();
    let listing = counts.get(CUSTOMERS_PATH).copied().unwrap_or(0);
    let sku_requests: u64 = counts
        .iter()
        .filter(|(path, _)| path.ends_with("/subscribedskus"))
        .map(|(_, count)| count)
        .sum();
    let mut out = format!(
        "customers {}\nskus_per_customer {}\nsku_bytes {}\nlisting_requests {listing}\nsku_requests {sku_requests}\n",
        control.customers, control.skus, control.sku_bytes
    );
    let hung_after = control.hung_after.load(Ordering::Acquire);
    if hung_after != NOT_ARMED {
        out.push_str(&format!("hang_armed_at {hung_after}\n"));
    }
    out
}

/// The `/_arrivals` page: one line, the arrival of every Partner Center
/// request still in the record, in seconds since the start.
fn arrivals(control: &Control, log: &RequestLog) -> String {
    let times: Vec<String> = log
        .requests()
        .iter()
        .filter(|request| request.path().starts_with(CUSTOMERS_PATH))
        .map(|request| format!("{:.3}", (request.at - control.started).as_secs_f64()))
        .collect();
    format!("arrivals_s {}\n", times.join(" "))
}

/// Serves `customers` customers of `skus` SKUs each until stopped;
/// writes the port to `port_file` once listening.
pub fn serve(customers: usize, skus: usize, port_file: &str) -> Result<(), String> {
    // A customer's SKUs are distinct: a suite and add-ons, each once.
    if skus > MAX_SKUS {
        return Err(format!(
            "--skus is at most {MAX_SKUS}: a suite and the catalogue's add-ons"
        ));
    }
    let mut rng = fastrand::Rng::with_seed(SEED);
    let listed: Vec<Customer> = names(&mut rng, customers)
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let customer = Customer::new(name, &label(name));
            // One in ten through an advisor, as some partners' are.
            if index % 10 == 7 {
                customer.with_relationship("advisor")
            } else {
                customer
            }
        })
        .collect();
    let bodies: Vec<(String, Bytes)> = listed
        .iter()
        .map(|customer| {
            (
                subscribed_skus_path(&customer.id),
                subscribed_skus(&mut rng, skus),
            )
        })
        .collect();
    let control = Arc::new(Control {
        started: Instant::now(),
        hang: Notify::new(),
        hung_after: AtomicU64::new(NOT_ARMED),
        customers,
        skus,
        sku_bytes: bodies.iter().map(|(_, body)| body.len()).sum(),
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))?;
    runtime.block_on(async move {
        let (for_stats, for_arrivals, for_hang) =
            (control.clone(), control.clone(), control.clone());
        let simulator = Simulator::builder()
            .record_limit(RECORD_LIMIT)
            .dataset(CUSTOMERS_PATH, customer_listing(&listed, DEFAULT_PAGE_SIZE))
            .datasets(
                bodies
                    .into_iter()
                    .map(|(path, body)| (path, Dataset::fixed(body))),
            )
            .route("/_stats", move |log| {
                Answer::new(200, "text/plain", stats(&for_stats, log))
            })
            .route("/_arrivals", move |log| {
                Answer::new(200, "text/plain", arrivals(&for_arrivals, log))
            })
            .route("/_hang", move |_| {
                for_hang.hang.notify_one();
                Answer::new(202, "text/plain", "arming\n")
            })
            .start()
            .await
            .map_err(|err| format!("cannot listen on 127.0.0.1: {err}"))?;
        let port = simulator.address().port();
        let partial = format!("{port_file}.partial");
        std::fs::write(&partial, format!("{port}\n"))
            .and_then(|()| std::fs::rename(&partial, port_file))
            .map_err(|err| format!("cannot write {port_file}: {err}"))?;
        control.hang.notified().await;
        simulator.script(CUSTOMERS_PATH, Vec::new(), Some(Step::Hang));
        // Published after the script is in place: the script waits for a
        // listing request past this count to know the exporter is idle.
        control
            .hung_after
            .store(simulator.request_count(CUSTOMERS_PATH), Ordering::Release);
        // Serves until the script stops it.
        std::future::pending::<()>().await;
        drop(simulator);
        Ok(())
    })
}
