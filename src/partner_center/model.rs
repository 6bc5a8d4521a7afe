//! The license usage collection as Partner Center sends it, and its lenient decoding.
//!
//! Decoding is item by item: an item that cannot be used is skipped with a
//! reason and the rest of the page is kept, so one odd row never costs a
//! whole poll. Only a body that is not a usable collection at all (not JSON,
//! no `items` array, a `links.next` that cannot be followed) fails.

use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

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

/// Why an item was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The array element is not a JSON object.
    NotAnObject,
    /// A required field is absent, `null`, empty or only white space.
    MissingField(&'static str),
    /// A field has a JSON type that cannot be used.
    WrongType(&'static str),
    /// The percentage is not a finite number.
    InvalidPercent,
    /// `processedDateTime` is not a date-time.
    InvalidDate,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnObject => f.write_str("item is not a JSON object"),
            Self::MissingField(field) => write!(f, "{field} is missing or empty"),
            Self::WrongType(field) => write!(f, "{field} has the wrong type"),
            Self::InvalidPercent => {
                f.write_str("proratedLicensesUsagePercent is not a finite number")
            }
            Self::InvalidDate => f.write_str("processedDateTime is not a date-time"),
        }
    }
}

/// An item that was left out, by its position in the page's `items` array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkippedItem {
    pub index: usize,
    pub reason: SkipReason,
}

/// A `links.next` continuation: where the rest of the collection is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NextLink {
    /// Usually relative to the API root, sometimes without its `/v1`.
    pub uri: String,
    /// Headers to send with it, typically `MS-ContinuationToken`.
    pub headers: Vec<(String, String)>,
}

/// One decoded page of the collection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsagePage {
    pub items: Vec<LicenseUsage>,
    pub skipped: Vec<SkippedItem>,
    pub next: Option<NextLink>,
}

