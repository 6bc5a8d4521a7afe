//! A demo partner's subscriptions and their provisioning status, served
//! as Partner Center serves them, so that the `subscriptions` source has
//! renewals, seat reductions and unassigned seats to show.
//!
//! Paths, below the API root (part of [`super::demo_paths::datasets`]):
//!
//! - [`subscriptions_path`] of each customer: its subscriptions, one page
//!   without `links.next`, shaped as Microsoft's NCE example.
//! - [`provisioning_status_path`] of each subscription: the Entra ID SKU it
//!   provisions (`skuId`, upper-case, the `productSku.id` of the customer's
//!   subscribed SKUs), `success`, its quantity and its end date; `404` with
//!   [`PROVISIONING_NOT_FOUND_BODY`] for the Azure plan and the software,
//!   which provision no licences.
//!
//! Every SKU a customer buys has one NCE subscription whose `quantity` is
//! the seats bought: the SKU's `totalUnits` (active and warning units) and
//! its `suspendedUnits`, so that seats match licences. Power Automate Free
//! and Teams Exploratory have none: they come by self-service sign-up, not
//! from the partner. [`GDAP_REFUSED_CUSTOMER`]'s subscriptions are served
//! too, as listing them needs no GDAP role (only its licences do).
//!
//! Terms are mixed: monthly (`P1M`), annual (`P1Y`, billed annually or
//! monthly) and, for suites, triennial (`P3Y`). Each subscription renews on
//! a calendar anniversary of its own, so `commitmentEndDate` (the term's
//! last day, inclusive) stays put through a term and moves on by a term
//! once it has passed; each partner's auto-renewing annual ones are spread
//! evenly over the year, so that on any day several of the first partner's
//! renew within 30 days and some within 14. `cancellationAllowedUntilDate` is the last purchase, renewal
//! or seat addition plus 7 days: mostly past, open for the recently renewed
//! or bought.
//!
//! Special cases, each pinned to a customer of the first partner
//! ([`DemoPartner::contoso`]); the second one's customers have none:
//!
//! - [`RENEWING_WITH_UNASSIGNED_CUSTOMER`]: an auto-renewing annual
//!   subscription of [`RENEWING_WITH_UNASSIGNED_SKU`] whose term always
//!   ends [`RENEWS_IN_DAYS`] days from today, on a SKU with unassigned
//!   seats at every moment: `PartnerCenterSubscriptionRenewsWithUnassignedLicenses`
//!   fires against the demo whenever it runs.
//! - [`CANCELLATION_WINDOW_CUSTOMER`]: a subscription of
//!   [`CANCELLATION_WINDOW_SKU`] bought almost a week ago, so that its
//!   cancellation window always closes within the next 9 to 11 hours, on a
//!   SKU with unassigned seats at every moment.
//! - [`SUSPENDED_SUBSCRIPTION_CUSTOMER`]: the subscription of its suspended
//!   SKU, [`SUSPENDED_SUBSCRIPTION_SKU`], is `suspended` and does not renew.
//! - [`TRIAL_CUSTOMER`]: a one-month trial of [`TRIAL_SKU`] that does not
//!   renew.
//! - [`AZURE_PLAN_CUSTOMER`]: also an Azure plan, usage-based, quantity 1,
//!   never ending; [`SOFTWARE_CUSTOMER`]: also perpetual software. Neither
//!   has a provisioning status.
//! - About one in seven of the others does not renew automatically.
//!
//! Dates are derived from the wall clock of the request and the
//! customers' names only, so they are believable at every start and the
//! same for the same instant.
//!
//! [`GDAP_REFUSED_CUSTOMER`]: super::demo_partner::GDAP_REFUSED_CUSTOMER
//! [`DemoPartner::contoso`]: super::demo_partner::DemoPartner::contoso

use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveTime, TimeDelta, Utc};

use super::datasets::Dataset;
use super::demo_partner::{
    CUSTOMERS_PATH, EMS, FLOW_FREE, Holding, SPE_E3, Sku, TEAMS_EXPLORATORY, Tenant, VISIOCLIENT,
    derived_guid, fraction, hash,
};

/// The customer whose annual subscription always renews within days on a
/// SKU with seats nobody is assigned.
pub const RENEWING_WITH_UNASSIGNED_CUSTOMER: &str = "Contoso";

/// The Entra ID SKU (lower-case) of [`RENEWING_WITH_UNASSIGNED_CUSTOMER`]'s
/// renewing subscription: Microsoft 365 E3.
pub const RENEWING_WITH_UNASSIGNED_SKU: &str = SPE_E3.id;

/// Days from today (UTC) to the last day of the renewing subscription's
/// term: well within the fortnight that partners act in.
pub const RENEWS_IN_DAYS: i64 = 5;

/// The customer with a subscription whose cancellation window always
/// closes within the next day.
pub const CANCELLATION_WINDOW_CUSTOMER: &str = "Tailwind Traders";

/// The Entra ID SKU of [`CANCELLATION_WINDOW_CUSTOMER`]'s closing window:
/// Enterprise Mobility + Security E3.
pub const CANCELLATION_WINDOW_SKU: &str = EMS.id;

/// The customer with a suspended subscription (its suspended SKU).
pub const SUSPENDED_SUBSCRIPTION_CUSTOMER: &str = "Alpine Ski House";

/// The Entra ID SKU of the suspended subscription: Visio Plan 2.
pub const SUSPENDED_SUBSCRIPTION_SKU: &str = VISIOCLIENT.id;

/// The customer with a trial subscription.
pub const TRIAL_CUSTOMER: &str = "Northwind Traders";

/// The Entra ID SKU of the trial: Enterprise Mobility + Security E3.
pub const TRIAL_SKU: &str = EMS.id;

/// The customer that also has an Azure plan.
pub const AZURE_PLAN_CUSTOMER: &str = "Wide World Importers";

/// The Azure plan's offer, as Microsoft documents it.
pub const AZURE_PLAN_OFFER_ID: &str = "DZH318Z0BPS6:0001:DZH318Z0BML6";

/// The customer that also has perpetual software.
pub const SOFTWARE_CUSTOMER: &str = "City Power & Light";

/// The perpetual software's offer: Windows Server 2022 Standard, 16 cores.
pub const SOFTWARE_OFFER_ID: &str = "DG7GMGF0D5RK:0001:DG7GMGF0HX2B";

/// The `commitmentEndDate` of what never ends (an Azure plan, perpetual
/// software).
pub const FAR_FUTURE_END_DATE: &str = "9999-12-31T00:00:00Z";

/// The `404` of a subscription without a provisioning status, in Partner
/// Center's error shape.
pub const PROVISIONING_NOT_FOUND_BODY: &str = r#"{"code":800002,"description":"The provisioning status of this subscription was not found: it provisions no licences.","data":[],"source":"PartnerFD"}"#;

/// The path of `customer_id`'s subscriptions.
pub fn subscriptions_path(customer_id: &str) -> String {
    format!("{CUSTOMERS_PATH}/{customer_id}/subscriptions")
}

