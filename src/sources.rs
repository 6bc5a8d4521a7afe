//! The Partner Center datasets the exporter publishes, one module each,
//! and the table of them ([`SourceName::ALL`]).
//!
//! A source owns what is particular to its dataset and nothing else: its
//! request path, how one item is decoded (leniently, through
//! [`crate::partner_center::collection::read_fields`]), which items are
//! one series (its labels) and its metric families. Fetching, paging,
//! retries, scheduling, de-duplication (newest `processedDateTime` wins),
//! rendering and health are the framework's, the same for every source.
//!
//! Adding a dataset: a module here implementing [`Source`], and its line
//! in the table of sources below (`source_table!`), which makes its
//! [`SourceName`], its configuration key and its dispatch.

use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use crate::filters::Filters;
use crate::partner_center::collection::{SkipReason, SkippedItem};

mod commercial_rows;
pub mod customer_deployment;
pub mod customer_licenses;
pub mod customer_usage;
pub mod license_deployment;
pub mod license_usage;
pub mod subscriptions;

/// The table of sources: for each, its [`SourceName`] variant, its key
/// under `sources:` (and `source` label value), and the type that
/// implements it. It makes the name enum and the dispatch from a name to
/// its type, so that adding a dataset is its module and one line here.
macro_rules! source_table {
    ($($variant:ident => $key:literal, $source:ty;)+) => {
        /// A source's name: its key under `sources:` in the configuration and
        /// the value of the `source` label on its health metrics.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum SourceName {
            $($variant,)+
        }

        impl SourceName {
            /// Every source, in the order they are listed, polled and rendered.
            pub const ALL: &'static [SourceName] = &[$(Self::$variant,)+];

            /// The name as configured and labelled.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $key,)+
                }
            }

            /// The configuration key of the source's interval, for messages.
            pub fn interval_key(self) -> &'static str {
                match self {
                    $(Self::$variant => concat!("sources.", $key, ".interval"),)+
                }
            }

            /// Calls `visitor` with the type that implements the source.
            pub fn visit<V: SourceVisitor>(self, visitor: V) -> V::Output {
                match self {
                    $(Self::$variant => visitor.visit::<$source>(),)+
                }
            }
        }
    };
}

source_table! {
    LicenseUsage => "license_usage", license_usage::LicenseUsageSource;
    LicenseDeployment => "license_deployment", license_deployment::LicenseDeploymentSource;
    CustomerLicenses => "customer_licenses", customer_licenses::CustomerLicensesSource;
    CustomerUsage => "customer_usage", customer_usage::CustomerUsageSource;
    CustomerDeployment => "customer_deployment", customer_deployment::CustomerDeploymentSource;
    Subscriptions => "subscriptions", subscriptions::SubscriptionsSource;
}

/// What is done with a source's type once its name is known: the
/// scheduler builds its poller, the documentation lists its families.
pub trait SourceVisitor {
    type Output;
    fn visit<S: Source>(self) -> Self::Output;
}

impl SourceName {
    /// The name that is written `name` under `sources:`, if any.
    pub fn from_key(name: &str) -> Option<SourceName> {
        Self::ALL
            .iter()
            .copied()
            .find(|source| source.as_str() == name)
    }

    /// How the source's data is requested.
    pub fn fetch(self) -> Fetch {
        struct FetchOf;
        impl SourceVisitor for FetchOf {
            type Output = Fetch;
            fn visit<S: Source>(self) -> Fetch {
                S::FETCH
            }
        }
        self.visit(FetchOf)
    }

    /// Whether the source is polled when the configuration does not say.
    pub fn enabled_by_default(self) -> bool {
        struct Enabled;
        impl SourceVisitor for Enabled {
            type Output = bool;
            fn visit<S: Source>(self) -> bool {
                S::ENABLED_BY_DEFAULT
            }
        }
        self.visit(Enabled)
    }

    /// The source's interval when the configuration does not set one;
    /// `None` for `poll.interval`.
    pub fn default_interval(self) -> Option<std::time::Duration> {
        struct Interval;
        impl SourceVisitor for Interval {
            type Output = Option<std::time::Duration>;
            fn visit<S: Source>(self) -> Option<std::time::Duration> {
                S::DEFAULT_INTERVAL
            }
        }
        self.visit(Interval)
    }

    /// What a poll costs beyond one request, for `--config.check`: the
    /// fetch's pages or customers, and any lookups.
    pub fn cost(self) -> String {
        struct LookupCost;
        impl SourceVisitor for LookupCost {
            type Output = String;
            fn visit<S: Source>(self) -> String {
                S::LOOKUP.map_or_else(String::new, |lookup| {
                    format!(
                        ", and one {} lookup per {} not seen before (kept in state_dir)",
                        lookup.what,
                        S::ITEM_NOUN
                    )
                })
            }
        }
        format!("{}{}", self.fetch().cost(), self.visit(LookupCost))
    }

