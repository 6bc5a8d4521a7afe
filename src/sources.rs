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
//! Adding a dataset: a module here implementing [`Source`], a variant of
//! [`SourceName`], and its entry in [`SourceName::ALL`] and in the
//! scheduler's table (`crate::collect::scheduler`).

use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use crate::partner_center::collection::SkipReason;

pub mod license_deployment;
pub mod license_usage;

/// A source's name: its key under `sources:` in the configuration and the
/// value of the `source` label on its health metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceName {
    LicenseUsage,
    LicenseDeployment,
}

impl SourceName {
    /// Every source, in the order they are listed, polled and rendered.
    pub const ALL: [SourceName; 2] = [Self::LicenseUsage, Self::LicenseDeployment];

    /// The name as configured and labelled.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LicenseUsage => "license_usage",
            Self::LicenseDeployment => "license_deployment",
        }
    }

    /// The request path below the API root.
    pub fn path(self) -> &'static str {
        match self {
            Self::LicenseUsage => license_usage::LicenseUsageSource::PATH,
            Self::LicenseDeployment => license_deployment::LicenseDeploymentSource::PATH,
        }
    }

    /// The metric families the source publishes, by name.
    pub fn family_names(self) -> Vec<&'static str> {
        fn names<S: Source>() -> Vec<&'static str> {
            S::FAMILIES.iter().map(|family| family.name).collect()
        }
        match self {
            Self::LicenseUsage => names::<license_usage::LicenseUsageSource>(),
            Self::LicenseDeployment => names::<license_deployment::LicenseDeploymentSource>(),
        }
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One metric family of a source: a gauge per series, its value taken
/// from the series' item.
pub struct Family<I> {
    pub name: &'static str,
    pub help: &'static str,
    pub value: fn(&I) -> f64,
}

/// A value the API does not bound but that is expected in a range; a
/// value outside is served as received and logged once per series.
pub struct ExpectedRange<I> {
    /// The upstream field, for the log line.
    pub field: &'static str,
    pub range: std::ops::RangeInclusive<f64>,
    pub value: fn(&I) -> f64,
}

/// A Partner Center dataset.
pub trait Source: Send + Sync + 'static {
    /// One usable item of the collection.
    type Item: fmt::Debug + Send + Sync + 'static;

    const NAME: SourceName;
    /// The collection's first page, below the API root.
    const PATH: &'static str;
    /// What one item is called in log lines.
    const ITEM_NOUN: &'static str;
    /// The label names of every family, in the order of
    /// [`Source::label_values`] and in the order they are written
    /// (alphabetical, as the Prometheus client libraries write them). The
    /// items with the same label values are one series.
    const LABELS: &'static [&'static str];
    const FAMILIES: &'static [Family<Self::Item>];
    /// Values logged when they leave their expected range.
    const EXPECTED_RANGES: &'static [ExpectedRange<Self::Item>] = &[];

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
    /// the newest wins.
    fn processed_at(item: &Self::Item) -> DateTime<Utc>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

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
