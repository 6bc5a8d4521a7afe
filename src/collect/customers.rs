//! The partner's customers, from `GET /v1/customers`: the listing every
//! per-customer source starts from, filtered by `customers.include` and
//! `exclude`, and published as `partner_center_customer_info`.
//!
//! The listing is shared: a source that polls soon after another listed
//! the customers takes that listing instead of asking again (within half
//! the shortest interval of the per-customer sources), and two sources
//! asking at once wait for one request. Each fresh listing replaces the
//! published customer info whole, so a customer that left the listing
//! leaves `/metrics` with it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::time::Instant;
use uuid::Uuid;

use crate::auth::Authenticator;
use crate::collect::state::TenantState;
use crate::exposition::{FamilyParts, Part, RenderedFamilies, write_header, write_tenant_sample};
use crate::filters::{Filters, is_guid};
use crate::partner_center::client::{Client, ClientError, FetchTrace};
use crate::partner_center::collection::{FieldKind, SkipReason, read_fields};
use crate::tenant::TenantLabel;

/// The customer listing's path below the API root.
pub const CUSTOMERS_PATH: &str = "v1/customers";

/// At most this many unusable customers are logged one by one per listing.
const MAX_SKIPPED_LOGGED: usize = 10;

/// One customer of the partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// The customer's tenant ID (`id`), lower-case.
    pub tenant_id: String,
    /// `companyProfile.companyName`; empty when absent.
    pub name: String,
    /// `companyProfile.domain`; empty when absent.
    pub domain: String,
    /// `relationshipToPartner`, e.g. `reseller`; empty when absent.
    pub relationship: String,
}

const CUSTOMER_FIELDS: [(&str, FieldKind); 3] = [
    ("id", FieldKind::Text),
    ("companyProfile", FieldKind::Object),
    ("relationshipToPartner", FieldKind::Text),
];

const PROFILE_FIELDS: [(&str, FieldKind); 2] = [
    ("companyName", FieldKind::Text),
    ("domain", FieldKind::Text),
];

/// Decodes one customer of the listing. The ID is required, and must be
/// a GUID: it becomes part of request paths and of label values. The
/// rest only labels `partner_center_customer_info`.
pub fn decode_customer(item: &RawValue) -> Result<Customer, SkipReason> {
    let [id, profile, relationship] = read_fields(item, &CUSTOMER_FIELDS)?;
    let tenant_id = id.required_text("id")?;
    if !is_guid(tenant_id.trim()) {
        return Err(SkipReason::WrongType("id"));
    }
    let [name, domain] = match profile {
        crate::partner_center::collection::Field::Absent => Default::default(),
        profile => profile.object_fields("companyProfile", &PROFILE_FIELDS)?,
    };
    Ok(Customer {
        tenant_id: tenant_id.trim().to_ascii_lowercase(),
        name: name.optional_text().unwrap_or_default(),
        domain: domain.optional_text().unwrap_or_default(),
        relationship: relationship.optional_text().unwrap_or_default(),
    })
}

/// A listing and when it was made.
struct Listing {
    at: Instant,
    customers: Arc<[Customer]>,
}

/// The customer listing, shared by the per-customer sources.
pub struct CustomerDirectory {
    client: Client,
    authenticator: Authenticator,
    state: TenantState,
    filters: Arc<Filters>,
    /// `customers.page_size`.
    page_size: u32,
    /// How old a listing may be and still be taken instead of a new one.
    reuse_for: Duration,
    /// The last successful listing; locked across a listing, so that
    /// sources asking at once wait for one request.
    latest: tokio::sync::Mutex<Option<Listing>>,
}

impl CustomerDirectory {
    pub fn new(
        client: Client,
        authenticator: Authenticator,
        state: TenantState,
        filters: Arc<Filters>,
        page_size: u32,
        reuse_for: Duration,
    ) -> Self {
        Self {
            client,
            authenticator,
            state,
            filters,
            page_size,
            reuse_for,
            latest: tokio::sync::Mutex::new(None),
        }
    }

    /// The customers the filters cover, in the order listed: a recent
    /// listing, or a new one under `deadline`. A failed listing is the
    /// caller's failure; the last good customer info stays published.
    pub async fn customers(
        &self,
        correlation_id: Uuid,
        deadline: Instant,
        trace: &mut FetchTrace,
    ) -> Result<Arc<[Customer]>, ClientError> {
        let mut latest = self.latest.lock().await;
        if let Some(listing) = latest.as_ref()
            && listing.at.elapsed() < self.reuse_for
        {
            return Ok(listing.customers.clone());
        }
        let path = format!("{CUSTOMERS_PATH}?size={}", self.page_size);
        let listing = self
            .client
            .fetch_collection(
                &path,
                decode_customer,
                &self.authenticator,
                correlation_id,
                deadline,
                trace,
            )
            .await?;
        for (page, skipped) in listing.skipped.iter().take(MAX_SKIPPED_LOGGED) {
            tracing::warn!(
                page,
                index = skipped.index,
                reason = %skipped.reason,
                "skipped a customer of the listing"
            );
        }
        let listed = listing.items.len();
        let mut seen = std::collections::HashSet::new();
        let customers: Arc<[Customer]> = listing
            .items
            .into_iter()
            // A customer listed twice (on two pages) is one customer.
            .filter(|customer| seen.insert(customer.tenant_id.clone()))
            .filter(|customer| {
                self.filters
                    .admits_customer(&customer.tenant_id, &customer.name)
            })
            .collect();
        tracing::info!(
            correlation_id = %correlation_id,
            listed,
            covered = customers.len(),
            skipped = listing.skipped.len(),
            pages = listing.pages,
            "listed the partner's customers"
        );
        self.state
            .record_customer_info(render_customer_info(self.state.tenant(), &customers));
        *latest = Some(Listing {
            at: Instant::now(),
            customers: customers.clone(),
        });
        Ok(customers)
    }
}