/// The path of one subscription's provisioning status.
pub fn provisioning_status_path(customer_id: &str, subscription_id: &str) -> String {
    format!(
        "{}/{subscription_id}/provisioningstatus",
        subscriptions_path(customer_id)
    )
}

/// The ID of the subscription of customer `customer` (its name) to `key`:
/// the lower-case Entra ID SKU for licences, the offer ID for the Azure
/// plan and the software. The same at every call.
pub fn subscription_id(customer: &str, key: &str) -> String {
    derived_guid("subscription-id", &[customer, key])
}

/// Days after a purchase, renewal or seat addition during which seats can
/// be reduced or the subscription cancelled (NCE's 168 hours).
const CANCELLATION_DAYS: i64 = 7;

/// Hours left, about, in [`CANCELLATION_WINDOW_CUSTOMER`]'s window.
const CANCELLATION_HOURS_LEFT: i64 = 10;

/// Days since the trial began: well inside its month.
const TRIAL_DAYS_IN: i64 = 9;

/// How long a subscription commits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Term {
    Monthly,
    Annual,
    Triennial,
}

impl Term {
    fn months(self) -> u32 {
        match self {
            Self::Monthly => 1,
            Self::Annual => 12,
            Self::Triennial => 36,
        }
    }

    /// `termDuration`, ISO 8601.
    fn duration(self) -> &'static str {
        match self {
            Self::Monthly => "P1M",
            Self::Annual => "P1Y",
            Self::Triennial => "P3Y",
        }
    }
}

/// Where a subscription's dates come from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Schedule {
    /// Renews on a calendar anniversary: `day` of the month (1 to 28) for
    /// a monthly term, of a year without 29 February (0 to 364) for the
    /// others, the triennial ones in the years `phase` (0 to 2) picks.
    /// Bought `age` terms before the current one; `seat_addition` is how
    /// far into each term seats were added, if they were.
    Renewing {
        day: u32,
        phase: i32,
        age: u32,
        seat_addition: Option<f64>,
    },
    /// An annual term that always ends [`RENEWS_IN_DAYS`] days from today.
    RenewingSoon { age: u32 },
    /// An annual term bought a week ago less the hours left to cancel it.
    JustBought,
    /// A month's trial begun [`TRIAL_DAYS_IN`] days ago.
    Trial,
    /// Never ends: bought `age` years before the last anniversary `day`;
    /// returnable for `returnable_days` after, if at all.
    Perpetual {
        day: u32,
        age: u32,
        returnable_days: Option<i64>,
    },
}

/// The dates of a subscription at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Dates {
    created: DateTime<Utc>,
    /// The start of the current term (of the purchase, in the first).
    effective_start: DateTime<Utc>,
    /// The term's last day; none for what never ends.
    end: Option<NaiveDate>,
    cancellable_until: Option<DateTime<Utc>>,
}

/// One subscription of one customer.
#[derive(Clone)]
pub(super) struct Subscription {
    customer_id: String,
    pub(super) id: String,
    /// The Entra ID SKU it provisions; none for what provisions no
    /// licences, whose provisioning status is a `404`.
    sku: Option<&'static Sku>,
    /// `product:sku:availability` of the NCE catalogue.
    offer_id: String,
    offer_name: String,
    friendly_name: String,
    /// `productType.id`, which is also its display name.
    product_type: &'static str,
    unit_type: &'static str,
    billing_type: &'static str,
    quantity: u32,
    /// None for what has no term (an Azure plan, perpetual software).
    term: Option<Term>,
    billing_cycle: &'static str,
    status: &'static str,
    auto_renew: bool,
    is_trial: bool,
    has_add_ons: bool,
    schedule: Schedule,
    /// Seconds and nanoseconds into its purchase day: the time of day of
    /// its `creationDate`.
    purchase_second: u32,
    purchase_nanos: u32,
    order_id: String,
}

/// Every customer's subscriptions, in the order of `tenants`.
pub(super) fn of_tenants(tenants: &[Tenant]) -> Vec<Vec<Subscription>> {
    let mut all: Vec<Vec<Subscription>> = tenants.iter().map(of_tenant).collect();
    spread_renewals(&mut all);
    all
}

/// The subscriptions of the demo's customers and the answers at their
/// paths.
pub(super) fn datasets(tenants: &[Tenant]) -> Vec<(String, Dataset)> {
    let all: Arc<[Vec<Subscription>]> = of_tenants(tenants).into();
    let mut served = Vec::new();
    for (index, (tenant, subscriptions)) in tenants.iter().zip(all.iter()).enumerate() {
        let customer_id = tenant.customer.id.clone();
        let listing = all.clone();
        served.push((
            subscriptions_path(&customer_id),
            Dataset::generated(move |now| {
                listing
                    .get(index)
                    .map_or(serde_json::Value::Null, |subscriptions| {
                        collection(&customer_id, subscriptions, now)
                    })
            }),
        ));
        for (position, subscription) in subscriptions.iter().enumerate() {
            let path = provisioning_status_path(&subscription.customer_id, &subscription.id);
            let dataset = if subscription.sku.is_some() {
                let all = all.clone();
                Dataset::generated(move |now| {
                    all.get(index)
                        .and_then(|subscriptions| subscriptions.get(position))
                        .and_then(|subscription| subscription.provisioning_status(now))
                        .unwrap_or(serde_json::Value::Null)
                })
            } else {
                Dataset::refusal(404, PROVISIONING_NOT_FOUND_BODY)
            };
            served.push((path, dataset));
        }
    }
    served
}

/// A customer's subscriptions as the collection at its
/// [`subscriptions_path`].
fn collection(
    customer_id: &str,
    subscriptions: &[Subscription],
    now: SystemTime,
) -> serde_json::Value {
    let items: Vec<serde_json::Value> = subscriptions
        .iter()
        .map(|subscription| subscription.item(now))
        .collect();
    serde_json::json!({
        "totalCount": items.len(),
        "items": items,
        "links": {
            "self": {
                "uri": format!("/customers/{customer_id}/subscriptions"),
                "method": "GET",
                "headers": []
            }
        },
        "attributes": { "objectType": "Collection" }
    })
}

/// Whether the partner sells `sku`: the free ones come by self-service
/// sign-up, with no subscription in Partner Center.
fn sold(sku: &Sku) -> bool {
    ![FLOW_FREE.part_number, TEAMS_EXPLORATORY.part_number].contains(&sku.part_number)
}

fn of_tenant(tenant: &Tenant) -> Vec<Subscription> {
    let name = tenant.profile.name;
    let mut subscriptions: Vec<Subscription> = tenant
        .holdings
        .iter()
        .filter(|holding| sold(holding.sku))
        .map(|holding| licences(tenant, holding))
        .collect();
    if name == AZURE_PLAN_CUSTOMER {
        subscriptions.push(azure_plan(tenant));
    }
    if name == SOFTWARE_CUSTOMER {
        subscriptions.push(software(tenant));
    }
    subscriptions
}

