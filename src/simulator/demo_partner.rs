//! The demo's partners ([`DemoPartner`]): their customers, named after
//! Microsoft's fictitious companies, the customers' licences per SKU and
//! the commercial analytics rows about them, served as Partner Center
//! serves them.
//!
//! - [`DemoPartner::contoso`]: some thirty customers buying Microsoft 365
//!   (`CONTOSO_CUSTOMERS`), with every special case below and in
//!   [`super::demo_subscriptions`].
//! - [`DemoPartner::fabrikam`]: seven customers of its own
//!   (`FABRIKAM_CUSTOMERS`) buying Dynamics 365 and the Power Platform:
//!   none of the first partner's customers, SKUs, products or workloads,
//!   so that the two partners' series never meet in a join on them; one
//!   customer over-assigned and one in grace, none refused, none
//!   suspended.
//!
//! Paths of each, below the API root ([`super::demo_paths::datasets`]
//! returns them all):
//!
//! - [`CUSTOMERS_PATH`]: the customer listing, paged by the request's
//!   `size` ([`customer_listing`]).
//! - [`subscribed_skus_path`] of each customer: its licences per SKU,
//!   moving with the wall clock; [`GDAP_REFUSED_CUSTOMER`]'s answers `403`
//!   as a customer without the partner's GDAP role does.
//! - the subscriptions of each customer and the provisioning status of
//!   each of its subscriptions: one
//!   subscription per SKU bought, seats matching licences, renewing on
//!   dates that follow the wall clock ([`super::demo_subscriptions`]);
//!   served for every customer, [`GDAP_REFUSED_CUSTOMER`] included.
//! - [`COMMERCIAL_USAGE_PATH`] and [`COMMERCIAL_DEPLOYMENT_PATH`]: the
//!   commercial analytics rows of every customer, in server pages of
//!   [`COMMERCIAL_PAGE_SIZE`] rows, the usage paged by `skip` only, the
//!   deployment with `@nextLink`. They are deliberately not served under
//!   `/partner/v1/…`, which answers `404`, so that the exporter's fallback
//!   from one documented path to the other is exercised.
//!
//! Everything is derived from the partner's table and the customers'
//! names: the same at every start, so dashboards and tests can rely on it. Only the counts of
//! assigned and active licences move, on slow waves of their own, and the
//! subscriptions' dates, with the calendar.

use std::f64::consts::TAU;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::datasets::{Dataset, NextLink, PartnerFigures};

/// The customer listing.
pub const CUSTOMERS_PATH: &str = "/v1/customers";

/// The commercial license usage rows.
pub const COMMERCIAL_USAGE_PATH: &str = "/v1/analytics/commercial/usage/license";

/// The commercial license deployment rows.
pub const COMMERCIAL_DEPLOYMENT_PATH: &str = "/v1/analytics/commercial/deployment/license";

/// Customers per page of the listing when the request gives no `size`.
pub const CUSTOMER_PAGE_SIZE: usize = 10;

/// Rows per server-side page of the commercial analytics: well below the
/// demo's few hundred rows, so that they take several pages.
pub const COMMERCIAL_PAGE_SIZE: usize = 100;

/// The customer whose licences Partner Center refuses (`403`): the
/// partner has no GDAP role in its tenant.
pub const GDAP_REFUSED_CUSTOMER: &str = "Trey Research";

/// The customer whose usage rows spell `licenseActive`, as Microsoft's
/// documented example does, instead of `licensesActive`.
pub const MISSPELT_USAGE_CUSTOMER: &str = "Fabrikam";

/// The body of [`GDAP_REFUSED_CUSTOMER`]'s `403`, in Partner Center's
/// error shape.
pub const GDAP_REFUSAL_BODY: &str = r#"{"code":3000,"description":"Access to this customer is denied: the partner has no granular delegated admin privileges (GDAP) relationship with a role that can read its licences, such as Directory Readers or License Administrator.","data":[],"source":"PartnerFD"}"#;

/// The path of `customer_id`'s licences per SKU.
pub fn subscribed_skus_path(customer_id: &str) -> String {
    format!("{CUSTOMERS_PATH}/{customer_id}/subscribedskus")
}

/// A customer as the listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// The customer's tenant ID, lower-case, as the listing gives it.
    pub id: String,
    pub name: String,
    /// The initial domain, `….onmicrosoft.com`.
    pub domain: String,
    /// `reseller` or `advisor`.
    pub relationship: String,
}

impl Customer {
    /// A reseller customer called `name`, with an ID derived from the
    /// name (the same at every call) and the domain `label.onmicrosoft.com`.
    pub fn new(name: &str, label: &str) -> Self {
        Self {
            id: tenant_id(name),
            name: name.to_owned(),
            domain: format!("{label}.onmicrosoft.com"),
            relationship: "reseller".to_owned(),
        }
    }

    /// The same customer with another relationship to the partner.
    pub fn with_relationship(mut self, relationship: &str) -> Self {
        self.relationship = relationship.to_owned();
        self
    }

    /// The customer's item in the listing, shaped as Microsoft's
    /// documented example.
    pub fn listing_item(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "companyProfile": {
                "tenantId": self.id,
                "domain": self.domain,
                "companyName": self.name,
                "attributes": { "objectType": "CustomerCompanyProfile" }
            },
            "relationshipToPartner": self.relationship,
            "attributes": { "objectType": "Customer" }
        })
    }
}

/// `customers` as the listing at [`CUSTOMERS_PATH`], `page_size` a page
/// unless the request asks for another `size`.
pub fn customer_listing(customers: &[Customer], page_size: usize) -> Dataset {
    Dataset::paged_by_size(
        customers.iter().map(Customer::listing_item).collect(),
        page_size,
    )
}

/// A partner the demo simulates: its customers, what they buy, and how
/// its partner-level figures move. Everything it serves derives from these
/// and the wall clock, so two starts of the same partner serve the same.
#[derive(Clone, Copy)]
pub struct DemoPartner {
    /// Its customers, in the listing's order.
    profiles: &'static [Profile],
    /// The SKUs its customers buy.
    catalogue: &'static Catalogue,
    /// How its partner-level license usage and deployment move.
    figures: PartnerFigures,
}

impl DemoPartner {
    /// The demo's first partner: `CONTOSO_CUSTOMERS`, some thirty
    /// customers buying Microsoft 365, with every special case of the
    /// licences and subscriptions, and the documented example's
    /// partner-level figures.
    pub fn contoso() -> Self {
        Self {
            profiles: &CONTOSO_CUSTOMERS,
            catalogue: &CONTOSO_CATALOGUE,
            figures: PartnerFigures::DOCUMENTED,
        }
    }

    /// The demo's second partner, smaller: `FABRIKAM_CUSTOMERS`, a few
    /// customers of its own buying Dynamics 365 and the Power Platform, so
    /// that its customers, products and workloads are none of the first
    /// partner's; its partner-level figures are the documented series on
    /// waves of their own, with fewer licences sold.
    pub fn fabrikam() -> Self {
        Self {
            profiles: &FABRIKAM_CUSTOMERS,
            catalogue: &FABRIKAM_CATALOGUE,
            figures: PartnerFigures {
                salt: "fabrikam",
                sold_percent: 15,
            },
        }
    }

