//! Property tests of hostile pages end to end: bytes or JSON of any shape
//! go through each source's decoding and snapshot, and for license usage
//! the full `/metrics` rendering, which must never panic and must always
//! give valid text exposition format naming every decoded item with its
//! labels exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use partner_center_exporter::ExporterMetrics;
use partner_center_exporter::Snapshot;
use partner_center_exporter::SourceName;
use partner_center_exporter::license_usage::{
    LicenseUsage, LicenseUsageSource, UsagePage, decode_usage_page,
};
use partner_center_exporter::{ExporterState, TenantLabel};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select, subsequence};

const PERCENT: &str = "partner_center_license_usage_prorated_percent";
const PROCESSED: &str = "partner_center_license_usage_processed_timestamp_seconds";
const ITEM_FIELDS: [&str; 5] = [
    "workloadName",
    "serviceName",
    "channel",
    "proratedLicensesUsagePercent",
    "processedDateTime",
];

// ---------------------------------------------------------------------------
// JSON as written by the tests: unlike `serde_json::Value`, it can hold
// numbers beyond f64's range, lone surrogate escapes and any nesting depth.

/// How a string's characters are written.
#[derive(Debug, Clone, Copy)]
enum Escape {
    /// Only what JSON requires (`"`, `\`, control characters).
    Minimal,
    /// Every UTF-16 code unit as `\uXXXX`.
    Unicode,
}

/// A JSON string literal.
#[derive(Debug, Clone)]
enum JsonString {
    Text(String, Escape),
    /// The literal's raw text between the quotes, e.g. `\ud800`.
    Raw(String),
}

#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    /// A number as literal text.
    Number(String),
    Str(JsonString),
    /// This many nested arrays.
    Deep(usize),
    Array(Vec<Json>),
    Object(Vec<(JsonString, Json)>),
}

fn text(value: &str) -> JsonString {
    JsonString::Text(value.to_owned(), Escape::Minimal)
}

impl JsonString {
    fn write(&self, out: &mut String) {
        match self {
            Self::Text(text, Escape::Minimal) => {
                out.push_str(&serde_json::to_string(text).expect("a string serialises"));
            }
            Self::Text(text, Escape::Unicode) => {
                out.push('"');
                for unit in text.encode_utf16() {
                    write!(out, "\\u{unit:04x}").expect("writing to a String");
                }
                out.push('"');
            }
            Self::Raw(raw) => {
                out.push('"');
                out.push_str(raw);
                out.push('"');
            }
        }
    }
}

impl Json {
    /// Writes the value, with white space between tokens when `spaced`.
    fn write(&self, out: &mut String, spaced: bool) {
        let gap = if spaced { "\n\t " } else { "" };
        match self {
            Self::Null => out.push_str("null"),
            Self::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
            Self::Number(literal) => out.push_str(literal),
            Self::Str(string) => string.write(out),
            Self::Deep(depth) => {
                out.push_str(&"[".repeat(*depth));
                out.push_str(&"]".repeat(*depth));
            }
            Self::Array(elements) => {
                out.push('[');
                for (index, element) in elements.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    out.push_str(gap);
                    element.write(out, spaced);
                }
                out.push_str(gap);
                out.push(']');
            }
            Self::Object(members) => {
                out.push('{');
                for (index, (key, value)) in members.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    out.push_str(gap);
                    key.write(out);
                    out.push(':');
                    out.push_str(gap);
                    value.write(out, spaced);
                }
                out.push_str(gap);
                out.push('}');
            }
        }
    }

    fn to_text(&self, spaced: bool) -> String {
        let mut out = String::new();
        self.write(&mut out, spaced);
        out
    }
}

// ---------------------------------------------------------------------------
// Strategies.

/// Characters that break naive escaping more often than chance would.
fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        2 => select(vec![
            '"', '\\', '\n', '\r', '\t', '\0', '\u{7f}', '\u{1b}', '{', '}', ',', '=', '#', ' ',
            'ü', 'ß', '😀', '\u{2028}', '\u{feff}', '\u{202e}', '\u{fffd}', '\u{85}', '\u{a0}',
        ]),
        2 => proptest::char::range('a', 'z'),
    ]
}

