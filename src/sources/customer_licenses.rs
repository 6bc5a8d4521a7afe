//! The `customer_licenses` source: each customer's licences per SKU, from
//! `GET /v1/customers/{id}/subscribedskus` for every covered customer
//! (`SubscribedSku` items): units bought by status, and units assigned.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::{Family, FamilyByLabel, Fetch, InfoFamily, Source, SourceName};
use crate::filters::Filters;
use crate::partner_center::collection::{
    DecodeError, Field, FieldKind, Page, SkipReason, decode_page, read_fields,
};

/// One usable `SubscribedSku` item of one customer.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerSku {
    /// The customer the collection belongs to, lower-case.
    pub customer_tenant_id: String,
    /// `productSku.id`, the SKU's GUID, lower-case.
    pub sku_id: String,
    /// `productSku.skuPartNumber`, e.g. `SPE_E3`; empty when absent.
    pub sku_part_number: String,
    /// `productSku.name`; empty when absent.
    pub sku_name: String,
    /// `capabilityStatus`: Enabled, Warning, Suspended, Deleted, LockedOut.
    pub capability_status: String,
    /// `activeUnits`.
    pub active: f64,
    /// `warningUnits`: in their grace period; 0 when absent.
    pub warning: f64,
    /// `suspendedUnits`; 0 when absent.
    pub suspended: f64,
    /// `consumedUnits`: assigned to users.
    pub consumed: f64,
}

/// The `customer_licenses` source.
pub struct CustomerLicensesSource;

const FIELDS: [(&str, FieldKind); 6] = [
    ("productSku", FieldKind::Object),
    ("activeUnits", FieldKind::Number),
    ("warningUnits", FieldKind::Number),
    ("suspendedUnits", FieldKind::Number),
    ("consumedUnits", FieldKind::Number),
    ("capabilityStatus", FieldKind::Text),
];

const SKU_FIELDS: [(&str, FieldKind); 3] = [
    ("id", FieldKind::Text),
    ("skuPartNumber", FieldKind::Text),
    ("name", FieldKind::Text),
];

/// A count that may be absent (0) but not unusable.
fn optional_units(field: Field, name: &'static str) -> Result<f64, SkipReason> {
    match field {
        Field::Absent => Ok(0.0),
        field => field.required_number(name),
    }
}

impl Source for CustomerLicensesSource {
    type Item = CustomerSku;

