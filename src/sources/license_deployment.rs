//! The `license_deployment` source: partner-level license deployment per
//! service and channel, from `GET /v1/analytics/licenses/deployment`
//! (`PartnerLicensesDeploymentInsights` items, no workload).

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::{ExpectedRange, Family, Fetch, Source, SourceName};
use crate::exposition::unix_seconds;
use crate::partner_center::collection::{
    DecodeError, FieldKind, Page, SkipReason, decode_page, read_fields,
};

/// One usable `PartnerLicensesDeploymentInsights` item.
#[derive(Debug, Clone, PartialEq)]
pub struct LicenseDeployment {
    /// `serviceName`, e.g. `o365`.
    pub service: String,
    /// `channel`, e.g. `reseller`.
    pub channel: String,
    /// `proratedDeploymentPercent`, as received: assigned ÷ sold licenses
    /// by an older Microsoft page, on a scale the API does not document.
    pub prorated_percent: f64,
    /// `licensesSold`.
    pub licenses_sold: f64,
    /// `processedDateTime`: when Partner Center aggregated the figures.
    pub processed_at: DateTime<Utc>,
}

/// The `license_deployment` source.
pub struct LicenseDeploymentSource;

impl LicenseDeploymentSource {
    /// The collection, below the API root.
    pub const PATH: &'static str = "v1/analytics/licenses/deployment";
}

/// The fields read from an item, in the order they are checked.
const FIELDS: [(&str, FieldKind); 5] = [
    ("serviceName", FieldKind::Text),
    ("channel", FieldKind::Text),
    ("proratedDeploymentPercent", FieldKind::Number),
    ("licensesSold", FieldKind::Number),
    ("processedDateTime", FieldKind::Text),
];

impl Source for LicenseDeploymentSource {
    type Item = LicenseDeployment;

    const NAME: SourceName = SourceName::LicenseDeployment;
    const FETCH: Fetch = Fetch::Collection(Self::PATH);
    const ITEM_NOUN: &'static str = "license deployment item";
    const LABELS: &'static [&'static str] = &["channel", "service"];
    const FAMILIES: &'static [Family<LicenseDeployment>] = &[
        Family {
            name: "partner_center_license_deployment_prorated_percent",
            help: "Prorated license deployment per service and channel: \
                   proratedDeploymentPercent exactly as Partner Center reports it.",
            value: |item| Some(item.prorated_percent),
        },
        Family {
            name: "partner_center_license_deployment_licenses_sold",
            help: "Licenses sold per service and channel (licensesSold).",
            value: |item| Some(item.licenses_sold),
        },
        Family {
            name: "partner_center_license_deployment_processed_timestamp_seconds",
            help: "When Partner Center processed the deployment figures (processedDateTime), in Unix seconds.",
            value: |item| Some(unix_seconds(item.processed_at)),
        },
    ];
    const EXPECTED_RANGES: &'static [ExpectedRange<LicenseDeployment>] = &[ExpectedRange {
        field: "proratedDeploymentPercent",
        range: 0.0..=100.0,
        value: |item| item.prorated_percent,
    }];

    fn decode_item(item: &RawValue) -> Result<LicenseDeployment, SkipReason> {
        let [service, channel, percent, sold, processed] = read_fields(item, &FIELDS)?;
        Ok(LicenseDeployment {
            service: service.required_text("serviceName")?,
            channel: channel.required_text("channel")?,
            prorated_percent: percent.required_number("proratedDeploymentPercent")?,
            licenses_sold: sold.required_number("licensesSold")?,
            processed_at: processed.required_processed_date_time()?,
        })
    }

    fn label_values(item: &LicenseDeployment) -> impl AsRef<[&str]> {
        [item.channel.as_str(), item.service.as_str()]
    }

    fn processed_at(item: &LicenseDeployment) -> Option<DateTime<Utc>> {
        Some(item.processed_at)
    }
}

/// One decoded page of the license deployment collection.
pub type DeploymentPage = Page<LicenseDeployment>;