fn label_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => vec(hostile_char(), 0..10).prop_map(String::from_iter),
        // A small pool, so that items share labels and are folded together.
        1 => select(vec!["Exchange", "o365", "reseller", "a\"b", "a\\b", "a\nb", " ", ""])
            .prop_map(str::to_owned),
    ]
}

/// A label that the exporter uses: not empty, not only white space.
fn usable_label() -> impl Strategy<Value = String> {
    label_text().prop_map(|label| {
        if label.trim().is_empty() {
            label + "x"
        } else {
            label
        }
    })
}

fn escape() -> impl Strategy<Value = Escape> {
    prop_oneof![3 => Just(Escape::Minimal), 1 => Just(Escape::Unicode)]
}

/// String literals a decoder may stumble over: lone surrogates and other
/// escapes, valid or not as characters.
fn raw_string() -> impl Strategy<Value = String> {
    vec(
        select(vec![
            "\\ud800",
            "\\udfff",
            "\\ud83d",
            "\\udc00",
            "\\ud83d\\ude00",
            "\\u0000",
            "\\/",
            "\\\"",
            "\\\\",
            "x",
            " ",
            "2020-01-01",
        ]),
        1..4,
    )
    .prop_map(|parts| parts.concat())
}

fn json_string() -> impl Strategy<Value = JsonString> {
    prop_oneof![
        4 => (label_text(), escape()).prop_map(|(text, escape)| JsonString::Text(text, escape)),
        1 => select([&ITEM_FIELDS[..], &["items", "links"]].concat()).prop_map(text),
        1 => raw_string().prop_map(JsonString::Raw),
    ]
}

/// Number literals, in range for f64 or not.
fn number_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_filter_map("finite", |f| f.is_finite().then(|| format!("{f:?}"))),
        any::<f64>().prop_filter_map("finite", |f| f.is_finite().then(|| format!("{f:e}"))),
        "-?(0|[1-9][0-9]{0,25})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,4})?",
        select(vec![
            "1e400",
            "-1e400",
            "1e-400",
            "-0",
            "0e0",
            "1E+308",
            "2e308",
            "-2e308",
            "4.9e-324",
            "123456789012345678901234567890",
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

/// `processedDateTime` texts in the forms Partner Center sends, and others.
fn date_text() -> impl Strategy<Value = String> {
    (date_time(), 0..5_u8).prop_map(|(at, form)| match form {
        0 => at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        1 => at.to_rfc3339(),
        2 => at.format("%Y-%m-%dT%H:%M:%S").to_string(),
        3 => at.format("%Y-%m-%d").to_string(),
        _ => at.format("%Y-%m-%d %H:%M:%S%z").to_string(),
    })
}

/// Any value of an item's field, most often of the right kind.
fn field_value(
    right_kind: impl Strategy<Value = Json> + 'static,
    inner: BoxedStrategy<Json>,
) -> BoxedStrategy<Json> {
    prop_oneof![
        6 => right_kind,
        1 => Just(Json::Null),
        1 => number_literal().prop_map(Json::Number),
        1 => (label_text(), escape()).prop_map(|(t, e)| Json::Str(JsonString::Text(t, e))),
        1 => raw_string().prop_map(|raw| Json::Str(JsonString::Raw(raw))),
        1 => inner,
    ]
    .boxed()
}

/// An object shaped like a license usage item, with any field missing,
/// of the wrong type, hostile, or given twice, and extra fields.
fn usage_like_item(inner: BoxedStrategy<Json>) -> impl Strategy<Value = Json> {
    let label = || {
        field_value(
            (label_text(), escape()).prop_map(|(t, e)| Json::Str(JsonString::Text(t, e))),
            inner.clone(),
        )
    };
    let percent = field_value(
        prop_oneof![
            3 => number_literal().prop_map(Json::Number),
            1 => select(vec!["12.5", " 17 ", "NaN", "inf", "-Infinity", "1e400", "-0"])
                .prop_map(|t| Json::Str(text(t))),
        ],
        inner.clone(),
    );
    let date = field_value(date_text().prop_map(|t| Json::Str(text(&t))), inner.clone());
    let present = || prop::option::weighted(0.9, any::<()>());
    (
        (label(), label(), label(), percent, date),
        (present(), present(), present(), present(), present()),
        vec((json_string(), inner.clone()), 0..3),
    )
        .prop_flat_map(|(values, present, extra)| {
            let (workload, service, channel, percent, date) = values;
            let mut members = Vec::new();
            for (name, value, here) in [
                (ITEM_FIELDS[0], workload, present.0),
                (ITEM_FIELDS[1], service, present.1),
                (ITEM_FIELDS[2], channel, present.2),
                (ITEM_FIELDS[3], percent, present.3),
                (ITEM_FIELDS[4], date, present.4),
            ] {
                if here.is_some() {
                    members.push((text(name), value));
                }
            }
            members.extend(extra);
            Just(members).prop_shuffle().prop_map(Json::Object)
        })
}

/// Any JSON value, license usage items among them.
fn json_value() -> BoxedStrategy<Json> {
    let leaf = prop_oneof![
        2 => Just(Json::Null),
        2 => any::<bool>().prop_map(Json::Bool),
        4 => number_literal().prop_map(Json::Number),
        4 => json_string().prop_map(Json::Str),
        1 => (1_usize..300).prop_map(Json::Deep),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Json::Array),
            vec((json_string(), inner.clone()), 0..6).prop_map(Json::Object),
            usage_like_item(inner.clone()),
        ]
    })
    .boxed()
}