    const NAME: SourceName = SourceName::CustomerLicenses;
    const FETCH: Fetch = Fetch::PerCustomer("subscribedskus");
    const ENABLED_BY_DEFAULT: bool = false;
    const DEFAULT_INTERVAL: Option<Duration> = Some(Duration::from_secs(3600));
    const ITEM_NOUN: &'static str = "subscribed SKU";
    const LABELS: &'static [&'static str] = &["customer_tenant_id", "sku_id"];
    const FAMILIES: &'static [Family<CustomerSku>] = &[Family {
        name: "partner_center_customer_licenses_consumed",
        help: "Licences of the SKU assigned to the customer's users (consumedUnits).",
        value: |item| Some(item.consumed),
    }];
    const FAMILIES_BY_LABEL: &'static [FamilyByLabel<CustomerSku>] = &[FamilyByLabel {
        name: "partner_center_customer_licenses",
        help: "Licences of the SKU the customer has, by status: active (activeUnits), \
               warning (warningUnits, in their grace period), suspended (suspendedUnits).",
        label: "status",
        values: &[
            ("active", |item| item.active),
            ("warning", |item| item.warning),
            ("suspended", |item| item.suspended),
        ],
    }];
    const INFO_FAMILIES: &'static [InfoFamily<CustomerSku>] = &[InfoFamily {
        name: "partner_center_customer_sku_info",
        help: "A SKU of the customer: its part number, name and capability status, with the value 1.",
        labels: &[
            "customer_tenant_id",
            "sku_id",
            "sku_part_number",
            "sku_name",
            "capability_status",
        ],
        key: 2,
        values: |item| {
            Some(vec![
                item.customer_tenant_id.as_str(),
                item.sku_id.as_str(),
                item.sku_part_number.as_str(),
                item.sku_name.as_str(),
                item.capability_status.as_str(),
            ])
        },
    }];

    fn decode_item(item: &RawValue) -> Result<CustomerSku, SkipReason> {
        let [sku, active, warning, suspended, consumed, status] = read_fields(item, &FIELDS)?;
        let [id, part_number, name] = sku.object_fields("productSku", &SKU_FIELDS)?;
        Ok(CustomerSku {
            customer_tenant_id: String::new(),
            sku_id: id
                .required_text("productSku.id")?
                .trim()
                .to_ascii_lowercase(),
            sku_part_number: part_number.optional_text().unwrap_or_default(),
            sku_name: name.optional_text().unwrap_or_default(),
            capability_status: status.optional_text().unwrap_or_default(),
            active: active.required_number("activeUnits")?,
            warning: optional_units(warning, "warningUnits")?,
            suspended: optional_units(suspended, "suspendedUnits")?,
            consumed: consumed.required_number("consumedUnits")?,
        })
    }

    fn label_values(item: &CustomerSku) -> impl AsRef<[&str]> {
        [item.customer_tenant_id.as_str(), item.sku_id.as_str()]
    }

    /// A SKU listed twice for one customer: the later one wins.
    fn processed_at(_item: &CustomerSku) -> Option<DateTime<Utc>> {
        None
    }

    /// Free and viral SKUs are left out by part number or by their size.
    fn admit(item: &CustomerSku, filters: &Filters) -> bool {
        filters.admits_sku(&item.sku_part_number, item.active + item.warning)
    }

    fn assign_customer(item: &mut CustomerSku, customer_tenant_id: &str) {
        customer_tenant_id.clone_into(&mut item.customer_tenant_id);
    }
}

