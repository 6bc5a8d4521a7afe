//! The `license_deployment` source: partner-level license deployment per
//! service and channel, from `GET /v1/analytics/licenses/deployment`
//! (`PartnerLicensesDeploymentInsights` items, no workload).

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::{ExpectedRange, Family, Source, SourceName};
use crate::exposition::unix_seconds;
use crate::partner_center::collection::{
    DecodeError, FieldKind, Page, SkipReason, decode_page, read_fields,
};

/// One usable `PartnerLicensesDeploymentInsights` item.
#[derive(Debug, Clone, PartialEq)]
pub struct LicenseDeployment {
    /// `serviceName`, e.g. `o365`.
    pub service: String,
    /// `channel`, e.g. `reseller`.
    pub channel: String,
    /// `proratedDeploymentPercent`, as received: assigned ÷ sold licenses
    /// by an older Microsoft page, on a scale the API does not document.
    pub prorated_percent: f64,
    /// `licensesSold`.
    pub licenses_sold: f64,
    /// `processedDateTime`: when Partner Center aggregated the figures.
    pub processed_at: DateTime<Utc>,
}

/// The `license_deployment` source.
pub struct LicenseDeploymentSource;

/// The fields read from an item, in the order they are checked.
const FIELDS: [(&str, FieldKind); 5] = [
    ("serviceName", FieldKind::Text),
    ("channel", FieldKind::Text),
    ("proratedDeploymentPercent", FieldKind::Number),
    ("licensesSold", FieldKind::Number),
    ("processedDateTime", FieldKind::Text),
];

impl Source for LicenseDeploymentSource {
    type Item = LicenseDeployment;

    const NAME: SourceName = SourceName::LicenseDeployment;
    const PATH: &'static str = "v1/analytics/licenses/deployment";
    const ITEM_NOUN: &'static str = "license deployment item";
    const LABELS: &'static [&'static str] = &["channel", "service"];
    const FAMILIES: &'static [Family<LicenseDeployment>] = &[
        Family {
            name: "partner_center_license_deployment_prorated_percent",
            help: "Prorated license deployment per service and channel: \
                   proratedDeploymentPercent exactly as Partner Center reports it.",
            value: |item| item.prorated_percent,
        },
        Family {
            name: "partner_center_license_deployment_licenses_sold",
            help: "Licenses sold per service and channel (licensesSold).",
            value: |item| item.licenses_sold,
        },
        Family {
            name: "partner_center_license_deployment_processed_timestamp_seconds",
            help: "When Partner Center processed the deployment figures (processedDateTime), in Unix seconds.",
            value: |item| unix_seconds(item.processed_at),
        },
    ];
    const EXPECTED_RANGES: &'static [ExpectedRange<LicenseDeployment>] = &[ExpectedRange {
        field: "proratedDeploymentPercent",
        range: 0.0..=100.0,
        value: |item| item.prorated_percent,
    }];

    fn decode_item(item: &RawValue) -> Result<LicenseDeployment, SkipReason> {
        let [service, channel, percent, sold, processed] = read_fields(item, &FIELDS)?;
        Ok(LicenseDeployment {
            service: service.required_text("serviceName")?,
            channel: channel.required_text("channel")?,
            prorated_percent: percent.required_number("proratedDeploymentPercent")?,
            licenses_sold: sold.required_number("licensesSold")?,
            processed_at: processed.required_processed_date_time()?,
        })
    }

    fn label_values(item: &LicenseDeployment) -> impl AsRef<[&str]> {
        [item.channel.as_str(), item.service.as_str()]
    }

    fn processed_at(item: &LicenseDeployment) -> DateTime<Utc> {
        item.processed_at
    }
}