/// `partner_center_customer_info` of `tenant`'s listing, one series per
/// covered customer, ordered by customer tenant ID.
pub fn render_customer_info(tenant: &TenantLabel, customers: &[Customer]) -> RenderedFamilies {
    const NAME: &str = "partner_center_customer_info";
    if customers.is_empty() {
        return RenderedFamilies::default();
    }
    let mut sorted: Vec<&Customer> = customers.iter().collect();
    sorted.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
    let mut header = Vec::new();
    write_header(
        &mut header,
        NAME,
        "A customer of the partner covered by the per-customer sources: its name, domain and relationship, with the value 1.",
        "gauge",
    );
    let mut samples = Vec::with_capacity(sorted.len() * 200);
    for customer in sorted {
        write_tenant_sample(
            &mut samples,
            tenant,
            NAME,
            &[
                ("customer_tenant_id", customer.tenant_id.as_str()),
                ("customer_name", customer.name.as_str()),
                ("domain", customer.domain.as_str()),
                ("relationship", customer.relationship.as_str()),
            ],
            1.0,
        );
    }
    RenderedFamilies(vec![FamilyParts {
        name: NAME,
        header: Part::new(header),
        samples: Part::new(samples),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partner_center::collection::decode_page;

    const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/customers.json");

    #[test]
    fn the_documented_listing_decodes() {
        let page = decode_page(FIXTURE, decode_customer).expect("decodes");
        assert!(page.skipped.is_empty(), "{:?}", page.skipped);
        assert_eq!(
            page.items[0],
            Customer {
                tenant_id: "b44bb1fb-c595-45b0-9e09-d657365580bf".to_owned(),
                name: "companyName".to_owned(),
                domain: "domain".to_owned(),
                relationship: "reseller".to_owned(),
            }
        );
        assert_eq!(page.items.len(), 2);
    }

    #[test]
    fn ids_are_required_guids_and_published_lower_case() {
        let body = br#"{"items":[
            {"id":"B44BB1FB-C595-45B0-9E09-D657365580BF"},
            {"companyProfile":{"companyName":"No ID"}},
            {"id":"../../v1/other"},
            {"id":"45c44870-ef77-4fdd-b6fe-3dacb075cff2","companyProfile":"text"}
        ]}"#;
        let page = decode_page(body, decode_customer).expect("a page");
        assert_eq!(
            page.items,
            [Customer {
                tenant_id: "b44bb1fb-c595-45b0-9e09-d657365580bf".to_owned(),
                name: String::new(),
                domain: String::new(),
                relationship: String::new(),
            }]
        );
        let reasons: Vec<_> = page.skipped.iter().map(|s| s.reason).collect();
        assert_eq!(
            reasons,
            [
                SkipReason::MissingField("id"),
                SkipReason::WrongType("id"),
                SkipReason::WrongType("companyProfile"),
            ]
        );
    }

    #[test]
    fn customer_info_is_one_series_per_customer_with_escaped_names() {
        let customer = |id: &str, name: &str| Customer {
            tenant_id: id.to_owned(),
            name: name.to_owned(),
            domain: "example.onmicrosoft.com".to_owned(),
            relationship: "reseller".to_owned(),
        };
        let rendered = render_customer_info(
            &TenantLabel::NONE,
            &[customer("b", "Fabrikam \"EU\""), customer("a", "Contoso")],
        );
        let text = String::from_utf8(rendered.to_plain()).expect("utf-8");
        assert_eq!(
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .collect::<Vec<_>>(),
            [
                "partner_center_customer_info{customer_tenant_id=\"a\",customer_name=\"Contoso\",domain=\"example.onmicrosoft.com\",relationship=\"reseller\"} 1",
                "partner_center_customer_info{customer_tenant_id=\"b\",customer_name=\"Fabrikam \\\"EU\\\"\",domain=\"example.onmicrosoft.com\",relationship=\"reseller\"} 1",
            ]
        );
        assert!(render_customer_info(&TenantLabel::NONE, &[]).0.is_empty());
        let named = render_customer_info(&TenantLabel::named("contoso-eu"), &[customer("a", "A")]);
        assert!(
            String::from_utf8(named.to_plain())
                .expect("utf-8")
                .contains(
                    "partner_center_customer_info{tenant=\"contoso-eu\",customer_tenant_id=\"a\","
                ),
            "a named tenant labels its customers"
        );
    }
}
