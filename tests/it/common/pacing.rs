//! The tenant's request budget as the simulated Partner Center saw it:
//! the arrivals in order, a timeline of them for assertion messages, and
//! the spacing every budget test checks.

use std::time::Duration;

use partner_center_exporter::simulator::{ReceivedRequest, Simulator};
use tokio::time::Instant;

/// The record as path and offset from `origin`, for assertion messages.
pub fn timeline(requests: &[ReceivedRequest], origin: Instant) -> Vec<String> {
    requests
        .iter()
        .map(|request| {
            let offset = if request.at >= origin {
                format!("+{:?}", request.at - origin)
            } else {
                format!("-{:?}", origin - request.at)
            };
            format!("{offset} {}", request.target)
        })
        .collect()
}

/// When each request `upstream` received arrived, oldest first, and the
/// timeline of them from the first.
pub fn arrivals(upstream: &Simulator) -> (Vec<Instant>, Vec<String>) {
    let mut record = upstream.received();
    record.sort_by_key(|request| request.at);
    let arrivals: Vec<Instant> = record.iter().map(|request| request.at).collect();
    let origin = arrivals.first().copied().unwrap_or_else(Instant::now);
    (arrivals, timeline(&record, origin))
}

/// Asserts that no two consecutive arrivals are closer than half the
/// budget's `spacing`. An arrival lags its request's start by however long
/// the machine takes to get round to it, so two arrivals can be closer
/// than their starts were: by up to a few tens of milliseconds here, more
/// on a loaded machine. A burst, or a budget ignored, shows as gaps near 0.
pub fn assert_spaced(arrivals: &[Instant], spacing: Duration, shown: &[String]) {
    for pair in arrivals.windows(2) {
        assert!(
            pair[1] - pair[0] >= spacing.mul_f64(0.5),
            "two requests {:?} apart under a budget of one per {spacing:?}: {shown:#?}",
            pair[1] - pair[0]
        );
    }
}