/// Decodes one page of `GET /v1/analytics/licenses/deployment`.
pub fn decode_deployment_page(body: &[u8]) -> Result<Page<LicenseDeployment>, DecodeError> {
    decode_page(body, LicenseDeploymentSource::decode_item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::snapshot::Snapshot;
    use chrono::TimeZone;

    const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/partner-licenses-deployment.json");

    #[test]
    fn documented_example_decodes_exactly() {
        let page = decode_deployment_page(FIXTURE).expect("decodes");
        assert!(page.skipped.is_empty());
        assert_eq!(page.next, None);
        assert_eq!(
            page.items,
            vec![
                LicenseDeployment {
                    service: "crm".to_owned(),
                    channel: "reseller".to_owned(),
                    prorated_percent: 0.0,
                    licenses_sold: 343.0,
                    processed_at: Utc.with_ymd_and_hms(2017, 3, 10, 0, 0, 0).unwrap(),
                },
                LicenseDeployment {
                    service: "o365".to_owned(),
                    channel: "reseller".to_owned(),
                    prorated_percent: 1.0,
                    licenses_sold: 4464.0,
                    processed_at: Utc.with_ymd_and_hms(2017, 3, 14, 3, 25, 16).unwrap()
                        + chrono::Duration::milliseconds(360),
                },
            ]
        );
    }

    #[test]
    fn the_documented_example_renders_exactly_these_families() {
        let page = decode_deployment_page(FIXTURE).expect("decodes");
        let snapshot = Snapshot::<LicenseDeploymentSource>::from_items(page.items);
        assert_eq!(
            snapshot.text(),
            "# HELP partner_center_license_deployment_prorated_percent Prorated license deployment per service and channel: proratedDeploymentPercent exactly as Partner Center reports it.\n\
             # TYPE partner_center_license_deployment_prorated_percent gauge\n\
             partner_center_license_deployment_prorated_percent{channel=\"reseller\",service=\"crm\"} 0\n\
             partner_center_license_deployment_prorated_percent{channel=\"reseller\",service=\"o365\"} 1\n\
             # HELP partner_center_license_deployment_licenses_sold Licenses sold per service and channel (licensesSold).\n\
             # TYPE partner_center_license_deployment_licenses_sold gauge\n\
             partner_center_license_deployment_licenses_sold{channel=\"reseller\",service=\"crm\"} 343\n\
             partner_center_license_deployment_licenses_sold{channel=\"reseller\",service=\"o365\"} 4464\n\
             # HELP partner_center_license_deployment_processed_timestamp_seconds When Partner Center processed the deployment figures (processedDateTime), in Unix seconds.\n\
             # TYPE partner_center_license_deployment_processed_timestamp_seconds gauge\n\
             partner_center_license_deployment_processed_timestamp_seconds{channel=\"reseller\",service=\"crm\"} 1489104000\n\
             partner_center_license_deployment_processed_timestamp_seconds{channel=\"reseller\",service=\"o365\"} 1489461916.36\n"
        );
    }

    #[test]
    fn unusable_items_are_skipped_naming_the_field() {
        let body = br#"{"items":[
            {"channel":"reseller","licensesSold":1,"proratedDeploymentPercent":1,"processedDateTime":"2020-01-01"},
            {"serviceName":"o365","channel":"reseller","licensesSold":"many","proratedDeploymentPercent":1,"processedDateTime":"2020-01-01"},
            {"serviceName":"o365","channel":"reseller","licensesSold":"12","proratedDeploymentPercent":"NaN","processedDateTime":"2020-01-01"},
            {"serviceName":"o365","channel":"reseller","licensesSold":"12","proratedDeploymentPercent":2.5,"processedDateTime":"2020-01-01"}
        ]}"#;
        let page = decode_deployment_page(body).expect("a page");
        let reasons: Vec<_> = page.skipped.iter().map(|s| (s.index, s.reason)).collect();
        assert_eq!(
            reasons,
            [
                (0, SkipReason::MissingField("serviceName")),
                (1, SkipReason::InvalidNumber("licensesSold")),
                (2, SkipReason::InvalidNumber("proratedDeploymentPercent")),
            ]
        );
        assert_eq!(page.items.len(), 1);
        assert_eq!(
            page.items[0].licenses_sold, 12.0,
            "a numeric string is a number"
        );
    }

    #[test]
    fn the_newest_processed_date_wins_per_service_and_channel() {
        let item = |sold: f64, day: u32| LicenseDeployment {
            service: "o365".to_owned(),
            channel: "reseller".to_owned(),
            prorated_percent: 50.0,
            licenses_sold: sold,
            processed_at: Utc.with_ymd_and_hms(2024, 5, day, 0, 0, 0).unwrap(),
        };
        let snapshot =
            Snapshot::<LicenseDeploymentSource>::from_items([item(2.0, 2), item(1.0, 1)]);
        assert_eq!(snapshot.series().len(), 1);
        assert_eq!(snapshot.series()[0].licenses_sold, 2.0);
        assert_eq!(snapshot.duplicates(), 1);
    }
}