/// Decodes one page of `GET /v1/analytics/licenses/deployment`.
pub fn decode_deployment_page(body: &[u8]) -> Result<DeploymentPage, DecodeError> {
    decode_page(body, LicenseDeploymentSource::decode_item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::snapshot::Snapshot;
    use chrono::TimeZone;

    const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/partner-licenses-deployment.json");

    #[test]
    fn documented_example_decodes_exactly() {
        let page = decode_deployment_page(FIXTURE).expect("decodes");
        assert!(page.skipped.is_empty());
        assert_eq!(page.next, None);
        assert_eq!(
            page.items,
            vec![
                LicenseDeployment {
                    service: "crm".to_owned(),
                    channel: "reseller".to_owned(),
                    prorated_percent: 0.0,
                    licenses_sold: 343.0,
                    processed_at: Utc.with_ymd_and_hms(2017, 3, 10, 0, 0, 0).unwrap(),
                },
                LicenseDeployment {
                    service: "o365".to_owned(),
                    channel: "reseller".to_owned(),
                    prorated_percent: 1.0,
                    licenses_sold: 4464.0,
                    processed_at: Utc.with_ymd_and_hms(2017, 3, 14, 3, 25, 16).unwrap()
                        + chrono::Duration::milliseconds(360),
                },
            ]
        );
    }

    #[test]
    fn the_documented_example_renders_exactly_these_families() {
        let page = decode_deployment_page(FIXTURE).expect("decodes");
        let snapshot = Snapshot::<LicenseDeploymentSource>::from_items(page.items);
        assert_eq!(
            snapshot.text(),
            "# HELP partner_center_license_deployment_prorated_percent Prorated license deployment per service and channel: proratedDeploymentPercent exactly as Partner Center reports it.\n\
             # TYPE partner_center_license_deployment_prorated_percent gauge\n\
             partner_center_license_deployment_prorated_percent{channel=\"reseller\",service=\"crm\"} 0\n\
             partner_center_license_deployment_prorated_percent{channel=\"reseller\",service=\"o365\"} 1\n\
             # HELP partner_center_license_deployment_licenses_sold Licenses sold per service and channel (licensesSold).\n\
             # TYPE partner_center_license_deployment_licenses_sold gauge\n\
             partner_center_license_deployment_licenses_sold{channel=\"reseller\",service=\"crm\"} 343\n\
             partner_center_license_deployment_licenses_sold{channel=\"reseller\",service=\"o365\"} 4464\n\
             # HELP partner_center_license_deployment_processed_timestamp_seconds When Partner Center processed the deployment figures (processedDateTime), in Unix seconds.\n\
             # TYPE partner_center_license_deployment_processed_timestamp_seconds gauge\n\
             partner_center_license_deployment_processed_timestamp_seconds{channel=\"reseller\",service=\"crm\"} 1489104000\n\
             partner_center_license_deployment_processed_timestamp_seconds{channel=\"reseller\",service=\"o365\"} 1489461916.36\n"
        );
    }

    #[test]
    fn unusable_items_are_skipped_naming_the_field() {
        let body = br#"{"items":[
            {"channel":"reseller","licensesSold":1,"proratedDeploymentPercent":1,"processedDateTime":"2020-01-01"},
            {"serviceName":"o365","channel":"reseller","licensesSold":"many","proratedDeploymentPercent":1,"processedDateTime":"2020-01-01"},
            {"serviceName":"o365","channel":"reseller","licensesSold":"12","proratedDeploymentPercent":"NaN","processedDateTime":"2020-01-01"},
            {"serviceName":"o365","channel":"reseller","licensesSold":"12","proratedDeploymentPercent":2.5,"processedDateTime":"2020-01-01"}
        ]}"#;
        let page = decode_deployment_page(body).expect("a page");
        let reasons: Vec<_> = page.skipped.iter().map(|s| (s.index, s.reason)).collect();
        assert_eq!(
            reasons,
            [
                (0, SkipReason::MissingField("serviceName")),
                (1, SkipReason::InvalidNumber("licensesSold")),
                (2, SkipReason::InvalidNumber("proratedDeploymentPercent")),
            ]
        );
        assert_eq!(page.items.len(), 1);
        assert_eq!(
            page.items[0].licenses_sold, 12.0,
            "a numeric string is a number"
        );
    }

    #[test]
    fn the_newest_processed_date_wins_per_service_and_channel() {
        let item = |sold: f64, day: u32| LicenseDeployment {
            service: "o365".to_owned(),
            channel: "reseller".to_owned(),
            prorated_percent: 50.0,
            licenses_sold: sold,
            processed_at: Utc.with_ymd_and_hms(2024, 5, day, 0, 0, 0).unwrap(),
        };
        let snapshot =
            Snapshot::<LicenseDeploymentSource>::from_items([item(2.0, 2), item(1.0, 1)]);
        assert_eq!(snapshot.series().len(), 1);
        assert_eq!(snapshot.series()[0].licenses_sold, 2.0);
        assert_eq!(snapshot.duplicates(), 1);
    }
}