/// The NCE catalogue's product and SKU of an Entra ID SKU; one the table
/// does not know gets a made-up product.
fn catalogue(sku: &Sku) -> (String, &'static str) {
    let known = match sku.part_number {
        "SPE_E3" => Some(("CFQ7TTC0LFLX", "0001")),
        "ENTERPRISEPACK" => Some(("CFQ7TTC0LF8Q", "0001")),
        "O365_BUSINESS_PREMIUM" => Some(("CFQ7TTC0LDPB", "0001")),
        "SPB" => Some(("CFQ7TTC0LCHC", "0002")),
        "EMS" => Some(("CFQ7TTC0LHT4", "0001")),
        "POWER_BI_PRO" => Some(("CFQ7TTC0L3PB", "0001")),
        "EXCHANGESTANDARD" => Some(("CFQ7TTC0LH16", "0001")),
        "VISIOCLIENT" => Some(("CFQ7TTC0HD32", "0002")),
        "PROJECTPROFESSIONAL" => Some(("CFQ7TTC0HDB0", "0002")),
        _ => None,
    };
    match known {
        Some((product, sku)) => (product.to_owned(), sku),
        None => (catalogue_id("CFQ7TTC0", &[sku.id, "product"]), "0001"),
    }
}

/// A catalogue ID as Microsoft's look: `prefix` and four letters or
/// digits (no vowels), fixed by `parts`.
fn catalogue_id(prefix: &str, parts: &[&str]) -> String {
    const ALPHABET: &[u8] = b"0123456789BCDFGHJKLMNPQRSTVWXZ";
    let mut seed = hash(parts);
    let mut id = prefix.to_owned();
    for _ in 0..4 {
        id.push(char::from(
            ALPHABET[(seed % ALPHABET.len() as u64) as usize],
        ));
        seed /= ALPHABET.len() as u64;
    }
    id
}

/// What some customers call a subscription instead of its offer's name.
const NICKNAMES: [&str; 6] = [
    "Head office",
    "Finance",
    "Sales",
    "Contractors",
    "Warehouse",
    "Board",
];

/// Suites: the SKUs with add-ons to buy, and the only ones sold for three
/// years.
fn is_suite(sku: &Sku) -> bool {
    [
        "SPE_E3",
        "ENTERPRISEPACK",
        "O365_BUSINESS_PREMIUM",
        "SPB",
        "DYN365_ENTERPRISE_SALES",
        "DYN365_ENTERPRISE_CUSTOMER_SERVICE",
        "DYN365_BUSCENTRAL_ESSENTIAL",
        "DYN365_BUSCENTRAL_PREMIUM",
    ]
    .contains(&sku.part_number)
}

/// The subscription of `holding`'s seats.
fn licences(tenant: &Tenant, holding: &Holding) -> Subscription {
    let name = tenant.profile.name;
    let sku = holding.sku;
    let seed = |what: &str| hash(&[name, sku.id, what]);
    let share = |what: &str| fraction(&[name, sku.id, what]);
    let (product, sku_code) = catalogue(sku);
    let prefix = &product[..product.len().min(8)];
    let offer = |availability: &str| {
        format!(
            "{product}:{sku_code}:{}",
            catalogue_id(prefix, &[&product, sku_code, availability])
        )
    };
    let term = if share("term") < 0.3 {
        (Term::Monthly, "monthly")
    } else if share("term") < 0.62 {
        (Term::Annual, "annual")
    } else if share("term") < 0.88 || !is_suite(sku) {
        (Term::Annual, "monthly")
    } else {
        (Term::Triennial, "triennial")
    };
    let age = match term.0 {
        Term::Monthly => seed("age") % 40,
        Term::Annual => seed("age") % 4,
        Term::Triennial => seed("age") % 2,
    } as u32;
    let seat_addition = (term.0 != Term::Monthly && share("seat addition") < 0.3)
        .then(|| share("seat addition at"));
    let day = match term.0 {
        Term::Monthly => 1 + seed("anniversary") % 28,
        Term::Annual | Term::Triennial => seed("anniversary") % 365,
    } as u32;
    let friendly_name = if share("nickname") < 0.2 {
        format!(
            "{} - {}",
            sku.name,
            NICKNAMES[(seed("nickname") % NICKNAMES.len() as u64) as usize]
        )
    } else {
        sku.name.to_owned()
    };
    let mut subscription = Subscription {
        customer_id: tenant.customer.id.clone(),
        id: subscription_id(name, sku.id),
        sku: Some(sku),
        offer_id: offer("availability"),
        offer_name: sku.name.to_owned(),
        friendly_name,
        product_type: "OnlineServicesNCE",
        unit_type: "Licenses",
        billing_type: "license",
        // The seats bought: those that can be assigned and those
        // suspended with the subscription, which totalUnits leaves out.
        quantity: holding.total() + holding.suspended,
        term: Some(term.0),
        billing_cycle: term.1,
        status: "active",
        auto_renew: share("auto-renew") >= 0.15,
        is_trial: false,
        has_add_ons: is_suite(sku),
        schedule: Schedule::Renewing {
            day,
            phase: (seed("phase") % 3) as i32,
            age,
            seat_addition,
        },
        purchase_second: (seed("purchase time") % 86_400) as u32,
        purchase_nanos: ((seed("purchase fraction") % 10_000_000) * 100) as u32,
        order_id: derived_guid("order-id", &[name, sku.id]),
    };
    match (name, sku.id) {
        (RENEWING_WITH_UNASSIGNED_CUSTOMER, RENEWING_WITH_UNASSIGNED_SKU) => {
            subscription.term = Some(Term::Annual);
            subscription.billing_cycle = "annual";
            subscription.auto_renew = true;
            subscription.schedule = Schedule::RenewingSoon {
                age: 1 + (seed("age") % 3) as u32,
            };
        }
        (CANCELLATION_WINDOW_CUSTOMER, CANCELLATION_WINDOW_SKU) => {
            subscription.term = Some(Term::Annual);
            subscription.billing_cycle = "annual";
            subscription.auto_renew = true;
            subscription.schedule = Schedule::JustBought;
        }
        (TRIAL_CUSTOMER, TRIAL_SKU) => {
            subscription.offer_id = offer("trial");
            subscription.offer_name = format!("{} Trial", sku.name);
            subscription.friendly_name = subscription.offer_name.clone();
            subscription.term = Some(Term::Monthly);
            // Nothing is billed for a trial.
            subscription.billing_cycle = "none";
            subscription.auto_renew = false;
            subscription.is_trial = true;
            subscription.schedule = Schedule::Trial;
        }
        _ if name == SUSPENDED_SUBSCRIPTION_CUSTOMER && holding.suspended > 0 => {
            subscription.status = "suspended";
            subscription.auto_renew = false;
        }
        _ => {}
    }
    subscription
}