/// Decodes one page of `GET /v1/customers/{id}/subscribedskus`; the items'
/// customer is set by the fan-out (see [`Source::assign_customer`]).
pub fn decode_subscribed_skus_page(body: &[u8]) -> Result<Page<CustomerSku>, DecodeError> {
    decode_page(body, CustomerLicensesSource::decode_item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::snapshot::Snapshot;

    const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/subscribed-skus.json");

    fn documented() -> Vec<CustomerSku> {
        let mut page = decode_page(FIXTURE, CustomerLicensesSource::decode_item).expect("decodes");
        assert!(page.skipped.is_empty(), "{:?}", page.skipped);
        for item in &mut page.items {
            CustomerLicensesSource::assign_customer(item, "b44bb1fb-c595-45b0-9e09-d657365580bf");
        }
        page.items
    }

    #[test]
    fn the_documented_example_decodes_exactly() {
        let items = documented();
        assert_eq!(
            items[0],
            CustomerSku {
                customer_tenant_id: "b44bb1fb-c595-45b0-9e09-d657365580bf".to_owned(),
                sku_id: "efccb6f7-5641-4e0e-bd10-b4976e1bf68e".to_owned(),
                sku_part_number: "EMS".to_owned(),
                sku_name: "Enterprise Mobility + Security E3".to_owned(),
                capability_status: "Enabled".to_owned(),
                active: 5.0,
                warning: 0.0,
                suspended: 0.0,
                consumed: 1.0,
            }
        );
        assert_eq!(items[1].sku_part_number, "POWER_BI_PRO");
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn the_documented_example_renders_exactly_these_families() {
        let snapshot = Snapshot::<CustomerLicensesSource>::from_items(documented());
        let c = "customer_tenant_id=\"b44bb1fb-c595-45b0-9e09-d657365580bf\"";
        let ems = "sku_id=\"efccb6f7-5641-4e0e-bd10-b4976e1bf68e\"";
        let bi = "sku_id=\"f8a1db68-be16-40ed-86d5-cb42ce701560\"";
        let expected = format!(
            "# HELP partner_center_customer_licenses_consumed Licences of the SKU assigned to the customer's users (consumedUnits).\n\
             # TYPE partner_center_customer_licenses_consumed gauge\n\
             partner_center_customer_licenses_consumed{{{c},{ems}}} 1\n\
             partner_center_customer_licenses_consumed{{{c},{bi}}} 1\n\
             # HELP partner_center_customer_licenses Licences of the SKU the customer has, by status: active (activeUnits), warning (warningUnits, in their grace period), suspended (suspendedUnits).\n\
             # TYPE partner_center_customer_licenses gauge\n\
             partner_center_customer_licenses{{{c},{ems},status=\"active\"}} 5\n\
             partner_center_customer_licenses{{{c},{ems},status=\"warning\"}} 0\n\
             partner_center_customer_licenses{{{c},{ems},status=\"suspended\"}} 0\n\
             partner_center_customer_licenses{{{c},{bi},status=\"active\"}} 1\n\
             partner_center_customer_licenses{{{c},{bi},status=\"warning\"}} 0\n\
             partner_center_customer_licenses{{{c},{bi},status=\"suspended\"}} 0\n\
             # HELP partner_center_customer_sku_info A SKU of the customer: its part number, name and capability status, with the value 1.\n\
             # TYPE partner_center_customer_sku_info gauge\n\
             partner_center_customer_sku_info{{{c},{ems},sku_part_number=\"EMS\",sku_name=\"Enterprise Mobility + Security E3\",capability_status=\"Enabled\"}} 1\n\
             partner_center_customer_sku_info{{{c},{bi},sku_part_number=\"POWER_BI_PRO\",sku_name=\"Power BI Pro\",capability_status=\"Enabled\"}} 1\n"
        );
        assert_eq!(snapshot.text(), expected);
    }

    #[test]
    fn unusable_skus_are_skipped_naming_the_field_and_absent_counts_are_zero() {
        let body = br#"{"items":[
            {"activeUnits":1,"consumedUnits":1},
            {"productSku":{"name":"x"},"activeUnits":1,"consumedUnits":1},
            {"productSku":{"id":"A"},"activeUnits":"lots","consumedUnits":1},
            {"productSku":{"id":"B"},"activeUnits":3,"consumedUnits":4,"warningUnits":null}
        ]}"#;
        let page = decode_page(body, CustomerLicensesSource::decode_item).expect("a page");
        let reasons: Vec<_> = page.skipped.iter().map(|s| s.reason).collect();
        assert_eq!(
            reasons,
            [
                SkipReason::MissingField("productSku"),
                SkipReason::MissingField("productSku.id"),
                SkipReason::InvalidNumber("activeUnits"),
            ]
        );
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].sku_id, "b", "published lower-case");
        assert_eq!((page.items[0].warning, page.items[0].suspended), (0.0, 0.0));
        assert_eq!(
            page.items[0].consumed, 4.0,
            "over-assignment is served as received"
        );
    }

    #[test]
    fn free_skus_are_left_out_by_the_filters() {
        let filters = Filters::new(crate::filters::FilterSettings {
            sku_exclude: &["TEAMS_*".to_owned()],
            max_units: 10_000,
            ..Default::default()
        })
        .expect("filters");
        let mut sku = documented().remove(0);
        assert!(CustomerLicensesSource::admit(&sku, &filters));
        sku.active = 9_999.0;
        sku.warning = 1.0;
        assert!(
            !CustomerLicensesSource::admit(&sku, &filters),
            "10,000 units"
        );
        sku.active = 5.0;
        sku.sku_part_number = "TEAMS_EXPLORATORY".to_owned();
        assert!(!CustomerLicensesSource::admit(&sku, &filters));
    }
}
