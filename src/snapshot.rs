//! One poll's result as an immutable set of series, ready to serve.
//!
//! A snapshot is built once per successful poll and replaces the previous
//! one whole, so a series that vanished upstream vanishes from `/metrics`
//! and a half-finished poll is never visible.

use std::cmp::Ordering;

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

impl SeriesKey {
    /// The labels of `item`'s series.
    pub fn of(item: &LicenseUsage) -> Self {
        Self {
            workload: item.workload.clone(),
            service: item.service.clone(),
            channel: item.channel.clone(),
        }
    }
}

/// The order of series in a snapshot and on `/metrics`: by workload, then
/// service, then channel, as [`SeriesKey`] orders them.
fn label_order(a: &LicenseUsage, b: &LicenseUsage) -> Ordering {
    (&a.workload, &a.service, &a.channel).cmp(&(&b.workload, &b.service, &b.channel))
}

fn same_labels(a: &LicenseUsage, b: &LicenseUsage) -> bool {
    a.workload == b.workload && a.service == b.service && a.channel == b.channel
}

/// The usable items of a poll's pages, gathered as each page is decoded,
/// to be folded into series once the last page is in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesFold {
    items: Vec<LicenseUsage>,
}

impl SeriesFold {
    /// Adds one page's items, in the order received. The first page's are
    /// taken over as they are: a one-page answer is never copied.
    pub fn add_page(&mut self, items: Vec<LicenseUsage>) {
        if self.items.is_empty() {
            self.items = items;
        } else {
            self.items.extend(items);
        }
    }

    /// The items added, in the order received.
    pub fn items(&self) -> &[LicenseUsage] {
        &self.items
    }
}

impl FromIterator<LicenseUsage> for SeriesFold {
    fn from_iter<I: IntoIterator<Item = LicenseUsage>>(items: I) -> Self {
        Self {
            items: items.into_iter().collect(),
        }
    }
}

/// The license usage series of one successful poll.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// One item per series, ordered by labels.
    series: Vec<LicenseUsage>,
    /// Items that repeated a (workload, service, channel) already seen.
    duplicates: usize,
    /// The series in the text exposition format, rendered and compressed
    /// once here so that a scrape only sends ready bytes.
    exposition: Part,
}

impl Snapshot {
    /// Builds a snapshot from a poll's items (see [`fold_items`]) and
    /// renders its series.
    pub fn from_fold(fold: SeriesFold) -> Self {
        let (series, duplicates) = fold_items(fold);
        let exposition = Part::new(metrics::render_license_usage(&series));
        Self {
            series,
            duplicates,
            exposition,
        }
    }

    /// Builds a snapshot from decoded items, as [`Snapshot::from_fold`].
    pub fn from_items(items: impl IntoIterator<Item = LicenseUsage>) -> Self {
        Self::from_fold(items.into_iter().collect())
    }

    /// The series, one item each, ordered by their labels.
    pub fn series(&self) -> &[LicenseUsage] {
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

/// Folds a poll's items into series, ordered by labels, and counts the
/// items folded into an earlier one. When a (workload, service, channel)
/// appears more than once, the item with the newest `processedDateTime`
/// wins; on a tie, the later item in the answer.
///
/// The items are sorted where they are and duplicates removed in place: a
/// 100 000-series answer needs no second copy of its items, nor a map's
/// nodes beside them.
pub fn fold_items(fold: SeriesFold) -> (Vec<LicenseUsage>, usize) {
    let mut items = fold.items;
    // Stable: items with the same labels stay in the order received.
    items.sort_by(label_order);
    let mut duplicates = 0;
    // `later` directly follows `kept`, the item already chosen for its
    // series, and is removed when it has the same labels.
    items.dedup_by(|later, kept| {
        if !same_labels(later, kept) {
            return false;
        }
        duplicates += 1;
        if later.processed_at >= kept.processed_at {
            std::mem::swap(later, kept);
        }
        true
    });
    (items, duplicates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

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
            .find(|item| item.workload == workload)
            .map(|item| item.prorated_percent)
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
    fn pages_fold_into_series_ordered_by_labels() {
        let mut fold = SeriesFold::default();
        fold.add_page(vec![usage("Teams", 1.0, 1), usage("Exchange", 2.0, 1)]);
        fold.add_page(Vec::new());
        fold.add_page(vec![usage("Exchange", 3.0, 2), usage("Azure", 4.0, 1)]);
        assert_eq!(fold.items().len(), 4);
        let snapshot = Snapshot::from_fold(fold);
        let series: Vec<(&str, f64)> = snapshot
            .series()
            .iter()
            .map(|item| (item.workload.as_str(), item.prorated_percent))
            .collect();
        assert_eq!(
            series,
            [("Azure", 4.0), ("Exchange", 3.0), ("Teams", 1.0)],
            "the newest Exchange item, from the second page, wins"
        );
        assert_eq!(snapshot.duplicates(), 1);
    }

    #[test]
    fn a_run_of_duplicates_keeps_the_newest_and_the_later_on_ties() {
        // Dates 1, 3, 2, 3: the second 3 is the later of the newest two.
        let snapshot = Snapshot::from_items([
            usage("Exchange", 1.0, 1),
            usage("Exchange", 3.0, 3),
            usage("Exchange", 2.0, 2),
            usage("Exchange", 4.0, 3),
            usage("Teams", 5.0, 1),
        ]);
        assert_eq!(percent_of(&snapshot, "Exchange"), Some(4.0));
        assert_eq!(percent_of(&snapshot, "Teams"), Some(5.0));
        assert_eq!(snapshot.series().len(), 2);
        assert_eq!(snapshot.duplicates(), 3);
    }

    #[test]
    fn empty_snapshot_renders_nothing() {
        let snapshot = Snapshot::from_items(Vec::new());
        assert!(snapshot.series().is_empty());
        assert_eq!(snapshot.exposition(), "");
    }
}