    /// Its customers, in the listing's order.
    pub fn customers(&self) -> Vec<Customer> {
        self.profiles.iter().map(Profile::customer).collect()
    }

    /// How its partner-level figures move.
    pub fn figures(&self) -> PartnerFigures {
        self.figures
    }

    /// Its customers with their licences, as the datasets share them.
    pub(super) fn tenants(&self) -> Arc<[Tenant]> {
        self.profiles
            .iter()
            .map(|profile| Tenant::new(profile, self.catalogue))
            .collect()
    }

    /// Its commercial license usage rows at `now`: per customer, per paid
    /// product and per workload that product includes.
    pub fn usage_rows_at(&self, now: SystemTime) -> Vec<serde_json::Value> {
        usage_rows(&self.tenants(), now)
    }

    /// Its commercial license deployment rows at `now`: per customer and
    /// paid product.
    pub fn deployment_rows_at(&self, now: SystemTime) -> Vec<serde_json::Value> {
        deployment_rows(&self.tenants(), now)
    }
}

/// The paths of the customer listing, the customers' licences and the
/// commercial reports, and the dataset served at each: all the demo
/// partner serves but its subscriptions (see [`super::demo_paths`]).
pub(super) fn licence_datasets(tenants: &Arc<[Tenant]>) -> Vec<(String, Dataset)> {
    let tenants = tenants.clone();
    let customers: Vec<Customer> = tenants
        .iter()
        .map(|tenant| tenant.customer.clone())
        .collect();
    let mut served = vec![(
        CUSTOMERS_PATH.to_owned(),
        customer_listing(&customers, CUSTOMER_PAGE_SIZE),
    )];
    for (index, tenant) in tenants.iter().enumerate() {
        let path = subscribed_skus_path(&tenant.customer.id);
        let dataset = if tenant.profile.anomaly == Anomaly::GdapRefused {
            Dataset::refusal(403, GDAP_REFUSAL_BODY)
        } else {
            let tenants = tenants.clone();
            Dataset::generated(move |now| {
                tenants
                    .get(index)
                    .map_or(serde_json::Value::Null, |tenant| {
                        tenant.subscribed_skus(now)
                    })
            })
        };
        served.push((path, dataset));
    }
    let usage = tenants.clone();
    served.push((
        COMMERCIAL_USAGE_PATH.to_owned(),
        Dataset::commercial_moving(
            move |now| usage_rows(&usage, now),
            COMMERCIAL_PAGE_SIZE,
            NextLink::Null,
        ),
    ));
    served.push((
        COMMERCIAL_DEPLOYMENT_PATH.to_owned(),
        Dataset::commercial_moving(
            move |now| deployment_rows(&tenants, now),
            COMMERCIAL_PAGE_SIZE,
            NextLink::Absolute,
        ),
    ));
    served
}

/// A customer's tenant ID derived from its name.
fn tenant_id(name: &str) -> String {
    derived_guid("tenant-id", &[name])
}

