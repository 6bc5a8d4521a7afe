//! Each source's poll health, the way node_exporter reports each
//! collector: whether its last poll worked, when it last did, how long it
//! took, and what failed or was skipped; rendered once per poll outcome
//! through the one formatter ([`crate::exposition`]).

use chrono::{DateTime, Utc};

use crate::exposition::{unix_seconds, write_header, write_tenant_sample};
use crate::partner_center::client::{ClientError, FailureReason};
use crate::sources::SourceName;
use crate::tenant::TenantLabel;

/// Why one customer's request failed: the `reason` label of
/// `partner_center_customer_errors_total`. Fixed, so the label set stays
/// bounded and every series exists from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CustomerFailure {
    /// 403: the partner's user has no GDAP role in the customer.
    Forbidden,
    /// 404.
    NotFound,
    /// Any other answer that is not 2xx, such as "Tenant address
    /// information is not available".
    Http,
    Throttled,
    Timeout,
    Network,
    /// An answer that is not a usable collection.
    Decode,
    /// 401 even with a renewed token.
    Auth,
}

impl CustomerFailure {
    /// Every reason, in the order their series are written.
    pub const ALL: [CustomerFailure; 8] = [
        Self::Forbidden,
        Self::NotFound,
        Self::Http,
        Self::Throttled,
        Self::Timeout,
        Self::Network,
        Self::Decode,
        Self::Auth,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Http => "http",
            Self::Throttled => "throttled",
            Self::Timeout => "timeout",
            Self::Network => "network",
            Self::Decode => "decode",
            Self::Auth => "auth",
        }
    }

    /// The reason of a failed request for one customer.
    pub fn of(error: &ClientError) -> Self {
        match error {
            ClientError::Unauthorized { status, .. } if status.as_u16() == 403 => Self::Forbidden,
            ClientError::Unauthorized { .. } | ClientError::Auth(_) => Self::Auth,
            ClientError::Status { status, .. } if status.as_u16() == 404 => Self::NotFound,
            ClientError::Status { .. } => Self::Http,
            ClientError::Throttled { .. } => Self::Throttled,
            ClientError::Timeout(_) | ClientError::DeadlineReached => Self::Timeout,
            ClientError::Network(_) | ClientError::Setup(_) => Self::Network,
            ClientError::Decode { .. }
            | ClientError::BodyTooLarge { .. }
            | ClientError::NotJson { .. }
            | ClientError::Paging(_) => Self::Decode,
        }
    }

    /// What the operator can do about it, for the log.
    pub fn advice(self) -> &'static str {
        match self {
            Self::Forbidden => {
                "the partner's user has no GDAP role in this customer that reads licences: \
                 grant one of Directory Reader, Global Reader, User Administrator or License \
                 Administrator, or leave the customer out with customers.exclude"
            }
            Self::NotFound => {
                "Partner Center does not know this customer's licences; the relationship may \
                 have ended, or the customer may be leaving the listing"
            }
            Self::Http => {
                "Partner Center refused this customer's request; its description says why \
                 (some customers answer \"Tenant address information is not available\" until \
                 their profile is complete)"
            }
            Self::Throttled => {
                "Partner Center throttled this customer's request past its retries; lower \
                 partner_center.max_requests_per_minute or lengthen the source's interval"
            }
            Self::Timeout | Self::Network => {
                "the request did not complete; it is tried again at the next poll"
            }
            Self::Decode => {
                "the answer was not a usable collection; it is tried again at the next poll"
            }
            Self::Auth => "Partner Center refused the access token for this customer",
        }
    }
}

/// The per-customer part of a fan-out source's health: each covered
/// customer's last outcome, and failures counted by reason.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerHealth {
    /// Each covered customer, by tenant ID, and why its last request
    /// failed (`None`: it worked).
    pub customers: Vec<(String, Option<CustomerFailure>)>,
    /// Failed requests by reason, summed over all polls.
    pub errors: Vec<(CustomerFailure, u64)>,
    /// For a source with lookups, those made so far.
    pub lookups: Option<LookupCounts>,
}

/// The lookups a source has made (see [`crate::sources::Lookup`]), summed
/// over all polls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupCounts {
    pub succeeded: u64,
    pub failed: u64,
}

impl Default for CustomerHealth {
    fn default() -> Self {
        Self {
            customers: Vec::new(),
            errors: CustomerFailure::ALL
                .iter()
                .map(|reason| (*reason, 0))
                .collect(),
            lookups: None,
        }
    }
}

