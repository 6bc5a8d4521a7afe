//! The `customer_usage` source: licences active and qualified per
//! customer, product, workload and channel, from the commercial analytics
//! report "Get licenses usage information"
//! (`…/analytics/commercial/usage/license`), every customer in a few requests.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::commercial_rows::{identifier, processed};
use super::{Family, Fetch, InfoFamily, Source, SourceName};
use crate::filters::Filters;
use crate::partner_center::collection::{
    DecodeError, Field, FieldKind, Page, SkipReason, decode_commercial_page, read_fields,
};

/// One usable row of the usage report.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerWorkloadUsage {
    /// `customerTenantId`, lower-case.
    pub customer_tenant_id: String,
    /// `customerName`, for the customer filters only.
    pub customer_name: String,
    /// `productId` (the SKU's GUID), lower-case.
    pub product_id: String,
    pub product_name: String,
    pub service_code: String,
    pub service_name: String,
    /// `workloadCode`, e.g. `EXO`.
    pub workload_code: String,
    pub workload_name: String,
    /// `channel`, e.g. `reseller`.
    pub channel: String,
    /// `licensesActive` (documented once as `licenseActive`).
    pub active: f64,
    /// `licensesQualified`.
    pub qualified: f64,
    pub processed_at: Option<DateTime<Utc>>,
}

/// The `customer_usage` source.
pub struct CustomerUsageSource;

const FIELDS: [(&str, FieldKind); 14] = [
    ("customerTenantId", FieldKind::Text),
    ("customerName", FieldKind::Text),
    ("productId", FieldKind::Text),
    ("productName", FieldKind::Text),
    ("serviceCode", FieldKind::Text),
    ("serviceName", FieldKind::Text),
    ("workloadCode", FieldKind::Text),
    ("workloadName", FieldKind::Text),
    ("channel", FieldKind::Text),
    ("licensesActive", FieldKind::Number),
    ("licenseActive", FieldKind::Number),
    ("licensesQualified", FieldKind::Number),
    ("processedDateTime", FieldKind::Text),
    // Read so that a row naming both spellings is not mistaken for one
    // with neither; nothing else.
    ("workloadId", FieldKind::Text),
];

impl Source for CustomerUsageSource {
    type Item = CustomerWorkloadUsage;

