//! The `subscriptions` source: each customer's subscriptions, from
//! `GET /v1/customers/{id}/subscriptions` for every covered customer:
//! seats, the end of the term, the new-commerce window for reducing seats,
//! auto-renewal, and the SKU each subscription sells.
//!
//! Under new commerce, seats can be reduced or a subscription cancelled
//! only until `cancellationAllowedUntilDate`, about seven days after a
//! purchase, a renewal or a seat addition; after that the partner pays
//! for them to the end of the term, `commitmentEndDate`, an inclusive
//! day. A subscription names its SKU only through its provisioning
//! status (`…/subscriptions/{id}/provisioningstatus`, `skuId`), looked up
//! once per subscription (see [`Source::LOOKUP`]): that SKU is what joins
//! a subscription's seats with the customer's licences of the SKU.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::value::RawValue;

use super::{Family, Fetch, InfoFamily, Lookup, Source, SourceName};
use crate::exposition::unix_seconds;
use crate::filters::Filters;
use crate::partner_center::collection::{
    DecodeError, Field, FieldKind, Page, SkipReason, decode_page, parse_processed_date_time,
    read_fields,
};

/// A figure of a subscription that feeds one series: `Ok(None)` when the
/// subscription has none (which is no fault), `Err` when Partner Center
/// sent one that cannot be read.
pub type Part<T> = Result<Option<T>, SkipReason>;

/// One usable subscription of one customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// The customer the collection belongs to, lower-case.
    pub customer_tenant_id: String,
    /// `id`, lower-case.
    pub subscription_id: String,
    /// The Entra ID SKU GUID, lower-case, from the provisioning status;
    /// empty until looked up, and for subscriptions without a SKU.
    pub sku_id: String,
    /// `offerId`, such as `CFQ7TTC0LFLZ:0001:CFQ7TTC0MM8R`; empty when absent.
    pub offer_id: String,
    /// `offerName`; empty when absent.
    pub offer_name: String,
    /// `friendlyName`, the partner's or customer's nickname; empty when absent.
    pub friendly_name: String,
    /// `status`, lower-case: active, suspended, pending, expired, …
    pub status: String,
    /// `billingCycle`, lower-case: monthly, annual, triennial, none, …
    pub billing_cycle: String,
    /// `termDuration` as given: P1M, P1Y, P3Y.
    pub term_duration: String,
    /// `isTrial`; false when absent.
    pub is_trial: bool,
    /// `productType.id` (OnlineServicesNCE, Azure, Software, …); empty
    /// when absent.
    pub product_type: String,
    /// `quantity`, for a seat-based subscription (`unitType` Licenses).
    pub licenses: Part<f64>,
    /// The end of the `commitmentEndDate` day, as Unix seconds; `None`
    /// for the far-future dates of subscriptions that do not renew.
    pub commitment_end: Part<f64>,
    /// `cancellationAllowedUntilDate`, as Unix seconds, when given.
    pub cancellation_allowed_until: Part<f64>,
    /// `autoRenewEnabled`.
    pub auto_renew: Part<bool>,
}

/// The `subscriptions` source.
pub struct SubscriptionsSource;

/// A commitment end further ahead than this is no term's end but the
/// placeholder of a subscription that does not renew (an Azure plan,
/// perpetual software: `9999-12-31`). The longest terms sold are five
/// years; ten leaves room for any real one.
const NON_RENEWING_BEYOND: chrono::TimeDelta = chrono::TimeDelta::days(10 * 366);

/// The file in `state_dir` that keeps each subscription's SKU.
pub const SKU_FILE: &str = "subscription-skus.json";

const FIELDS: [(&str, FieldKind); 14] = [
    ("id", FieldKind::Text),
    ("offerId", FieldKind::Text),
    ("offerName", FieldKind::Text),
    ("friendlyName", FieldKind::Text),
    ("quantity", FieldKind::Number),
    ("unitType", FieldKind::Text),
    ("productType", FieldKind::Object),
    ("status", FieldKind::Text),
    ("autoRenewEnabled", FieldKind::Flag),
    ("isTrial", FieldKind::Flag),
    ("billingCycle", FieldKind::Text),
    ("termDuration", FieldKind::Text),
    ("commitmentEndDate", FieldKind::Text),
    ("cancellationAllowedUntilDate", FieldKind::Text),
];