/// A usable item and the usage it must decode to. Extra fields may hold
/// anything, since the exporter does not read them.
fn usable_item() -> impl Strategy<Value = (Json, LicenseUsage)> {
    (
        (usable_label(), escape()),
        (usable_label(), escape()),
        (usable_label(), escape()),
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        date_time(),
        vec(
            (
                label_text().prop_filter("not a field the exporter reads", |key| {
                    !ITEM_FIELDS.contains(&key.as_str())
                }),
                json_value(),
            ),
            0..3,
        ),
    )
        .prop_flat_map(|(workload, service, channel, percent, at, extra)| {
            let literal = format!("{percent:?}");
            let expected = LicenseUsage {
                workload: workload.0.clone(),
                service: service.0.clone(),
                channel: channel.0.clone(),
                // The decoder's reading of the literal, not `percent`: the two
                // may differ in the last bit.
                prorated_percent: serde_json::from_str(&literal).expect("a finite literal"),
                processed_at: at,
            };
            let mut members = vec![
                (
                    text(ITEM_FIELDS[0]),
                    Json::Str(JsonString::Text(workload.0, workload.1)),
                ),
                (
                    text(ITEM_FIELDS[1]),
                    Json::Str(JsonString::Text(service.0, service.1)),
                ),
                (
                    text(ITEM_FIELDS[2]),
                    Json::Str(JsonString::Text(channel.0, channel.1)),
                ),
                (text(ITEM_FIELDS[3]), Json::Number(literal)),
                (
                    text(ITEM_FIELDS[4]),
                    Json::Str(text(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true))),
                ),
            ];
            members.extend(extra.into_iter().map(|(key, value)| (text(&key), value)));
            (Just(members).prop_shuffle(), Just(expected))
        })
        .prop_map(|(members, expected)| (Json::Object(members), expected))
}

/// A well-formed collection envelope: its items, and for each the usage it
/// must decode to when it is a usable one.
#[derive(Debug, Clone)]
struct Page {
    body: String,
    expected: Vec<Option<LicenseUsage>>,
}

fn page() -> impl Strategy<Value = Page> {
    (
        vec(
            prop_oneof![
                1 => usable_item().prop_map(|(item, usage)| (item, Some(usage))),
                1 => json_value().prop_map(|item| (item, None)),
            ],
            0..12,
        ),
        subsequence(
            vec!["totalCount", "attributes", "links", "continuationToken"],
            0..=4,
        ),
        vec(json_value(), 4),
        any::<bool>(),
    )
        .prop_flat_map(|(items, keys, values, spaced)| {
            let (items, expected): (Vec<Json>, Vec<Option<LicenseUsage>>) =
                items.into_iter().unzip();
            let mut members = vec![(text("items"), Json::Array(items))];
            members.extend(keys.into_iter().zip(values).map(|(key, value)| {
                // `links` is followed, so it stays empty here.
                let value = if key == "links" { Json::Null } else { value };
                (text(key), value)
            }));
            (Just(members).prop_shuffle(), Just(expected), Just(spaced))
        })
        .prop_map(|(members, expected, spaced)| Page {
            body: Json::Object(members).to_text(spaced),
            expected,
        })
}