/// A GUID fixed by `kind` (what it identifies) and `parts`: 128 bits of
/// two FNV-1a hashes, shaped as a version-4 GUID, lower-case.
pub(super) fn derived_guid(kind: &str, parts: &[&str]) -> String {
    let half = |which: &str| {
        let mut all = vec![kind, which];
        all.extend_from_slice(parts);
        hash(&all)
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&half("high").to_be_bytes());
    bytes[8..].copy_from_slice(&half("low").to_be_bytes());
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// FNV-1a over the parts, each ended by a zero byte so that ("ab", "c")
/// and ("a", "bc") differ.
pub(super) fn hash(parts: &[&str]) -> u64 {
    crate::secret::fnv1a(
        parts
            .iter()
            .flat_map(|part| part.bytes().chain(std::iter::once(0))),
    )
}

/// A fraction in [0, 1) fixed by `parts`.
pub(super) fn fraction(parts: &[&str]) -> f64 {
    (hash(parts) % 10_000) as f64 / 10_000.0
}

/// One full swing of a moving count: slow enough to look like people
/// being given and losing licences, quick enough to show in a demo.
const WAVE_PERIOD_SECONDS: f64 = 900.0;

/// A value on a slow wave between -1 and 1, its phase fixed by `parts`.
fn wave(parts: &[&str], unix_seconds: f64) -> f64 {
    let phase = fraction(parts) * TAU;
    (TAU * unix_seconds / WAVE_PERIOD_SECONDS + phase).sin()
}

pub(super) fn unix_seconds(now: SystemTime) -> f64 {
    now.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// A workload of the usage rows: (code, name).
type Workload = (&'static str, &'static str);

const EXCHANGE: Workload = ("EXO", "Exchange");
const SHAREPOINT: Workload = ("SPO", "SharePoint");
const ONEDRIVE: Workload = ("ODB", "OneDrive");
const TEAMS: Workload = ("TEAMS", "Microsoft Teams");
const YAMMER: Workload = ("YAM", "Yammer");
const APPS: Workload = ("PROPLUS", "Microsoft 365 Apps");
const SALES: Workload = ("D365SALES", "Dynamics 365 Sales");
const CUSTOMER_SERVICE: Workload = ("D365CS", "Dynamics 365 Customer Service");
const BUSINESS_CENTRAL: Workload = ("D365BC", "Dynamics 365 Business Central");
const POWER_APPS: Workload = ("PAPPS", "Power Apps");
const POWER_AUTOMATE: Workload = ("FLOW", "Power Automate");
const POWER_BI: Workload = ("PBI", "Power BI");

/// A service of the commercial analytics rows: (code, name).
type Service = (&'static str, &'static str);

const OFFICE_365: Service = ("o365", "Microsoft Office 365");
const DYNAMICS_365: Service = ("crm", "Microsoft Dynamics 365");
const POWER_PLATFORM: Service = ("powerplatform", "Microsoft Power Platform");

/// A service plan of a SKU: (display name, service name, ID, target type).
type ServicePlan = (&'static str, &'static str, &'static str, &'static str);

const PLAN_EXCHANGE_E: ServicePlan = (
    "Exchange Online (Plan 2)",
    "EXCHANGE_S_ENTERPRISE",
    "efb87545-963c-4e0d-99df-69c6916d9eb0",
    "User",
);
const PLAN_EXCHANGE_S: ServicePlan = (
    "Exchange Online (Plan 1)",
    "EXCHANGE_S_STANDARD",
    "9aaf7827-d63c-4b61-89c3-182f06f82e5c",
    "User",
);
const PLAN_FOUNDATION: ServicePlan = (
    "Exchange Foundation",
    "EXCHANGE_S_FOUNDATION",
    "113feb6c-3fe4-4440-bddc-54d774bf0318",
    "Tenant",
);
const PLAN_SHAREPOINT_E: ServicePlan = (
    "SharePoint (Plan 2)",
    "SHAREPOINTENTERPRISE",
    "5dbe027f-2339-4123-9542-606e4d348a72",
    "User",
);
const PLAN_SHAREPOINT_S: ServicePlan = (
    "SharePoint (Plan 1)",
    "SHAREPOINTSTANDARD",
    "c7699d2e-19aa-44de-8edf-1736da088ca1",
    "User",
);
const PLAN_TEAMS: ServicePlan = (
    "Microsoft Teams",
    "TEAMS1",
    "57ff2da0-773e-42df-b2af-ffb7a2317929",
    "User",
);
const PLAN_APPS: ServicePlan = (
    "Microsoft 365 Apps for enterprise",
    "OFFICESUBSCRIPTION",
    "43de0ff5-c92c-492b-9116-175376d08c38",
    "User",
);
const PLAN_APPS_BUSINESS: ServicePlan = (
    "Microsoft 365 Apps for business",
    "OFFICE_BUSINESS",
    "094e7854-93fc-4d55-b2c0-3ab5369ebdc1",
    "User",
);
const PLAN_YAMMER: ServicePlan = (
    "Yammer Enterprise",
    "YAMMER_ENTERPRISE",
    "7547a3fe-08ee-4ccb-b430-5077c5041653",
    "User",
);
const PLAN_INTUNE: ServicePlan = (
    "Microsoft Intune A Direct",
    "INTUNE_A",
    "c1ec4a95-1f05-45b3-a911-aa3fa01094f5",
    "User",
);
const PLAN_AAD_P1: ServicePlan = (
    "Azure Active Directory Premium P1",
    "AAD_PREMIUM",
    "41781fb2-bc02-4b7c-bd55-b576c07bb09d",
    "User",
);
const PLAN_RMS_P1: ServicePlan = (
    "Azure Information Protection Premium P1",
    "RMS_S_PREMIUM",
    "6c57d4b6-3b23-47a5-9bc9-69f17b4947b3",
    "User",
);
const PLAN_MFA: ServicePlan = (
    "Microsoft Azure Multi-Factor Authentication",
    "MFA_PREMIUM",
    "8a256a2b-b617-496d-b51b-e76466e88db0",
    "User",
);
const PLAN_POWER_BI: ServicePlan = (
    "Power BI Pro",
    "BI_AZURE_P2",
    "70d33638-9c74-4d01-bfd3-562de28bd4ba",
    "User",
);
const PLAN_VISIO: ServicePlan = (
    "Visio Desktop App",
    "VISIO_CLIENT_SUBSCRIPTION",
    "663a804f-1c30-4ff0-9915-9db84f0d1cea",
    "User",
);
const PLAN_PROJECT: ServicePlan = (
    "Project Online Desktop Client",
    "PROJECT_CLIENT_SUBSCRIPTION",
    "fafd7243-e5c1-4a3a-9e40-495efcb1d3c3",
    "User",
);
const PLAN_FLOW_FREE: ServicePlan = (
    "Flow Free",
    "FLOW_P2_VIRAL",
    "50e68c76-46c6-4674-81f9-75456511b170",
    "User",
);
const PLAN_SALES: ServicePlan = (
    "Dynamics 365 for Sales",
    "DYN365_ENTERPRISE_SALES",
    "2da8e897-7791-486b-b08f-cc63c8129df7",
    "User",
);
const PLAN_CUSTOMER_SERVICE: ServicePlan = (
    "Dynamics 365 for Customer Service",
    "DYN365_ENTERPRISE_CUSTOMER_SERVICE",
    "99340b49-fb81-4b1e-976b-8f2ae8e9394f",
    "User",
);
const PLAN_BUSINESS_CENTRAL: ServicePlan = (
    "Dynamics 365 Business Central Essentials",
    "DYN365_FINANCIALS_BUSINESS",
    "920656a2-7dd8-4c83-97b6-a356414dbd36",
    "User",
);
const PLAN_POWER_APPS: ServicePlan = (
    "Power Apps per User",
    "POWERAPPS_PER_USER",
    "ea2cf03b-ac60-46ae-9c1d-eeaeb63cec86",
    "User",
);
const PLAN_POWER_AUTOMATE: ServicePlan = (
    "Power Automate per User",
    "FLOW_PER_USER",
    "c5002c70-f725-4367-b409-f0eff4fee6c0",
    "User",
);
const PLAN_POWER_BI_PPU: ServicePlan = (
    "Power BI Premium Per User",
    "BI_AZURE_P3",
    "0bf3c642-7bb5-4ccc-884e-59d09df0266c",
    "User",
);

/// A SKU of the demo's catalogue, with Microsoft's real IDs and part
/// numbers, so that what the exporter publishes reads as in production.
pub(super) struct Sku {
    pub(super) id: &'static str,
    pub(super) part_number: &'static str,
    pub(super) name: &'static str,
    plans: &'static [ServicePlan],
    /// The workloads its usage rows are about; none for products the
    /// usage analytics do not count.
    workloads: &'static [Workload],
    /// Seats per hundred of the customer's people (add-ons only).
    seats_per_hundred: u32,
    /// The service its commercial analytics rows name.
    service: Service,
}

pub(super) const SPE_E3: Sku = Sku {
    id: "05e9a617-0261-4cee-bb44-138d3ef5d965",
    part_number: "SPE_E3",
    name: "Microsoft 365 E3",
    plans: &[
        PLAN_EXCHANGE_E,
        PLAN_SHAREPOINT_E,
        PLAN_TEAMS,
        PLAN_APPS,
        PLAN_INTUNE,
        PLAN_AAD_P1,
    ],
    workloads: &[EXCHANGE, SHAREPOINT, ONEDRIVE, TEAMS, YAMMER, APPS],
    seats_per_hundred: 100,
    service: OFFICE_365,
};
const ENTERPRISEPACK: Sku = Sku {
    id: "6fd2c87f-b296-42f0-b197-1e91e994b900",
    part_number: "ENTERPRISEPACK",
    name: "Office 365 E3",
    plans: &[
        PLAN_EXCHANGE_E,
        PLAN_SHAREPOINT_E,
        PLAN_TEAMS,
        PLAN_APPS,
        PLAN_YAMMER,
    ],
    workloads: &[EXCHANGE, SHAREPOINT, ONEDRIVE, TEAMS, YAMMER, APPS],
    seats_per_hundred: 100,
    service: OFFICE_365,
};
const BUSINESS_STANDARD: Sku = Sku {
    id: "f245ecc8-75af-4f8e-b61f-27d8114de5f3",
    part_number: "O365_BUSINESS_PREMIUM",
    name: "Microsoft 365 Business Standard",
    plans: &[
        PLAN_EXCHANGE_S,
        PLAN_SHAREPOINT_S,
        PLAN_TEAMS,
        PLAN_APPS_BUSINESS,
    ],
    workloads: &[EXCHANGE, SHAREPOINT, ONEDRIVE, TEAMS, APPS],
    seats_per_hundred: 100,
    service: OFFICE_365,
};
const BUSINESS_PREMIUM: Sku = Sku {
    id: "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46",
    part_number: "SPB",
    name: "Microsoft 365 Business Premium",
    plans: &[
        PLAN_EXCHANGE_S,
        PLAN_SHAREPOINT_S,
        PLAN_TEAMS,
        PLAN_APPS_BUSINESS,
        PLAN_INTUNE,
        PLAN_AAD_P1,
    ],
    workloads: &[EXCHANGE, SHAREPOINT, ONEDRIVE, TEAMS, APPS],
    seats_per_hundred: 100,
    service: OFFICE_365,
};
pub(super) const EMS: Sku = Sku {
    id: "efccb6f7-5641-4e0e-bd10-b4976e1bf68e",
    part_number: "EMS",
    name: "Enterprise Mobility + Security E3",
    plans: &[PLAN_RMS_P1, PLAN_INTUNE, PLAN_AAD_P1, PLAN_MFA],
    workloads: &[],
    seats_per_hundred: 60,
    service: OFFICE_365,
};
const POWER_BI_PRO: Sku = Sku {
    id: "f8a1db68-be16-40ed-86d5-cb42ce701560",
    part_number: "POWER_BI_PRO",
    name: "Power BI Pro",
    plans: &[PLAN_FOUNDATION, PLAN_POWER_BI],
    workloads: &[],
    seats_per_hundred: 20,
    service: OFFICE_365,
};
pub(super) const TEAMS_EXPLORATORY: Sku = Sku {
    id: "710779e8-3d4a-4c88-adb9-386c958d1fdf",
    part_number: "TEAMS_EXPLORATORY",
    name: "Microsoft Teams Exploratory",
    plans: &[PLAN_EXCHANGE_S, PLAN_SHAREPOINT_S, PLAN_TEAMS],
    workloads: &[TEAMS, EXCHANGE, SHAREPOINT, ONEDRIVE],
    seats_per_hundred: 15,
    service: OFFICE_365,
};
const EXCHANGESTANDARD: Sku = Sku {
    id: "4b9405b0-7788-4568-add1-99614e613b69",
    part_number: "EXCHANGESTANDARD",
    name: "Exchange Online (Plan 1)",
    plans: &[PLAN_EXCHANGE_S],
    workloads: &[EXCHANGE],
    seats_per_hundred: 25,
    service: OFFICE_365,
};
pub(super) const VISIOCLIENT: Sku = Sku {
    id: "c5928f49-12ba-48f7-ada3-0d743a3601d5",
    part_number: "VISIOCLIENT",
    name: "Visio Plan 2",
    plans: &[PLAN_FOUNDATION, PLAN_VISIO],
    workloads: &[],
    seats_per_hundred: 5,
    service: OFFICE_365,
};
const PROJECTPROFESSIONAL: Sku = Sku {
    id: "53818b1b-4a27-454b-8896-0dba576410e6",
    part_number: "PROJECTPROFESSIONAL",
    name: "Project Plan 3",
    plans: &[PLAN_FOUNDATION, PLAN_SHAREPOINT_S, PLAN_PROJECT],
    workloads: &[SHAREPOINT],
    seats_per_hundred: 5,
    service: OFFICE_365,
};
pub(super) const FLOW_FREE: Sku = Sku {
    id: "f30db892-07e9-47e9-837c-80727f46fd3d",
    part_number: "FLOW_FREE",
    name: "Microsoft Power Automate Free",
    plans: &[PLAN_FOUNDATION, PLAN_FLOW_FREE],
    workloads: &[],
    seats_per_hundred: 0,
    service: OFFICE_365,
};

const DYN365_SALES: Sku = Sku {
    id: "1e1a282c-9c54-43a2-9310-98ef728faace",
    part_number: "DYN365_ENTERPRISE_SALES",
    name: "Dynamics 365 Sales Enterprise Edition",
    plans: &[
        PLAN_FOUNDATION,
        PLAN_SALES,
        PLAN_POWER_APPS,
        PLAN_POWER_AUTOMATE,
    ],
    workloads: &[SALES, POWER_APPS, POWER_AUTOMATE],
    seats_per_hundred: 100,
    service: DYNAMICS_365,
};
const DYN365_CUSTOMER_SERVICE: Sku = Sku {
    id: "749742bf-0d37-4158-a120-33567104deeb",
    part_number: "DYN365_ENTERPRISE_CUSTOMER_SERVICE",
    name: "Dynamics 365 Customer Service Enterprise Edition",
    plans: &[
        PLAN_FOUNDATION,
        PLAN_CUSTOMER_SERVICE,
        PLAN_POWER_APPS,
        PLAN_POWER_AUTOMATE,
    ],
    workloads: &[CUSTOMER_SERVICE, POWER_APPS, POWER_AUTOMATE],
    seats_per_hundred: 100,
    service: DYNAMICS_365,
};
const DYN365_BUSINESS_CENTRAL_ESSENTIALS: Sku = Sku {
    id: "2880026b-2b0c-4251-8656-5d41ff11e3aa",
    part_number: "DYN365_BUSCENTRAL_ESSENTIAL",
    name: "Dynamics 365 Business Central Essentials",
    plans: &[PLAN_FOUNDATION, PLAN_BUSINESS_CENTRAL],
    workloads: &[BUSINESS_CENTRAL],
    seats_per_hundred: 100,
    service: DYNAMICS_365,
};
const DYN365_BUSINESS_CENTRAL_PREMIUM: Sku = Sku {
    id: "f991cecc-3f91-4cd0-a9a8-bf1c8167e029",
    part_number: "DYN365_BUSCENTRAL_PREMIUM",
    name: "Dynamics 365 Business Central Premium",
    plans: &[PLAN_FOUNDATION, PLAN_BUSINESS_CENTRAL, PLAN_POWER_AUTOMATE],
    workloads: &[BUSINESS_CENTRAL, POWER_AUTOMATE],
    seats_per_hundred: 100,
    service: DYNAMICS_365,
};
const POWERAPPS_PER_USER: Sku = Sku {
    id: "b30411f5-fea1-4a59-9ad9-3db7c7ead579",
    part_number: "POWERAPPS_PER_USER",
    name: "Power Apps per user plan",
    plans: &[PLAN_FOUNDATION, PLAN_POWER_APPS],
    workloads: &[POWER_APPS],
    seats_per_hundred: 30,
    service: POWER_PLATFORM,
};
const FLOW_PER_USER: Sku = Sku {
    id: "4a51bf65-409c-4a91-b845-1121b571cc9d",
    part_number: "FLOW_PER_USER",
    name: "Power Automate per user plan",
    plans: &[PLAN_FOUNDATION, PLAN_POWER_AUTOMATE],
    workloads: &[POWER_AUTOMATE],
    seats_per_hundred: 20,
    service: POWER_PLATFORM,
};
const PBI_PREMIUM_PER_USER: Sku = Sku {
    id: "c1d032e0-5619-4761-9b5c-75b6831e1711",
    part_number: "PBI_PREMIUM_PER_USER",
    name: "Power BI Premium Per User",
    plans: &[PLAN_FOUNDATION, PLAN_POWER_BI_PPU],
    workloads: &[POWER_BI],
    seats_per_hundred: 15,
    service: POWER_PLATFORM,
};

/// What a demo partner's customers buy. A customer's suite follows its
/// size: [`Catalogue::large`] above 300 people; from 100 to 300, half
/// (by a hash of the name) [`Catalogue::medium`]; the others one of
/// [`Catalogue::small`], half each. Its add-ons are picked from
/// [`Catalogue::add_ons`] by a hash of its name.
pub(super) struct Catalogue {
    large: &'static Sku,
    /// What half (by a hash of the name) of the companies with the large
    /// suite still hold beside it, mid-migration, if anything.
    legacy: Option<&'static Sku>,
    medium: &'static Sku,
    small: [&'static Sku; 2],
    /// In no order.
    add_ons: &'static [&'static Sku],
}

/// What the customers of [`DemoPartner::contoso`] buy: Microsoft 365.
const CONTOSO_CATALOGUE: Catalogue = Catalogue {
    large: &SPE_E3,
    legacy: Some(&ENTERPRISEPACK),
    medium: &ENTERPRISEPACK,
    small: [&BUSINESS_STANDARD, &BUSINESS_PREMIUM],
    add_ons: &[
        &EMS,
        &POWER_BI_PRO,
        &TEAMS_EXPLORATORY,
        &EXCHANGESTANDARD,
        &VISIOCLIENT,
        &PROJECTPROFESSIONAL,
    ],
};

/// What the customers of [`DemoPartner::fabrikam`] buy: Dynamics 365 and
/// the Power Platform, none of [`CONTOSO_CATALOGUE`]'s SKUs.
const FABRIKAM_CATALOGUE: Catalogue = Catalogue {
    large: &DYN365_SALES,
    legacy: None,
    medium: &DYN365_CUSTOMER_SERVICE,
    small: [
        &DYN365_BUSINESS_CENTRAL_ESSENTIALS,
        &DYN365_BUSINESS_CENTRAL_PREMIUM,
    ],
    add_ons: &[&POWERAPPS_PER_USER, &FLOW_PER_USER, &PBI_PREMIUM_PER_USER],
};

/// The most SKUs a demo customer has.
const MOST_SKUS: usize = 6;

/// The units of a free SKU, as Microsoft gives them ("10,000 seats").
const FREE_UNITS: u32 = 10_000;

/// What is out of the ordinary about a customer's licences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Anomaly {
    /// Unused seats only, as most customers have.
    None,
    /// Its suite has more licences assigned than it has.
    OverAssigned,
    /// Part of its suite is in the grace period after its subscription
    /// lapsed (`warningUnits`, capability `Warning`).
    Warning,
    /// One add-on's subscription is suspended: its units are all
    /// `suspendedUnits`, its capability `Suspended`.
    Suspended,
    /// Partner Center refuses its licences (no GDAP role).
    GdapRefused,
}

/// A demo customer as written in the table.
pub(super) struct Profile {
    pub(super) name: &'static str,
    label: &'static str,
    relationship: &'static str,
    /// People in the company, which sizes its licences.
    people: u32,
    pub(super) anomaly: Anomaly,
    /// Whether it has the free Power Automate SKU with its 10,000 units.
    flow_free: bool,
}

const fn profile(
    name: &'static str,
    label: &'static str,
    relationship: &'static str,
    people: u32,
    anomaly: Anomaly,
    flow_free: bool,
) -> Profile {
    Profile {
        name,
        label,
        relationship,
        people,
        anomaly,
        flow_free,
    }
}

const RESELLER: &str = "reseller";
const ADVISOR: &str = "advisor";

/// The customers of [`DemoPartner::contoso`], the demo's first partner.
#[rustfmt::skip]
pub(super) const CONTOSO_CUSTOMERS: [Profile; 32] = [
    profile("Contoso", "contoso", RESELLER, 850, Anomaly::None, true),
    profile("Fabrikam", "fabrikam", RESELLER, 420, Anomaly::None, false),
    profile("Northwind Traders", "northwindtraders", RESELLER, 120, Anomaly::None, false),
    profile("Adventure Works", "adventureworks", RESELLER, 260, Anomaly::OverAssigned, false),
    profile("Tailspin Toys", "tailspintoys", RESELLER, 45, Anomaly::None, false),
    profile("Wingtip Toys", "wingtiptoys", RESELLER, 60, Anomaly::Warning, false),
    profile("Litware", "litware", ADVISOR, 150, Anomaly::None, false),
    profile("Woodgrove Bank", "woodgrovebank", RESELLER, 1200, Anomaly::None, true),
    profile("Proseware", "proseware", RESELLER, 35, Anomaly::None, false),
    profile("Lucerne Publishing", "lucernepublishing", RESELLER, 80, Anomaly::None, false),
    profile("Margie's Travel", "margiestravel", RESELLER, 25, Anomaly::OverAssigned, false),
    profile("Alpine Ski House", "alpineskihouse", RESELLER, 70, Anomaly::Suspended, false),
    profile("Coho Winery", "cohowinery", RESELLER, 18, Anomaly::None, false),
    profile("Trey Research", "treyresearch", RESELLER, 140, Anomaly::GdapRefused, false),
    profile("Fourth Coffee", "fourthcoffee", RESELLER, 55, Anomaly::None, false),
    profile("Wide World Importers", "wideworldimporters", RESELLER, 640, Anomaly::None, true),
    profile("Blue Yonder Airlines", "blueyonderairlines", RESELLER, 380, Anomaly::Warning, false),
    profile("City Power & Light", "citypowerlight", RESELLER, 720, Anomaly::None, false),
    profile("Consolidated Messenger", "consolidatedmessenger", ADVISOR, 210, Anomaly::None, false),
    profile("Graphic Design Institute", "graphicdesigninstitute", RESELLER, 95, Anomaly::None, false),
    profile("Humongous Insurance", "humongousinsurance", RESELLER, 530, Anomaly::OverAssigned, false),
    profile("Southridge Video", "southridgevideo", RESELLER, 40, Anomaly::None, false),
    profile("VanArsdel", "vanarsdel", RESELLER, 300, Anomaly::None, false),
    profile("Relecloud", "relecloud", RESELLER, 160, Anomaly::None, true),
    profile("Munson's Pickles and Preserves", "munsonspickles", RESELLER, 12, Anomaly::None, false),
    profile("A. Datum Corporation", "adatum", RESELLER, 480, Anomaly::None, false),
    profile("Best For You Organics", "bestforyouorganics", ADVISOR, 30, Anomaly::None, false),
    profile("Bellows College", "bellowscollege", RESELLER, 900, Anomaly::None, false),
    profile("Contoso Pharmaceuticals", "contosopharmaceuticals", RESELLER, 330, Anomaly::None, false),
    profile("Northwind Health", "northwindhealth", RESELLER, 240, Anomaly::None, false),
    profile("Tailwind Traders", "tailwindtraders", RESELLER, 560, Anomaly::None, false),
    profile("Contoso Electronics", "contosoelectronics", RESELLER, 190, Anomaly::None, false),
];

/// The customers of [`DemoPartner::fabrikam`], the demo's second partner:
/// none of [`CONTOSO_CUSTOMERS`]' names, so none of their tenant IDs; none
/// refused, none suspended, none with a free SKU. Its people are those who
/// use the business applications it sells.
#[rustfmt::skip]
pub(super) const FABRIKAM_CUSTOMERS: [Profile; 7] = [
    profile("Lamna Healthcare Company", "lamnahealthcare", RESELLER, 420, Anomaly::None, false),
    profile("Parnell Aerospace", "parnellaerospace", RESELLER, 360, Anomaly::OverAssigned, false),
    profile("Baldwin Museum of Science", "baldwinmuseum", RESELLER, 150, Anomaly::Warning, false),
    profile("School of Fine Art", "schooloffineart", RESELLER, 110, Anomaly::None, false),
    profile("Nod Publishers", "nodpublishers", RESELLER, 65, Anomaly::None, false),
    profile("Fincher Architects", "fincherarchitects", ADVISOR, 40, Anomaly::None, false),
    profile("Liberty's Delightful Sinful Bakery & Cafe", "libertysbakery", RESELLER, 22, Anomaly::None, false),
];

impl Profile {
    fn customer(&self) -> Customer {
        Customer::new(self.name, self.label).with_relationship(self.relationship)
    }
}

/// How a holding's assigned licences (`consumedUnits`) move: around
/// `centre`, by up to `swing`, never below 0.
#[derive(Debug, Clone, Copy)]
struct Assignment {
    centre: f64,
    swing: f64,
}

/// One SKU of one customer.
pub(super) struct Holding {
    pub(super) sku: &'static Sku,
    pub(super) active: u32,
    pub(super) warning: u32,
    pub(super) suspended: u32,
    capability: &'static str,
    assignment: Assignment,
}

impl Holding {
    /// Units of a subscription in good standing with most seats used:
    /// `fill` of them on average, never all.
    fn under_assigned(sku: &'static Sku, units: u32, fill: f64) -> Self {
        let total = f64::from(units);
        let swing = (total * 0.04).max(1.0);
        Self {
            sku,
            active: units,
            warning: 0,
            suspended: 0,
            capability: "Enabled",
            assignment: Assignment {
                centre: (total * fill).min(total - swing).max(swing),
                swing,
            },
        }
    }

    /// `totalUnits`: the units that can be assigned, as Microsoft defines it.
    pub(super) fn total(&self) -> u32 {
        self.active + self.warning
    }

    /// `consumedUnits` at `unix_seconds`.
    pub(super) fn consumed(&self, series: &[&str], unix_seconds: f64) -> u32 {
        let Assignment { centre, swing } = self.assignment;
        let value = centre + swing * wave(series, unix_seconds);
        // Rounded and clamped: a count of people is a whole number, and
        // never below zero however the wave and centre fall.
        value.round().clamp(0.0, f64::from(u32::MAX)) as u32
    }

    fn item(&self, customer: &str, unix_seconds: f64) -> serde_json::Value {
        let consumed = self.consumed(&[customer, self.sku.id], unix_seconds);
        let plans: Vec<serde_json::Value> = self
            .sku
            .plans
            .iter()
            .map(|(display, service, id, target)| {
                serde_json::json!({
                    "displayName": display,
                    "serviceName": service,
                    "id": id,
                    "capabilityStatus": self.capability,
                    "targetType": target
                })
            })
            .collect();
        serde_json::json!({
            // Clamped at 0: an over-assigned SKU has no seats left, and
            // shows its excess in consumedUnits > totalUnits.
            "availableUnits": self.total().saturating_sub(consumed),
            "activeUnits": self.active,
            "consumedUnits": consumed,
            "suspendedUnits": self.suspended,
            "totalUnits": self.total(),
            "warningUnits": self.warning,
            "productSku": {
                "id": self.sku.id,
                "name": self.sku.name,
                "skuPartNumber": self.sku.part_number,
                "targetType": "User",
                "licenseGroupId": "group1"
            },
            "servicePlans": plans,
            "capabilityStatus": self.capability,
            "attributes": { "objectType": "SubscribedSku" }
        })
    }
}

/// A demo customer with its licences.
pub(super) struct Tenant {
    pub(super) profile: &'static Profile,
    pub(super) customer: Customer,
    /// The channel its commercial analytics rows name.
    channel: &'static str,
    pub(super) holdings: Vec<Holding>,
}

impl Tenant {
    pub(super) fn new(profile: &'static Profile, catalogue: &'static Catalogue) -> Self {
        let name = profile.name;
        let people = profile.people;
        let fill = |what: &str| 0.62 + 0.3 * fraction(&[name, what, "fill"]);
        let mut holdings = Vec::new();
        // The suite: enterprise plans for the large, business plans (at
        // most 300 people) for the others; some large ones still have
        // the legacy suite beside it (Office 365 E3 beside Microsoft 365
        // E3), mid-migration.
        let suite: &'static Sku = if people > 300 {
            catalogue.large
        } else if people >= 100 && fraction(&[name, "suite"]) < 0.5 {
            catalogue.medium
        } else if fraction(&[name, "suite"]) < 0.5 {
            catalogue.small[0]
        } else {
            catalogue.small[1]
        };
        let seats = people + people / 20;
        let mut suite_holding = Holding::under_assigned(suite, seats, fill(suite.id));
        match profile.anomaly {
            Anomaly::OverAssigned => {
                let total = f64::from(seats);
                let swing = (total * 0.02).max(1.0);
                let excess = 1.0 + (total * 0.03).round();
                suite_holding.assignment = Assignment {
                    centre: total + swing + excess,
                    swing,
                };
            }
            Anomaly::Warning => {
                // A lapsed subscription of a fifth of the seats.
                let lapsed = (seats / 5).max(1);
                suite_holding.active = seats - lapsed;
                suite_holding.warning = lapsed;
                suite_holding.capability = "Warning";
            }
            Anomaly::None | Anomaly::Suspended | Anomaly::GdapRefused => {}
        }
        holdings.push(suite_holding);
        if let Some(legacy) = catalogue.legacy
            && suite.part_number == catalogue.large.part_number
            && fraction(&[name, "migrating"]) < 0.5
        {
            let left = (people / 8).max(5);
            holdings.push(Holding::under_assigned(legacy, left, fill(legacy.id)));
        }
        let mut add_ons: Vec<&'static Sku> = catalogue.add_ons.to_vec();
        add_ons.sort_by_key(|sku| hash(&[name, sku.id, "add-on"]));
        // More add-ons the larger the company, but two to six SKUs in
        // all, the free one included.
        let count = (2 + (hash(&[name, "add-ons"]) % 4) as usize + usize::from(people > 100))
            .min(MOST_SKUS - holdings.len() - usize::from(profile.flow_free));
        for sku in add_ons.into_iter().take(count) {
            let units = (people * sku.seats_per_hundred / 100).max(3);
            holdings.push(Holding::under_assigned(sku, units, fill(sku.id)));
        }
        if profile.anomaly == Anomaly::Suspended
            && let Some(last) = holdings.last_mut()
        {
            last.suspended = last.active;
            last.active = 0;
            last.capability = "Suspended";
            last.assignment = Assignment {
                centre: 0.0,
                swing: 0.0,
            };
        }
        if profile.flow_free {
            let swing = (f64::from(people) * 0.01).max(1.0);
            holdings.push(Holding {
                sku: &FLOW_FREE,
                active: FREE_UNITS,
                warning: 0,
                suspended: 0,
                capability: "Enabled",
                assignment: Assignment {
                    centre: f64::from(people) * 0.06 + swing,
                    swing,
                },
            });
        }
        let channel = if fraction(&[name, "channel"]) < 0.25 || profile.relationship == ADVISOR {
            "indirect"
        } else {
            "reseller"
        };
        Self {
            profile,
            customer: profile.customer(),
            channel,
            holdings,
        }
    }

    pub(super) fn subscribed_skus(&self, now: SystemTime) -> serde_json::Value {
        let seconds = unix_seconds(now);
        let items: Vec<serde_json::Value> = self
            .holdings
            .iter()
            .map(|holding| holding.item(self.profile.name, seconds))
            .collect();
        serde_json::json!({
            "totalCount": items.len(),
            "items": items,
            "attributes": { "objectType": "Collection" }
        })
    }

    /// The holdings the commercial analytics count: paid ones only.
    pub(super) fn paid(&self) -> impl Iterator<Item = &Holding> {
        self.holdings
            .iter()
            .filter(|holding| holding.sku.part_number != FLOW_FREE.part_number)
    }

    /// The fields every commercial row of `holding` starts with.
    fn row(
        &self,
        holding: &Holding,
        processed: &str,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut row = serde_json::Map::new();
        row.insert("processedDateTime".into(), processed.into());
        let (service_code, service_name) = holding.sku.service;
        row.insert("serviceCode".into(), service_code.into());
        row.insert("serviceName".into(), service_name.into());
        row.insert("channel".into(), self.channel.into());
        row.insert(
            "customerTenantId".into(),
            self.customer.id.to_uppercase().into(),
        );
        row.insert("customerName".into(), self.customer.name.clone().into());
        row.insert("productId".into(), holding.sku.id.to_uppercase().into());
        row.insert("productName".into(), holding.sku.name.to_uppercase().into());
        row
    }
}