/// Property tests: bytes and JSON of any shape through the decoder and the
/// snapshot, which must never panic, must serve every decoded item exactly
/// once per family with its labels escaped, and must describe a failure in
/// one bounded line.
#[cfg(test)]
mod properties {
    use std::collections::BTreeSet;

    use chrono::{SecondsFormat, TimeZone};
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::select;

    use super::*;
    use crate::collect::snapshot::Snapshot;

    const FIELD_NAMES: [&str; 5] = [
        "serviceName",
        "channel",
        "proratedDeploymentPercent",
        "licensesSold",
        "processedDateTime",
    ];

    /// Characters that break naive escaping more often than chance would.
    fn hostile_char() -> impl Strategy<Value = char> {
        prop_oneof![
            2 => any::<char>(),
            2 => select(vec![
                '"', '\\', '\n', '\r', '\t', '\0', '\u{7f}', '{', '}', ',', '=', ' ', 'ü', '😀',
                '\u{2028}', '\u{feff}',
            ]),
            2 => proptest::char::range('a', 'd'),
        ]
    }

    fn label_text() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => vec(hostile_char(), 0..6).prop_map(String::from_iter),
            // A small pool, so that items share labels and are folded together.
            1 => select(vec!["o365", "crm", "reseller", "a\"b", "a\\b", "a\nb", " ", ""])
                .prop_map(str::to_owned),
        ]
    }

    /// A label the decoder keeps: not empty, not only white space.
    fn usable_label() -> impl Strategy<Value = String> {
        label_text().prop_map(|label| {
            if label.trim().is_empty() {
                label + "x"
            } else {
                label
            }
        })
    }

    fn quoted(text: &str) -> String {
        serde_json::to_string(text).expect("a string serialises")
    }

    /// A JSON string literal: hostile text, or escapes and contents a
    /// decoder may stumble over.
    fn string_literal() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => label_text().prop_map(|text| quoted(&text)),
            1 => select(vec![
                r#""\ud800""#,
                r#""\udc00x""#,
                r#""\u0000""#,
                r#""\ud83d\ude00""#,
                r#""2017-03-10T00:00:00+00:00""#,
                r#""12""#,
                r#"" 7 ""#,
                r#""NaN""#,
                r#""1e400""#,
            ])
            .prop_map(str::to_owned),
        ]
    }

    /// Number literals, in range for f64 or not.
    fn number_literal() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_filter_map("finite", |f| f.is_finite().then(|| format!("{f:?}"))),
            select(vec![
                "1e400",
                "-1e400",
                "-0",
                "0e0",
                "4.9e-324",
                "123456789012345678901234567890",
                "1.5E+3",
            ])
            .prop_map(str::to_owned),
        ]
    }

    fn date_time() -> impl Strategy<Value = DateTime<Utc>> {
        // Years 1 to 9999: what RFC 3339 can write.
        (-62_135_596_800_i64..253_402_300_800, 0_u32..1_000_000_000).prop_map(|(secs, nanos)| {
            Utc.timestamp_opt(secs, nanos)
                .single()
                .expect("in chrono's range")
        })
    }

    /// `processedDateTime` literals in the forms Partner Center sends, and others.
    fn date_literal() -> impl Strategy<Value = String> {
        (date_time(), 0..4_u8).prop_map(|(at, form)| {
            quoted(&match form {
                0 => at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                1 => at.to_rfc3339(),
                2 => at.format("%Y-%m-%d").to_string(),
                _ => "yesterday".to_owned(),
            })
        })
    }

    fn object(members: &[(String, String)]) -> String {
        let members: Vec<String> = members
            .iter()
            .map(|(key, value)| format!("{key}:{value}"))
            .collect();
        format!("{{{}}}", members.join(","))
    }

    /// A field's value: absent now and then, most often of the right kind.
    fn field(
        right_kind: BoxedStrategy<String>,
        inner: &BoxedStrategy<String>,
    ) -> BoxedStrategy<Option<String>> {
        prop::option::weighted(0.9, prop_oneof![4 => right_kind, 1 => inner.clone()]).boxed()
    }

    /// An object shaped like a deployment item, with any field missing or
    /// of the wrong type, and extra members, in any order.
    fn deployment_like(inner: BoxedStrategy<String>) -> impl Strategy<Value = String> {
        let number = || prop_oneof![3 => number_literal(), 1 => string_literal()].boxed();
        (
            field(string_literal().boxed(), &inner),
            field(string_literal().boxed(), &inner),
            field(number(), &inner),
            field(number(), &inner),
            field(date_literal().boxed(), &inner),
            vec((string_literal(), inner.clone()), 0..2),
        )
            .prop_flat_map(|(service, channel, percent, sold, date, extra)| {
                let mut members: Vec<(String, String)> = FIELD_NAMES
                    .iter()
                    .zip([service, channel, percent, sold, date])
                    .filter_map(|(name, value)| value.map(|value| (quoted(name), value)))
                    .collect();
                members.extend(extra);
                Just(members).prop_shuffle()
            })
            .prop_map(|members| object(&members))
    }

    /// JSON text of any shape, deployment-like items among its values.
    fn json_text() -> BoxedStrategy<String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            any::<bool>().prop_map(|value| value.to_string()),
            number_literal(),
            string_literal(),
            (1_usize..200).prop_map(|depth| "[".repeat(depth) + &"]".repeat(depth)),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..5).prop_map(|values| format!("[{}]", values.join(","))),
                vec((string_literal(), inner.clone()), 0..5).prop_map(|m| object(&m)),
                deployment_like(inner),
            ]
        })
        .boxed()
    }

    /// A usable item and the deployment it must decode to.
    fn usable_item() -> impl Strategy<Value = (String, LicenseDeployment)> {
        let finite = || any::<f64>().prop_filter("finite", |f| f.is_finite());
        (
            usable_label(),
            usable_label(),
            finite(),
            finite(),
            date_time(),
            vec(
                (
                    // Text keys: a key with a `\u` escape that is no
                    // character makes the item malformed, read or not.
                    label_text()
                        .prop_filter("not a field the decoder reads", |key| {
                            !FIELD_NAMES.contains(&key.as_str())
                        })
                        .prop_map(|key| quoted(&key)),
                    json_text(),
                ),
                0..2,
            ),
        )
            .prop_flat_map(|(service, channel, percent, sold, at, extra)| {
                let (percent, sold) = (format!("{percent:?}"), format!("{sold:?}"));
                let expected = LicenseDeployment {
                    service: service.clone(),
                    channel: channel.clone(),
                    // The decoder's reading of the literals: they may
                    // differ from the generated floats in the last bit.
                    prorated_percent: serde_json::from_str(&percent).expect("a finite literal"),
                    licenses_sold: serde_json::from_str(&sold).expect("a finite literal"),
                    processed_at: at,
                };
                let mut members = vec![
                    (quoted(FIELD_NAMES[0]), quoted(&service)),
                    (quoted(FIELD_NAMES[1]), quoted(&channel)),
                    (quoted(FIELD_NAMES[2]), percent),
                    (quoted(FIELD_NAMES[3]), sold),
                    (
                        quoted(FIELD_NAMES[4]),
                        quoted(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
                    ),
                ];
                members.extend(extra);
                (Just(members).prop_shuffle(), Just(expected))
            })
            .prop_map(|(members, expected)| (object(&members), expected))
    }

    /// A page of usable and arbitrary items, and for each the deployment
    /// it must decode to when it is a usable one.
    fn page() -> impl Strategy<Value = (String, Vec<Option<LicenseDeployment>>)> {
        vec(
            prop_oneof![
                1 => usable_item().prop_map(|(item, expected)| (item, Some(expected))),
                1 => json_text().prop_map(|item| (item, None)),
            ],
            0..8,
        )
        .prop_map(|items| {
            let (items, expected): (Vec<String>, Vec<_>) = items.into_iter().unzip();
            let body = format!(
                r#"{{"totalCount":{},"items":[{}],"attributes":{{"objectType":"Collection"}}}}"#,
                items.len(),
                items.join(",")
            );
            (body, expected)
        })
    }

    /// A message logged and shown on the landing page: one bounded line.
    fn check_message(message: &str) -> Result<(), TestCaseError> {
        prop_assert!(!message.is_empty() && message.len() < 512, "{message}");
        prop_assert!(!message.contains(['\n', '\r']), "{message:?}");
        Ok(())
    }

    /// A label value as the text format writes it.
    fn escaped(value: &str) -> String {
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    }

    /// Decodes `body` and, when it is a page, renders it and checks the families.
    fn decode_and_render(body: &[u8]) -> Result<Option<Page<LicenseDeployment>>, TestCaseError> {
        let page = match decode_deployment_page(body) {
            Ok(page) => page,
            Err(err) => {
                check_message(&err.to_string())?;
                return Ok(None);
            }
        };
        for skipped in &page.skipped {
            check_message(&skipped.reason.to_string())?;
        }

        let snapshot = Snapshot::<LicenseDeploymentSource>::from_vec(page.items.clone());
        prop_assert_eq!(
            snapshot.series().len() + snapshot.duplicates(),
            page.items.len()
        );
        let keys: BTreeSet<(&str, &str)> = page
            .items
            .iter()
            .map(|item| (item.channel.as_str(), item.service.as_str()))
            .collect();
        prop_assert_eq!(snapshot.series().len(), keys.len());
        let text = snapshot.text();
        if keys.is_empty() {
            prop_assert_eq!(text, "");
            return Ok(Some(page));
        }
        let lines: Vec<&str> = text
            .strip_suffix('\n')
            .ok_or_else(|| TestCaseError::fail("no final newline"))?
            .split('\n')
            .collect();
        let families = LicenseDeploymentSource::FAMILIES;
        prop_assert_eq!(
            lines.len(),
            families.len() * (2 + keys.len()),
            "a label broke a line:\n{}",
            text
        );
        for family in families {
            let name = family.name;
            for header in [format!("# HELP {name} "), format!("# TYPE {name} gauge")] {
                prop_assert_eq!(
                    lines
                        .iter()
                        .filter(|line| line.starts_with(&header))
                        .count(),
                    1,
                    "{}",
                    header
                );
            }
            let samples: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|line| line.starts_with(&format!("{name}{{")))
                .collect();
            prop_assert_eq!(samples.len(), keys.len());
            // In the order of their labels, each exactly once.
            for ((channel, service), line) in keys.iter().zip(&samples) {
                let prefix = format!(
                    "{name}{{channel=\"{}\",service=\"{}\"}} ",
                    escaped(channel),
                    escaped(service)
                );
                prop_assert!(line.starts_with(&prefix), "{line:?} is not {prefix:?}");
                prop_assert_eq!(samples.iter().filter(|l| l.starts_with(&prefix)).count(), 1);
                let winner = snapshot
                    .series()
                    .iter()
                    .find(|item| {
                        (item.channel.as_str(), item.service.as_str()) == (*channel, *service)
                    })
                    .ok_or_else(|| TestCaseError::fail("a key without a series"))?;
                prop_assert!(
                    page.items
                        .iter()
                        .filter(
                            |item| item.channel == winner.channel && item.service == winner.service
                        )
                        .all(|item| item.processed_at <= winner.processed_at),
                    "the newest processedDateTime wins"
                );
                let value: f64 = line[prefix.len()..]
                    .parse()
                    .map_err(|_| TestCaseError::fail(format!("bad value in {line:?}")))?;
                prop_assert_eq!(
                    value.to_bits(),
                    (family.value)(winner).to_bits(),
                    "{}",
                    line
                );
            }
        }
        Ok(Some(page))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes(body in vec(any::<u8>(), 0..256)) {
            decode_and_render(&body)?;
        }

        #[test]
        fn arbitrary_json(body in json_text()) {
            decode_and_render(body.as_bytes())?;
        }

        #[test]
        fn arbitrary_json_in_the_envelope((body, _) in page()) {
            let decoded = decode_and_render(body.as_bytes())?;
            prop_assert!(decoded.is_some(), "a well-formed page fails: {}", body);
        }

        #[test]
        fn usable_items_decode_exactly_and_are_all_served((body, expected) in page()) {
            let decoded = decode_and_render(body.as_bytes())?
                .ok_or_else(|| TestCaseError::fail("a well-formed page fails"))?;
            prop_assert_eq!(decoded.items.len() + decoded.skipped.len(), expected.len());
            let skipped: BTreeSet<usize> = decoded.skipped.iter().map(|s| s.index).collect();
            let kept = (0..expected.len()).filter(|index| !skipped.contains(index));
            for (index, item) in kept.zip(&decoded.items) {
                if let Some(expected) = &expected[index] {
                    prop_assert_eq!(item, expected, "item {}", index);
                }
            }
            for (index, expected) in expected.iter().enumerate() {
                prop_assert!(
                    expected.is_none() || !skipped.contains(&index),
                    "usable item {} was skipped: {:?}",
                    index,
                    decoded.skipped
                );
            }
        }
    }
}