fn azure_plan(tenant: &Tenant) -> Subscription {
    let name = tenant.profile.name;
    let seed = |what: &str| hash(&[name, AZURE_PLAN_OFFER_ID, what]);
    Subscription {
        customer_id: tenant.customer.id.clone(),
        id: subscription_id(name, AZURE_PLAN_OFFER_ID),
        sku: None,
        offer_id: AZURE_PLAN_OFFER_ID.to_owned(),
        offer_name: "Azure plan".to_owned(),
        friendly_name: "Azure plan".to_owned(),
        product_type: "Azure",
        unit_type: "Usage-based",
        billing_type: "usage",
        quantity: 1,
        term: None,
        billing_cycle: "monthly",
        status: "active",
        auto_renew: false,
        is_trial: false,
        has_add_ons: false,
        schedule: Schedule::Perpetual {
            day: (seed("anniversary") % 365) as u32,
            age: 2,
            returnable_days: None,
        },
        purchase_second: (seed("purchase time") % 86_400) as u32,
        purchase_nanos: ((seed("purchase fraction") % 10_000_000) * 100) as u32,
        order_id: derived_guid("order-id", &[name, AZURE_PLAN_OFFER_ID]),
    }
}

fn software(tenant: &Tenant) -> Subscription {
    let name = tenant.profile.name;
    let seed = |what: &str| hash(&[name, SOFTWARE_OFFER_ID, what]);
    let offer_name = "Windows Server 2022 Standard - 16 Core License Pack";
    Subscription {
        customer_id: tenant.customer.id.clone(),
        id: subscription_id(name, SOFTWARE_OFFER_ID),
        sku: None,
        offer_id: SOFTWARE_OFFER_ID.to_owned(),
        offer_name: offer_name.to_owned(),
        friendly_name: offer_name.to_owned(),
        product_type: "Software",
        unit_type: "Licenses",
        billing_type: "license",
        quantity: 4,
        term: None,
        billing_cycle: "oneTime",
        status: "active",
        auto_renew: false,
        is_trial: false,
        has_add_ons: false,
        schedule: Schedule::Perpetual {
            day: (seed("anniversary") % 365) as u32,
            age: 1,
            // Software is returnable for 30 days, as Microsoft's example shows.
            returnable_days: Some(30),
        },
        purchase_second: (seed("purchase time") % 86_400) as u32,
        purchase_nanos: ((seed("purchase fraction") % 10_000_000) * 100) as u32,
        order_id: derived_guid("order-id", &[name, SOFTWARE_OFFER_ID]),
    }
}