/// When the commercial rows were processed: the midnight (UTC) that
/// began yesterday, as the daily refresh would give, without an offset
/// as the documented rows are.
fn processed_date_time(unix_seconds: f64) -> String {
    let yesterday = ((unix_seconds as i64).div_euclid(86_400) - 1) * 86_400;
    chrono::DateTime::from_timestamp(yesterday, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

fn usage_rows(tenants: &[Tenant], now: SystemTime) -> Vec<serde_json::Value> {
    let seconds = unix_seconds(now);
    let processed = processed_date_time(seconds);
    let mut rows = Vec::new();
    for tenant in tenants {
        let name = tenant.profile.name;
        let active_key = if name == MISSPELT_USAGE_CUSTOMER {
            "licenseActive"
        } else {
            "licensesActive"
        };
        for holding in tenant.paid() {
            let workloads = holding.sku.workloads;
            // Two to four of its workloads (all, when it has fewer).
            let wanted = 2 + (hash(&[name, holding.sku.id, "workloads"]) % 3) as usize;
            let qualified = holding.total();
            let assigned = holding
                .consumed(&[name, holding.sku.id], seconds)
                .min(qualified);
            // Where among them to start, so that customers differ.
            let first = hash(&[name, holding.sku.id, "first workload"]) as usize;
            for (code, workload) in workloads
                .iter()
                .cycle()
                .skip(first % workloads.len().max(1))
                .take(wanted.min(workloads.len()))
            {
                // Of the people assigned a licence, the share who used the
                // workload lately: its own slow wave.
                let share = 0.55 + 0.35 * wave(&[name, holding.sku.id, code], seconds);
                let active = (f64::from(assigned) * share).round() as u32;
                let mut row = tenant.row(holding, &processed);
                row.insert("workloadCode".into(), (*code).into());
                row.insert("workloadName".into(), (*workload).into());
                row.insert(active_key.into(), active.min(qualified).into());
                row.insert("licensesQualified".into(), qualified.into());
                rows.push(serde_json::Value::Object(row));
            }
        }
    }
    rows
}

fn deployment_rows(tenants: &[Tenant], now: SystemTime) -> Vec<serde_json::Value> {
    let seconds = unix_seconds(now);
    let processed = processed_date_time(seconds);
    let mut rows = Vec::new();
    for tenant in tenants {
        for holding in tenant.paid() {
            let mut row = tenant.row(holding, &processed);
            // Deployed is assigned: above sold where the customer is
            // over-assigned, as the subscribed SKUs show too.
            row.insert(
                "licensesDeployed".into(),
                holding
                    .consumed(&[tenant.profile.name, holding.sku.id], seconds)
                    .into(),
            );
            row.insert("licensesSold".into(), holding.total().into());
            rows.push(serde_json::Value::Object(row));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::time::Duration;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn tenants() -> Vec<Tenant> {
        CONTOSO_CUSTOMERS
            .iter()
            .map(|profile| Tenant::new(profile, &CONTOSO_CATALOGUE))
            .collect()
    }

    fn count(value: &serde_json::Value, field: &str) -> u64 {
        value[field]
            .as_u64()
            .unwrap_or_else(|| panic!("{field} is a count: {value}"))
    }

    #[test]
    fn customers_are_named_after_the_fictitious_companies_with_stable_ids() {
        let customers = DemoPartner::contoso().customers();
        assert_eq!(customers.len(), CONTOSO_CUSTOMERS.len());
        assert!((28..=36).contains(&customers.len()));
        assert_eq!(
            customers,
            DemoPartner::contoso().customers(),
            "the same at every call"
        );
        let ids: BTreeSet<&str> = customers.iter().map(|c| c.id.as_str()).collect();
        let names: BTreeSet<&str> = customers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(ids.len(), customers.len(), "IDs differ");
        assert_eq!(names.len(), customers.len(), "names differ");
        for customer in &customers {
            let id = uuid::Uuid::parse_str(&customer.id).expect("a GUID");
            assert_eq!(customer.id, id.to_string(), "lower-case, hyphenated");
            assert!(
                customer.domain.ends_with(".onmicrosoft.com"),
                "{customer:?}"
            );
            assert!(
                ["reseller", "advisor"].contains(&customer.relationship.as_str()),
                "{customer:?}"
            );
            let item = customer.listing_item();
            assert_eq!(item["id"], item["companyProfile"]["tenantId"]);
            assert_eq!(
                item["companyProfile"]["companyName"],
                customer.name.as_str()
            );
            assert_eq!(item["attributes"]["objectType"], "Customer");
        }
        assert_eq!(
            customers
                .iter()
                .filter(|c| c.relationship == "advisor")
                .count(),
            3
        );
        assert!(names.contains(GDAP_REFUSED_CUSTOMER));
        assert!(names.contains(MISSPELT_USAGE_CUSTOMER));
        assert_eq!(
            Customer::new("Contoso", "contoso").id,
            customers[0].id,
            "derived from the name alone"
        );
    }

    #[test]
    fn subscribed_skus_keep_microsofts_invariants_and_move() {
        let tenants = tenants();
        let (mut over, mut warning, mut suspended, mut free, mut unused) = (0, 0, 0, 0, 0);
        let mut moved = false;
        for tenant in &tenants {
            assert!(
                (2..=MOST_SKUS).contains(&tenant.holdings.len()),
                "{}",
                tenant.profile.name
            );
            let parts: BTreeSet<&str> = tenant.holdings.iter().map(|h| h.sku.part_number).collect();
            assert_eq!(parts.len(), tenant.holdings.len(), "one holding per SKU");
            for step in 0..40 {
                let now = at(1_764_600_000 + step * 97);
                let body = tenant.subscribed_skus(now);
                let items = body["items"].as_array().expect("items");
                assert_eq!(count(&body, "totalCount"), items.len() as u64);
                for item in items {
                    let total = count(item, "totalUnits");
                    let consumed = count(item, "consumedUnits");
                    assert_eq!(
                        total,
                        count(item, "activeUnits") + count(item, "warningUnits"),
                        "{item}"
                    );
                    assert_eq!(
                        count(item, "availableUnits"),
                        total.saturating_sub(consumed),
                        "{item}"
                    );
                    count(item, "suspendedUnits");
                    for field in [
                        "id",
                        "name",
                        "skuPartNumber",
                        "targetType",
                        "licenseGroupId",
                    ] {
                        assert!(item["productSku"][field].is_string(), "{field}: {item}");
                    }
                    assert!(!item["servicePlans"].as_array().expect("plans").is_empty());
                    assert_eq!(item["attributes"]["objectType"], "SubscribedSku");
                    if step == 0 {
                        over += u32::from(consumed > total);
                        unused += u32::from(consumed < total);
                        warning += u32::from(item["capabilityStatus"] == "Warning");
                        suspended += u32::from(
                            item["capabilityStatus"] == "Suspended"
                                && count(item, "suspendedUnits") > 0,
                        );
                        free += u32::from(total >= u64::from(FREE_UNITS));
                    }
                }
                if step > 0 {
                    moved |= body != tenant.subscribed_skus(at(1_764_600_000));
                }
                assert_eq!(body, tenant.subscribed_skus(now), "deterministic");
            }
        }
        assert!(moved, "consumedUnits moves with the clock");
        assert_eq!(over, 3, "a few customers are over-assigned");
        assert_eq!(warning, 2);
        assert_eq!(suspended, 1);
        assert_eq!(free, 4);
        assert!(unused > 100, "most SKUs have unused seats: {unused}");
    }

    #[test]
    fn commercial_rows_are_a_few_hundred_and_keep_their_invariants() {
        let tenants = tenants();
        let key = |row: &serde_json::Value| {
            format!(
                "{} {} {}",
                row["customerTenantId"], row["productId"], row["workloadCode"]
            )
        };
        let first = usage_rows(&tenants, at(1_764_600_000));
        let later = usage_rows(&tenants, at(1_764_600_300));
        assert!((150..=400).contains(&first.len()), "{}", first.len());
        assert_eq!(
            first.iter().map(key).collect::<Vec<_>>(),
            later.iter().map(key).collect::<Vec<_>>(),
            "the same rows in the same order at any time, so that paging holds"
        );
        assert_eq!(
            first.iter().map(key).collect::<BTreeSet<_>>().len(),
            first.len()
        );
        assert_ne!(first, later, "the counts move");
        for row in first.iter().chain(&later) {
            let customer = row["customerName"].as_str().expect("name");
            let active_field = if customer == MISSPELT_USAGE_CUSTOMER {
                "licenseActive"
            } else {
                "licensesActive"
            };
            assert!(
                count(row, active_field) <= count(row, "licensesQualified"),
                "{row}"
            );
            let tenant_id = row["customerTenantId"].as_str().expect("tenant");
            assert_eq!(tenant_id, tenant_id.to_uppercase());
            let product = row["productId"].as_str().expect("product");
            assert_eq!(product, product.to_uppercase());
            assert_eq!(row["serviceCode"], "o365");
            assert!(["reseller", "indirect"].contains(&row["channel"].as_str().expect("channel")));
            let processed = row["processedDateTime"].as_str().expect("processed");
            assert_eq!(processed, "2025-11-30T00:00:00", "yesterday, no offset");
            assert_ne!(
                product,
                FLOW_FREE.id.to_uppercase(),
                "free SKUs are not sold"
            );
        }
        let products = |rows: &[serde_json::Value]| -> BTreeSet<String> {
            rows.iter()
                .map(|row| format!("{} {}", row["customerTenantId"], row["productId"]))
                .collect()
        };
        let deployment = deployment_rows(&tenants, at(1_764_600_000));
        assert!(
            (150..=400).contains(&deployment.len()),
            "{}",
            deployment.len()
        );
        assert_eq!(products(&deployment).len(), deployment.len());
        assert!(products(&first).is_subset(&products(&deployment)));
        let over = deployment
            .iter()
            .filter(|row| count(row, "licensesDeployed") > count(row, "licensesSold"))
            .count();
        assert_eq!(over, 3, "only the over-assigned deploy more than was sold");
        assert_ne!(deployment, deployment_rows(&tenants, at(1_764_600_300)));
        let contoso = DemoPartner::contoso();
        assert_eq!(contoso.deployment_rows_at(at(1_764_600_000)), deployment);
        assert_eq!(contoso.usage_rows_at(at(1_764_600_000)), first);
    }

    #[test]
    fn the_second_partner_has_customers_skus_and_workloads_of_its_own() {
        let (contoso, fabrikam) = (DemoPartner::contoso(), DemoPartner::fabrikam());
        let customers = fabrikam.customers();
        assert!((5..=8).contains(&customers.len()), "{}", customers.len());
        let theirs: BTreeSet<String> = contoso
            .customers()
            .into_iter()
            .flat_map(|c| [c.id, c.name])
            .collect();
        for customer in &customers {
            let id = uuid::Uuid::parse_str(&customer.id).expect("a GUID");
            assert_eq!(customer.id, id.to_string());
            assert!(!theirs.contains(&customer.id), "{customer:?}");
            assert!(!theirs.contains(&customer.name), "{customer:?}");
        }
        let names: BTreeSet<&str> = customers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names.len(), customers.len());
        for special in [GDAP_REFUSED_CUSTOMER, MISSPELT_USAGE_CUSTOMER] {
            assert!(!names.contains(special), "{special}");
        }

        let skus = |partner: &DemoPartner| -> BTreeSet<&'static str> {
            partner
                .tenants()
                .iter()
                .flat_map(|tenant| tenant.holdings.iter().map(|holding| holding.sku.id))
                .collect()
        };
        assert!(skus(&fabrikam).is_disjoint(&skus(&contoso)));
        let tenants = fabrikam.tenants();
        let now = at(1_764_600_000);
        let (mut over, mut warning) = (0, 0);
        for tenant in tenants.iter() {
            assert_ne!(tenant.profile.anomaly, Anomaly::GdapRefused);
            assert_ne!(tenant.profile.anomaly, Anomaly::Suspended);
            assert!((2..=MOST_SKUS).contains(&tenant.holdings.len()));
            for item in tenant.subscribed_skus(now)["items"]
                .as_array()
                .expect("items")
            {
                let total = count(item, "totalUnits");
                assert!(total < u64::from(FREE_UNITS), "no free SKU: {item}");
                assert!(!item["servicePlans"].as_array().expect("plans").is_empty());
                over += u32::from(count(item, "consumedUnits") > total);
                warning += u32::from(item["capabilityStatus"] == "Warning");
            }
        }
        assert!(over >= 1, "an over-assigned customer");
        assert_eq!(warning, 1);

        let values = |rows: &[serde_json::Value], field: &str| -> BTreeSet<String> {
            rows.iter()
                .map(|row| row[field].as_str().expect(field).to_owned())
                .collect()
        };
        let ours = fabrikam.usage_rows_at(now);
        let theirs = contoso.usage_rows_at(now);
        assert!((10..=100).contains(&ours.len()), "{}", ours.len());
        for field in ["productId", "workloadCode", "customerTenantId"] {
            assert!(
                values(&ours, field).is_disjoint(&values(&theirs, field)),
                "{field}"
            );
        }
        assert_eq!(
            values(&ours, "serviceCode"),
            BTreeSet::from(["crm".to_owned(), "powerplatform".to_owned()])
        );
        for row in &ours {
            assert!(count(row, "licensesActive") <= count(row, "licensesQualified"));
        }
        let deployment = fabrikam.deployment_rows_at(now);
        assert!(values(&ours, "productId").is_subset(&values(&deployment, "productId")));
        assert!(
            deployment
                .iter()
                .any(|row| count(row, "licensesDeployed") > count(row, "licensesSold")),
            "the over-assigned deploy more than was sold"
        );
    }
}