impl CustomerHealth {
    /// Counts one failed request.
    pub fn count_error(&mut self, reason: CustomerFailure) {
        if let Some((_, count)) = self.errors.iter_mut().find(|(known, _)| *known == reason) {
            *count += 1;
        }
    }
}

/// What the outcome of one source's polls so far shows; replaced whole by
/// each poll, so a scrape sees `up`, the last success and the counters of
/// one and the same poll.
#[derive(Debug, Clone, PartialEq)]
pub struct PollHealth {
    /// Whether the last poll succeeded.
    pub up: bool,
    /// When the last successful poll finished.
    pub last_success_at: Option<DateTime<Utc>>,
    /// How long the last poll took, in seconds.
    pub last_duration_seconds: f64,
    /// Failed polls by reason, every reason of [`FailureReason::ALL`] from
    /// the start.
    pub errors: Vec<(FailureReason, u64)>,
    /// Items left out as unusable, summed over all polls.
    pub items_skipped: u64,
    /// The oldest and newest `processedDateTime` of the last successful
    /// poll's series; `None` before one, or when it had no series.
    pub processed: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// For a source that requests each customer: how each fared.
    pub customers: Option<CustomerHealth>,
}

impl Default for PollHealth {
    fn default() -> Self {
        Self {
            up: false,
            last_success_at: None,
            last_duration_seconds: 0.0,
            errors: FailureReason::ALL
                .iter()
                .map(|reason| (*reason, 0))
                .collect(),
            items_skipped: 0,
            processed: None,
            customers: None,
        }
    }
}

impl PollHealth {
    /// Counts a failed poll. Every reason has its series from the start;
    /// one added to [`FailureReason`] later still gets one here.
    pub fn count_error(&mut self, reason: FailureReason) {
        match self.errors.iter_mut().find(|(known, _)| *known == reason) {
            Some((_, count)) => *count += 1,
            None => self.errors.push((reason, 1)),
        }
    }
}

/// One slot's health, with whose and which source's it is.
pub type SlotHealth<'a> = (&'a TenantLabel, SourceName, &'a PollHealth);

/// Renders the polls' health, one series per source (labelled `source`,
/// the way node_exporter labels each collector's): `up`, the last success,
/// the last duration and the poll counters. Each family's header is
/// written once, followed by every source's samples.
pub fn render_poll_health(sources: &[SlotHealth<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024 + sources.len() * 1024);
    type ValueOf = fn(&PollHealth) -> f64;
    let gauges: [(&str, &str, ValueOf); 3] = [
        (
            "partner_center_up",
            "Whether the last poll of the source succeeded (1) or failed (0).",
            |health| if health.up { 1.0 } else { 0.0 },
        ),
        (
            "partner_center_last_success_timestamp_seconds",
            "When the last successful poll of the source finished, in Unix seconds.",
            |health| health.last_success_at.map_or(0.0, unix_seconds),
        ),
        (
            "partner_center_poll_duration_seconds",
            "How long the last poll of the source took, in seconds.",
            |health| health.last_duration_seconds,
        ),
    ];
    for (name, help, value_of) in gauges {
        write_header(&mut out, name, help, "gauge");
        for (tenant, source, health) in sources {
            write_tenant_sample(
                &mut out,
                tenant,
                name,
                &[("source", source.as_str())],
                value_of(health),
            );
        }
    }
    write_header(
        &mut out,
        "partner_center_poll_errors_total",
        "Failed polls of the source, by reason.",
        "counter",
    );
    for (tenant, source, health) in sources {
        for (reason, count) in &health.errors {
            write_tenant_sample(
                &mut out,
                tenant,
                "partner_center_poll_errors_total",
                &[("source", source.as_str()), ("reason", reason.as_str())],
                *count as f64,
            );
        }
    }
    type Processed = fn(&(DateTime<Utc>, DateTime<Utc>)) -> DateTime<Utc>;
    let processed: [(&str, &str, Processed); 2] = [
        (
            "partner_center_data_oldest_timestamp_seconds",
            "The oldest processedDateTime among the source's series in its last successful poll, in Unix seconds.",
            |(oldest, _)| *oldest,
        ),
        (
            "partner_center_data_newest_timestamp_seconds",
            "The newest processedDateTime among the source's series in its last successful poll, in Unix seconds.",
            |(_, newest)| *newest,
        ),
    ];
    for (name, help, value_of) in processed {
        let held: Vec<_> = sources
            .iter()
            .filter_map(|(tenant, source, health)| {
                health
                    .processed
                    .as_ref()
                    .map(|range| (tenant, source, range))
            })
            .collect();
        if held.is_empty() {
            continue;
        }
        write_header(&mut out, name, help, "gauge");
        for (tenant, source, range) in held {
            write_tenant_sample(
                &mut out,
                tenant,
                name,
                &[("source", source.as_str())],
                unix_seconds(value_of(range)),
            );
        }
    }
    write_header(
        &mut out,
        "partner_center_items_skipped_total",
        "Items of the source's collection left out because a field was missing or unusable.",
        "counter",
    );
    for (tenant, source, health) in sources {
        write_tenant_sample(
            &mut out,
            tenant,
            "partner_center_items_skipped_total",
            &[("source", source.as_str())],
            health.items_skipped as f64,
        );
    }
    render_customer_health(&mut out, sources);
    out
}