const PRODUCT_TYPE_FIELDS: [(&str, FieldKind); 1] = [("id", FieldKind::Text)];

/// Product types whose subscriptions have no Entra ID SKU to look up.
const WITHOUT_SKU: [&str; 2] = ["Azure", "Software"];

fn lower(field: Field) -> String {
    field
        .optional_text()
        .map(|text| text.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

fn text(field: Field) -> String {
    field
        .optional_text()
        .map(|text| text.trim().to_owned())
        .unwrap_or_default()
}

/// The end of the inclusive day a `commitmentEndDate` names, read from its
/// date alone: the time of day says nothing about when the term ends, and
/// Partner Center has sent it mangled (`2016-12-12T08: 00: 00Z`).
pub fn end_of_day(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    let date = text.get(..10)?;
    let rest = &text[10..];
    if !(rest.is_empty() || rest.starts_with('T') || rest.starts_with(' ')) {
        return None;
    }
    let day = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some(day.succ_opt()?.and_hms_opt(0, 0, 0)?.and_utc())
}

/// A date-time as Partner Center sends it, also with the blanks after the
/// colons its documented example has (`2015-11-25T06: 41: 12Z`).
pub fn date_time(text: &str) -> Option<DateTime<Utc>> {
    parse_processed_date_time(text).or_else(|| {
        let unspaced = text.replace(": ", ":");
        parse_processed_date_time(&unspaced)
    })
}

fn commitment_end(field: Field, now: DateTime<Utc>) -> Part<f64> {
    let left_out = SkipReason::PartLeftOut("commitmentEndDate");
    let Field::Text(text) = field else {
        return Err(left_out);
    };
    let end = end_of_day(&text).ok_or(left_out)?;
    Ok((end <= now + NON_RENEWING_BEYOND).then(|| unix_seconds(end)))
}

fn cancellation_allowed_until(field: Field) -> Part<f64> {
    match field {
        Field::Absent => Ok(None),
        Field::Text(text) if text.trim().is_empty() => Ok(None),
        Field::Text(text) => date_time(&text)
            .map(|at| Some(unix_seconds(at)))
            .ok_or(SkipReason::PartLeftOut("cancellationAllowedUntilDate")),
        _ => Err(SkipReason::PartLeftOut("cancellationAllowedUntilDate")),
    }
}

fn licenses(quantity: Field, unit_type: &Field) -> Part<f64> {
    let seat_based =
        matches!(unit_type, Field::Text(unit) if unit.trim().eq_ignore_ascii_case("licenses"));
    if !seat_based {
        return Ok(None);
    }
    quantity
        .required_number("quantity")
        .map(Some)
        .map_err(|_| SkipReason::PartLeftOut("quantity"))
}

fn auto_renew(field: Field) -> Part<bool> {
    match field {
        Field::Flag(on) => Ok(Some(on)),
        _ => Err(SkipReason::PartLeftOut("autoRenewEnabled")),
    }
}

/// A figure for a family: present and readable.
fn figure(part: &Part<f64>) -> Option<f64> {
    part.as_ref().ok().copied().flatten()
}

/// Reads a provisioning status: its `skuId`, lower-case, or `None` when
/// the answer names no SKU.
pub fn decode_provisioning_status(body: &[u8]) -> Result<Option<String>, String> {
    #[derive(serde::Deserialize)]
    struct ProvisioningStatus {
        #[serde(rename = "skuId", default)]
        sku_id: Option<serde_json::Value>,
    }
    let status: ProvisioningStatus = serde_json::from_slice(body)
        .map_err(|err| format!("the provisioning status is not readable: {err}"))?;
    match status.sku_id {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(id)) if id.trim().is_empty() => Ok(None),
        Some(serde_json::Value::String(id)) => Ok(Some(id.trim().to_ascii_lowercase())),
        Some(_) => Err("the provisioning status' skuId is not a string".to_owned()),
    }
}

impl Source for SubscriptionsSource {
    type Item = Subscription;

    const NAME: SourceName = SourceName::Subscriptions;
    const FETCH: Fetch = Fetch::PerCustomer("subscriptions");
    const ENABLED_BY_DEFAULT: bool = false;
    const DEFAULT_INTERVAL: Option<Duration> = Some(Duration::from_secs(6 * 3600));
    const ITEM_NOUN: &'static str = "subscription";
    const LABELS: &'static [&'static str] = &["customer_tenant_id", "subscription_id"];
    const FAMILIES: &'static [Family<Subscription>] = &[
        Family {
            name: "partner_center_subscription_licenses",
            help: "Seats of a seat-based subscription (quantity, unitType Licenses).",
            value: |item| figure(&item.licenses),
        },
        Family {
            name: "partner_center_subscription_commitment_end_timestamp_seconds",
            help: "When the subscription's term ends, as Unix seconds: the end of the \
                   commitmentEndDate day, UTC. Absent for subscriptions that do not renew.",
            value: |item| figure(&item.commitment_end),
        },
        Family {
            name: "partner_center_subscription_cancellation_allowed_until_timestamp_seconds",
            help: "Until when seats can be reduced or the subscription cancelled, as Unix \
                   seconds (cancellationAllowedUntilDate); afterwards they are paid to the term's end.",
            value: |item| figure(&item.cancellation_allowed_until),
        },
        Family {
            name: "partner_center_subscription_auto_renew",
            help: "1 when the subscription renews at the end of its term (autoRenewEnabled), else 0.",
            value: |item| {
                item.auto_renew
                    .ok()
                    .flatten()
                    .map(|on| if on { 1.0 } else { 0.0 })
            },
        },
    ];
    const INFO_FAMILIES: &'static [InfoFamily<Subscription>] = &[InfoFamily {
        name: "partner_center_subscription_info",
        help: "A subscription: its SKU, offer, names, status, billing cycle, term and \
               whether it is a trial, with the value 1.",
        labels: &[
            "customer_tenant_id",
            "subscription_id",
            "sku_id",
            "offer_id",
            "offer_name",
            "friendly_name",
            "status",
            "billing_cycle",
            "term_duration",
            "is_trial",
        ],
        key: 2,
        values: |item| {
            Some(vec![
                item.customer_tenant_id.as_str(),
                item.subscription_id.as_str(),
                item.sku_id.as_str(),
                item.offer_id.as_str(),
                item.offer_name.as_str(),
                item.friendly_name.as_str(),
                item.status.as_str(),
                item.billing_cycle.as_str(),
                item.term_duration.as_str(),
                if item.is_trial { "true" } else { "false" },
            ])
        },
    }];
    const LOOKUP: Option<Lookup<Subscription>> = Some(Lookup {
        file: SKU_FILE,
        what: "SKU",
        key: |item| {
            let without_sku = WITHOUT_SKU
                .iter()
                .any(|kind| item.product_type.eq_ignore_ascii_case(kind));
            (!without_sku).then_some(item.subscription_id.as_str())
        },
        path: |item| format!("subscriptions/{}/provisioningstatus", item.subscription_id),
        decode: decode_provisioning_status,
        apply: |item, sku_id| sku_id.clone_into(&mut item.sku_id),
    });

    fn decode_item(item: &RawValue) -> Result<Subscription, SkipReason> {
        let [
            id,
            offer_id,
            offer_name,
            friendly_name,
            quantity,
            unit_type,
            product_type,
            status,
            auto_renew_enabled,
            is_trial,
            billing_cycle,
            term_duration,
            commitment_end_date,
            cancellation_date,
        ] = read_fields(item, &FIELDS)?;
        let product_type = match product_type {
            Field::Absent => String::new(),
            object => {
                let [kind] = object.object_fields("productType", &PRODUCT_TYPE_FIELDS)?;
                text(kind)
            }
        };
        Ok(Subscription {
            customer_tenant_id: String::new(),
            subscription_id: id.required_text("id")?.trim().to_ascii_lowercase(),
            sku_id: String::new(),
            offer_id: text(offer_id),
            offer_name: text(offer_name),
            friendly_name: text(friendly_name),
            status: lower(status),
            billing_cycle: lower(billing_cycle),
            term_duration: text(term_duration),
            is_trial: matches!(is_trial, Field::Flag(true)),
            product_type,
            licenses: licenses(quantity, &unit_type),
            commitment_end: commitment_end(commitment_end_date, Utc::now()),
            cancellation_allowed_until: cancellation_allowed_until(cancellation_date),
            auto_renew: auto_renew(auto_renew_enabled),
        })
    }

    fn label_values(item: &Subscription) -> impl AsRef<[&str]> {
        [
            item.customer_tenant_id.as_str(),
            item.subscription_id.as_str(),
        ]
    }

    /// A subscription listed twice for one customer: the later one wins.
    fn processed_at(_item: &Subscription) -> Option<DateTime<Utc>> {
        None
    }

    /// Only the statuses of `subscriptions.statuses` are published.
    fn admit(item: &Subscription, filters: &Filters) -> bool {
        filters.admits_subscription_status(&item.status)
    }

    fn assign_customer(item: &mut Subscription, customer_tenant_id: &str) {
        customer_tenant_id.clone_into(&mut item.customer_tenant_id);
    }

    fn parts_left_out(item: &Subscription) -> impl Iterator<Item = SkipReason> {
        [
            item.licenses.err(),
            item.commitment_end.err(),
            item.cancellation_allowed_until.err(),
            item.auto_renew.err(),
        ]
        .into_iter()
        .flatten()
    }
}