    const NAME: SourceName = SourceName::CustomerUsage;
    const FETCH: Fetch = Fetch::Commercial("analytics/commercial/usage/license");
    const ENABLED_BY_DEFAULT: bool = false;
    const DEFAULT_INTERVAL: Option<Duration> = Some(Duration::from_secs(6 * 3600));
    const ITEM_NOUN: &'static str = "usage row";
    const LABELS: &'static [&'static str] = &[
        "channel",
        "customer_tenant_id",
        "product_id",
        "workload_code",
    ];
    const FAMILIES: &'static [Family<CustomerWorkloadUsage>] = &[
        Family {
            name: "partner_center_customer_workload_licenses_active",
            help: "Licences of the product whose users are active in the workload, per customer \
                   and channel (licensesActive).",
            value: |item| Some(item.active),
        },
        Family {
            name: "partner_center_customer_workload_licenses_qualified",
            help: "Licences of the product that qualify for the workload, per customer and \
                   channel (licensesQualified).",
            value: |item| Some(item.qualified),
        },
    ];
    const INFO_FAMILIES: &'static [InfoFamily<CustomerWorkloadUsage>] = &[
        InfoFamily {
            name: "partner_center_product_info",
            help: "A product of the commercial analytics reports: its name and service, with the value 1.",
            labels: &["product_id", "product_name", "service_code", "service_name"],
            key: 1,
            values: |item| {
                Some(vec![
                    item.product_id.as_str(),
                    item.product_name.as_str(),
                    item.service_code.as_str(),
                    item.service_name.as_str(),
                ])
            },
        },
        InfoFamily {
            name: "partner_center_workload_info",
            help: "A workload of the commercial analytics reports: its name, with the value 1.",
            labels: &["workload_code", "workload_name"],
            key: 1,
            values: |item| {
                Some(vec![
                    item.workload_code.as_str(),
                    item.workload_name.as_str(),
                ])
            },
        },
    ];

    fn decode_item(item: &RawValue) -> Result<CustomerWorkloadUsage, SkipReason> {
        let [
            customer,
            customer_name,
            product,
            product_name,
            service_code,
            service_name,
            workload,
            workload_name,
            channel,
            active,
            active_singular,
            qualified,
            processed_at,
            _,
        ] = read_fields(item, &FIELDS)?;
        let active = match (active, active_singular) {
            (Field::Absent, singular) => singular.required_number("licensesActive")?,
            (plural, _) => plural.required_number("licensesActive")?,
        };
        Ok(CustomerWorkloadUsage {
            customer_tenant_id: identifier(customer, "customerTenantId")?,
            customer_name: customer_name.optional_text().unwrap_or_default(),
            product_id: identifier(product, "productId")?,
            product_name: product_name.optional_text().unwrap_or_default(),
            service_code: service_code.optional_text().unwrap_or_default(),
            service_name: service_name.optional_text().unwrap_or_default(),
            workload_code: workload.required_text("workloadCode")?,
            workload_name: workload_name.optional_text().unwrap_or_default(),
            channel: channel.required_text("channel")?,
            active,
            qualified: qualified.required_number("licensesQualified")?,
            processed_at: processed(processed_at)?,
        })
    }

    fn label_values(item: &CustomerWorkloadUsage) -> impl AsRef<[&str]> {
        [
            item.channel.as_str(),
            item.customer_tenant_id.as_str(),
            item.product_id.as_str(),
            item.workload_code.as_str(),
        ]
    }

    fn processed_at(item: &CustomerWorkloadUsage) -> Option<DateTime<Utc>> {
        item.processed_at
    }

    fn admit(item: &CustomerWorkloadUsage, filters: &Filters) -> bool {
        filters.admits_customer(&item.customer_tenant_id, &item.customer_name)
    }
}

