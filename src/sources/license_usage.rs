//! The `license_usage` source: partner-level license usage per workload,
//! service and channel, from `GET /v1/analytics/licenses/usage`
//! (`PartnerLicensesUsageInsights` items).

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::{ExpectedRange, Family, Fetch, Source, SourceName};
use crate::exposition::unix_seconds;
use crate::partner_center::collection::{
    DecodeError, FieldKind, Page, SkipReason, decode_page, read_fields,
};

/// One usable `PartnerLicensesUsageInsights` item.
#[derive(Debug, Clone, PartialEq)]
pub struct LicenseUsage {
    /// `workloadName`, e.g. `Exchange`.
    pub workload: String,
    /// `serviceName`, e.g. `o365`.
    pub service: String,
    /// `channel`, e.g. `reseller`.
    pub channel: String,
    /// `proratedLicensesUsagePercent`, as received (the API does not say
    /// whether it is a 0–100 or a 0–1 share).
    pub prorated_percent: f64,
    /// `processedDateTime`: when Partner Center aggregated the figure.
    pub processed_at: DateTime<Utc>,
}

/// One decoded page of the license usage collection.
pub type UsagePage = Page<LicenseUsage>;

/// The `license_usage` source.
pub struct LicenseUsageSource;

impl LicenseUsageSource {
    /// The collection, below the API root.
    pub const PATH: &'static str = "v1/analytics/licenses/usage";
}

/// The fields read from an item, in the order they are checked.
const FIELDS: [(&str, FieldKind); 5] = [
    ("workloadName", FieldKind::Text),
    ("serviceName", FieldKind::Text),
    ("channel", FieldKind::Text),
    ("proratedLicensesUsagePercent", FieldKind::Number),
    ("processedDateTime", FieldKind::Text),
];

impl Source for LicenseUsageSource {
    type Item = LicenseUsage;

    const NAME: SourceName = SourceName::LicenseUsage;
    const FETCH: Fetch = Fetch::Collection(Self::PATH);
    const ITEM_NOUN: &'static str = "license usage item";
    const LABELS: &'static [&'static str] = &["channel", "service", "workload"];
    const FAMILIES: &'static [Family<LicenseUsage>] = &[
        Family {
            name: "partner_center_license_usage_prorated_percent",
            help: "Prorated license usage per workload, service and channel: \
                   proratedLicensesUsagePercent exactly as Partner Center reports it.",
            value: |item| Some(item.prorated_percent),
        },
        Family {
            name: "partner_center_license_usage_processed_timestamp_seconds",
            help: "When Partner Center processed the usage figure (processedDateTime), in Unix seconds.",
            value: |item| Some(unix_seconds(item.processed_at)),
        },
    ];
    const EXPECTED_RANGES: &'static [ExpectedRange<LicenseUsage>] = &[ExpectedRange {
        field: "proratedLicensesUsagePercent",
        range: 0.0..=100.0,
        value: |item| item.prorated_percent,
    }];

    fn decode_item(item: &RawValue) -> Result<LicenseUsage, SkipReason> {
        let [workload, service, channel, percent, processed] = read_fields(item, &FIELDS)?;
        Ok(LicenseUsage {
            workload: workload.required_text("workloadName")?,
            service: service.required_text("serviceName")?,
            channel: channel.required_text("channel")?,
            prorated_percent: percent.required_number("proratedLicensesUsagePercent")?,
            processed_at: processed.required_processed_date_time()?,
        })
    }

    fn label_values(item: &LicenseUsage) -> impl AsRef<[&str]> {
        [
            item.channel.as_str(),
            item.service.as_str(),
            item.workload.as_str(),
        ]
    }

    /// By workload, then service, then channel: the order of the
    /// exporter's first releases, kept.
    fn series_order(a: &LicenseUsage, b: &LicenseUsage) -> std::cmp::Ordering {
        (&a.workload, &a.service, &a.channel).cmp(&(&b.workload, &b.service, &b.channel))
    }

    fn processed_at(item: &LicenseUsage) -> Option<DateTime<Utc>> {
        Some(item.processed_at)
    }
}