/// Decodes one page of `GET /v1/customers/{id}/subscriptions`; the items'
/// customer is set by the fan-out (see [`Source::assign_customer`]).
pub fn decode_subscriptions_page(body: &[u8]) -> Result<Page<Subscription>, DecodeError> {
    decode_page(body, SubscriptionsSource::decode_item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::snapshot::Snapshot;

    const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/customer-subscriptions.json");
    const PROVISIONING: &[u8] =
        include_bytes!("../../tests/fixtures/subscription-provisioning-status.json");
    const CUSTOMER: &str = "954ca09a-1132-4088-bb58-30438dea2756";

    fn documented() -> Vec<Subscription> {
        let mut page = decode_subscriptions_page(FIXTURE).expect("decodes");
        assert!(page.skipped.is_empty(), "{:?}", page.skipped);
        for item in &mut page.items {
            SubscriptionsSource::assign_customer(item, CUSTOMER);
        }
        page.items
    }

    fn at(text: &str) -> f64 {
        unix_seconds(DateTime::parse_from_rfc3339(text).expect("a date").to_utc())
    }

    #[test]
    fn the_documented_examples_decode_exactly() {
        let items = documented();
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[1],
            Subscription {
                customer_tenant_id: CUSTOMER.to_owned(),
                subscription_id: "924671ba-eab9-45d7-95ed-dbd9477f182b".to_owned(),
                sku_id: String::new(),
                offer_id: "DG7GMGF0FKZV:0003:DG7GMGF0DQLM".to_owned(),
                offer_name: "SQL Server Enterprise - 2 Core License Pack - 3 year".to_owned(),
                friendly_name: "SQL Server Enterprise - 2 Core License Pack - 3 year".to_owned(),
                status: "active".to_owned(),
                billing_cycle: "triennial".to_owned(),
                term_duration: "P3Y".to_owned(),
                is_trial: false,
                product_type: "Software".to_owned(),
                licenses: Ok(Some(1.0)),
                commitment_end: Ok(Some(at("2024-10-15T00:00:00Z"))),
                cancellation_allowed_until: Ok(Some(at("2021-11-14T23:59:00Z"))),
                auto_renew: Ok(Some(true)),
            }
        );
        // The older example: no unitType Licenses, no cancellation date,
        // and a commitment end whose time of day is mangled.
        let legacy = &items[0];
        assert_eq!(
            legacy.subscription_id,
            "83ef9d05-4169-4ef9-9657-0e86b1eab1de"
        );
        assert_eq!(legacy.licenses, Ok(None));
        assert_eq!(legacy.commitment_end, Ok(Some(at("2016-12-13T00:00:00Z"))));
        assert_eq!(legacy.cancellation_allowed_until, Ok(None));
        assert_eq!(legacy.auto_renew, Ok(Some(false)));
        assert_eq!((legacy.offer_id.as_str(), legacy.is_trial), ("", false));
        assert_eq!(SubscriptionsSource::parts_left_out(legacy).count(), 0);
    }

    #[test]
    fn the_documented_examples_render_exactly_these_families() {
        let mut items = documented();
        (SubscriptionsSource::LOOKUP.expect("a lookup").apply)(
            &mut items[1],
            "6fd2c87f-b296-42f0-b197-1e91e994b900",
        );
        let snapshot = Snapshot::<SubscriptionsSource>::from_items(items);
        let c = format!("customer_tenant_id=\"{CUSTOMER}\"");
        let legacy = "subscription_id=\"83ef9d05-4169-4ef9-9657-0e86b1eab1de\"";
        let sql = "subscription_id=\"924671ba-eab9-45d7-95ed-dbd9477f182b\"";
        let expected = format!(
            "# HELP partner_center_subscription_licenses Seats of a seat-based subscription (quantity, unitType Licenses).\n\
             # TYPE partner_center_subscription_licenses gauge\n\
             partner_center_subscription_licenses{{{c},{sql}}} 1\n\
             # HELP partner_center_subscription_commitment_end_timestamp_seconds When the subscription's term ends, as Unix seconds: the end of the commitmentEndDate day, UTC. Absent for subscriptions that do not renew.\n\
             # TYPE partner_center_subscription_commitment_end_timestamp_seconds gauge\n\
             partner_center_subscription_commitment_end_timestamp_seconds{{{c},{legacy}}} 1481587200\n\
             partner_center_subscription_commitment_end_timestamp_seconds{{{c},{sql}}} 1728950400\n\
             # HELP partner_center_subscription_cancellation_allowed_until_timestamp_seconds Until when seats can be reduced or the subscription cancelled, as Unix seconds (cancellationAllowedUntilDate); afterwards they are paid to the term's end.\n\
             # TYPE partner_center_subscription_cancellation_allowed_until_timestamp_seconds gauge\n\
             partner_center_subscription_cancellation_allowed_until_timestamp_seconds{{{c},{sql}}} 1636934340\n\
             # HELP partner_center_subscription_auto_renew 1 when the subscription renews at the end of its term (autoRenewEnabled), else 0.\n\
             # TYPE partner_center_subscription_auto_renew gauge\n\
             partner_center_subscription_auto_renew{{{c},{legacy}}} 0\n\
             partner_center_subscription_auto_renew{{{c},{sql}}} 1\n\
             # HELP partner_center_subscription_info A subscription: its SKU, offer, names, status, billing cycle, term and whether it is a trial, with the value 1.\n\
             # TYPE partner_center_subscription_info gauge\n\
             partner_center_subscription_info{{{c},{legacy},sku_id=\"\",offer_id=\"\",offer_name=\"\",friendly_name=\"nickname\",status=\"active\",billing_cycle=\"\",term_duration=\"\",is_trial=\"false\"}} 1\n\
             partner_center_subscription_info{{{c},{sql},sku_id=\"6fd2c87f-b296-42f0-b197-1e91e994b900\",offer_id=\"DG7GMGF0FKZV:0003:DG7GMGF0DQLM\",offer_name=\"SQL Server Enterprise - 2 Core License Pack - 3 year\",friendly_name=\"SQL Server Enterprise - 2 Core License Pack - 3 year\",status=\"active\",billing_cycle=\"triennial\",term_duration=\"P3Y\",is_trial=\"false\"}} 1\n"
        );
        assert_eq!(snapshot.text(), expected);
    }

    #[test]
    fn an_unreadable_or_missing_date_costs_only_its_own_series() {
        let body = br#"{"items":[
            {"id":"A","unitType":"Licenses","quantity":7,"autoRenewEnabled":true,
             "commitmentEndDate":"soon","cancellationAllowedUntilDate":"2026-12-02T10: 00: 00Z"},
            {"id":"B","unitType":"Licenses","quantity":"many","autoRenewEnabled":"yes",
             "commitmentEndDate":"2027-01-31T00:00:00Z","cancellationAllowedUntilDate":"tomorrow"},
            {"id":"C","unitType":"licenses","quantity":3,"autoRenewEnabled":"True"},
            {"offerId":"no id"}
        ]}"#;
        let page = decode_subscriptions_page(body).expect("a page");
        assert_eq!(page.skipped.len(), 1, "only the item without an id");
        assert_eq!(page.skipped[0].reason, SkipReason::MissingField("id"));
        let [a, b, c] = &page.items[..] else {
            panic!("three subscriptions: {:?}", page.items)
        };
        assert_eq!(a.licenses, Ok(Some(7.0)));
        assert_eq!(a.auto_renew, Ok(Some(true)));
        assert_eq!(
            a.cancellation_allowed_until,
            Ok(Some(at("2026-12-02T10:00:00Z"))),
            "the documented blanks after the colons are read"
        );
        let reasons = |item| SubscriptionsSource::parts_left_out(item).collect::<Vec<_>>();
        assert_eq!(reasons(a), [SkipReason::PartLeftOut("commitmentEndDate")]);
        assert_eq!(
            reasons(b),
            [
                SkipReason::PartLeftOut("quantity"),
                SkipReason::PartLeftOut("cancellationAllowedUntilDate"),
                SkipReason::PartLeftOut("autoRenewEnabled"),
            ]
        );
        assert_eq!(b.commitment_end, Ok(Some(at("2027-02-01T00:00:00Z"))));
        assert_eq!(
            reasons(c),
            [SkipReason::PartLeftOut("commitmentEndDate")],
            "a missing end date is counted, a missing cancellation date is not"
        );
        assert_eq!((c.licenses, c.auto_renew), (Ok(Some(3.0)), Ok(Some(true))));
        assert_eq!(c.subscription_id, "c", "published lower-case");

        let snapshot = Snapshot::<SubscriptionsSource>::from_items(page.items.clone());
        let text = snapshot.text();
        assert!(text.contains("partner_center_subscription_licenses{customer_tenant_id=\"\",subscription_id=\"a\"} 7"), "{text}");
        assert!(!text.contains("partner_center_subscription_licenses{customer_tenant_id=\"\",subscription_id=\"b\"}"), "{text}");
        assert!(
            text.contains(
                "partner_center_subscription_info{customer_tenant_id=\"\",subscription_id=\"b\""
            ),
            "{text}"
        );
    }

    #[test]
    fn far_future_commitment_ends_are_left_out_and_real_terms_kept() {
        let now = at("2026-12-01T00:00:00Z");
        let now = DateTime::from_timestamp(now as i64, 0).expect("now");
        let end = |text: &str| commitment_end(Field::Text(text.to_owned()), now);
        assert_eq!(end("9999-12-31T00:00:00Z"), Ok(None));
        assert_eq!(end("2100-01-01"), Ok(None));
        assert_eq!(
            end("2031-11-30T00:00:00Z"),
            Ok(Some(at("2031-12-01T00:00:00Z"))),
            "a five-year term"
        );
        assert_eq!(
            end("2026-12-14T00:00:00+05:00"),
            Ok(Some(at("2026-12-15T00:00:00Z")))
        );
        for unreadable in ["2026-13-01", "2026-12-1", "20261201", "2026-12-01X", ""] {
            assert_eq!(
                end(unreadable),
                Err(SkipReason::PartLeftOut("commitmentEndDate")),
                "{unreadable:?}"
            );
        }
    }

    #[test]
    fn subscriptions_without_a_sku_are_not_looked_up() {
        let lookup = SubscriptionsSource::LOOKUP.expect("a lookup");
        let items = documented();
        assert_eq!((lookup.key)(&items[1]), None, "software has no Entra SKU");
        assert_eq!(
            (lookup.key)(&items[0]),
            Some("83ef9d05-4169-4ef9-9657-0e86b1eab1de")
        );
        assert_eq!(
            (lookup.path)(&items[0]),
            "subscriptions/83ef9d05-4169-4ef9-9657-0e86b1eab1de/provisioningstatus"
        );
    }

    #[test]
    fn provisioning_statuses_give_the_sku_lower_case_or_none() {
        assert_eq!(
            decode_provisioning_status(PROVISIONING),
            Ok(Some("6fd2c87f-b296-42f0-b197-1e91e994b900".to_owned()))
        );
        assert_eq!(
            decode_provisioning_status(br#"{"status":"success"}"#),
            Ok(None)
        );
        assert_eq!(decode_provisioning_status(br#"{"skuId":" "}"#), Ok(None));
        assert!(decode_provisioning_status(br#"{"skuId":5}"#).is_err());
        let err = decode_provisioning_status(b"<html>secret-ish</html>").expect_err("not JSON");
        assert!(!err.contains("secret-ish"), "{err}");
    }

    #[test]
    fn only_the_configured_statuses_are_admitted() {
        let statuses = ["active".to_owned(), "suspended".to_owned()];
        let filters = Filters::new(crate::filters::FilterSettings {
            subscription_statuses: &statuses,
            ..Default::default()
        })
        .expect("filters");
        let mut item = documented().remove(1);
        assert!(SubscriptionsSource::admit(&item, &filters));
        item.status = "expired".to_owned();
        assert!(!SubscriptionsSource::admit(&item, &filters));
    }
}