/// The per-customer health of the sources that request each customer.
fn render_customer_health(out: &mut Vec<u8>, sources: &[SlotHealth<'_>]) {
    let fanned: Vec<(&TenantLabel, SourceName, &CustomerHealth)> = sources
        .iter()
        .filter_map(|(tenant, source, health)| {
            health.customers.as_ref().map(|c| (*tenant, *source, c))
        })
        .collect();
    if fanned.is_empty() {
        return;
    }
    const UP: &str = "partner_center_customer_up";
    const REASON: &str = "partner_center_customer_error_reason";
    const ERRORS: &str = "partner_center_customer_errors_total";
    if fanned
        .iter()
        .any(|(_, _, health)| !health.customers.is_empty())
    {
        write_header(
            out,
            UP,
            "Whether the source's last request for the customer worked (1) or failed (0).",
            "gauge",
        );
        for (tenant, source, health) in &fanned {
            for (customer, failure) in &health.customers {
                write_tenant_sample(
                    out,
                    tenant,
                    UP,
                    &[
                        ("source", source.as_str()),
                        ("customer_tenant_id", customer),
                    ],
                    if failure.is_none() { 1.0 } else { 0.0 },
                );
            }
        }
    }
    if fanned.iter().any(|(_, _, health)| {
        health
            .customers
            .iter()
            .any(|(_, failure)| failure.is_some())
    }) {
        write_header(
            out,
            REASON,
            "Why the source's last request for the customer failed, with the value 1; only while it fails.",
            "gauge",
        );
        for (tenant, source, health) in &fanned {
            for (customer, failure) in &health.customers {
                if let Some(reason) = failure {
                    write_tenant_sample(
                        out,
                        tenant,
                        REASON,
                        &[
                            ("source", source.as_str()),
                            ("customer_tenant_id", customer),
                            ("reason", reason.as_str()),
                        ],
                        1.0,
                    );
                }
            }
        }
    }
    write_header(
        out,
        ERRORS,
        "Failed requests of the source for single customers, by reason.",
        "counter",
    );
    for (tenant, source, health) in &fanned {
        for (reason, count) in &health.errors {
            write_tenant_sample(
                out,
                tenant,
                ERRORS,
                &[("source", source.as_str()), ("reason", reason.as_str())],
                *count as f64,
            );
        }
    }
    const LOOKUPS: &str = "partner_center_lookups_total";
    if fanned.iter().any(|(_, _, health)| health.lookups.is_some()) {
        write_header(
            out,
            LOOKUPS,
            "Lookups of a detail the source's collection lacks (a subscription's SKU), by result: \
             each item is looked up once and kept; a failed one is tried again at the next poll.",
            "counter",
        );
        for (tenant, source, health) in &fanned {
            if let Some(lookups) = health.lookups {
                for (result, count) in [("success", lookups.succeeded), ("failure", lookups.failed)]
                {
                    write_tenant_sample(
                        out,
                        tenant,
                        LOOKUPS,
                        &[("source", source.as_str()), ("result", result)],
                        count as f64,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_age_of_the_data_is_shown_per_source_once_it_has_series() {
        let day = |d: u32| {
            chrono::TimeZone::with_ymd_and_hms(&Utc, 2024, 5, d, 0, 0, 0)
                .single()
                .expect("date")
        };
        let with_data = PollHealth {
            processed: Some((day(1), day(3))),
            ..PollHealth::default()
        };
        let without = PollHealth::default();
        let text = String::from_utf8(render_poll_health(&[
            (&TenantLabel::NONE, SourceName::LicenseUsage, &with_data),
            (&TenantLabel::NONE, SourceName::LicenseDeployment, &without),
        ]))
        .expect("utf-8");
        assert!(
            text.contains(&format!(
                "partner_center_data_oldest_timestamp_seconds{{source=\"license_usage\"}} {}\n",
                day(1).timestamp()
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "partner_center_data_newest_timestamp_seconds{{source=\"license_usage\"}} {}\n",
                day(3).timestamp()
            )),
            "{text}"
        );
        assert!(
            !text.contains(
                "partner_center_data_oldest_timestamp_seconds{source=\"license_deployment\"}"
            ),
            "no series, no age: {text}"
        );
        let none = String::from_utf8(render_poll_health(&[(
            &TenantLabel::NONE,
            SourceName::LicenseUsage,
            &without,
        )]))
        .expect("utf-8");
        assert!(
            !none.contains("partner_center_data_"),
            "no header without samples: {none}"
        );
    }

    #[test]
    fn every_poll_error_reason_has_a_series_from_the_start() {
        let mut health = PollHealth::default();
        health.count_error(FailureReason::Http);
        health.count_error(FailureReason::Http);
        let text = String::from_utf8(render_poll_health(&[(
            &TenantLabel::NONE,
            SourceName::LicenseUsage,
            &health,
        )]))
        .expect("utf-8");
        assert!(
            text.contains(
                "partner_center_poll_errors_total{source=\"license_usage\",reason=\"http\"} 2\n"
            ),
            "{text}"
        );
        for reason in FailureReason::ALL {
            assert!(
                text.contains(&format!(
                    "partner_center_poll_errors_total{{source=\"license_usage\",reason=\"{}\"}} ",
                    reason.as_str()
                )),
                "{reason:?} missing in {text}"
            );
        }
        assert!(
            text.contains(
                "partner_center_poll_errors_total{source=\"license_usage\",reason=\"auth\"} 0\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn health_families_have_one_header_and_a_series_per_source() {
        let mut failing = PollHealth::default();
        failing.count_error(FailureReason::Http);
        let healthy = PollHealth {
            up: true,
            items_skipped: 3,
            ..PollHealth::default()
        };
        let text = String::from_utf8(render_poll_health(&[
            (&TenantLabel::NONE, SourceName::LicenseUsage, &failing),
            (&TenantLabel::NONE, SourceName::LicenseDeployment, &healthy),
        ]))
        .expect("utf-8");
        for family in [
            "partner_center_up",
            "partner_center_last_success_timestamp_seconds",
            "partner_center_poll_duration_seconds",
            "partner_center_poll_errors_total",
            "partner_center_items_skipped_total",
        ] {
            let headers = text
                .lines()
                .filter(|line| {
                    *line
                        == format!(
                            "# TYPE {family} {}",
                            if family.ends_with("_total") {
                                "counter"
                            } else {
                                "gauge"
                            }
                        )
                })
                .count();
            assert_eq!(headers, 1, "{family} in\n{text}");
        }
        assert!(
            text.contains("partner_center_up{source=\"license_usage\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("partner_center_up{source=\"license_deployment\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("partner_center_items_skipped_total{source=\"license_deployment\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "partner_center_poll_errors_total{source=\"license_deployment\",reason=\"http\"} 0\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn two_tenants_share_each_header_and_label_their_own_series() {
        let eu = TenantLabel::named("contoso-eu");
        let us = TenantLabel::named("contoso-us");
        let mut failing = PollHealth::default();
        failing.count_error(FailureReason::Throttled);
        let healthy = PollHealth {
            up: true,
            ..PollHealth::default()
        };
        let text = String::from_utf8(render_poll_health(&[
            (&eu, SourceName::LicenseUsage, &failing),
            (&us, SourceName::LicenseUsage, &healthy),
        ]))
        .expect("utf-8");
        assert_eq!(
            text.matches("# TYPE partner_center_up gauge\n").count(),
            1,
            "{text}"
        );
        assert!(
            text.contains("partner_center_up{tenant=\"contoso-eu\",source=\"license_usage\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("partner_center_up{tenant=\"contoso-us\",source=\"license_usage\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "partner_center_poll_errors_total{tenant=\"contoso-eu\",source=\"license_usage\",reason=\"throttled\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "partner_center_poll_errors_total{tenant=\"contoso-us\",source=\"license_usage\",reason=\"throttled\"} 0\n"
            ),
            "{text}"
        );
    }
}