/// Decodes one page of the commercial usage report.
pub fn decode_customer_usage_page(body: &[u8]) -> Result<Page<CustomerWorkloadUsage>, DecodeError> {
    decode_commercial_page(body, CustomerUsageSource::decode_item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::snapshot::Snapshot;

    const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/commercial-license-usage.json");

    #[test]
    fn the_documented_example_decodes_with_its_spelling() {
        let page =
            decode_commercial_page(FIXTURE, CustomerUsageSource::decode_item).expect("decodes");
        assert!(page.skipped.is_empty(), "{:?}", page.skipped);
        assert_eq!(page.total_count, Some(2));
        assert_eq!(page.next, None);
        let first = &page.items[0];
        assert_eq!(
            first.customer_tenant_id,
            "0112a436-b14e-4888-967b-ca4bb2cf1234"
        );
        assert_eq!(first.product_id, "6fd2c87f-b296-42f0-b197-1e91e994b900");
        assert_eq!(
            (first.workload_code.as_str(), first.active, first.qualified),
            ("SPO", 0.0, 1.0)
        );
        assert_eq!(
            first.processed_at.map(|at| at.to_rfc3339()),
            Some("2018-10-14T00:00:00+00:00".to_owned())
        );
    }

    #[test]
    fn the_documented_example_renders_values_and_info_once_each() {
        let page =
            decode_commercial_page(FIXTURE, CustomerUsageSource::decode_item).expect("decodes");
        let text = Snapshot::<CustomerUsageSource>::from_vec(page.items).text();
        let samples: Vec<&str> = text.lines().filter(|line| !line.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "partner_center_customer_workload_licenses_active{channel=\"reseller\",customer_tenant_id=\"0112a436-b14e-4888-967b-ca4bb2cf1234\",product_id=\"45a2423b-e884-448d-a831-d9e139c52d2f\",workload_code=\"EXO\"} 0",
                "partner_center_customer_workload_licenses_active{channel=\"reseller\",customer_tenant_id=\"0112a436-b14e-4888-967b-ca4bb2cf1234\",product_id=\"6fd2c87f-b296-42f0-b197-1e91e994b900\",workload_code=\"SPO\"} 0",
                "partner_center_customer_workload_licenses_qualified{channel=\"reseller\",customer_tenant_id=\"0112a436-b14e-4888-967b-ca4bb2cf1234\",product_id=\"45a2423b-e884-448d-a831-d9e139c52d2f\",workload_code=\"EXO\"} 1",
                "partner_center_customer_workload_licenses_qualified{channel=\"reseller\",customer_tenant_id=\"0112a436-b14e-4888-967b-ca4bb2cf1234\",product_id=\"6fd2c87f-b296-42f0-b197-1e91e994b900\",workload_code=\"SPO\"} 1",
                "partner_center_product_info{product_id=\"45a2423b-e884-448d-a831-d9e139c52d2f\",product_name=\"EXCHANGE ONLINE PROTECTION\",service_code=\"o365\",service_name=\"Microsoft Office 365\"} 1",
                "partner_center_product_info{product_id=\"6fd2c87f-b296-42f0-b197-1e91e994b900\",product_name=\"OFFICE 365 ENTERPRISE E3\",service_code=\"o365\",service_name=\"Microsoft Office 365\"} 1",
                "partner_center_workload_info{workload_code=\"EXO\",workload_name=\"Exchange\"} 1",
                "partner_center_workload_info{workload_code=\"SPO\",workload_name=\"SharePoint\"} 1",
            ]
        );
    }

    #[test]
    fn rows_without_ids_are_skipped_and_both_spellings_are_read() {
        let body = br#"{"Value":[
            {"productId":"P","workloadCode":"EXO","channel":"reseller","licensesActive":1,"licensesQualified":2},
            {"customerTenantId":"C","workloadCode":"EXO","channel":"reseller","licensesActive":1,"licensesQualified":2},
            {"customerTenantId":"C","productId":"P","workloadCode":"EXO","channel":"reseller","licensesActive":3,"licenseActive":9,"licensesQualified":4},
            {"customerTenantId":"C","productId":"P","workloadCode":"SPO","channel":"reseller","licenseActive":5,"licensesQualified":6}
        ],"@nextLink":null,"TotalCount":4}"#;
        let page = decode_commercial_page(body, CustomerUsageSource::decode_item).expect("a page");
        let reasons: Vec<_> = page.skipped.iter().map(|s| s.reason).collect();
        assert_eq!(
            reasons,
            [
                SkipReason::MissingField("customerTenantId"),
                SkipReason::MissingField("productId"),
            ]
        );
        let active: Vec<f64> = page.items.iter().map(|item| item.active).collect();
        assert_eq!(active, [3.0, 5.0], "licensesActive wins over licenseActive");
    }

    #[test]
    fn one_identity_twice_is_one_series_the_newest_winning() {
        let body = br#"{"Value":[
            {"customerTenantId":"C","productId":"P","workloadCode":"EXO","channel":"reseller","licensesActive":7,"licensesQualified":9,"processedDateTime":"2026-11-30T00:00:00"},
            {"customerTenantId":"c","productId":"p","workloadCode":"EXO","channel":"reseller","licensesActive":1,"licensesQualified":9,"processedDateTime":"2026-11-29T00:00:00"}
        ]}"#;
        let page = decode_commercial_page(body, CustomerUsageSource::decode_item).expect("a page");
        let snapshot = Snapshot::<CustomerUsageSource>::from_vec(page.items);
        assert_eq!(snapshot.series().len(), 1);
        assert_eq!(snapshot.series()[0].active, 7.0);
        assert_eq!(snapshot.duplicates(), 1);
    }
}
