//! One poll's result as an immutable set of series, ready to serve.
//!
//! A snapshot is built once per successful poll and replaces the previous
//! one whole, so a series that vanished upstream vanishes from `/metrics`
//! and a half-finished poll is never visible.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use chrono::{DateTime, Utc};

use crate::exposition::Part;
use crate::metrics;
use crate::partner_center::model::LicenseUsage;

/// The identity of a license usage series: its label values.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    pub workload: String,
    pub service: String,
    pub channel: String,
}

/// The values published for one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesValue {
    pub prorated_percent: f64,
    pub processed_at: DateTime<Utc>,
}

/// The license usage series of one successful poll.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    series: BTreeMap<SeriesKey, SeriesValue>,
    /// Items that repeated a (workload, service, channel) already seen.
    duplicates: usize,
    /// The series in the text exposition format, rendered and compressed
    /// once here so that a scrape only sends ready bytes.
    exposition: Part,
}

impl Snapshot {
    /// Builds a snapshot from decoded items (see [`fold_items`]) and
    /// renders its series.
    pub fn from_items(items: impl IntoIterator<Item = LicenseUsage>) -> Self {
        let (series, duplicates) = fold_items(items);
        let exposition = Part::new(metrics::render_license_usage(&series));
        Self {
            series,
            duplicates,
            exposition,
        }
    }

    /// The series, ordered by their labels.
    pub fn series(&self) -> &BTreeMap<SeriesKey, SeriesValue> {
        &self.series
    }

    /// How many items were folded into an earlier one with the same labels.
    pub fn duplicates(&self) -> usize {
        self.duplicates
    }

    /// The series as text exposition format, empty when there are none.
    pub fn exposition(&self) -> &str {
        self.exposition.text()
    }

    /// The series ready to send, plain and compressed.
    pub fn part(&self) -> &Part {
        &self.exposition
    }
}

/// Folds decoded items into series, and counts the items folded into an
/// earlier one. When a (workload, service, channel) appears more than
/// once, the item with the newest `processedDateTime` wins; on a tie, the
/// later item in the answer.
pub fn fold_items(
    items: impl IntoIterator<Item = LicenseUsage>,
) -> (BTreeMap<SeriesKey, SeriesValue>, usize) {
    let mut series = BTreeMap::new();
    let mut duplicates = 0;
    for item in items {
        let key = SeriesKey {
            workload: item.workload,
            service: item.service,
            channel: item.channel,
        };
        let value = SeriesValue {
            prorated_percent: item.prorated_percent,
            processed_at: item.processed_at,
        };
        match series.entry(key) {
            Entry::Vacant(slot) => {
                slot.insert(value);
            }
            Entry::Occupied(mut slot) => {
                duplicates += 1;
                if value.processed_at >= slot.get().processed_at {
                    slot.insert(value);
                }
            }
        }
    }
    (series, duplicates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn usage(workload: &str, percent: f64, day: u32) -> LicenseUsage {
        LicenseUsage {
            workload: workload.to_owned(),
            service: "o365".to_owned(),
            channel: "reseller".to_owned(),
            prorated_percent: percent,
            processed_at: Utc
                .with_ymd_and_hms(2024, 5, day, 0, 0, 0)
                .single()
                .expect("date"),
        }
    }

    fn percent_of(snapshot: &Snapshot, workload: &str) -> Option<f64> {
        snapshot
            .series()
            .iter()
            .find(|(key, _)| key.workload == workload)
            .map(|(_, value)| value.prorated_percent)
    }

    #[test]
    fn newest_processed_date_wins_whatever_the_order() {
        let forward =
            Snapshot::from_items([usage("Exchange", 10.0, 1), usage("Exchange", 20.0, 2)]);
        let backward =
            Snapshot::from_items([usage("Exchange", 20.0, 2), usage("Exchange", 10.0, 1)]);
        for snapshot in [&forward, &backward] {
            assert_eq!(snapshot.series().len(), 1);
            assert_eq!(percent_of(snapshot, "Exchange"), Some(20.0));
            assert_eq!(snapshot.duplicates(), 1);
        }
    }

    #[test]
    fn equal_dates_keep_the_later_item() {
        let snapshot =
            Snapshot::from_items([usage("Exchange", 10.0, 1), usage("Exchange", 30.0, 1)]);
        assert_eq!(percent_of(&snapshot, "Exchange"), Some(30.0));
    }

    #[test]
    fn distinct_labels_are_distinct_series() {
        let mut other_channel = usage("Exchange", 5.0, 1);
        other_channel.channel = "direct".to_owned();
        let snapshot = Snapshot::from_items([
            usage("Exchange", 10.0, 1),
            other_channel,
            usage("SharePoint", 1.0, 1),
        ]);
        assert_eq!(snapshot.series().len(), 3);
        assert_eq!(snapshot.duplicates(), 0);
    }

    #[test]
    fn empty_snapshot_renders_nothing() {
        let snapshot = Snapshot::from_items(Vec::new());
        assert!(snapshot.series().is_empty());
        assert_eq!(snapshot.exposition(), "");
    }
}
