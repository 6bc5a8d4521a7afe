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

use crate::partner_center::collection::SkipReason;

pub mod license_deployment;
pub mod license_usage;

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

    /// The request path below the API root.
    pub fn path(self) -> &'static str {
        struct Path;
        impl SourceVisitor for Path {
            type Output = &'static str;
            fn visit<S: Source>(self) -> &'static str {
                S::PATH
            }
        }
        self.visit(Path)
    }

    /// The metric families the source publishes, by name.
    pub fn family_names(self) -> Vec<&'static str> {
        struct Names;
        impl SourceVisitor for Names {
            type Output = Vec<&'static str>;
            fn visit<S: Source>(self) -> Vec<&'static str> {
                S::FAMILIES.iter().map(|family| family.name).collect()
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