/// One byte edit: overwrite, insert or delete at a position.
fn edits() -> impl Strategy<Value = Vec<(Index, u8, u8)>> {
    vec((any::<Index>(), any::<u8>(), 0_u8..3), 1..8)
}

fn apply(body: &str, edits: &[(Index, u8, u8)]) -> Vec<u8> {
    let mut bytes = body.as_bytes().to_vec();
    for (at, byte, kind) in edits {
        if bytes.is_empty() {
            bytes.push(*byte);
            continue;
        }
        let at = at.index(bytes.len());
        match kind {
            0 => bytes[at] = *byte,
            1 => bytes.insert(at, *byte),
            _ => {
                bytes.remove(at);
            }
        }
    }
    bytes
}

// ---------------------------------------------------------------------------
// A strict reader of the text exposition format (version 0.0.4).

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A sample value: a float as Go's ParseFloat writes it, `+Inf`, `-Inf` or `NaN`.
fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')) =>
        {
            text.parse().map_err(|_| format!("bad value {text:?}"))
        }
        _ => Err(format!("bad value {text:?}")),
    }
}

/// A HELP text: escapes are `\\` and `\n` only.
fn check_help(help: &str) -> Result<(), String> {
    let mut chars = help.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
            return Err(format!("bad escape in HELP {help:?}"));
        }
    }
    Ok(())
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| "a sample without a value".to_owned())?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inside) = rest.strip_prefix('{') {
        let mut chars = inside.char_indices();
        let mut label_start = 0;
        let mut end = None;
        while end.is_none() {
            // A label name up to `=`, or the end of an empty label set.
            let mut label = None;
            for (at, c) in chars.by_ref() {
                if c == '=' {
                    label = Some(&inside[label_start..at]);
                    break;
                }
                if c == '}' && at == label_start && labels.is_empty() {
                    end = Some(at + 1);
                    break;
                }
            }
            if end.is_some() {
                break;
            }
            let label = label.ok_or("an unterminated label name")?;
            if !is_label_name(label) {
                return Err(format!("bad label name {label:?}"));
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {label} is not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("bad escape {other:?} in label {label}")),
                    },
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("unterminated value of label {label}")),
                }
            }
            if labels.insert(label.to_owned(), value).is_some() {
                return Err(format!("label {label} twice"));
            }
            match chars.next() {
                Some((at, ',')) => label_start = at + 1,
                Some((at, '}')) => end = Some(at + 1),
                other => return Err(format!("{other:?} after the value of label {label}")),
            }
        }
        rest = &inside[end.unwrap_or(inside.len())..];
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or("no single space before the value")?;
    let (value, timestamp) = match rest.split_once(' ') {
        Some((value, timestamp)) => (value, Some(timestamp)),
        None => (rest, None),
    };
    if let Some(timestamp) = timestamp
        && timestamp
            .strip_prefix('-')
            .unwrap_or(timestamp)
            .parse::<u64>()
            .is_err()
    {
        return Err(format!("bad timestamp {timestamp:?}"));
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value)?,
    })
}