/// Why a body is not a usable collection.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("response is not a JSON license usage collection: {0}")]
    Json(#[from] serde_json::Error),
    #[error("response has no `items` array")]
    NoItems,
    #[error("links.next cannot be followed: {0}")]
    BadNextLink(&'static str),
}

/// Decodes one page of `GET /v1/analytics/licenses/usage`.
pub fn decode_usage_page(body: &[u8]) -> Result<UsagePage, DecodeError> {
    let raw: RawCollection = serde_json::from_slice(body)?;
    let items = raw.items.ok_or(DecodeError::NoItems)?;
    let next = match raw.links {
        Some(links) => parse_next_link(links)?,
        None => None,
    };
    let mut page = UsagePage {
        items: Vec::with_capacity(items.0.len()),
        skipped: Vec::new(),
        next,
    };
    for (index, item) in items.0.into_iter().enumerate() {
        match item.into_usage() {
            Ok(usage) => page.items.push(usage),
            Err(reason) => page.skipped.push(SkippedItem { index, reason }),
        }
    }
    Ok(page)
}

/// Reads `processedDateTime` in any of the forms Partner Center is known to
/// send: RFC 3339 with an offset, or without one (taken as UTC), with or
/// without fractional seconds, or a bare date (midnight UTC).
pub fn parse_processed_date_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(parsed) = DateTime::parse_from_rfc3339(text) {
        return Some(parsed.with_timezone(&Utc));
    }
    // Offsets without a colon, such as +0000.
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(parsed) = DateTime::parse_from_str(text, format) {
            return Some(parsed.with_timezone(&Utc));
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(parsed) = NaiveDateTime::parse_from_str(text, format) {
            return Some(parsed.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc())
}

fn parse_next_link(links: serde_json::Value) -> Result<Option<NextLink>, DecodeError> {
    use serde_json::Value;
    let next = match links {
        Value::Null => return Ok(None),
        Value::Object(mut links) => match links.remove("next") {
            None | Some(Value::Null) => return Ok(None),
            Some(next) => next,
        },
        _ => return Err(DecodeError::BadNextLink("`links` is not an object")),
    };
    let Value::Object(mut next) = next else {
        return Err(DecodeError::BadNextLink("`links.next` is not an object"));
    };
    let uri = match next.remove("uri") {
        Some(Value::String(uri)) if !uri.trim().is_empty() => uri,
        _ => return Err(DecodeError::BadNextLink("`links.next.uri` is not a string")),
    };
    match next.remove("method") {
        None | Some(Value::Null) => {}
        Some(Value::String(method)) if method.eq_ignore_ascii_case("GET") => {}
        Some(_) => return Err(DecodeError::BadNextLink("`links.next.method` is not GET")),
    }
    let headers = match next.remove("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(entries)) => entries
            .into_iter()
            .map(|entry| match entry {
                Value::Object(mut entry) => match (entry.remove("key"), entry.remove("value")) {
                    (Some(Value::String(key)), Some(Value::String(value))) => Ok((key, value)),
                    _ => Err(DecodeError::BadNextLink(
                        "a `links.next.headers` entry lacks a string key or value",
                    )),
                },
                _ => Err(DecodeError::BadNextLink(
                    "a `links.next.headers` entry is not an object",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(DecodeError::BadNextLink(
                "`links.next.headers` is not an array",
            ));
        }
    };
    Ok(Some(NextLink { uri, headers }))
}

/// The collection envelope. Unknown fields (`totalCount`, `attributes`) are ignored.
#[derive(Deserialize)]
struct RawCollection {
    #[serde(default)]
    items: Option<RawItems>,
    #[serde(default)]
    links: Option<serde_json::Value>,
}

/// The `items` array, each element decoded on its own.
struct RawItems(Vec<RawItem>);

impl<'de> Deserialize<'de> for RawItems {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemsVisitor;
        impl<'de> Visitor<'de> for ItemsVisitor {
            type Value = RawItems;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`items` to be an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawItems, A::Error> {
                // The hint comes from the input; cap it so a lying length cannot
                // allocate ahead of the data that backs it.
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(item) = seq.next_element::<RawItem>()? {
                    items.push(item);
                }
                Ok(RawItems(items))
            }
        }
        deserializer.deserialize_seq(ItemsVisitor)
    }
}

/// A field as found, before deciding whether the item is usable.
#[derive(Debug, Default)]
enum Field<T> {
    #[default]
    Absent,
    Present(T),
    WrongType,
}

/// One element of `items`, with every field kept whatever its JSON type.
#[derive(Default)]
struct RawItem {
    is_object: bool,
    workload: Field<String>,
    service: Field<String>,
    channel: Field<String>,
    percent: Field<f64>,
    processed: Field<String>,
}

impl RawItem {
    fn into_usage(self) -> Result<LicenseUsage, SkipReason> {
        if !self.is_object {
            return Err(SkipReason::NotAnObject);
        }
        let workload = required_label(self.workload, "workloadName")?;
        let service = required_label(self.service, "serviceName")?;
        let channel = required_label(self.channel, "channel")?;
        let prorated_percent = match self.percent {
            Field::Present(value) if value.is_finite() => value,
            Field::Present(_) => return Err(SkipReason::InvalidPercent),
            Field::Absent => return Err(SkipReason::MissingField("proratedLicensesUsagePercent")),
            Field::WrongType => return Err(SkipReason::InvalidPercent),
        };
        let processed_at = match self.processed {
            Field::Present(text) => {
                parse_processed_date_time(&text).ok_or(SkipReason::InvalidDate)?
            }
            Field::Absent => return Err(SkipReason::MissingField("processedDateTime")),
            Field::WrongType => return Err(SkipReason::WrongType("processedDateTime")),
        };
        Ok(LicenseUsage {
            workload,
            service,
            channel,
            prorated_percent,
            processed_at,
        })
    }
}

fn required_label(field: Field<String>, name: &'static str) -> Result<String, SkipReason> {
    match field {
        Field::Present(value) if !value.trim().is_empty() => Ok(value),
        Field::Present(_) | Field::Absent => Err(SkipReason::MissingField(name)),
        Field::WrongType => Err(SkipReason::WrongType(name)),
    }
}

/// The item fields the exporter reads; everything else is skipped unread.
enum ItemKey {
    Workload,
    Service,
    Channel,
    Percent,
    Processed,
    Other,
}

impl<'de> Deserialize<'de> for ItemKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = ItemKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<ItemKey, E> {
                Ok(match key {
                    "workloadName" => ItemKey::Workload,
                    "serviceName" => ItemKey::Service,
                    "channel" => ItemKey::Channel,
                    "proratedLicensesUsagePercent" => ItemKey::Percent,
                    "processedDateTime" => ItemKey::Processed,
                    _ => ItemKey::Other,
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for RawItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = RawItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a license usage item")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawItem, A::Error> {
                // A repeated key overwrites the earlier one, as most JSON readers do.
                let mut item = RawItem {
                    is_object: true,
                    ..RawItem::default()
                };
                while let Some(key) = map.next_key::<ItemKey>()? {
                    match key {
                        ItemKey::Workload => item.workload = map.next_value::<LenientString>()?.0,
                        ItemKey::Service => item.service = map.next_value::<LenientString>()?.0,
                        ItemKey::Channel => item.channel = map.next_value::<LenientString>()?.0,
                        ItemKey::Percent => item.percent = map.next_value::<LenientNumber>()?.0,
                        ItemKey::Processed => {
                            item.processed = map.next_value::<LenientString>()?.0;
                        }
                        ItemKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(item)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawItem, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(RawItem::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawItem, E> {
                Ok(RawItem::default())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawItem, E> {
                Ok(RawItem::default())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawItem, E> {
                Ok(RawItem::default())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawItem, E> {
                Ok(RawItem::default())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawItem, E> {
                Ok(RawItem::default())
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<RawItem, E> {
                Ok(RawItem::default())
            }
        }
        deserializer.deserialize_any(ItemVisitor)
    }
}

/// A string field that records, rather than fails on, any other JSON type.
struct LenientString(Field<String>);

impl<'de> Deserialize<'de> for LenientString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StringVisitor;
        impl<'de> Visitor<'de> for StringVisitor {
            type Value = LenientString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<LenientString, E> {
                Ok(LenientString(Field::Present(value.to_owned())))
            }
            fn visit_string<E: de::Error>(self, value: String) -> Result<LenientString, E> {
                Ok(LenientString(Field::Present(value)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientString, E> {
                Ok(LenientString(Field::Absent))
            }
            fn visit_none<E: de::Error>(self) -> Result<LenientString, E> {
                Ok(LenientString(Field::Absent))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<LenientString, E> {
                Ok(LenientString(Field::WrongType))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<LenientString, E> {
                Ok(LenientString(Field::WrongType))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<LenientString, E> {
                Ok(LenientString(Field::WrongType))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<LenientString, E> {
                Ok(LenientString(Field::WrongType))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LenientString, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LenientString(Field::WrongType))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LenientString, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LenientString(Field::WrongType))
            }
        }
        deserializer.deserialize_any(StringVisitor)
    }
}

/// A number field that takes integers, floats and numeric strings, and
/// records, rather than fails on, any other JSON type.
struct LenientNumber(Field<f64>);

impl<'de> Deserialize<'de> for LenientNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;
        impl<'de> Visitor<'de> for NumberVisitor {
            type Value = LenientNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<LenientNumber, E> {
                Ok(LenientNumber(Field::Present(value as f64)))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<LenientNumber, E> {
                Ok(LenientNumber(Field::Present(value as f64)))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<LenientNumber, E> {
                Ok(LenientNumber(Field::Present(value)))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<LenientNumber, E> {
                Ok(LenientNumber(match value.trim().parse::<f64>() {
                    Ok(number) => Field::Present(number),
                    Err(_) => Field::WrongType,
                }))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientNumber, E> {
                Ok(LenientNumber(Field::Absent))
            }
            fn visit_none<E: de::Error>(self) -> Result<LenientNumber, E> {
                Ok(LenientNumber(Field::Absent))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<LenientNumber, E> {
                Ok(LenientNumber(Field::WrongType))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LenientNumber, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LenientNumber(Field::WrongType))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LenientNumber, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LenientNumber(Field::WrongType))
            }
        }
        deserializer.deserialize_any(NumberVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
                (5, SkipReason::InvalidPercent),
                (6, SkipReason::InvalidDate),
                (7, SkipReason::MissingField("processedDateTime")),
                (8, SkipReason::NotAnObject),
                (9, SkipReason::InvalidPercent),
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
        let cases: [(&[u8], &str); 8] = [
            (b"<html>Service Unavailable</html>", "not a JSON"),
            (b"{\"items\": [", "not a JSON"),
            (b"{\"totalCount\": 0}", "no `items`"),
            (b"{\"items\": null}", "no `items`"),
            (b"{\"items\": {\"a\": 1}}", "`items` to be an array"),
            (br#"{"items":[],"links":{"next":{"method":"GET"}}}"#, "uri"),
            (
                br#"{"items":[],"links":{"next":{"uri":"/x","method":"POST"}}}"#,
                "GET",
            ),
            (
                br#"{"items":[],"links":{"next":{"uri":"/x","headers":[{"key":"k"}]}}}"#,
                "headers",
            ),
        ];
        for (body, expected) in cases {
            let err = decode_usage_page(body).expect_err("must fail");
            assert!(err.to_string().contains(expected), "{err} lacks {expected}");
        }
    }
}