/// Spreads the anniversaries of the auto-renewing annual subscriptions
/// evenly over the year, in an order fixed by their IDs: at any date the
/// next 30 days then hold several renewals and the next 14 some, as a
/// partner with this many customers would see.
fn spread_renewals(all: &mut [Vec<Subscription>]) {
    let mut annual: Vec<&mut Subscription> = all
        .iter_mut()
        .flatten()
        .filter(|subscription| {
            subscription.term == Some(Term::Annual)
                && subscription.auto_renew
                && subscription.status == "active"
                && matches!(subscription.schedule, Schedule::Renewing { .. })
        })
        .collect();
    annual.sort_by_key(|subscription| hash(&[&subscription.id, "renewal order"]));
    let count = annual.len().max(1);
    for (index, subscription) in annual.into_iter().enumerate() {
        if let Schedule::Renewing { day, .. } = &mut subscription.schedule {
            *day = (index * 365 / count) as u32;
        }
    }
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

fn add_months(day: NaiveDate, months: u32) -> NaiveDate {
    day.checked_add_months(Months::new(months)).unwrap_or(day)
}

fn sub_months(day: NaiveDate, months: u32) -> NaiveDate {
    day.checked_sub_months(Months::new(months)).unwrap_or(day)
}

/// The last day (inclusive) of a term of `months` from `start`.
fn term_end(start: NaiveDate, months: u32) -> NaiveDate {
    let next = add_months(start, months);
    next.pred_opt().unwrap_or(next)
}

/// The first day of the term under way `today` of a subscription renewing
/// on anniversary `day` (see [`Schedule::Renewing`]).
fn current_term_start(term: Term, day: u32, phase: i32, today: NaiveDate) -> NaiveDate {
    if term == Term::Monthly {
        let this_month = today.with_day(day.clamp(1, 28)).unwrap_or(today);
        return if this_month <= today {
            this_month
        } else {
            sub_months(this_month, 1)
        };
    }
    // The anniversary as a day of a year without 29 February, so that it
    // falls in every year.
    let anniversary = NaiveDate::from_yo_opt(2001, day % 365 + 1).unwrap_or(today);
    (0..4)
        .map(|back| today.year() - back)
        .filter(|year| term == Term::Annual || (year - phase).rem_euclid(3) == 0)
        .filter_map(|year| NaiveDate::from_ymd_opt(year, anniversary.month(), anniversary.day()))
        .find(|start| *start <= today)
        .unwrap_or(today)
}

impl Subscription {
    /// When on `day` it was bought.
    fn purchased_on(&self, day: NaiveDate) -> DateTime<Utc> {
        midnight(day)
            + TimeDelta::seconds(i64::from(self.purchase_second))
            + TimeDelta::nanoseconds(i64::from(self.purchase_nanos))
    }

    fn dates(&self, now: DateTime<Utc>) -> Dates {
        let today = now.date_naive();
        let months = self.term.map_or(12, Term::months);
        match self.schedule {
            Schedule::Renewing {
                day,
                phase,
                age,
                seat_addition,
            } => {
                let term = self.term.unwrap_or(Term::Annual);
                let start = current_term_start(term, day, phase, today);
                self.renewing(start, months, age, seat_addition, now)
            }
            Schedule::RenewingSoon { age } => {
                let end = today + TimeDelta::days(RENEWS_IN_DAYS);
                let start = sub_months(end.succ_opt().unwrap_or(end), months);
                self.renewing(start, months, age, None, now)
            }
            Schedule::JustBought => {
                // On the hour, so that the dates hold still for an hour at
                // a time; the minutes and seconds are the subscription's.
                let hour = DateTime::from_timestamp(now.timestamp().div_euclid(3600) * 3600, 0)
                    .unwrap_or(now);
                let until = hour
                    + TimeDelta::hours(CANCELLATION_HOURS_LEFT)
                    + TimeDelta::seconds(i64::from(self.purchase_second % 3600));
                let bought = until
                    - TimeDelta::days(CANCELLATION_DAYS)
                    - TimeDelta::nanoseconds(i64::from(self.purchase_nanos));
                Dates {
                    created: bought,
                    effective_start: bought,
                    end: Some(term_end(bought.date_naive(), months)),
                    cancellable_until: Some(until),
                }
            }
            Schedule::Trial => {
                let start = today - TimeDelta::days(TRIAL_DAYS_IN);
                let created = self.purchased_on(start);
                Dates {
                    created,
                    effective_start: created,
                    end: Some(term_end(start, months)),
                    // A trial ends by itself; there is nothing to cancel.
                    cancellable_until: None,
                }
            }
            Schedule::Perpetual {
                day,
                age,
                returnable_days,
            } => {
                let anniversary = current_term_start(Term::Annual, day, 0, today);
                let created = self.purchased_on(sub_months(anniversary, 12 * age));
                Dates {
                    created,
                    effective_start: created,
                    end: None,
                    cancellable_until: returnable_days.map(|days| created + TimeDelta::days(days)),
                }
            }
        }
    }

    /// The dates of a term of `months` begun on `start`, `age` terms after
    /// the purchase.
    fn renewing(
        &self,
        start: NaiveDate,
        months: u32,
        age: u32,
        seat_addition: Option<f64>,
        now: DateTime<Utc>,
    ) -> Dates {
        let end = term_end(start, months);
        // Bought today, later than now: say bought now, never in the future.
        let created = self.purchased_on(sub_months(start, months * age)).min(now);
        let (effective_start, mut last_change) = if age == 0 {
            (created, created)
        } else {
            (midnight(start), midnight(start))
        };
        if let Some(share) = seat_addition {
            let term_days = (end - start).num_days() as f64;
            let added =
                self.purchased_on(start + TimeDelta::days((share * term_days).floor() as i64));
            if added <= now && added > last_change {
                last_change = added;
            }
        }
        Dates {
            created,
            effective_start,
            end: Some(end),
            cancellable_until: Some(last_change + TimeDelta::days(CANCELLATION_DAYS)),
        }
    }

    /// The subscription's item in its customer's collection at `now`,
    /// shaped as Microsoft's NCE example.
    fn item(&self, now: SystemTime) -> serde_json::Value {
        let dates = self.dates(DateTime::<Utc>::from(now));
        let mut parts = self.offer_id.split(':');
        let product = parts.next().unwrap_or_default();
        let sku = parts.next().unwrap_or_default();
        let availability = parts.next().unwrap_or_default();
        let link = |uri: String| serde_json::json!({ "uri": uri, "method": "GET", "headers": [] });
        let mut item = serde_json::json!({
            "id": self.id,
            "offerId": self.offer_id,
            "offerName": self.offer_name,
            "friendlyName": self.friendly_name,
            "productType": { "id": self.product_type, "displayName": self.product_type },
            "quantity": self.quantity,
            "unitType": self.unit_type,
            "hasPurchasableAddons": self.has_add_ons,
            "creationDate": timestamp(dates.created),
            "effectiveStartDate": timestamp(dates.effective_start),
            "commitmentEndDate": dates.end.map_or_else(|| FAR_FUTURE_END_DATE.to_owned(), day),
            "status": self.status,
            "autoRenewEnabled": self.auto_renew,
            "isTrial": self.is_trial,
            "billingType": self.billing_type,
            "billingCycle": self.billing_cycle,
            "renewalTermDuration": "",
            "isMicrosoftProduct": true,
            "partnerId": "",
            "attentionNeeded": false,
            "actionTaken": false,
            "contractType": "subscription",
            "links": {
                "product": link(format!("/products/{product}?country=US")),
                "sku": link(format!("/products/{product}/skus/{sku}?country=US")),
                "availability": link(format!(
                    "/products/{product}/skus/{sku}/availabilities/{availability}?country=US"
                )),
                "self": link(format!("/customers/{}/subscriptions/{}", self.customer_id, self.id)),
            },
            "publisherName": "Microsoft",
            "orderId": self.order_id,
            "attributes": { "objectType": "Subscription" }
        });
        if let Some(term) = self.term {
            item["termDuration"] = term.duration().into();
        }
        if let Some(until) = dates.cancellable_until {
            item["cancellationAllowedUntilDate"] =
                until.format("%Y-%m-%dT%H:%M:%SZ").to_string().into();
        }
        item
    }

    /// The answer at its [`provisioning_status_path`] at `now`; none for
    /// what provisions no licences.
    fn provisioning_status(&self, now: SystemTime) -> Option<serde_json::Value> {
        let sku = self.sku?;
        let dates = self.dates(DateTime::<Utc>::from(now));
        Some(serde_json::json!({
            // Upper-case, as Partner Center sends it.
            "skuId": sku.id.to_uppercase(),
            "status": "success",
            "quantity": self.quantity,
            "endDate": dates.end.map_or_else(|| FAR_FUTURE_END_DATE.to_owned(), day),
            "attributes": { "objectType": "SubscriptionProvisioningStatus" }
        }))
    }
}

/// A day as Partner Center writes one: `2026-12-08T00:00:00Z`.
fn day(day: NaiveDate) -> String {
    day.format("%Y-%m-%dT00:00:00Z").to_string()
}

/// An instant as Partner Center writes one: a day at midnight as
/// [`day`] does, any other with seven digits of fractional seconds
/// (`2021-10-15T21:28:19.3058617Z`).
fn timestamp(at: DateTime<Utc>) -> String {
    if at.time() == NaiveTime::MIN {
        return day(at.date_naive());
    }
    format!(
        "{}.{:07}Z",
        at.format("%Y-%m-%dT%H:%M:%S"),
        at.timestamp_subsec_nanos() / 100
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::demo_partner::{DemoPartner, GDAP_REFUSED_CUSTOMER, unix_seconds};
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::{Duration, UNIX_EPOCH};

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    /// 2025-12-01T14:40:00Z.
    const START: u64 = 1_764_600_000;

    fn tenants() -> Arc<[Tenant]> {
        DemoPartner::contoso().tenants()
    }

    fn tenant(tenants: &[Tenant], name: &str) -> usize {
        tenants
            .iter()
            .position(|tenant| tenant.profile.name == name)
            .unwrap_or_else(|| panic!("{name} is a demo customer"))
    }

    fn count(value: &serde_json::Value, field: &str) -> u64 {
        value[field]
            .as_u64()
            .unwrap_or_else(|| panic!("{field} is a count: {value}"))
    }

    fn text<'a>(value: &'a serde_json::Value, field: &str) -> &'a str {
        value[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} is a string: {value}"))
    }

    fn date(value: &serde_json::Value, field: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text(value, field))
            .unwrap_or_else(|err| panic!("{field} is a date ({err}): {value}"))
            .with_timezone(&Utc)
    }

    /// Whole days from `now`'s day to the day of `field`.
    fn days_to(value: &serde_json::Value, field: &str, now: SystemTime) -> i64 {
        (date(value, field).date_naive() - DateTime::<Utc>::from(now).date_naive()).num_days()
    }

    /// The subscription of `name` to Entra ID SKU `sku`.
    fn find<'a>(
        all: &'a [Vec<Subscription>],
        tenants: &[Tenant],
        name: &str,
        sku: &str,
    ) -> &'a Subscription {
        all[tenant(tenants, name)]
            .iter()
            .find(|subscription| subscription.sku.is_some_and(|held| held.id == sku))
            .unwrap_or_else(|| panic!("{name} has a subscription to {sku}"))
    }

    /// Seats bought and not assigned of `sku` in `tenant`'s licences at `now`.
    fn unassigned(tenant: &Tenant, sku: &str, now: SystemTime) -> i64 {
        let body = tenant.subscribed_skus(now);
        let item = body["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|item| item["productSku"]["id"] == sku)
            .unwrap_or_else(|| panic!("{} holds {sku}", tenant.profile.name));
        (count(item, "activeUnits") + count(item, "warningUnits")) as i64
            - count(item, "consumedUnits") as i64
    }

    /// Instants over 60 days: every hour and a few seconds, so that the
    /// 15-minute waves of the licence counts are met at every phase.
    fn sweep() -> impl Iterator<Item = SystemTime> {
        (0..60 * 24).map(|step| at(START + step * 3_607))
    }

    /// Every second of one wave of the licence counts, then the 60-day
    /// [`sweep`]: the instants a special case must hold at.
    fn every_instant() -> impl Iterator<Item = SystemTime> {
        (0..900).map(|second| at(START + second)).chain(sweep())
    }

    /// Every SKU each of `tenants` buys has one subscription, whose seats
    /// are its licences, at instants over a year.
    fn assert_seats_match_licences(tenants: &[Tenant], all: &[Vec<Subscription>]) {
        for step in 0..50 {
            let now = at(START + step * 86_400 * 7 + step * 131);
            for (tenant, subscriptions) in tenants.iter().zip(all) {
                let name = tenant.profile.name;
                let licences = tenant.subscribed_skus(now);
                let mut sold = BTreeMap::new();
                for item in licences["items"].as_array().expect("items") {
                    let sku = text(&item["productSku"], "id").to_owned();
                    let part = text(&item["productSku"], "skuPartNumber");
                    if part != FLOW_FREE.part_number && part != TEAMS_EXPLORATORY.part_number {
                        sold.insert(
                            sku,
                            count(item, "totalUnits") + count(item, "suspendedUnits"),
                        );
                    }
                }
                let mut seen = BTreeMap::new();
                for subscription in subscriptions {
                    let Some(status) = subscription.provisioning_status(now) else {
                        continue;
                    };
                    let item = subscription.item(now);
                    let sku = text(&status, "skuId");
                    assert_eq!(sku, sku.to_uppercase(), "upper-case as Microsoft sends it");
                    assert_eq!(status["status"], "success");
                    assert_eq!(status["quantity"], item["quantity"]);
                    assert_eq!(status["endDate"], item["commitmentEndDate"]);
                    assert_eq!(
                        status["attributes"]["objectType"],
                        "SubscriptionProvisioningStatus"
                    );
                    seen.insert(sku.to_lowercase(), count(&item, "quantity"));
                }
                assert_eq!(
                    seen, sold,
                    "{name}: one subscription per SKU bought, seats as licences"
                );
            }
        }
    }

    #[test]
    fn every_sku_bought_has_one_subscription_whose_seats_match_its_licences() {
        let tenants = tenants();
        let all = of_tenants(&tenants);
        assert_seats_match_licences(&tenants, &all);
        let subscriptions: usize = all.iter().map(Vec::len).sum();
        assert!((100..=200).contains(&subscriptions), "{subscriptions}");
    }

    #[test]
    fn the_second_partners_subscriptions_are_its_own_and_plain() {
        let tenants = DemoPartner::fabrikam().tenants();
        let all = of_tenants(&tenants);
        assert_seats_match_licences(&tenants, &all);
        let ids: BTreeSet<&str> = all
            .iter()
            .flatten()
            .map(|subscription| subscription.id.as_str())
            .collect();
        assert_eq!(ids.len(), all.iter().map(Vec::len).sum::<usize>());
        assert!((10..=40).contains(&ids.len()), "{}", ids.len());
        let contoso = of_tenants(&self::tenants());
        assert!(
            contoso
                .iter()
                .flatten()
                .all(|subscription| !ids.contains(subscription.id.as_str())),
            "no subscription of the first partner's"
        );
        // None of the special cases: every one an active NCE subscription
        // of licences, none a trial, none ending within days for a
        // reason of its own.
        for now in sweep().step_by(24) {
            for item in all
                .iter()
                .flatten()
                .map(|subscription| subscription.item(now))
            {
                assert_eq!(item["status"], "active", "{item}");
                assert_eq!(item["isTrial"], false, "{item}");
                assert_eq!(item["productType"]["id"], "OnlineServicesNCE", "{item}");
                assert!(!item["cancellationAllowedUntilDate"].is_null(), "{item}");
            }
        }
        let triennial = all
            .iter()
            .flatten()
            .filter(|subscription| subscription.term == Some(Term::Triennial))
            .count();
        assert!(
            all.iter().flatten().all(|subscription| {
                subscription.term != Some(Term::Triennial) || subscription.sku.is_some_and(is_suite)
            }),
            "only suites for three years ({triennial})"
        );
    }

    #[test]
    fn ids_are_stable_unique_guids_derived_from_customer_and_sku() {
        let tenants = tenants();
        let ids = |all: &[Vec<Subscription>]| -> Vec<String> {
            all.iter()
                .flatten()
                .map(|subscription| subscription.id.clone())
                .collect()
        };
        let first = ids(&of_tenants(&tenants));
        assert_eq!(
            first,
            ids(&of_tenants(&self::tenants())),
            "the same at every call"
        );
        assert_eq!(first.iter().collect::<BTreeSet<_>>().len(), first.len());
        for id in &first {
            let guid = uuid::Uuid::parse_str(id).expect("a GUID");
            assert_eq!(*id, guid.to_string(), "lower-case, hyphenated");
        }
        let all = of_tenants(&tenants);
        let renewing = find(
            &all,
            &tenants,
            RENEWING_WITH_UNASSIGNED_CUSTOMER,
            RENEWING_WITH_UNASSIGNED_SKU,
        );
        assert_eq!(
            renewing.id,
            subscription_id(
                RENEWING_WITH_UNASSIGNED_CUSTOMER,
                RENEWING_WITH_UNASSIGNED_SKU
            )
        );
        for (tenant, subscriptions) in tenants.iter().zip(&all) {
            let listed = |now| -> Vec<String> {
                collection(&tenant.customer.id, subscriptions, now)["items"]
                    .as_array()
                    .expect("items")
                    .iter()
                    .map(|item| text(item, "id").to_owned())
                    .collect()
            };
            assert_eq!(listed(at(START)), listed(at(START + 400 * 86_400)));
        }
    }

    #[test]
    fn items_have_the_documented_nce_shape() {
        let tenants = tenants();
        let all = of_tenants(&tenants);
        let now = at(START);
        // The fields of Microsoft's NCE example, less the two it may omit.
        let documented: BTreeSet<&str> = [
            "id",
            "offerId",
            "offerName",
            "friendlyName",
            "productType",
            "quantity",
            "unitType",
            "hasPurchasableAddons",
            "creationDate",
            "effectiveStartDate",
            "commitmentEndDate",
            "status",
            "autoRenewEnabled",
            "isTrial",
            "billingType",
            "billingCycle",
            "renewalTermDuration",
            "isMicrosoftProduct",
            "partnerId",
            "attentionNeeded",
            "actionTaken",
            "contractType",
            "links",
            "publisherName",
            "orderId",
            "attributes",
        ]
        .into_iter()
        .collect();
        for (tenant, subscriptions) in tenants.iter().zip(&all) {
            let body = collection(&tenant.customer.id, subscriptions, now);
            let body: serde_json::Value =
                serde_json::from_str(&body.to_string()).expect("JSON text");
            let items = body["items"].as_array().expect("items");
            assert!(!items.is_empty(), "{}", tenant.profile.name);
            assert_eq!(count(&body, "totalCount"), items.len() as u64);
            assert_eq!(body["attributes"]["objectType"], "Collection");
            assert!(body["links"]["next"].is_null(), "one page");
            assert_eq!(
                body["links"]["self"]["uri"],
                format!("/customers/{}/subscriptions", tenant.customer.id)
            );
            for item in items {
                let keys: BTreeSet<&str> = item
                    .as_object()
                    .expect("an object")
                    .keys()
                    .map(String::as_str)
                    .collect();
                let optional: BTreeSet<&str> = ["termDuration", "cancellationAllowedUntilDate"]
                    .into_iter()
                    .collect();
                assert!(documented.is_subset(&keys), "{item}");
                assert!(
                    keys.difference(&documented)
                        .all(|key| optional.contains(key)),
                    "{item}"
                );
                let offer: Vec<&str> = text(item, "offerId").split(':').collect();
                assert_eq!(offer.len(), 3, "{item}");
                assert!(offer.iter().all(|part| !part.is_empty()), "{item}");
                assert_eq!(offer[0].len(), 12, "{item}");
                assert_eq!(offer[2].len(), 12, "{item}");
                assert!(
                    ["OnlineServicesNCE", "Azure", "Software"]
                        .contains(&text(&item["productType"], "id"))
                );
                assert_eq!(
                    item["productType"]["id"],
                    item["productType"]["displayName"]
                );
                assert!(count(item, "quantity") >= 1, "{item}");
                assert!(["active", "suspended"].contains(&text(item, "status")));
                assert!(
                    ["monthly", "annual", "triennial", "none", "oneTime"]
                        .contains(&text(item, "billingCycle"))
                );
                if !item["termDuration"].is_null() {
                    assert!(["P1M", "P1Y", "P3Y"].contains(&text(item, "termDuration")));
                }
                for flag in [
                    "autoRenewEnabled",
                    "isTrial",
                    "hasPurchasableAddons",
                    "isMicrosoftProduct",
                ] {
                    assert!(item[flag].is_boolean(), "{flag}: {item}");
                }
                let created = text(item, "creationDate");
                assert_eq!(
                    created.len(),
                    "2021-10-15T21:28:19.3058617Z".len(),
                    "{created}"
                );
                assert!(date(item, "creationDate") <= DateTime::<Utc>::from(now));
                date(item, "effectiveStartDate");
                let end = text(item, "commitmentEndDate");
                assert!(end.ends_with("T00:00:00Z"), "{end}");
                date(item, "commitmentEndDate");
                if !item["cancellationAllowedUntilDate"].is_null() {
                    date(item, "cancellationAllowedUntilDate");
                }
                for link in ["product", "sku", "availability", "self"] {
                    assert!(item["links"][link]["uri"].is_string(), "{link}: {item}");
                    assert_eq!(item["links"][link]["method"], "GET");
                }
                assert_eq!(
                    item["links"]["self"]["uri"],
                    format!(
                        "/customers/{}/subscriptions/{}",
                        tenant.customer.id,
                        item["id"].as_str().unwrap_or_default()
                    )
                );
                assert_eq!(item["attributes"]["objectType"], "Subscription");
            }
        }
        let nicknamed = all
            .iter()
            .flatten()
            .filter(|subscription| subscription.friendly_name != subscription.offer_name)
            .count();
        assert!(
            (5..=40).contains(&nicknamed),
            "some customers name their own: {nicknamed}"
        );
    }

    #[test]
    fn the_renewing_subscription_renews_within_days_with_unassigned_seats_at_every_instant() {
        let tenants = tenants();
        let all = of_tenants(&tenants);
        let customer = &tenants[tenant(&tenants, RENEWING_WITH_UNASSIGNED_CUSTOMER)];
        let subscription = find(
            &all,
            &tenants,
            RENEWING_WITH_UNASSIGNED_CUSTOMER,
            RENEWING_WITH_UNASSIGNED_SKU,
        );
        for now in every_instant() {
            let item = subscription.item(now);
            assert_eq!(item["termDuration"], "P1Y");
            assert_eq!(item["billingCycle"], "annual");
            assert_eq!(item["autoRenewEnabled"], true);
            assert_eq!(item["status"], "active");
            assert_eq!(item["isTrial"], false);
            assert_eq!(days_to(&item, "commitmentEndDate", now), RENEWS_IN_DAYS);
            assert!(
                date(&item, "cancellationAllowedUntilDate") < DateTime::<Utc>::from(now),
                "the window of the last renewal closed long ago"
            );
            assert!(
                unassigned(customer, RENEWING_WITH_UNASSIGNED_SKU, now) >= 1,
                "at {:?}",
                unix_seconds(now)
            );
        }
    }

    #[test]
    fn the_closing_cancellation_window_is_within_a_day_with_unassigned_seats_at_every_instant() {
        let tenants = tenants();
        let all = of_tenants(&tenants);
        let customer = &tenants[tenant(&tenants, CANCELLATION_WINDOW_CUSTOMER)];
        let subscription = find(
            &all,
            &tenants,
            CANCELLATION_WINDOW_CUSTOMER,
            CANCELLATION_WINDOW_SKU,
        );
        for now in every_instant() {
            let item = subscription.item(now);
            let wall = DateTime::<Utc>::from(now);
            let left = date(&item, "cancellationAllowedUntilDate") - wall;
            assert!(
                left > TimeDelta::hours(8) && left < TimeDelta::hours(24),
                "{left}"
            );
            let since_purchase =
                date(&item, "cancellationAllowedUntilDate") - date(&item, "creationDate");
            assert!(
                (since_purchase - TimeDelta::days(CANCELLATION_DAYS)).abs() < TimeDelta::seconds(1)
            );
            assert_eq!(item["status"], "active");
            assert_eq!(item["autoRenewEnabled"], true);
            assert!(days_to(&item, "commitmentEndDate", now) > 300);
            assert!(unassigned(customer, CANCELLATION_WINDOW_SKU, now) >= 1);
        }
        // The same within an hour: a scrape sees a still date.
        assert_eq!(
            subscription.item(at(START - START % 3600)),
            subscription.item(at(START - START % 3600 + 3599))
        );
    }

    #[test]
    fn suspended_trial_azure_and_software_subscriptions_are_where_documented() {
        let tenants = tenants();
        let all = of_tenants(&tenants);
        for now in sweep().step_by(7) {
            let items = |name: &str| -> Vec<serde_json::Value> {
                all[tenant(&tenants, name)]
                    .iter()
                    .map(|subscription| subscription.item(now))
                    .collect()
            };
            let everyone: Vec<serde_json::Value> = all
                .iter()
                .flatten()
                .map(|subscription| subscription.item(now))
                .collect();
            let suspended: Vec<&serde_json::Value> = everyone
                .iter()
                .filter(|item| item["status"] == "suspended")
                .collect();
            assert_eq!(suspended.len(), 1);
            assert!(items(SUSPENDED_SUBSCRIPTION_CUSTOMER).contains(suspended[0]));
            assert_eq!(suspended[0]["autoRenewEnabled"], false);
            assert_eq!(
                suspended[0]["id"],
                subscription_id(SUSPENDED_SUBSCRIPTION_CUSTOMER, SUSPENDED_SUBSCRIPTION_SKU)
            );

            let trials: Vec<&serde_json::Value> = everyone
                .iter()
                .filter(|item| item["isTrial"] == true)
                .collect();
            assert_eq!(trials.len(), 1);
            let trial = trials[0];
            assert!(items(TRIAL_CUSTOMER).contains(trial));
            assert_eq!(trial["id"], subscription_id(TRIAL_CUSTOMER, TRIAL_SKU));
            assert_eq!(trial["termDuration"], "P1M");
            assert_eq!(trial["autoRenewEnabled"], false);
            assert!(trial["cancellationAllowedUntilDate"].is_null());
            assert!((15..=25).contains(&days_to(trial, "commitmentEndDate", now)));

            let of_type = |kind: &str| -> Vec<&serde_json::Value> {
                everyone
                    .iter()
                    .filter(|item| item["productType"]["id"] == kind)
                    .collect()
            };
            let azure = of_type("Azure");
            assert_eq!(azure.len(), 1);
            assert!(items(AZURE_PLAN_CUSTOMER).contains(azure[0]));
            assert_eq!(azure[0]["offerId"], AZURE_PLAN_OFFER_ID);
            assert_eq!(azure[0]["quantity"], 1);
            assert_eq!(azure[0]["unitType"], "Usage-based");
            assert_eq!(azure[0]["commitmentEndDate"], FAR_FUTURE_END_DATE);
            assert!(azure[0]["cancellationAllowedUntilDate"].is_null());
            assert!(azure[0]["termDuration"].is_null());
            let software = of_type("Software");
            assert_eq!(software.len(), 1);
            assert!(items(SOFTWARE_CUSTOMER).contains(software[0]));
            assert_eq!(software[0]["offerId"], SOFTWARE_OFFER_ID);
            assert_eq!(software[0]["commitmentEndDate"], FAR_FUTURE_END_DATE);
            assert!(
                date(software[0], "cancellationAllowedUntilDate") < DateTime::<Utc>::from(now),
                "returned long ago, if at all"
            );

            let not_renewing = everyone
                .iter()
                .filter(|item| item["productType"]["id"] == "OnlineServicesNCE")
                .filter(|item| item["autoRenewEnabled"] == false && item["isTrial"] == false)
                .filter(|item| item["status"] == "active")
                .count();
            assert!((5..=40).contains(&not_renewing), "{not_renewing}");
            assert!(!items(GDAP_REFUSED_CUSTOMER).is_empty());
        }
        for subscription in all.iter().flatten() {
            let kind = subscription.product_type;
            assert_eq!(
                subscription.provisioning_status(at(START)).is_none(),
                kind != "OnlineServicesNCE",
                "only licences have a provisioning status: {kind}"
            );
        }
        let body: serde_json::Value =
            serde_json::from_str(PROVISIONING_NOT_FOUND_BODY).expect("JSON");
        assert_eq!(body["code"], 800002);
        assert_eq!(body["source"], "PartnerFD");
        assert!(body["data"].is_array());
    }

    #[test]
    fn terms_end_in_their_next_term_and_annual_renewals_are_spread_over_the_year() {
        let tenants = tenants();
        let all = of_tenants(&tenants);
        let mut terms = BTreeMap::new();
        let (mut open, mut closed) = (0, 0);
        // Every 25 hours over two years, leap day included.
        for step in 0..(2 * 365 * 24 / 25) {
            let now = at(START + step * 90_000);
            let wall = DateTime::<Utc>::from(now);
            let (mut within_30, mut within_14) = (0, 0);
            for subscription in all.iter().flatten() {
                let item = subscription.item(now);
                let Some(term) = item["termDuration"].as_str() else {
                    continue;
                };
                if step == 0 {
                    *terms
                        .entry(format!("{term} {}", text(&item, "billingCycle")))
                        .or_insert(0) += 1;
                }
                let days = days_to(&item, "commitmentEndDate", now);
                let longest = match term {
                    "P1M" => 31,
                    "P1Y" => 366,
                    _ => 3 * 366,
                };
                assert!((0..longest).contains(&days), "{days} days: {item}");
                assert!(date(&item, "effectiveStartDate") <= wall, "{item}");
                assert!(
                    date(&item, "creationDate")
                        <= date(&item, "effectiveStartDate") + TimeDelta::seconds(1),
                    "{item}"
                );
                if let Some(until) = item["cancellationAllowedUntilDate"].as_str() {
                    let until = DateTime::parse_from_rfc3339(until).expect("a date");
                    let changed = until.with_timezone(&Utc) - TimeDelta::days(CANCELLATION_DAYS);
                    assert!(changed <= wall, "the change it follows happened: {item}");
                    if until > wall {
                        open += 1;
                    } else {
                        closed += 1;
                    }
                } else {
                    assert!(
                        item["isTrial"] == true || item["productType"]["id"] != "OnlineServicesNCE",
                        "NCE subscriptions have a cancellation date: {item}"
                    );
                }
                if term == "P1Y" && item["autoRenewEnabled"] == true && item["status"] == "active" {
                    within_30 += u32::from(days < 30);
                    within_14 += u32::from(days < 14);
                }
            }
            assert!(within_30 >= 4, "{within_30} renew within 30 days at {wall}");
            assert!(within_14 >= 2, "{within_14} renew within 14 days at {wall}");
            assert!(
                within_30 <= 20,
                "{within_30} renew within 30 days at {wall}"
            );
        }
        for kind in ["P1M monthly", "P1Y annual", "P1Y monthly", "P3Y triennial"] {
            assert!(
                terms.get(kind).is_some_and(|n| *n >= 3),
                "{kind}: {terms:?}"
            );
        }
        assert!(
            open > 0 && closed > 4 * open,
            "open {open}, closed {closed}"
        );
    }
}