/// Reads a whole exposition: HELP and TYPE lines before their family's
/// samples, each family in one block, no other comments, no blank lines,
/// no series twice.
fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    const TYPES: [&str; 5] = ["counter", "gauge", "histogram", "summary", "untyped"];
    let body = text
        .strip_suffix('\n')
        .ok_or("the exposition does not end with a newline")?;
    let mut samples: Vec<Sample> = Vec::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps = BTreeSet::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<(String, usize)> = None;
    let mut series = BTreeSet::new();
    for (number, line) in body.split('\n').enumerate() {
        let at = |why: String| format!("line {}: {why}: {line:?}", number + 1);
        let header = line
            .strip_prefix("# HELP ")
            .map(|rest| (true, rest))
            .or_else(|| line.strip_prefix("# TYPE ").map(|rest| (false, rest)));
        if let Some((is_help, rest)) = header {
            let (name, detail) = rest
                .split_once(' ')
                .ok_or_else(|| at("HELP or TYPE without text".to_owned()))?;
            if !is_metric_name(name) {
                return Err(at("bad metric name".to_owned()));
            }
            match &current {
                Some((family, _)) if family == name => {}
                _ => {
                    if let Some((family, count)) = current.take() {
                        if count == 0 {
                            return Err(at(format!("family {family} has no samples")));
                        }
                        finished.insert(family);
                    }
                    if finished.contains(name) {
                        return Err(at(format!("family {name} is split")));
                    }
                    current = Some((name.to_owned(), 0));
                }
            }
            if current.as_ref().is_some_and(|(_, count)| *count > 0) {
                return Err(at("HELP or TYPE after samples".to_owned()));
            }
            if is_help {
                check_help(detail).map_err(at)?;
                if !helps.insert(name.to_owned()) {
                    return Err(at("HELP twice".to_owned()));
                }
            } else {
                if !TYPES.contains(&detail) {
                    return Err(at(format!("unknown type {detail:?}")));
                }
                if types.insert(name.to_owned(), detail.to_owned()).is_some() {
                    return Err(at("TYPE twice".to_owned()));
                }
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            return Err(at("an unexpected comment or blank line".to_owned()));
        }
        let sample = parse_sample(line).map_err(at)?;
        let Some((family, count)) = current.as_mut() else {
            return Err(at("a sample before any TYPE".to_owned()));
        };
        let kind = types
            .get(family.as_str())
            .ok_or_else(|| at(format!("family {family} has no TYPE")))?;
        let belongs = sample.name == *family
            || (matches!(kind.as_str(), "histogram" | "summary")
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| sample.name == format!("{family}{suffix}")));
        if !belongs {
            return Err(at(format!("a sample outside its family {family}")));
        }
        *count += 1;
        if !series.insert((sample.name.clone(), sample.labels.clone())) {
            return Err(at("a series twice".to_owned()));
        }
        samples.push(sample);
    }
    if let Some((family, 0)) = current {
        return Err(format!("family {family} has no samples"));
    }
    Ok(samples)
}

// ---------------------------------------------------------------------------
// The pipeline and what must hold of it.

fn labels_of(key: &LicenseUsage) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("workload".to_owned(), key.workload.clone()),
        ("service".to_owned(), key.service.clone()),
        ("channel".to_owned(), key.channel.clone()),
    ])
}