    /// Whether the source's data is per customer (and needs the customer
    /// listing).
    pub fn is_per_customer(self) -> bool {
        !matches!(self.fetch(), Fetch::Collection(_))
    }

    /// Whether a poll of the source makes one request per customer.
    pub fn is_fanned_out(self) -> bool {
        matches!(self.fetch(), Fetch::PerCustomer(_))
    }

    /// The metric families the source publishes, by name.
    pub fn family_names(self) -> Vec<&'static str> {
        struct Names;
        impl SourceVisitor for Names {
            type Output = Vec<&'static str>;
            fn visit<S: Source>(self) -> Vec<&'static str> {
                S::FAMILIES
                    .iter()
                    .map(|family| family.name)
                    .chain(S::FAMILIES_BY_LABEL.iter().map(|family| family.name))
                    .chain(S::INFO_FAMILIES.iter().map(|family| family.name))
                    .collect()
            }
        }
        self.visit(Names)
    }
}

impl<'de> serde::Deserialize<'de> for SourceName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        SourceName::from_key(&name).ok_or_else(|| {
            let known: Vec<String> = SourceName::ALL
                .iter()
                .map(|source| format!("`{source}`"))
                .collect();
            serde::de::Error::custom(format!(
                "unknown source `{name}`, expected one of {}",
                known.join(", ")
            ))
        })
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One metric family of a source: a gauge per series that has the
/// figure, its value taken from the series' item.
pub struct Family<I> {
    pub name: &'static str,
    pub help: &'static str,
    /// `None` leaves the series out of this family only, such as a date
    /// Partner Center did not give.
    pub value: fn(&I) -> Option<f64>,
}

/// How a sample's value is taken from its series' item.
pub type ValueOf<I> = fn(&I) -> f64;

/// A family with one sample per series and value of one more label, such
/// as `status`: each value of the label takes its figure from the item.
pub struct FamilyByLabel<I: 'static> {
    pub name: &'static str,
    pub help: &'static str,
    /// The label added after the source's own.
    pub label: &'static str,
    /// Each value of `label` and the figure of its sample.
    pub values: &'static [(&'static str, ValueOf<I>)],
}

/// An `_info` family: names and other text that would bloat every value
/// series, written once per entity with the value 1. The first `key`
/// labels identify the entity; when the series disagree on the rest (a
/// product renamed between two rows), the first in series order is kept,
/// so a join on the key never finds two.
pub struct InfoFamily<I: 'static> {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: &'static [&'static str],
    pub key: usize,
    /// The label values, in the order of `labels`; `None` when the item
    /// has no entity for this family.
    pub values: fn(&I) -> Option<Vec<&str>>,
}

/// A detail of an item that its collection lacks, asked for with one
/// request per item below the item's customer, once: the answers are kept
/// in memory and in `state_dir` (see [`crate::collect::lookups`]), so
/// later polls and restarts ask only for items not seen before. A failed
/// lookup leaves the detail out until a later poll gets it, and never
/// fails the poll.
pub struct Lookup<I: 'static> {
    /// The file in `state_dir` that keeps the answers.
    pub file: &'static str,
    /// What is looked up, for log lines and `--config.check`.
    pub what: &'static str,
    /// The item's key among the kept answers (unique across customers),
    /// `None` when the item has no such detail to ask for.
    pub key: fn(&I) -> Option<&str>,
    /// The request's path below `v1/customers/{customer id}/`.
    pub path: fn(&I) -> String,
    /// Reads the answer: the detail, or `None` when the answer says the
    /// item has none (kept too, so it is not asked again).
    pub decode: fn(&[u8]) -> Result<Option<String>, String>,
    /// Puts a kept detail into the item.
    pub apply: fn(&mut I, &str),
}