/// Decodes one page of `GET /v1/analytics/licenses/usage`.
pub fn decode_usage_page(body: &[u8]) -> Result<UsagePage, DecodeError> {
    decode_page(body, LicenseUsageSource::decode_item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partner_center::collection::{NextLink, SkippedItem, parse_processed_date_time};
    use chrono::TimeZone;

    const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/partner-licenses-usage.json");

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid date")
    }

    fn item(workload: &str, service: &str, day: u32) -> LicenseUsage {
        LicenseUsage {
            workload: workload.to_owned(),
            service: service.to_owned(),
            channel: "reseller".to_owned(),
            prorated_percent: 0.0,
            processed_at: utc(2017, 3, day, 0, 0, 0),
        }
    }

    #[test]
    fn documented_example_decodes_exactly() {
        let page = decode_usage_page(FIXTURE).expect("decodes");
        assert_eq!(
            page,
            UsagePage {
                items: vec![
                    item("Microsoft Dynamics CRM", "crm", 10),
                    item("SharePoint", "crm", 10),
                    item("Exchange", "o365", 9),
                    item("SharePoint", "o365", 9),
                    item("Skype For Business", "o365", 9),
                ],
                skipped: vec![],
                next: None,
                total_count: None,
            }
        );
    }

    #[test]
    fn lenient_dates() {
        let cases = [
            ("2017-03-09T00:00:00+00:00", utc(2017, 3, 9, 0, 0, 0)),
            ("2017-03-09T00:00:00Z", utc(2017, 3, 9, 0, 0, 0)),
            ("2018-10-14T00:00:00", utc(2018, 10, 14, 0, 0, 0)),
            ("2018-10-14T02:00:00+02:00", utc(2018, 10, 14, 0, 0, 0)),
            ("2018-10-14T00:00:00+0000", utc(2018, 10, 14, 0, 0, 0)),
            ("2018-10-14 05:06:07", utc(2018, 10, 14, 5, 6, 7)),
            ("2018-10-14", utc(2018, 10, 14, 0, 0, 0)),
            (" 2018-10-14T00:00:00 ", utc(2018, 10, 14, 0, 0, 0)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_processed_date_time(text), Some(expected), "{text}");
        }
        let fractional = parse_processed_date_time("2017-03-14T03:25:16.36+00:00").expect("parses");
        assert_eq!(
            fractional.timestamp_millis(),
            utc(2017, 3, 14, 3, 25, 16).timestamp_millis() + 360
        );
        let fractional_naive = parse_processed_date_time("2017-03-14T03:25:16.5").expect("parses");
        assert_eq!(
            fractional_naive.timestamp_millis(),
            utc(2017, 3, 14, 3, 25, 16).timestamp_millis() + 500
        );
        for bad in [
            "",
            "yesterday",
            "2017-13-01T00:00:00",
            "2017-03-09T25:00:00Z",
            "1488931200",
        ] {
            assert_eq!(parse_processed_date_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_as_integers_floats_and_numeric_strings() {
        let body = br#"{"items":[
            {"workloadName":"A","serviceName":"s","channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":42},
            {"workloadName":"B","serviceName":"s","channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":0.125},
            {"workloadName":"C","serviceName":"s","channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":-3e2},
            {"workloadName":"D","serviceName":"s","channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":" 17.5 "}
        ]}"#;
        let page = decode_usage_page(body).expect("decodes");
        let values: Vec<f64> = page.items.iter().map(|i| i.prorated_percent).collect();
        assert_eq!(values, vec![42.0, 0.125, -300.0, 17.5]);
        assert!(page.skipped.is_empty());
    }

    #[test]
    fn unusable_items_are_skipped_with_reasons_and_the_rest_kept() {
        let body = br#"{"totalCount": 9, "items":[
            {"workloadName":"Good","serviceName":"s","channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":1, "extra": {"nested": [1,2,3]}},
            {"serviceName":"s","channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":1},
            {"workloadName":" \t","serviceName":"s","channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":1},
            {"workloadName":"A","serviceName":7,"channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":1},
            {"workloadName":"A","serviceName":"s","channel":null,"processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":1},
            {"workloadName":"A","serviceName":"s","channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":"lots"},
            {"workloadName":"A","serviceName":"s","channel":"c","processedDateTime":"never","proratedLicensesUsagePercent":1},
            {"workloadName":"A","serviceName":"s","channel":"c","proratedLicensesUsagePercent":1},
            "not an object",
            {"workloadName":"A","serviceName":"s","channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":"NaN"}
        ]}"#;
        let page = decode_usage_page(body).expect("decodes");
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].workload, "Good");
        let reasons: Vec<(usize, SkipReason)> =
            page.skipped.iter().map(|s| (s.index, s.reason)).collect();
        assert_eq!(
            reasons,
            vec![
                (1, SkipReason::MissingField("workloadName")),
                (2, SkipReason::MissingField("workloadName")),
                (3, SkipReason::WrongType("serviceName")),
                (4, SkipReason::MissingField("channel")),
                (5, SkipReason::InvalidNumber("proratedLicensesUsagePercent")),
                (6, SkipReason::InvalidDate),
                (7, SkipReason::MissingField("processedDateTime")),
                (8, SkipReason::NotAnObject),
                (9, SkipReason::InvalidNumber("proratedLicensesUsagePercent")),
            ]
        );
    }

    #[test]
    fn label_values_are_kept_verbatim() {
        let body = "{\"items\":[{\"workloadName\":\"Sk\\\"ype\\\\ \\n für\",\"serviceName\":\"o365\",\"channel\":\"reseller\",\"processedDateTime\":\"2020-01-01T00:00:00Z\",\"proratedLicensesUsagePercent\":1}]}";
        let page = decode_usage_page(body.as_bytes()).expect("decodes");
        assert_eq!(page.items[0].workload, "Sk\"ype\\ \n für");
    }

    #[test]
    fn next_link_is_read_with_its_headers() {
        let body = br#"{"items":[],"links":{"next":{"uri":"/v1/analytics/licenses/usage?page=2","method":"GET","headers":[{"key":"MS-ContinuationToken","value":"abc"}]}}}"#;
        let page = decode_usage_page(body).expect("decodes");
        assert_eq!(
            page.next,
            Some(NextLink {
                uri: "/v1/analytics/licenses/usage?page=2".to_owned(),
                headers: vec![("MS-ContinuationToken".to_owned(), "abc".to_owned())],
            })
        );
        let without_next = br#"{"items":[],"links":{"self":{"uri":"/v1/x"}}}"#;
        assert_eq!(decode_usage_page(without_next).expect("decodes").next, None);
    }

    #[test]
    fn unusable_collections_fail() {
        let cases: [(&[u8], &str); 20] = [
            (b"<html>Service Unavailable</html>", "not a JSON"),
            (
                b"<!DOCTYPE html>\n<html><body><h1>502 Bad Gateway</h1></body></html>",
                "not a JSON",
            ),
            (b"", "not a JSON"),
            (b" \n", "not a JSON"),
            (b"{\"items\": [", "not a JSON"),
            (b"{\"items\": [{\"workloadName\": \"Exch", "not a JSON"),
            (b"{\"items\": []", "not a JSON"),
            (b"{\"items\": []} {}", "trailing characters"),
            (b"{\"totalCount\": 0}", "no `items`"),
            (b"{\"items\": null}", "no `items`"),
            (b"{\"items\": {\"a\": 1}}", "`items` to be an array"),
            (
                b"{\"items\": \"[]\"}",
                "invalid type: string, expected `items` to be an array",
            ),
            (b"{\"items\": [], \"items\": []}", "duplicate field `items`"),
            // Only an object is a collection, whatever an array holds.
            (b"[[]]", "a JSON object with an `items` array"),
            (b"null", "a JSON object with an `items` array"),
            (
                b"\"items\"",
                "invalid type: string, expected a JSON object with an `items` array",
            ),
            (br#"{"items":[],"links":{"next":{"method":"GET"}}}"#, "uri"),
            (
                br#"{"items":[],"links":{"next":{"uri":"/x","method":"POST"}}}"#,
                "GET",
            ),
            (
                br#"{"items":[],"links":{"next":{"uri":"/x","headers":[{"key":"k"}]}}}"#,
                "headers",
            ),
            (br#"{"items":[],"links":[]}"#, "`links` is not an object"),
        ];
        for (body, expected) in cases {
            let err = decode_usage_page(body).expect_err("must fail");
            assert!(err.to_string().contains(expected), "{err} lacks {expected}");
        }
    }

    #[test]
    fn errors_do_not_quote_strings_from_the_body() {
        let long = "x".repeat(100_000);
        for body in [
            format!(r#""{long}""#),
            format!(r#"{{"items":"{long}"}}"#),
            format!(r#"{{"items":[],"links":"{long}"}}"#),
            format!(r#"{{"items":[],"links":{{"next":{{"uri":"{long}","method":"{long}"}}}}}}"#),
        ] {
            let err = decode_usage_page(body.as_bytes()).expect_err("must fail");
            let message = err.to_string();
            assert!(message.len() < 200, "{message:.300}");
            assert!(!message.contains("xxx"), "{message:.300}");
        }
    }

    /// A usable item with `percent` spliced in as raw JSON text.
    fn with_percent(percent: &str) -> String {
        format!(
            r#"{{"workloadName":"W","serviceName":"s","channel":"c","processedDateTime":"2020-01-01T00:00:00Z","proratedLicensesUsagePercent":{percent}}}"#
        )
    }

    /// A page of the given raw items.
    fn page_of(items: &[String]) -> String {
        format!(
            r#"{{"totalCount":{},"items":[{}]}}"#,
            items.len(),
            items.join(",")
        )
    }

    fn reasons(page: &UsagePage) -> Vec<(usize, SkipReason)> {
        page.skipped.iter().map(|s| (s.index, s.reason)).collect()
    }

    /// Runs `test` on a thread with the default 2 MiB stack of test
    /// threads, so that recursion on deep input would overflow here too.
    fn on_small_stack(test: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(test)
            .expect("spawn test thread")
            .join()
            .expect("test thread did not panic");
    }

    #[test]
    fn out_of_range_numbers_and_lone_surrogates_skip_only_their_item() {
        let good = with_percent("12.5");
        let items = [
            good.clone(),
            with_percent("1e400"),
            with_percent("-1e400"),
            good.replace(r#""W""#, r#""\ud800""#),
            good.replace(r#""W""#, r#""x\udfffy""#),
            good.replace(r#""s""#, r#""\ud83d""#),
            good.replace("\"2020", r#""\udbff2020"#),
            // Keys are decoded too: a lone surrogate in one is no character.
            good.replace(r#"{"workloadName""#, r#"{"\ud800":1,"workloadName""#),
            // Top-level values of an item are decoded, and fail the same way.
            "1e400".to_owned(),
            r#""\ud800""#.to_owned(),
            // In a field the exporter does not read, nothing is decoded.
            good.replace('{', r#"{"extra":[1e400,-1e400,"\ud800"],"#),
            // Too small for a float is zero, not an error.
            with_percent("1e-400"),
            good,
        ];
        let page = decode_usage_page(page_of(&items).as_bytes()).expect("the page decodes");
        let percents: Vec<f64> = page.items.iter().map(|i| i.prorated_percent).collect();
        assert_eq!(percents, vec![12.5, 12.5, 0.0, 12.5]);
        let malformed = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(
            reasons(&page),
            malformed
                .iter()
                .map(|&index| (index, SkipReason::Malformed))
                .collect::<Vec<_>>()
        );
        assert!(
            SkipReason::Malformed
                .to_string()
                .contains("number out of range"),
            "{}",
            SkipReason::Malformed
        );
    }

    #[test]
    fn deep_nesting_inside_an_item_costs_at_most_that_item() {
        on_small_stack(|| {
            for depth in [200, 100_000] {
                let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
                let objects = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
                let good = with_percent("1");
                let items = [
                    good.clone(),
                    arrays.clone(),
                    objects.clone(),
                    good.replace(r#""W""#, &arrays),
                    good.replace("1}", &format!("{objects}}}")),
                    // Nested values in fields the exporter does not read are
                    // skipped unread, so the item is used.
                    good.replace('{', &format!(r#"{{"extra":{arrays},"more":{objects},"#)),
                ];
                let page = decode_usage_page(page_of(&items).as_bytes())
                    .unwrap_or_else(|err| panic!("depth {depth}: {err}"));
                assert_eq!(page.items.len(), 2, "depth {depth}");
                assert_eq!(
                    reasons(&page),
                    vec![
                        (1, SkipReason::NotAnObject),
                        (2, SkipReason::MissingField("workloadName")),
                        (3, SkipReason::WrongType("workloadName")),
                        (4, SkipReason::InvalidNumber("proratedLicensesUsagePercent")),
                    ],
                    "depth {depth}"
                );
            }
        });
    }

    #[test]
    fn deep_nesting_outside_items_fails_without_overflowing_the_stack() {
        on_small_stack(|| {
            let depth = 100_000;
            let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let objects = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
            let failing = [
                (arrays.clone(), "a JSON object with an `items` array"),
                (objects.clone(), "no `items`"),
                ("[".repeat(depth), "a JSON object with an `items` array"),
                ("{\"a\":".repeat(depth), "EOF while parsing"),
                (
                    format!(r#"{{"items":[],"links":{arrays}}}"#),
                    "recursion limit",
                ),
                (
                    format!(r#"{{"items":[],"links":{objects}}}"#),
                    "recursion limit",
                ),
            ];
            for (body, expected) in failing {
                let err = decode_usage_page(body.as_bytes()).expect_err("must fail");
                assert!(err.to_string().contains(expected), "{err} lacks {expected}");
            }
            // Envelope fields the exporter does not read are skipped unread.
            let unread = format!(r#"{{"attributes":{arrays},"items":[],"totalCount":{objects}}}"#);
            let page = decode_usage_page(unread.as_bytes()).expect("decodes");
            assert_eq!(page, UsagePage::default());
        });
    }

    #[test]
    fn a_body_that_is_not_utf8_fails_naming_the_byte() {
        let good = page_of(&[with_percent("1")]);
        let at = good.find("\"W\"").expect("workload") + 2;
        let mut bad_in_a_label = good.clone().into_bytes();
        bad_in_a_label.insert(at, 0xff);
        let mut truncated_sequence = good.clone().into_bytes();
        truncated_sequence.truncate(at);
        truncated_sequence.extend_from_slice(&[0xe2, 0x82]);
        let cases: [(&[u8], usize); 5] = [
            (&bad_in_a_label, at),
            (b"\xff{\"items\":[]}", 0),
            (b"{\"items\":[]}\xc0\x80", 12),
            // An encoded surrogate is not UTF-8 either.
            (b"{\"items\":[\"\xed\xa0\x80\"]}", 11),
            (&truncated_sequence, at),
        ];
        for (body, offset) in cases {
            let err = decode_usage_page(body).expect_err("must fail");
            assert_eq!(
                err.to_string(),
                format!("response is not valid UTF-8 at byte {offset}")
            );
        }
    }

    #[test]
    fn nan_and_infinity_are_no_json_but_as_strings_skip_their_item() {
        for literal in [
            "NaN",
            "Infinity",
            "-Infinity",
            "+1",
            "01",
            "1.",
            ".5",
            "0x10",
        ] {
            let body = page_of(&[with_percent("1"), with_percent(literal)]);
            let err = decode_usage_page(body.as_bytes()).expect_err(literal);
            assert!(err.to_string().contains("not a JSON"), "{literal}: {err}");
        }
        let strings = [
            r#""NaN""#,
            r#""nan""#,
            r#""Infinity""#,
            r#""-inf""#,
            r#""1e400""#,
            r#""""#,
            r#""12%""#,
        ];
        let mut items: Vec<String> = strings.iter().map(|s| with_percent(s)).collect();
        items.push(with_percent(r#""-1e-400""#));
        let page = decode_usage_page(page_of(&items).as_bytes()).expect("decodes");
        assert_eq!(
            reasons(&page),
            (0..strings.len())
                .map(|index| (
                    index,
                    SkipReason::InvalidNumber("proratedLicensesUsagePercent")
                ))
                .collect::<Vec<_>>()
        );
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].prorated_percent, 0.0);
    }

    #[test]
    fn nulls_wrong_types_and_empty_strings_skip_with_the_field_named() {
        let good = with_percent("1");
        let cases: Vec<(String, SkipReason)> = vec![
            (
                good.replace(r#""W""#, "null"),
                SkipReason::MissingField("workloadName"),
            ),
            (
                good.replace(r#""W""#, r#""""#),
                SkipReason::MissingField("workloadName"),
            ),
            (
                good.replace(r#""s""#, r#"" \n\t""#),
                SkipReason::MissingField("serviceName"),
            ),
            (
                good.replace(r#""c""#, "null"),
                SkipReason::MissingField("channel"),
            ),
            (
                good.replace(r#""W""#, "true"),
                SkipReason::WrongType("workloadName"),
            ),
            (
                good.replace(r#""s""#, "[\"s\"]"),
                SkipReason::WrongType("serviceName"),
            ),
            (
                good.replace(r#""c""#, r#"{"name":"c"}"#),
                SkipReason::WrongType("channel"),
            ),
            (
                good.replace(r#""c""#, "-7.5"),
                SkipReason::WrongType("channel"),
            ),
            (
                with_percent("null"),
                SkipReason::MissingField("proratedLicensesUsagePercent"),
            ),
            (
                with_percent("false"),
                SkipReason::InvalidNumber("proratedLicensesUsagePercent"),
            ),
            (
                with_percent("[1]"),
                SkipReason::InvalidNumber("proratedLicensesUsagePercent"),
            ),
            (
                with_percent(r#"{"value":1}"#),
                SkipReason::InvalidNumber("proratedLicensesUsagePercent"),
            ),
            (
                good.replace(r#""2020-01-01T00:00:00Z""#, "null"),
                SkipReason::MissingField("processedDateTime"),
            ),
            (
                good.replace(r#""2020-01-01T00:00:00Z""#, r#""""#),
                SkipReason::InvalidDate,
            ),
            (
                good.replace(r#""2020-01-01T00:00:00Z""#, "1577836800"),
                SkipReason::WrongType("processedDateTime"),
            ),
            ("null".to_owned(), SkipReason::NotAnObject),
            ("[]".to_owned(), SkipReason::NotAnObject),
            ("{}".to_owned(), SkipReason::MissingField("workloadName")),
            ("\"\"".to_owned(), SkipReason::NotAnObject),
            ("0".to_owned(), SkipReason::NotAnObject),
        ];
        let items: Vec<String> = cases.iter().map(|(item, _)| item.clone()).collect();
        let page = decode_usage_page(page_of(&items).as_bytes()).expect("decodes");
        assert!(page.items.is_empty(), "{:?}", page.items);
        assert_eq!(
            reasons(&page),
            cases
                .iter()
                .enumerate()
                .map(|(index, (_, reason))| (index, *reason))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn hostile_label_values_are_kept_exactly_as_received() {
        // JSON string literal as sent → the label value it stands for.
        let labels = [
            (r#""say \"hi\"""#, "say \"hi\""),
            (r#""C:\\temp\\""#, "C:\\temp\\"),
            (r#""two\nlines\r\n""#, "two\nlines\r\n"),
            (r#""tab\tnul\u0000bell\u0007""#, "tab\tnul\u{0}bell\u{7}"),
            (r#""für Grüße""#, "für Grüße"),
            (r#""f\u00fcr""#, "für"),
            (r#""\ud83d\ude00 😀""#, "😀 😀"),
            (r#""مرحبا \u202ertl""#, "مرحبا \u{202e}rtl"),
            (r#"" padded ""#, " padded "),
            (r#""a\/b""#, "a/b"),
            (r#""} 1\n# HELP x""#, "} 1\n# HELP x"),
        ];
        let items: Vec<String> = labels
            .iter()
            .map(|(json, _)| {
                with_percent("1")
                    .replace(r#""W""#, json)
                    .replace(r#""s""#, json)
                    .replace(r#""c""#, json)
            })
            .collect();
        let page = decode_usage_page(page_of(&items).as_bytes()).expect("decodes");
        assert!(page.skipped.is_empty(), "{:?}", page.skipped);
        let received: Vec<(&str, &str, &str)> = page
            .items
            .iter()
            .map(|i| (i.workload.as_str(), i.service.as_str(), i.channel.as_str()))
            .collect();
        let expected: Vec<(&str, &str, &str)> = labels.iter().map(|(_, v)| (*v, *v, *v)).collect();
        assert_eq!(received, expected);
    }

    #[test]
    fn any_finite_percent_is_kept_as_received() {
        let cases = [
            ("-5", -5.0),
            ("-0.0", -0.0),
            ("250", 250.0),
            ("100.0000001", 100.0000001),
            ("1.7976931348623157e308", f64::MAX),
            ("-1.7976931348623157e308", f64::MIN),
            ("5e-324", 5e-324),
            ("18446744073709551616", 18_446_744_073_709_551_616.0),
            ("-9223372036854775809", -9_223_372_036_854_775_809.0),
            (r#""-12.5""#, -12.5),
            (r#""1e3""#, 1000.0),
        ];
        let items: Vec<String> = cases.iter().map(|(json, _)| with_percent(json)).collect();
        let page = decode_usage_page(page_of(&items).as_bytes()).expect("decodes");
        assert!(page.skipped.is_empty(), "{:?}", page.skipped);
        let received: Vec<u64> = page
            .items
            .iter()
            .map(|i| i.prorated_percent.to_bits())
            .collect();
        let expected: Vec<u64> = cases.iter().map(|(_, value)| value.to_bits()).collect();
        assert_eq!(received, expected);
    }

    #[test]
    fn a_repeated_item_field_takes_the_last_value() {
        let item = with_percent("1").replace('{', r#"{"workloadName":"first","#);
        let page = decode_usage_page(page_of(&[item]).as_bytes()).expect("decodes");
        assert_eq!(page.items[0].workload, "W");
    }

    #[test]
    fn a_million_items_decode() {
        const COUNT: usize = 1_000_000;
        const USABLE_EVERY: usize = 20;
        // Small items, mostly ones that are skipped quickly so the test
        // stays fast in a debug build; one in twenty is a whole usable item.
        let tiny = ["{}", "null", "7", "[]", r#"{"channel":null}"#];
        let mut body = String::with_capacity(COUNT * 16);
        body.push_str(r#"{"totalCount":1000000,"items":["#);
        for index in 0..COUNT {
            if index > 0 {
                body.push(',');
            }
            if index % USABLE_EVERY == 0 {
                body.push_str(&format!(
                    r#"{{"workloadName":"w{index}","serviceName":"s","channel":"c","proratedLicensesUsagePercent":{},"processedDateTime":"2020-01-01T00:00:00Z"}}"#,
                    index % 101
                ));
            } else {
                body.push_str(tiny[index % tiny.len()]);
            }
        }
        body.push_str("]}");
        let started = std::time::Instant::now();
        let page = decode_usage_page(body.as_bytes()).expect("decodes");
        let elapsed = started.elapsed();
        assert_eq!(page.items.len(), COUNT / USABLE_EVERY);
        assert_eq!(page.items.len() + page.skipped.len(), COUNT);
        let last = page.items.last().expect("usable items");
        assert_eq!(last.workload, format!("w{}", COUNT - USABLE_EVERY));
        assert_eq!(last.prorated_percent, ((COUNT - USABLE_EVERY) % 101) as f64);
        assert_eq!(
            page.skipped.last(),
            Some(&SkippedItem {
                index: COUNT - 1,
                reason: SkipReason::MissingField("workloadName")
            })
        );
        eprintln!(
            "decoded {COUNT} items ({} bytes) in {elapsed:?}",
            body.len()
        );
    }
}

/// The source's conformance: items in, the exact text of its families out.
#[cfg(test)]
mod rendering {
    use super::*;
    use crate::collect::snapshot::Snapshot;
    use chrono::TimeZone;

    fn usage(workload: &str, percent: f64) -> LicenseUsage {
        LicenseUsage {
            workload: workload.to_owned(),
            service: "o365".to_owned(),
            channel: "reseller".to_owned(),
            prorated_percent: percent,
            processed_at: chrono::Utc
                .with_ymd_and_hms(2017, 3, 9, 0, 0, 0)
                .single()
                .expect("date"),
        }
    }

    #[test]
    fn license_series_render_with_help_type_and_labels() {
        let snapshot = Snapshot::<LicenseUsageSource>::from_items([usage("Exchange", 12.5)]);
        let text = snapshot.text();
        let expected = "# HELP partner_center_license_usage_prorated_percent Prorated license usage per workload, service and channel: proratedLicensesUsagePercent exactly as Partner Center reports it.\n\
# TYPE partner_center_license_usage_prorated_percent gauge\n\
partner_center_license_usage_prorated_percent{channel=\"reseller\",service=\"o365\",workload=\"Exchange\"} 12.5\n\
# HELP partner_center_license_usage_processed_timestamp_seconds When Partner Center processed the usage figure (processedDateTime), in Unix seconds.\n\
# TYPE partner_center_license_usage_processed_timestamp_seconds gauge\n\
partner_center_license_usage_processed_timestamp_seconds{channel=\"reseller\",service=\"o365\",workload=\"Exchange\"} 1489017600\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn label_values_are_escaped() {
        let snapshot = Snapshot::<LicenseUsageSource>::from_items([usage("Sk\"ype\\ \nfür", 1.0)]);
        let text = snapshot.text();
        let line = text
            .lines()
            .find(|line| line.starts_with("partner_center_license_usage_prorated_percent"))
            .expect("series line");
        assert_eq!(
            line,
            "partner_center_license_usage_prorated_percent{channel=\"reseller\",service=\"o365\",workload=\"Sk\\\"ype\\\\ \\nfür\"} 1"
        );
    }

    #[test]
    fn the_documented_example_renders_in_the_order_of_the_first_releases() {
        let page = decode_usage_page(include_bytes!(
            "../../tests/fixtures/partner-licenses-usage.json"
        ))
        .expect("decodes");
        let snapshot = Snapshot::<LicenseUsageSource>::from_vec(page.items);
        let text = snapshot.text();
        let percent_lines: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("partner_center_license_usage_prorated_percent{"))
            .collect();
        assert_eq!(
            percent_lines,
            [
                "partner_center_license_usage_prorated_percent{channel=\"reseller\",service=\"o365\",workload=\"Exchange\"} 0",
                "partner_center_license_usage_prorated_percent{channel=\"reseller\",service=\"crm\",workload=\"Microsoft Dynamics CRM\"} 0",
                "partner_center_license_usage_prorated_percent{channel=\"reseller\",service=\"crm\",workload=\"SharePoint\"} 0",
                "partner_center_license_usage_prorated_percent{channel=\"reseller\",service=\"o365\",workload=\"SharePoint\"} 0",
                "partner_center_license_usage_prorated_percent{channel=\"reseller\",service=\"o365\",workload=\"Skype For Business\"} 0",
            ]
        );
        assert_eq!(text.matches("# TYPE ").count(), 2);
        // The whole text of the source's families, exactly.
        assert_eq!(
            text,
            "# HELP partner_center_license_usage_prorated_percent Prorated license usage per workload, service and channel: proratedLicensesUsagePercent exactly as Partner Center reports it.\n\
             # TYPE partner_center_license_usage_prorated_percent gauge\n\
             partner_center_license_usage_prorated_percent{channel=\"reseller\",service=\"o365\",workload=\"Exchange\"} 0\n\
             partner_center_license_usage_prorated_percent{channel=\"reseller\",service=\"crm\",workload=\"Microsoft Dynamics CRM\"} 0\n\
             partner_center_license_usage_prorated_percent{channel=\"reseller\",service=\"crm\",workload=\"SharePoint\"} 0\n\
             partner_center_license_usage_prorated_percent{channel=\"reseller\",service=\"o365\",workload=\"SharePoint\"} 0\n\
             partner_center_license_usage_prorated_percent{channel=\"reseller\",service=\"o365\",workload=\"Skype For Business\"} 0\n\
             # HELP partner_center_license_usage_processed_timestamp_seconds When Partner Center processed the usage figure (processedDateTime), in Unix seconds.\n\
             # TYPE partner_center_license_usage_processed_timestamp_seconds gauge\n\
             partner_center_license_usage_processed_timestamp_seconds{channel=\"reseller\",service=\"o365\",workload=\"Exchange\"} 1489017600\n\
             partner_center_license_usage_processed_timestamp_seconds{channel=\"reseller\",service=\"crm\",workload=\"Microsoft Dynamics CRM\"} 1489104000\n\
             partner_center_license_usage_processed_timestamp_seconds{channel=\"reseller\",service=\"crm\",workload=\"SharePoint\"} 1489104000\n\
             partner_center_license_usage_processed_timestamp_seconds{channel=\"reseller\",service=\"o365\",workload=\"SharePoint\"} 1489017600\n\
             partner_center_license_usage_processed_timestamp_seconds{channel=\"reseller\",service=\"o365\",workload=\"Skype For Business\"} 1489017600\n"
        );
    }
}