/// Decodes `body` and, when it is a page, serves it and checks `/metrics`.
fn decode_and_serve(body: &[u8]) -> Result<Option<UsagePage>, TestCaseError> {
    let page = match decode_usage_page(body) {
        Ok(page) => page,
        Err(err) => {
            // Failures are logged and shown on the landing page: one
            // bounded line, and the byte where a body stops being UTF-8.
            let message = err.to_string();
            prop_assert!(!message.is_empty() && message.len() < 512, "{message}");
            prop_assert!(!message.contains('\n'), "{message}");
            if let Err(utf8) = std::str::from_utf8(body) {
                prop_assert_eq!(
                    message,
                    format!("response is not valid UTF-8 at byte {}", utf8.valid_up_to())
                );
            }
            return Ok(None);
        }
    };
    let mut indices = page.skipped.iter().map(|skipped| skipped.index);
    if let Some(first) = indices.next() {
        let mut previous = first;
        for index in indices {
            prop_assert!(index > previous, "skipped indices out of order");
            previous = index;
        }
    }

    let snapshot = Snapshot::<LicenseUsageSource>::from_vec(page.items.clone());
    prop_assert_eq!(
        page.items.len(),
        snapshot.series().len() + snapshot.duplicates()
    );
    let series = snapshot.series().to_vec();
    let state = std::sync::Arc::new(ExporterState::new(
        ExporterMetrics::new().expect("metrics"),
        None,
    ));
    state
        .add_tenant(TenantLabel::NONE, &[SourceName::LicenseUsage])
        .expect("tenant metrics")
        .record_snapshot(
            snapshot,
            page.skipped.len() as u64,
            Duration::from_millis(5),
            Utc::now(),
        );
    let exposition = String::from_utf8(state.render_metrics())
        .map_err(|err| TestCaseError::fail(format!("/metrics is not UTF-8: {err}")))?;
    let samples = parse_exposition(&exposition)
        .map_err(|err| TestCaseError::fail(format!("{err}\n--- exposition ---\n{exposition}")))?;
    prop_assert!(
        samples.iter().any(|s| s.name == "partner_center_up"),
        "the exporter's own metrics are served"
    );

    // The license series are the snapshot's, labels and values exactly.
    for (name, value_of) in [
        (
            PERCENT,
            (|v| v.prorated_percent) as fn(&LicenseUsage) -> f64,
        ),
        (PROCESSED, |v| {
            v.processed_at.timestamp_millis() as f64 / 1000.0
        }),
    ] {
        let served: BTreeMap<&BTreeMap<String, String>, u64> = samples
            .iter()
            .filter(|sample| sample.name == name)
            .map(|sample| (&sample.labels, sample.value.to_bits()))
            .collect();
        let labels: Vec<BTreeMap<String, String>> = series.iter().map(labels_of).collect();
        prop_assert_eq!(
            labels.iter().collect::<BTreeSet<_>>().len(),
            labels.len(),
            "one item per series"
        );
        let expected: BTreeMap<&BTreeMap<String, String>, u64> = labels
            .iter()
            .zip(&series)
            .map(|(labels, item)| (labels, value_of(item).to_bits()))
            .collect();
        prop_assert_eq!(served, expected, "{}", name);
    }
    // Every decoded item is served.
    for item in &page.items {
        let labels = labels_of(item);
        prop_assert!(
            samples
                .iter()
                .any(|sample| sample.name == PERCENT && sample.labels == labels),
            "{:?} is not served",
            item
        );
    }
    Ok(Some(page))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes(body in vec(any::<u8>(), 0..512)) {
        decode_and_serve(&body)?;
    }

    #[test]
    fn arbitrary_json(value in json_value(), spaced in any::<bool>()) {
        decode_and_serve(value.to_text(spaced).as_bytes())?;
    }

    #[test]
    fn pages_of_hostile_and_usable_items(page in page()) {
        let decoded = decode_and_serve(page.body.as_bytes())?;
        let decoded = decoded.ok_or_else(|| TestCaseError::fail("a well-formed page fails"))?;
        prop_assert_eq!(decoded.items.len() + decoded.skipped.len(), page.expected.len());
        // The items that were not skipped, in order, are the decoded ones.
        let skipped: BTreeSet<usize> = decoded.skipped.iter().map(|s| s.index).collect();
        let kept = (0..page.expected.len()).filter(|index| !skipped.contains(index));
        for (index, item) in kept.zip(&decoded.items) {
            if let Some(expected) = &page.expected[index] {
                prop_assert_eq!(item, expected, "item {}", index);
            }
        }
        for (index, expected) in page.expected.iter().enumerate() {
            prop_assert!(
                expected.is_none() || !skipped.contains(&index),
                "usable item {} was skipped: {:?}",
                index,
                decoded.skipped
            );
        }
    }

    #[test]
    fn pages_with_bytes_changed(page in page(), edits in edits()) {
        decode_and_serve(&apply(&page.body, &edits))?;
    }
}

/// The license deployment source's decoder, with the strategies above
/// and its own shapes of items.
mod deployment {
    use std::collections::BTreeSet;

    use chrono::SecondsFormat;
    use partner_center_exporter::Snapshot;
    use partner_center_exporter::Source;
    use partner_center_exporter::license_deployment::{
        DeploymentPage, LicenseDeployment, LicenseDeploymentSource, decode_deployment_page,
    };
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::select;

    use super::{date_time, label_text, number_literal, usable_label};

    const FIELD_NAMES: [&str; 5] = [
        "serviceName",
        "channel",
        "proratedDeploymentPercent",
        "licensesSold",
        "processedDateTime",
    ];

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
    fn decode_and_render(body: &[u8]) -> Result<Option<DeploymentPage>, TestCaseError> {
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
                    Some(value.to_bits()),
                    (family.value)(winner).map(f64::to_bits),
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
