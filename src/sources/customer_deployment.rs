//! The `customer_deployment` source: licences deployed and sold per
//! customer, product and channel, from the commercial analytics report
//! "Get licenses deployment information"
//! (`…/analytics/commercial/deployment/license`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::commercial_rows::{identifier, processed};
use super::{Family, Fetch, Source, SourceName};
use crate::filters::Filters;
use crate::partner_center::collection::{
    DecodeError, FieldKind, Page, SkipReason, decode_commercial_page, read_fields,
};

/// One usable row of the deployment report.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerProductDeployment {
    /// `customerTenantId`, lower-case.
    pub customer_tenant_id: String,
    /// `customerName`, for the customer filters only.
    pub customer_name: String,
    /// `productId` (the SKU's GUID), lower-case.
    pub product_id: String,
    /// `channel`, e.g. `reseller`.
    pub channel: String,
    /// `licensesDeployed`.
    pub deployed: f64,
    /// `licensesSold`.
    pub sold: f64,
    pub processed_at: Option<DateTime<Utc>>,
}

/// The `customer_deployment` source.
pub struct CustomerDeploymentSource;

const FIELDS: [(&str, FieldKind); 7] = [
    ("customerTenantId", FieldKind::Text),
    ("customerName", FieldKind::Text),
    ("productId", FieldKind::Text),
    ("channel", FieldKind::Text),
    ("licensesDeployed", FieldKind::Number),
    ("licensesSold", FieldKind::Number),
    ("processedDateTime", FieldKind::Text),
];

impl Source for CustomerDeploymentSource {
    type Item = CustomerProductDeployment;

    const NAME: SourceName = SourceName::CustomerDeployment;
    const FETCH: Fetch = Fetch::Commercial("analytics/commercial/deployment/license");
    const ENABLED_BY_DEFAULT: bool = false;
    const DEFAULT_INTERVAL: Option<Duration> = Some(Duration::from_secs(6 * 3600));
    const ITEM_NOUN: &'static str = "deployment row";
    const LABELS: &'static [&'static str] = &["channel", "customer_tenant_id", "product_id"];
    const FAMILIES: &'static [Family<CustomerProductDeployment>] = &[
        Family {
            name: "partner_center_customer_product_licenses_deployed",
            help: "Licences of the product deployed (assigned) at the customer, per channel (licensesDeployed).",
            value: |item| Some(item.deployed),
        },
        Family {
            name: "partner_center_customer_product_licenses_sold",
            help: "Licences of the product sold to the customer, per channel (licensesSold).",
            value: |item| Some(item.sold),
        },
    ];

    fn decode_item(item: &RawValue) -> Result<CustomerProductDeployment, SkipReason> {
        let [
            customer,
            customer_name,
            product,
            channel,
            deployed,
            sold,
            processed_at,
        ] = read_fields(item, &FIELDS)?;
        Ok(CustomerProductDeployment {
            customer_tenant_id: identifier(customer, "customerTenantId")?,
            customer_name: customer_name.optional_text().unwrap_or_default(),
            product_id: identifier(product, "productId")?,
            channel: channel.required_text("channel")?,
            deployed: deployed.required_number("licensesDeployed")?,
            sold: sold.required_number("licensesSold")?,
            processed_at: processed(processed_at)?,
        })
    }

    fn label_values(item: &CustomerProductDeployment) -> impl AsRef<[&str]> {
        [
            item.channel.as_str(),
            item.customer_tenant_id.as_str(),
            item.product_id.as_str(),
        ]
    }

    fn processed_at(item: &CustomerProductDeployment) -> Option<DateTime<Utc>> {
        item.processed_at
    }

    fn admit(item: &CustomerProductDeployment, filters: &Filters) -> bool {
        filters.admits_customer(&item.customer_tenant_id, &item.customer_name)
    }
}

/// Decodes one page of the commercial deployment report.
pub fn decode_customer_deployment_page(
    body: &[u8],
) -> Result<Page<CustomerProductDeployment>, DecodeError> {
    decode_commercial_page(body, CustomerDeploymentSource::decode_item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::snapshot::Snapshot;
    use crate::filters::FilterSettings;

    const FIXTURE: &[u8] =
        include_bytes!("../../tests/fixtures/commercial-license-deployment.json");

    #[test]
    fn the_documented_example_renders_exactly() {
        let page = decode_commercial_page(FIXTURE, CustomerDeploymentSource::decode_item)
            .expect("decodes");
        assert!(page.skipped.is_empty(), "{:?}", page.skipped);
        let text = Snapshot::<CustomerDeploymentSource>::from_vec(page.items).text();
        let samples: Vec<&str> = text.lines().filter(|line| !line.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "partner_center_customer_product_licenses_deployed{channel=\"reseller\",customer_tenant_id=\"4f9d7df5-8ebd-4973-b221-013976c1078a\",product_id=\"d42c793f-6c78-4f43-92ca-e8f6a02b035f\"} 0",
                "partner_center_customer_product_licenses_deployed{channel=\"reseller\",customer_tenant_id=\"4fd49354-715a-4b49-9079-a77ae978d1dc\",product_id=\"cdd28e44-67e3-425e-be4c-737fab2899d3\"} 0",
                "partner_center_customer_product_licenses_sold{channel=\"reseller\",customer_tenant_id=\"4f9d7df5-8ebd-4973-b221-013976c1078a\",product_id=\"d42c793f-6c78-4f43-92ca-e8f6a02b035f\"} 2",
                "partner_center_customer_product_licenses_sold{channel=\"reseller\",customer_tenant_id=\"4fd49354-715a-4b49-9079-a77ae978d1dc\",product_id=\"cdd28e44-67e3-425e-be4c-737fab2899d3\"} 2",
            ]
        );
    }

    #[test]
    fn the_customer_filters_apply_to_the_rows() {
        let page = decode_commercial_page(FIXTURE, CustomerDeploymentSource::decode_item)
            .expect("decodes");
        let filters = Filters::new(FilterSettings {
            exclude: &["*TEST*".to_owned()],
            ..FilterSettings::default()
        })
        .expect("filters");
        let kept: Vec<_> = page
            .items
            .iter()
            .filter(|item| CustomerDeploymentSource::admit(item, &filters))
            .collect();
        assert!(
            kept.is_empty(),
            "LARACHOTEST123 and TESTORG are excluded: {kept:?}"
        );
    }
}