/// How a source's data is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// One v1 collection at this path below the API root.
    Collection(&'static str),
    /// A commercial analytics report at this path below whichever of the
    /// two documented API prefixes answers (see
    /// [`crate::partner_center::commercial`]).
    Commercial(&'static str),
    /// One v1 collection per listed customer, at
    /// `v1/customers/{customer id}/` followed by this path.
    PerCustomer(&'static str),
}

impl Fetch {
    /// What a poll costs beyond one request, for `--config.check`.
    pub fn cost(self) -> &'static str {
        match self {
            Self::Collection(_) => "",
            Self::Commercial(_) => ", one request per page of the report",
            Self::PerCustomer(_) => ", the customer listing and one request per covered customer",
        }
    }

    /// The requests of one poll, for the log and `--config.check`.
    pub fn describe(self) -> String {
        match self {
            Self::Collection(path) => format!("GET /{path}"),
            Self::Commercial(path) => {
                format!("GET /partner/v1/{path} (or /v1/{path}), every page")
            }
            Self::PerCustomer(path) => {
                format!("GET /v1/customers, then GET /v1/customers/{{id}}/{path} per customer")
            }
        }
    }
}

/// A value the API does not bound but that is expected in a range; a
/// value outside is served as received and logged once per series.
pub struct ExpectedRange<I> {
    /// The upstream field, for the log line.
    pub field: &'static str,
    pub range: std::ops::RangeInclusive<f64>,
    pub value: fn(&I) -> f64,
}

/// Why parts of `items` were left out ([`Source::parts_left_out`]), as
/// skipped items by their place among `items`, for the skipped count.
pub fn parts_left_out_of<S: Source>(items: &[S::Item]) -> Vec<(u32, SkippedItem)> {
    items
        .iter()
        .enumerate()
        .flat_map(|(index, item)| {
            S::parts_left_out(item).map(move |reason| (1, SkippedItem { index, reason }))
        })
        .collect()
}

/// A Partner Center dataset.
pub trait Source: Send + Sync + 'static {
    /// One usable item of the collection.
    type Item: fmt::Debug + Clone + Send + Sync + 'static;

    const NAME: SourceName;
    /// Where the data comes from.
    const FETCH: Fetch;
    /// Whether the source is polled unless the configuration says
    /// otherwise; the per-customer ones cost a request per customer and
    /// need permissions in every customer, so they are asked for.
    const ENABLED_BY_DEFAULT: bool = true;
    /// The interval unless configured; `None` for `poll.interval`.
    const DEFAULT_INTERVAL: Option<std::time::Duration> = None;
    /// What one item is called in log lines.
    const ITEM_NOUN: &'static str;
    /// The label names of every family, in the order of
    /// [`Source::label_values`] and in the order they are written
    /// (alphabetical, as the Prometheus client libraries write them). The
    /// items with the same label values are one series.
    const LABELS: &'static [&'static str];
    const FAMILIES: &'static [Family<Self::Item>];
    /// Families with a sample per value of one more label.
    const FAMILIES_BY_LABEL: &'static [FamilyByLabel<Self::Item>] = &[];
    /// The `_info` families drawn from the series.
    const INFO_FAMILIES: &'static [InfoFamily<Self::Item>] = &[];
    /// Values logged when they leave their expected range.
    const EXPECTED_RANGES: &'static [ExpectedRange<Self::Item>] = &[];
    /// A detail looked up once per item of a per-customer collection.
    const LOOKUP: Option<Lookup<Self::Item>> = None;

    /// Decodes one element of `items` from its raw JSON text.
    fn decode_item(item: &RawValue) -> Result<Self::Item, SkipReason>;

    /// The item's label values, in the order of [`Source::LABELS`].
    fn label_values(item: &Self::Item) -> impl AsRef<[&str]>;

    /// The order of series on `/metrics`: by label values unless the
    /// source keeps an order of its own. Items equal here must have the
    /// same label values.
    fn series_order(a: &Self::Item, b: &Self::Item) -> std::cmp::Ordering {
        Self::label_values(a)
            .as_ref()
            .cmp(Self::label_values(b).as_ref())
    }

    /// When Partner Center processed the item: among items of one series,
    /// the newest wins. `None` for datasets without such a date, where
    /// the later item wins.
    fn processed_at(item: &Self::Item) -> Option<DateTime<Utc>>;

    /// Whether the operator's filters let the item through; the source
    /// knows which of its fields they apply to.
    fn admit(_item: &Self::Item, _filters: &Filters) -> bool {
        true
    }

    /// Sets the customer an item of a per-customer collection belongs to:
    /// the items themselves do not name it.
    fn assign_customer(_item: &mut Self::Item, _customer_tenant_id: &str) {}

    /// Why parts of a usable item were left out (a date that cannot be
    /// read leaves out only the series it feeds): counted with the
    /// skipped items, while the rest of the item is published.
    fn parts_left_out(_item: &Self::Item) -> impl Iterator<Item = SkipReason> {
        std::iter::empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_read_back_and_unknown_ones_are_refused_naming_the_known() {
        for source in SourceName::ALL {
            assert_eq!(SourceName::from_key(source.as_str()), Some(*source));
            assert_eq!(
                source.interval_key(),
                format!("sources.{}.interval", source.as_str())
            );
        }
        let err = serde_yaml_ng::from_str::<SourceName>("license_typo").expect_err("unknown");
        let message = err.to_string();
        for expected in ["license_typo", "`license_usage`", "`license_deployment`"] {
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn names_and_families_are_unique_across_sources() {
        let names: HashSet<_> = SourceName::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names.len(), SourceName::ALL.len());
        let mut families = HashSet::new();
        for source in SourceName::ALL {
            for family in source.family_names() {
                assert!(
                    family.starts_with("partner_center_"),
                    "{family} lacks the namespace"
                );
                assert!(families.insert(family), "{family} is published twice");
            }
        }
    }
}
