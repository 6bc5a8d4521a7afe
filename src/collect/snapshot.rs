//! One successful poll of one source as an immutable set of series,
//! deduplicated and rendered, ready to serve.
//!
//! A snapshot is built once per successful poll and replaces the source's
//! previous one whole, so a series that vanished upstream vanishes from
//! `/metrics` and a half-finished poll is never visible. The rule is the
//! same for every source: the items with the same label values are one
//! series, and the one with the newest `processedDateTime` wins (on a tie,
//! the later one in the answer).

use chrono::{DateTime, Utc};

use crate::exposition::{
    FamilyParts, Part, RenderedFamilies, write_header, write_tenant_sample_of,
};
use crate::sources::{InfoFamily, Source};
use crate::tenant::TenantLabel;

fn same_labels<S: Source>(a: &S::Item, b: &S::Item) -> bool {
    S::label_values(a).as_ref() == S::label_values(b).as_ref()
}

/// The series of one successful poll of source `S`.
#[derive(Debug)]
pub struct Snapshot<S: Source> {
    /// One item per series, ordered by labels.
    series: Vec<S::Item>,
    /// Items that repeated the label values of another.
    duplicates: usize,
    /// The source's families in the text exposition format, rendered and
    /// compressed once here so that a scrape only sends ready bytes.
    families: RenderedFamilies,
}

impl<S: Source> Snapshot<S> {
    /// Builds a snapshot from a poll's items, in the order received (see
    /// [`fold_items`]), and renders its families.
    pub fn from_items(items: impl IntoIterator<Item = S::Item>) -> Self {
        Self::from_vec(items.into_iter().collect())
    }

    /// As [`Snapshot::from_items`], taking the items' vector over.
    pub fn from_vec(items: Vec<S::Item>) -> Self {
        Self::of_tenant(&TenantLabel::NONE, items)
    }

    /// As [`Snapshot::from_vec`], for `tenant`'s poll: its series carry its
    /// `tenant` label.
    pub fn of_tenant(tenant: &TenantLabel, items: Vec<S::Item>) -> Self {
        let (series, duplicates) = fold_items::<S>(items);
        let families = render::<S>(tenant, &series);
        Self {
            series,
            duplicates,
            families,
        }
    }

    /// The series, one item each, ordered by their labels.
    pub fn series(&self) -> &[S::Item] {
        &self.series
    }

    /// How many items were folded into an earlier one with the same labels.
    pub fn duplicates(&self) -> usize {
        self.duplicates
    }

    /// The families ready to send, plain and compressed.
    pub fn families(&self) -> &RenderedFamilies {
        &self.families
    }

    /// The oldest and the newest `processedDateTime` among the series, if
    /// there are any: how old the source's figures are, without a
    /// timestamp series beside every value.
    pub fn processed_range(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let mut times = self.series.iter().filter_map(S::processed_at);
        let first = times.next()?;
        Some(times.fold((first, first), |(oldest, newest), at| {
            (oldest.min(at), newest.max(at))
        }))
    }

    /// The families as text exposition format, empty when there are no series.
    pub fn text(&self) -> String {
        String::from_utf8(self.families.to_plain()).unwrap_or_default()
    }
}

/// Folds a poll's items into series, ordered by labels, and counts the
/// items folded into an earlier one. When the same label values appear
/// more than once, the item with the newest `processedDateTime` wins; on
/// a tie, the later item in the answer.
///
/// The items are sorted where they are and duplicates removed in place: a
/// 100 000-series answer needs no second copy of its items, nor a map's
/// nodes beside them.
pub fn fold_items<S: Source>(mut items: Vec<S::Item>) -> (Vec<S::Item>, usize) {
    // Stable: items with the same labels stay in the order received.
    items.sort_by(S::series_order);
    let mut duplicates = 0;
    // `later` directly follows `kept`, the item already chosen for its
    // series, and is removed when it has the same labels.
    items.dedup_by(|later, kept| {
        if !same_labels::<S>(later, kept) {
            return false;
        }
        duplicates += 1;
        if S::processed_at(later) >= S::processed_at(kept) {
            std::mem::swap(later, kept);
        }
        true
    });
    (items, duplicates)
}

/// Renders every family of `S` for `tenant`'s `series`: a header part and
/// a samples part each. Label values are escaped, whatever Partner Center
/// sent.
pub fn render<S: Source>(tenant: &TenantLabel, series: &[S::Item]) -> RenderedFamilies {
    if series.is_empty() {
        return RenderedFamilies::default();
    }
    let mut families: Vec<FamilyParts> = S::FAMILIES
        .iter()
        .filter_map(|family| {
            // About 150 bytes per sample line.
            let mut samples = Vec::with_capacity(series.len() * 150);
            for item in series {
                if let Some(value) = (family.value)(item) {
                    write_tenant_sample_of(
                        &mut samples,
                        tenant,
                        family.name,
                        S::LABELS,
                        S::label_values(item).as_ref(),
                        value,
                    );
                }
            }
            // A family none of whose series has the figure is left out
            // whole, as an `_info` family without entities is.
            if samples.is_empty() {
                return None;
            }
            let mut header = Vec::with_capacity(256);
            write_header(&mut header, family.name, family.help, "gauge");
            Some(FamilyParts {
                name: family.name,
                header: Part::new(header),
                samples: Part::new(samples),
            })
        })
        .collect();
    families.extend(S::FAMILIES_BY_LABEL.iter().map(|family| {
        let mut header = Vec::with_capacity(256);
        write_header(&mut header, family.name, family.help, "gauge");
        let mut samples = Vec::with_capacity(series.len() * family.values.len() * 150);
        let mut names: Vec<&str> = S::LABELS.to_vec();
        names.push(family.label);
        for item in series {
            let mut values: Vec<&str> = S::label_values(item).as_ref().to_vec();
            values.push("");
            for (label_value, value_of) in family.values {
                if let Some(last) = values.last_mut() {
                    *last = label_value;
                }
                write_tenant_sample_of(
                    &mut samples,
                    tenant,
                    family.name,
                    &names,
                    &values,
                    value_of(item),
                );
            }
        }
        FamilyParts {
            name: family.name,
            header: Part::new(header),
            samples: Part::new(samples),
        }
    }));
    families.extend(
        S::INFO_FAMILIES
            .iter()
            .filter_map(|family| render_info::<S>(tenant, family, series)),
    );
    RenderedFamilies(families)
}

/// Renders one `_info` family: a sample of 1 per entity, the first
/// series of each key winning, ordered by label values. `None` when no
/// series has the entity.
fn render_info<S: Source>(
    tenant: &TenantLabel,
    family: &InfoFamily<S::Item>,
    series: &[S::Item],
) -> Option<FamilyParts> {
    let mut rows: Vec<Vec<&str>> = series.iter().filter_map(family.values).collect();
    if rows.is_empty() {
        return None;
    }
    // Stable: among rows of one key, the first in series order stays first.
    rows.sort_by(|a, b| a[..family.key].cmp(&b[..family.key]));
    rows.dedup_by(|later, kept| later[..family.key] == kept[..family.key]);
    let mut header = Vec::with_capacity(256);
    write_header(&mut header, family.name, family.help, "gauge");
    let mut samples = Vec::with_capacity(rows.len() * 200);
    for row in &rows {
        write_tenant_sample_of(&mut samples, tenant, family.name, family.labels, row, 1.0);
    }
    Some(FamilyParts {
        name: family.name,
        header: Part::new(header),
        samples: Part::new(samples),
    })
}

#[cfg(test)]
mod tests {
    use crate::partner_center::client::Collection;
    use crate::sources::license_usage::{LicenseUsage, LicenseUsageSource};
    use chrono::{TimeZone, Utc};

    type Snapshot = super::Snapshot<LicenseUsageSource>;

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
        let mut collection = Collection::default();
        collection.add_page(vec![usage("Teams", 1.0, 1), usage("Exchange", 2.0, 1)]);
        collection.add_page(Vec::new());
        collection.add_page(vec![usage("Exchange", 3.0, 2), usage("Azure", 4.0, 1)]);
        assert_eq!(collection.items.len(), 4);
        let snapshot = Snapshot::from_vec(collection.items);
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
    fn the_processed_range_spans_the_series_kept() {
        let snapshot = Snapshot::from_items([
            usage("Exchange", 1.0, 3),
            usage("Teams", 1.0, 1),
            usage("Exchange", 1.0, 9),
            usage("SharePoint", 1.0, 2),
        ]);
        let day = |d| {
            Utc.with_ymd_and_hms(2024, 5, d, 0, 0, 0)
                .single()
                .expect("date")
        };
        // The Exchange item of day 3 lost to that of day 9.
        assert_eq!(snapshot.processed_range(), Some((day(1), day(9))));
        assert_eq!(Snapshot::from_items(Vec::new()).processed_range(), None);
    }

    #[test]
    fn empty_snapshot_renders_nothing() {
        let snapshot = Snapshot::from_items(Vec::new());
        assert!(snapshot.series().is_empty());
        assert_eq!(snapshot.text(), "");
    }
}
